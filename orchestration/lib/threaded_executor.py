"""A Dagster executor that runs independent steps on threads of one process.

Why: Dagster's in-process executor runs one step at a time, and its multiprocess executor pays a new
Python process (imports, Dagster, the definitions: seconds each) per step. On a 2-core machine most of
this pipeline's steps are DuckDB, Arrow or NumPy work that leaves the GIL, and many of them use
little more than one core: the five ingestion steps, the seven analysis steps, the follow-up mailer
and the mart checks. Two of them side by side fill both cores, with one process and one import.

Safety:
- A step tagged `nps_link/exclusive` (dbt, which writes the build warehouse from a child process;
  publish, which copies it) never runs beside another step: it waits for the running ones to end,
  and nothing starts until it ends.
- Dagster's bookkeeping (`ActiveExecution`) is touched only by the orchestrating thread; a worker
  thread only runs one step's event stream and hands its events over through a queue, in order.
- `max_concurrent: 1` gives exactly the in-process executor's behaviour.
- A termination (Dagster's Terminate, a run's max runtime, Ctrl-C: all a SIGINT, which Dagster only
  records) stops the run from starting any further step: the steps already running end (a thread
  cannot be stopped), and the run ends interrupted. Without this, publish and the follow-up mail ran
  after a person had cancelled the run.

This leans on Dagster internals that the in-process executor itself uses (`ActiveExecution`,
`dagster_event_sequence_for_step`); dagster is pinned in constraints.txt and
tests/orchestration/test_threaded_executor.py pins what is used.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import ExitStack
from typing import Any

import dagster as dg
from dagster._core.definitions.executor_definition import get_retries_config
from dagster._core.definitions.job_base import InMemoryJob
from dagster._core.events import DagsterEvent, EngineEventData
from dagster._core.execution.api import ExecuteRunWithPlanIterable, create_execution_plan, job_execution_iterator
from dagster._core.execution.compute_logs import create_compute_log_file_key
from dagster._core.execution.context.system import PlanExecutionContext, PlanOrchestrationContext
from dagster._core.execution.context_creation_job import (
    PlanExecutionContextManager,
    PlanOrchestrationContextManager,
    orchestration_context_event_generator,
)
from dagster._core.execution.execute_in_process_result import ExecuteInProcessResult
from dagster._core.execution.plan.execute_plan import _trigger_hook, dagster_event_sequence_for_step
from dagster._core.execution.plan.instance_concurrency_context import InstanceConcurrencyContext
from dagster._core.execution.plan.plan import ExecutionPlan
from dagster._core.execution.retries import RetryMode
from dagster._core.executor.base import Executor

EXCLUSIVE_TAG = "nps_link/exclusive"
# Two cores: two steps at a time. More would only make them compete for the cores and for memory.
DEFAULT_MAX_CONCURRENT = 2
_DONE = object()
# How often the orchestrating thread, while waiting for a step's events, looks for a termination.
INTERRUPT_POLL_SECONDS = 0.25


class _StepCrashed:
    """A framework error raised in a worker thread, carried to the orchestrating thread."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


def is_exclusive(step: Any) -> bool:
    """Whether a step must run alone (tagged `nps_link/exclusive`)."""
    return str(step.tags.get(EXCLUSIVE_TAG, "")).lower() in {"1", "true", "yes"}


def _run_step(step_key: str, step_context: Any, events: queue.Queue) -> None:
    """Worker thread: stream one step's events into `events`, then a done marker (or the error)."""
    try:
        for event in dagster_event_sequence_for_step(step_context):
            events.put((step_key, event))
    except BaseException:  # handed to the orchestrating thread, which re-raises it
        events.put((step_key, _StepCrashed(sys.exc_info()[1])))
    finally:
        events.put((step_key, _DONE))


