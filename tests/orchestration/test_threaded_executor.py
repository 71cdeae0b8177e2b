"""The threaded executor: independent steps run side by side, exclusive ones alone, and a run's outcome
(successes, failures, skips, blocking checks) is what Dagster's in-process executor gives."""

from __future__ import annotations

import os
import queue
import signal
import threading
import time
from collections.abc import Iterator

import dagster as dg
import pytest

from orchestration.lib import threaded_executor as threaded_executor_module
from orchestration.lib.threaded_executor import EXCLUSIVE_TAG, execute_job_threaded, threaded_executor


class Spans:
    """Start and end (monotonic seconds) of each step, recorded by the steps themselves."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.spans: dict[str, tuple[float, float]] = {}

    def record(self, name: str, seconds: float) -> None:
        start = time.monotonic()
        time.sleep(seconds)
        with self.lock:
            self.spans[name] = (start, time.monotonic())

    def overlap(self, a: str, b: str) -> bool:
        (a0, a1), (b0, b1) = self.spans[a], self.spans[b]
        return a0 < b1 and b0 < a1


def _run(assets: list, *, max_concurrent: int | None = None, selection: str = "*") -> dg.ExecuteInProcessResult:
    executor = threaded_executor if max_concurrent is None else threaded_executor.configured(
        {"max_concurrent": max_concurrent})
    job = dg.define_asset_job("job", selection=selection, executor_def=executor)
    defs = dg.Definitions(assets=assets, jobs=[job])
    return execute_job_threaded(defs.resolve_job_def("job"), instance=dg.DagsterInstance.ephemeral(),
                                run_config={})


def test_two_independent_steps_run_at_the_same_time() -> None:
    # A barrier for two: each asset passes it only if the other one is running at the same time.
    barrier = threading.Barrier(2, timeout=20)

    @dg.asset
    def left() -> None:
        barrier.wait()

    @dg.asset
    def right() -> None:
        barrier.wait()

    @dg.asset(deps=[left, right])
    def joined() -> None:
        pass

    result = _run([left, right, joined])
    assert result.success
    assert {e.step_key for e in result.all_events if e.is_step_success} == {"left", "right", "joined"}


def test_max_concurrent_one_runs_steps_one_at_a_time() -> None:
    spans = Spans()

    @dg.asset
    def first() -> None:
        spans.record("first", 0.3)

    @dg.asset
    def second() -> None:
        spans.record("second", 0.3)

    assert _run([first, second], max_concurrent=1).success
    assert not spans.overlap("first", "second")


def test_an_exclusive_step_never_runs_beside_another() -> None:
    spans = Spans()

    @dg.asset
    def slow_a() -> None:
        spans.record("slow_a", 0.4)

    @dg.asset
    def slow_b() -> None:
        spans.record("slow_b", 0.4)

    # Independent of both, so any executor without the rule would start it beside them.
    @dg.asset(op_tags={EXCLUSIVE_TAG: "true"})
    def warehouse_writer() -> None:
        spans.record("warehouse_writer", 0.4)

    @dg.asset(deps=[slow_a])
    def after_a() -> None:
        spans.record("after_a", 0.4)

    assert _run([slow_a, slow_b, warehouse_writer, after_a]).success
    for other in ("slow_a", "slow_b", "after_a"):
        assert not spans.overlap("warehouse_writer", other), other
    assert spans.overlap("slow_a", "slow_b") or spans.overlap("after_a", "slow_b")


def test_higher_priority_steps_start_first() -> None:
    started: list[str] = []
    lock = threading.Lock()

    def make(name: str, priority: int) -> dg.AssetsDefinition:
        @dg.asset(name=name, op_tags={"dagster/priority": str(priority)})
        def _asset() -> None:
            with lock:
                started.append(name)
            time.sleep(0.2)

        return _asset

    assert _run([make("small", 0), make("largest", 3), make("large", 2)], max_concurrent=1).success
    assert started == ["largest", "large", "small"]


def test_failures_skips_and_blocking_checks_match_the_in_process_executor() -> None:
    @dg.asset
    def broken() -> None:
        raise ValueError("bad delivery")

    @dg.asset(deps=[broken])
    def after_broken() -> None:
        pass

    @dg.asset(check_specs=[dg.AssetCheckSpec("gate", asset="gated", blocking=True)])
    def gated() -> Iterator:
        yield dg.MaterializeResult()
        yield dg.AssetCheckResult(check_name="gate", passed=False)

    @dg.asset(deps=[gated])
    def after_gate() -> None:
        pass

    @dg.asset
    def healthy() -> None:
        pass

    @dg.asset(deps=[healthy])
    def after_healthy() -> None:
        pass

    assets = [broken, after_broken, gated, after_gate, healthy, after_healthy]

    def outcome(result: dg.ExecuteInProcessResult) -> dict[str, set[str]]:
        kinds = ("STEP_SUCCESS", "STEP_FAILURE", "STEP_SKIPPED", "ASSET_MATERIALIZATION", "ASSET_CHECK_EVALUATION")
        seen: dict[str, set[str]] = {kind: set() for kind in kinds}
        for event in result.all_events:
            if event.event_type_value in seen:
                seen[event.event_type_value].add(event.step_key or "")
        return seen

    threaded = _run(assets)
    in_process = dg.define_asset_job("job").resolve(asset_graph=dg.Definitions(assets=assets).resolve_asset_graph())
    in_process = in_process.execute_in_process(raise_on_error=False)
    assert not threaded.success
    assert outcome(threaded) == outcome(in_process)
    # A failed blocking check fails its step (Dagster's rule), so "gated" fails like "broken".
    assert outcome(threaded)["STEP_FAILURE"] == {"broken", "gated"}
    assert "after_healthy" in outcome(threaded)["STEP_SUCCESS"]
    assert {"after_broken", "after_gate"}.isdisjoint(outcome(threaded)["STEP_SUCCESS"])


@pytest.mark.parametrize("exclusive", [False, True], ids=["a step", "an exclusive step"])
def test_a_step_retried_at_once_runs_again_after_its_first_attempt_ends(
    exclusive: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Dagster hands a step retried without delay straight back, possibly before its first attempt's
    # thread has finished: the second attempt must wait for it, not take its place in the books.
    # The threads here finish late on purpose (their end reported 0.5 s after their last event).
    class LateEnd:
        def __init__(self, events: queue.Queue) -> None:
            self.events = events

        def put(self, item: tuple) -> None:
            if item[1] is threaded_executor_module._DONE:
                time.sleep(0.5)
            self.events.put(item)

    real_run_step = threaded_executor_module._run_step
    monkeypatch.setattr(threaded_executor_module, "_run_step",
                        lambda key, context, events: real_run_step(key, context, LateEnd(events)))
    attempts: list[int] = []

    @dg.asset(retry_policy=dg.RetryPolicy(max_retries=2), op_tags={EXCLUSIVE_TAG: "true"} if exclusive else None)
    def flaky(context) -> None:
        attempts.append(context.retry_number)
        if context.retry_number == 0:
            raise RuntimeError("a passing fault")

    @dg.asset(deps=[flaky])
    def after() -> None:
        pass

    result = _run([flaky, after])

    assert result.success
    assert attempts == [0, 1]
    assert {e.step_key for e in result.get_step_success_events()} == {"flaky", "after"}


def test_a_run_is_recorded_in_the_instance_with_every_step(tmp_path: pytest.TempPathFactory) -> None:
    @dg.asset
    def one() -> None:
        pass

    @dg.asset(deps=[one])
    def two() -> None:
        pass

    job = dg.define_asset_job("job", executor_def=threaded_executor)
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        result = execute_job_threaded(dg.Definitions(assets=[one, two], jobs=[job]).resolve_job_def("job"),
                                      instance=instance, run_config={})
        run = instance.get_run_by_id(result.run_id)
        assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS
        stored = {e.dagster_event.step_key for e in instance.all_logs(result.run_id)
                  if e.dagster_event is not None and e.dagster_event.event_type_value == "STEP_SUCCESS"}
        assert stored == {"one", "two"}
        assert instance.get_latest_materialization_event(dg.AssetKey("two")) is not None


def test_the_refresh_job_runs_on_it_with_dbt_and_publish_exclusive() -> None:
    from orchestration.definitions import defs

    job = defs().resolve_job_def("refresh")
    assert job.executor_def.name == threaded_executor.name
    exclusive = {node.name for node in job.graph.nodes if node.definition.tags.get(EXCLUSIVE_TAG) == "true"}
    assert exclusive == {"dbt_models", "warehouse__published"}


def test_a_termination_starts_no_further_step_and_the_run_ends_interrupted() -> None:
    """Dagster's Terminate (or a run's max runtime, or Ctrl-C) is a SIGINT that Dagster only records:
    the running step ends, but nothing after it (here: a publish) may start."""
    ran: list[str] = []

    @dg.asset
    def building() -> None:
        # Dagster's capture_interrupts must have replaced Python's handler (else the signal would be a
        # KeyboardInterrupt in the test session itself).
        assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(1.0)  # still running when the termination arrives: it finishes
        ran.append("building")

    @dg.asset
    def beside() -> None:
        time.sleep(1.5)
        ran.append("beside")

    @dg.asset(deps=[building, beside])
    def published() -> None:
        ran.append("published")

    result = _run([building, beside, published])
    assert not result.success
    assert sorted(ran) == ["beside", "building"]
    assert any("Termination received" in (e.message or "") for e in result.all_events)
    assert "published" not in {e.step_key for e in result.all_events if e.event_type_value == "STEP_START"}