def threaded_plan_iterator(
    job_context: PlanExecutionContext, execution_plan: ExecutionPlan, max_concurrent: int
) -> Iterator[DagsterEvent]:
    """Run the plan's steps up to `max_concurrent` at a time on worker threads, yielding their events.

    Mirrors dagster's `inner_plan_execution_iterator` (log capture, verify_complete, skip events,
    hooks) with the one-step-at-a-time loop replaced by a small scheduler.
    """
    compute_log_manager = job_context.instance.compute_log_manager
    step_keys = [step.key for step in execution_plan.get_steps_to_execute_in_topo_order()]
    with ExitStack() as stack:
        concurrency = stack.enter_context(InstanceConcurrencyContext(job_context.instance, job_context.dagster_run))
        active = stack.enter_context(execution_plan.start(
            retry_mode=job_context.retry_mode,
            instance_concurrency_context=concurrency,
            step_dependency_config=job_context.step_dependency_config,
        ))
        log_key = compute_log_manager.build_log_key_for_run(job_context.run_id, create_compute_log_file_key())
        log_context = stack.enter_context(compute_log_manager.capture_logs(log_key))
        yield DagsterEvent.capture_logs(job_context, step_keys, log_key, log_context)

        events: queue.Queue = queue.Queue()
        running: dict[str, tuple[Any, list[DagsterEvent], threading.Thread]] = {}
        # An exclusive step Dagster handed over while others still run: it waits for them. Or a step
        # handed over again (a retry without delay) while its previous attempt's thread has not yet
        # ended: it waits for that thread, whose key it shares. No further step is asked for
        # meanwhile (so this holds at most one).
        held: list[Any] = []

        def may_start(step: Any) -> bool:
            return step.key not in running and not (is_exclusive(step) and running)

        def exclusive_running() -> bool:
            return any(is_exclusive(ctx.step) for ctx, _, _ in running.values())

        def start(step: Any) -> None:
            step_context = job_context.for_step(step, active.get_known_state())
            thread = threading.Thread(target=_run_step, args=(step.key, step_context, events),
                                      name=f"step-{step.key}", daemon=True)
            running[step.key] = (step_context, [], thread)
            thread.start()

        stopping = False
        try:
            while running or (not stopping and (held or not active.is_complete)):
                if not stopping and active.check_for_interrupts():
                    # Dagster's pattern (its multiprocess executor): nothing more starts, the running
                    # steps end, and leaving `active` with the plan incomplete raises the interruption.
                    stopping = True
                    active.mark_interrupted()
                    held.clear()
                    yield DagsterEvent.engine_event(
                        job_context,
                        "Termination received: no further step starts; waiting for the running ones to end: "
                        + (", ".join(sorted(running)) or "none"),
                        EngineEventData.interrupted(sorted(running)),
                    )
                    continue
                # Start what may start: held steps first (in the order they were handed over).
                while not stopping and held and not exclusive_running() and len(running) < max_concurrent:
                    if not may_start(held[0]):
                        break
                    start(held.pop(0))
                while not stopping and not held and not exclusive_running() and len(running) < max_concurrent:
                    steps = active.get_steps_to_execute(limit=1)
                    yield from active.concurrency_event_iterator(job_context)
                    if not steps:
                        break
                    step = steps[0]
                    if not may_start(step):
                        held.append(step)
                        break
                    start(step)
                if not running:
                    if stopping:
                        break
                    if held:
                        continue
                    # Nothing runs and nothing may start: skips to record, or a retry to wait for.
                    yield from active.plan_events_iterator(job_context)
                    if not active.is_complete:
                        active.sleep_til_ready()
                    continue

                try:
                    # With a timeout: a termination only sets a flag, which this thread must look at.
                    step_key, item = events.get(timeout=INTERRUPT_POLL_SECONDS)
                except queue.Empty:
                    continue
                step_context, step_events, thread = running[step_key]
                if item is _DONE:
                    thread.join()
                    del running[step_key]
                    # An attempt that asked for a retry ended after Dagster had handed the step over
                    # again (held above): the step is in flight as the next attempt, not abandoned.
                    if not any(waiting.key == step_key for waiting in held):
                        active.verify_complete(job_context, step_key)
                    for event in active.plan_events_iterator(job_context):
                        step_events.append(event)
                        yield event
                    yield from _trigger_hook(step_context, step_events)
                elif isinstance(item, _StepCrashed):
                    raise item.error
                else:
                    step_events.append(item)
                    yield item
                    active.handle_event(item)
        finally:
            # A framework error or an interrupt: let the steps already running finish their events
            # (a thread cannot be stopped), so nothing is left half-recorded in the run's history.
            for _, _, thread in list(running.values()):
                thread.join()


class ThreadedExecutor(Executor):
    """Run a plan's independent steps on threads of this process, `max_concurrent` at a time."""

    def __init__(self, retries: RetryMode, max_concurrent: int) -> None:
        self._retries = retries
        self.max_concurrent = max(1, int(max_concurrent))

    @property
    def retries(self) -> RetryMode:
        """The run's retry mode (from the executor config)."""
        return self._retries

    def execute(self, plan_context: PlanOrchestrationContext, execution_plan: ExecutionPlan) -> Iterator[DagsterEvent]:
        """Execute the plan in this process, with up to `max_concurrent` steps at once."""
        yield DagsterEvent.engine_event(
            plan_context,
            f"Executing steps in process (pid: {os.getpid()}), up to {self.max_concurrent} at a time",
            event_specific_data=EngineEventData.in_process(os.getpid(), execution_plan.step_keys_to_execute),
        )
        max_concurrent = self.max_concurrent

        def iterator(job_context: PlanExecutionContext, execution_plan: ExecutionPlan) -> Iterator[DagsterEvent]:
            yield from threaded_plan_iterator(job_context, execution_plan, max_concurrent)

        yield from ExecuteRunWithPlanIterable(
            execution_plan=plan_context.execution_plan,
            iterator=iterator,
            execution_context_manager=PlanExecutionContextManager(
                job=plan_context.job,
                retry_mode=plan_context.retry_mode,
                execution_plan=plan_context.execution_plan,
                run_config=plan_context.run_config,
                dagster_run=plan_context.dagster_run,
                instance=plan_context.instance,
                raise_on_error=plan_context.raise_on_error,
                output_capture=plan_context.output_capture,
            ),
        )


def _max_concurrent_default() -> int:
    """NPS_LINK_MAX_CONCURRENT_STEPS when set (1 = one step at a time), else DEFAULT_MAX_CONCURRENT."""
    value = os.environ.get("NPS_LINK_MAX_CONCURRENT_STEPS", "").strip()
    return int(value) if value else DEFAULT_MAX_CONCURRENT


@dg.executor(
    name="nps_link_threaded",
    config_schema={
        "retries": get_retries_config(),
        "max_concurrent": dg.Field(int, is_required=False,
                                   description="Steps at once (default 2, or NPS_LINK_MAX_CONCURRENT_STEPS)."),
    },
)
def threaded_executor(init_context: dg.InitExecutorContext) -> ThreadedExecutor:
    """In-process executor that runs up to `max_concurrent` independent steps at once on threads."""
    config = init_context.executor_config
    return ThreadedExecutor(
        retries=RetryMode.from_config(config["retries"]),  # type: ignore[arg-type]
        max_concurrent=config.get("max_concurrent") or _max_concurrent_default(),  # type: ignore[union-attr]
    )


def execute_job_threaded(
    job: dg.JobDefinition, *, instance: dg.DagsterInstance, run_config: Mapping[str, Any]
) -> ExecuteInProcessResult:
    """`job.execute_in_process`, but with the job's own executor instead of the one-step-at-a-time one.

    `execute_in_process` always swaps in Dagster's in-process executor; this does what it does
    (an ephemeral copy of the job, a run in `instance`, every event collected) with the job's executor.
    """
    ephemeral = job.as_ephemeral_job(resource_defs={}, input_values={}).with_executor_def(job.executor_def)
    wrapped = InMemoryJob(job_def=ephemeral)
    execution_plan = create_execution_plan(
        wrapped, run_config=run_config, instance_ref=instance.get_ref() if instance.is_persistent else None
    )
    output_capture: dict = {}
    run = instance.create_run_for_job(job_def=ephemeral, run_config=run_config, tags=dict(job.run_tags),
                                      execution_plan=execution_plan)
    events = list(ExecuteRunWithPlanIterable(
        execution_plan=execution_plan,
        iterator=job_execution_iterator,
        execution_context_manager=PlanOrchestrationContextManager(
            context_event_generator=orchestration_context_event_generator,
            job=wrapped,
            execution_plan=execution_plan,
            dagster_run=run,
            instance=instance,
            run_config=run_config,
            executor_defs=None,
            output_capture=output_capture,
            raise_on_error=False,
        ),
    ))
    return ExecuteInProcessResult(job_def=ephemeral, event_list=events,
                                  dagster_run=instance.get_run_by_id(run.run_id), output_capture=output_capture)

