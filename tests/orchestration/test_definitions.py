"""The code location: loads, validates, and holds the graph the README promises."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest

from orchestration.definitions import defs
from orchestration.lib.lake import LAKE_TABLES

REPO = Path(__file__).resolve().parents[2]
MARTS = ["dim_customers", "dim_reps", "fct_crm_contacts", "fct_orders", "fct_survey_responses",
         "fct_survey_driver_scores", "fct_customer_months", "nps_by_period", "detractor_followups", "load_audit"]
ANALYSIS = ["link_effects", "dose_response", "key_drivers", "nps_revenue", "nps_changes", "contact_timing", "handoff"]


@pytest.fixture(scope="module")
def definitions() -> dg.Definitions:
    return defs()


def test_asset_graph_has_ingestion_dbt_analysis_report_and_publish(definitions: dg.Definitions) -> None:
    keys = {k.to_user_string() for k in definitions.resolve_asset_graph().get_all_asset_keys()}
    expected = {"/".join(key) for key in LAKE_TABLES.values()} | {"lake/load_manifest"}
    expected |= {f"marts/{m}" for m in MARTS} | {f"analysis/{a}" for a in ANALYSIS}
    expected |= {"reports/leadership_report", "ops/detractor_followups_sent", "warehouse/published"}
    assert expected <= keys, sorted(expected - keys)


def test_ingestion_assets_feed_the_dbt_sources_as_one_lineage_graph(definitions: dg.Definitions) -> None:
    graph = definitions.resolve_asset_graph()
    staging_parents = {
        p.to_user_string()
        for key in graph.get_all_asset_keys() if key.path[0] == "staging"
        for p in graph.get(key).parent_keys
    }
    assert {"/".join(key) for key in LAKE_TABLES.values()} <= staging_parents
    published = graph.get(dg.AssetKey(["warehouse", "published"]))
    assert dg.AssetKey(["reports", "leadership_report"]) in published.parent_keys


def test_dbt_tests_and_quality_checks_are_asset_checks(definitions: dg.Definitions) -> None:
    checks = {k.to_user_string() for k in definitions.resolve_asset_graph().asset_check_keys}
    assert "marts/fct_survey_responses:unique_fct_survey_responses_response_id" in checks
    assert any(c.startswith("marts/nps_by_period:expression_is_true") for c in checks)
    for source in ("crm/accounts", "crm/reps", "crm/activities", "survey/responses", "survey/driver_scores",
                   "billing/orders"):
        assert f"{source}:contract_expectations" in checks
        assert f"{source}:quarantine_share" in checks
    assert {f"analysis/{a}:usable_output" for a in ANALYSIS} <= checks
    assert {"marts/fct_survey_responses:daily_response_volume", "marts/nps_by_period:nps_month_on_month_jump",
            "marts/fct_survey_responses:repeat_rate_month_on_month_jump",
            "marts/fct_customer_months:contact_count_explosion"} <= checks


def test_every_dbt_test_is_an_asset_check(definitions: dg.Definitions) -> None:
    """A dbt test Dagster cannot place is logged as an observation, with a warning on every run.

    dagster-dbt places a singular test with several refs only by its `meta.dagster.ref`; without one
    its result is no check of any asset, and each run printed five lines of warning per such test.
    """
    import json

    from orchestration.lib.dbt import ensure_manifest

    manifest = json.loads(ensure_manifest().read_text())
    tests = {node["name"] for node in manifest["nodes"].values() if node["resource_type"] == "test"}
    check_names = {key.name for key in definitions.resolve_asset_graph().asset_check_keys}
    assert tests - check_names == set()
    checks = {k.to_user_string() for k in definitions.resolve_asset_graph().asset_check_keys}
    assert {"marts/dim_customers:assert_no_personal_data_columns",
            "marts/detractor_followups:assert_survey_comments_only_in_detractor_followups",
            "marts/fct_customer_months:assert_customer_months_dense_to_as_of"} <= checks


def test_every_blocking_check_starts_before_the_steps_it_gates(definitions: dg.Definitions) -> None:
    """Two steps run at a time, the highest priority first: a check behind the mail-out kept the link waiting."""
    from dagster._core.execution.api import create_execution_plan

    plan = create_execution_plan(definitions.resolve_job_def("refresh"))
    steps = {step.key: step for step in plan.get_steps_to_execute_in_topo_order()}
    check_steps = {key for key in steps if key.startswith("marts__")}
    assert len(check_steps) == 4, sorted(check_steps)

    def priority(key: str) -> int:
        return int(steps[key].tags.get("dagster/priority", 0))

    gated = [(check, key) for key, step in steps.items()
             for check in {u for step_input in step.step_inputs for u in step_input.dependency_keys} & check_steps]
    assert {key for _, key in gated} >= {"link_effects", "key_drivers", "nps_revenue", "nps_changes"}
    assert [(c, k) for c, k in gated if priority(c) <= priority(k)] == []
    # The link, the longest analysis, is not kept behind the mail-out either.
    link_gates = {c for c, k in gated if k == "link_effects"}
    assert min(priority(c) for c in link_gates) > priority("ops__detractor_followups_sent")


def test_refresh_job_daily_schedule_at_six_tokyo_and_landing_sensor(definitions: dg.Definitions) -> None:
    job = definitions.resolve_job_def("refresh")
    assert job.executor_def.name == "nps_link_threaded"  # one process, two steps at a time
    assert job.tags["nps_link/warehouse_writer"] == "build"
    schedule = definitions.resolve_schedule_def("daily_refresh")
    assert (schedule.cron_schedule, schedule.execution_timezone) == ("0 6 * * *", "Asia/Tokyo")
    # The morning of the reporting time zone, wherever the server runs.
    probe = ("from orchestration.definitions import defs; "
             "print(defs().resolve_schedule_def('daily_refresh').execution_timezone)")
    # A malformed other setting fails the runs that read it, not the loading of the definitions.
    env = {**os.environ, "NPS_LINK_REPORTING_TZ": "America/New_York", "NPS_LINK_REPEAT_WINDOW_DAYS": "90d"}
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "America/New_York"
    sensor = definitions.resolve_sensor_def("landing_zone_sensor")
    assert sensor.job_name == "refresh"
    # Its runs leave files still being written for a later run, as the sensor waits for quiet files.
    from orchestration.defs.schedules import LANDING_QUIET_SECONDS
    from orchestration.lib.ingest_assets import SETTLE_TAG

    with dg.build_schedule_context(scheduled_execution_time=datetime(2026, 12, 8, 6, tzinfo=UTC)) as context:
        requests = schedule.evaluate_tick(context).run_requests
    assert [r.tags.get(SETTLE_TAG) for r in requests] == [str(LANDING_QUIET_SECONDS)]


def test_asset_graph_materialisations_run_in_one_process_like_the_refresh(definitions: dg.Definitions) -> None:
    # A process per step would set the run lock up and let it go for every step (orchestration/lib/run_lock.py).
    assert definitions.resolve_implicit_global_asset_job_def().executor_def.name == "nps_link_threaded"


def test_instance_config_queues_refreshes_one_writer_at_a_time(tmp_path: Path) -> None:
    # The schedule and the landing sensor may both ask for a refresh; the second must wait in the
    # queue, not fail on DuckDB's single-writer lock.
    import yaml

    overrides = yaml.safe_load((REPO / "dagster.yaml").read_text())
    with dg.instance_for_test(overrides=overrides, temp_dir=str(tmp_path)) as instance:
        limits = instance.get_concurrency_config().run_queue_config.tag_concurrency_limits
    assert {"key": "nps_link/warehouse_writer", "limit": 1} in limits


def test_instance_config_enforces_the_refresh_jobs_max_runtime(tmp_path: Path, definitions: dg.Definitions) -> None:
    """dagster/max_runtime is enforced by run monitoring only: without it a killed `nps-link run` stays
    STARTED for good and its writer tag keeps every later refresh queued."""
    import yaml

    overrides = yaml.safe_load((REPO / "dagster.yaml").read_text())
    with dg.instance_for_test(overrides=overrides, temp_dir=str(tmp_path)) as instance:
        assert instance.run_monitoring_enabled
        assert instance.run_monitoring_start_timeout_seconds > 0
        # The default launcher cannot check a run's process nor resume one.
        assert not instance.run_launcher.supports_check_run_worker_health
        assert instance.run_monitoring_max_resume_run_attempts == 0
    assert int(definitions.resolve_job_def("refresh").tags["dagster/max_runtime"]) == 3 * 3600


def test_every_asset_has_a_description(definitions: dg.Definitions) -> None:
    graph = definitions.resolve_asset_graph()
    missing = [k.to_user_string() for k in graph.get_all_asset_keys()
               if graph.get(k).is_materializable and not (graph.get(k).description or "").strip()]
    assert missing == []


class _LandingSensorTicks:
    """The landing sensor evaluated tick after tick as the daemon would: its cursor kept, its clock set here."""

    def __init__(self, definitions: dg.Definitions, monkeypatch: pytest.MonkeyPatch,
                 instance: dg.DagsterInstance | None = None) -> None:
        self.sensor = definitions.resolve_sensor_def("landing_zone_sensor")
        self.resources = {"nps_link": definitions.resources["nps_link"]}
        self.instance = instance or dg.DagsterInstance.ephemeral()  # by default, with no run of the refresh
        self.cursor: str | None = None
        self.clock = 1_000_000.0
        monkeypatch.setattr("orchestration.defs.schedules._now", lambda: self.clock)

    def __call__(self, *, after_seconds: float = 0) -> dg.SensorResult:
        self.clock += after_seconds
        with dg.build_sensor_context(resources=self.resources, instance=self.instance, cursor=self.cursor) as context:
            result = self.sensor(context)
        self.cursor = result.cursor or self.cursor
        return result

    def until_requested(self) -> dg.SensorResult:
        """Ticks a minute apart, as the daemon runs them, until the sensor asks for a run (at most five)."""
        for _ in range(5):
            result = self(after_seconds=60)
            if result.run_requests:
                return result
        raise AssertionError(f"no run requested: {result.skip_reason}")


def test_landing_sensor_requests_a_run_only_for_new_files(tmp_path: Path, definitions: dg.Definitions,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NPS_LINK_DATA_DIR", str(tmp_path))
    tick = _LandingSensorTicks(definitions, monkeypatch)
    assert tick().skip_reason is not None
    landing = tmp_path / "landing" / "crm_reps"
    landing.mkdir(parents=True)
    (landing / "reps.csv").write_text("rep_id,team\nR1,support\n", encoding="utf-8")
    result = tick.until_requested()
    assert len(result.run_requests) == 1
    first_key = result.run_requests[0].run_key
    assert first_key.startswith("landing-")
    assert tick(after_seconds=60).run_requests[0].run_key == first_key  # the same files: the same run

    # Refused or not, the file is delivered again under its name with other bytes (a corrected file):
    # Dagster skips a request whose key already has a run, so the key must change with the bytes.
    (landing / "reps.csv").write_text("rep_id,team\nR1,support\nR2,other\n", encoding="utf-8")
    os.utime(landing / "reps.csv", (time.time() + 5, time.time() + 5))
    assert tick.until_requested().run_requests[0].run_key not in ("", first_key)


def test_landing_sensor_waits_until_the_pending_files_stay_unchanged(tmp_path: Path, definitions: dg.Definitions,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A file still being written in place (no '.' upload name) must not start a refresh of half a file."""
    from orchestration.defs.schedules import LANDING_QUIET_SECONDS

    monkeypatch.setenv("NPS_LINK_DATA_DIR", str(tmp_path))
    tick = _LandingSensorTicks(definitions, monkeypatch)
    reps, orders = tmp_path / "landing" / "crm_reps" / "reps.csv", tmp_path / "landing" / "orders" / "orders.csv"
    for path in (reps, orders):
        path.parent.mkdir(parents=True)
    reps.write_text("rep_id,team\nR1,support\n", encoding="utf-8")
    orders.write_text("order_id,customer_id,ordered_at,amount\n", encoding="utf-8")
    result = tick()
    assert result.run_requests == [] and "waiting until they stay unchanged" in result.skip_reason.skip_message
    # The orders file grows from tick to tick, its time stamped hours ahead by the sender's clock (or
    # an unpacked archive's): only what the sensor sees change counts, not the file's time.
    for row in range(3):
        with orders.open("a", encoding="utf-8") as out:
            out.write(f"O{row},C1,2026-09-01T10:00:00+09:00,1\n")
        ahead = time.time() + 9 * 3600 + row
        os.utime(orders, (ahead, ahead))
        assert tick(after_seconds=60).run_requests == []
    assert tick(after_seconds=LANDING_QUIET_SECONDS - 1).run_requests == []
    assert len(tick(after_seconds=1).run_requests) == 1  # unchanged for LANDING_QUIET_SECONDS


def test_landing_sensor_waits_while_a_refresh_has_not_ended(tmp_path: Path, definitions: dg.Definitions,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Five sources delivering one after another start one refresh at a time, not one queued per file."""
    monkeypatch.setenv("NPS_LINK_DATA_DIR", str(tmp_path))
    reps = tmp_path / "landing" / "crm_reps" / "reps.csv"
    reps.parent.mkdir(parents=True)
    reps.write_text("rep_id,team\nR1,support\n", encoding="utf-8")
    with dg.instance_for_test() as instance:
        tick = _LandingSensorTicks(definitions, monkeypatch, instance)
        # (A queued run needs a code location's origin to be stored; NOT_STARTED is the same filter's.)
        for status in (dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTED):
            run = instance.add_run(dg.DagsterRun(job_name="refresh", run_id=f"{status.value.lower():0<8}-run",
                                                 status=status))
            for _ in range(2):  # however long the files have been quiet meanwhile
                result = tick(after_seconds=600)
                assert result.run_requests == [] and run.run_id in result.skip_reason.skip_message
            if status == dg.DagsterRunStatus.STARTED:
                instance.report_run_failed(run)
            else:
                instance.delete_run(run.run_id)  # a run deleted before it started
        # Every refresh ended: the pending files are asked for again (Dagster starts the request unless a
        # run already had its key, so a sensor run that failed on these very files waits for a person).
        assert len(tick.until_requested().run_requests) == 1


def test_dagster_definitions_validate_passes_for_the_workspace() -> None:
    dagster = Path(sys.executable).with_name("dagster")
    result = subprocess.run([str(dagster), "definitions", "validate", "-w", "workspace.yaml"], cwd=REPO,
                            capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "nps_link" in result.stdout + result.stderr


def test_dbt_resource_runs_dbt_in_this_process_through_dagster_dbts_translation(definitions: dg.Definitions) -> None:
    # The resource feeds dbt's events to dagster-dbt's own translation and subset selection; fail here
    # if an upgrade moves what it imports (the pipeline and test_dbt_runner.py exercise the behaviour).
    from dagster_dbt.asset_utils import get_updated_cli_invocation_params_for_context
    from dagster_dbt.core.dbt_cli_event import DbtCoreCliEventMessage

    from orchestration.defs.resources import NpsLinkDbtResource
    from orchestration.lib.dbt import DBT_PROJECT_DIR

    dbt = definitions.resources["dbt"]
    assert isinstance(dbt, NpsLinkDbtResource)
    assert Path(dbt.project_dir) == DBT_PROJECT_DIR == Path(dbt.profiles_dir)
    assert callable(get_updated_cli_invocation_params_for_context)
    assert callable(DbtCoreCliEventMessage.to_default_asset_events)


def test_keep_partial_parse_promotes_the_builds_parse_whole(tmp_path: Path) -> None:
    from orchestration.lib.dbt_runner import keep_partial_parse

    run_target, saved = tmp_path / "run", tmp_path / "warehouse" / "build.duckdb.dbt-parse.msgpack"
    run_target.mkdir()
    assert keep_partial_parse(run_target, saved) is False  # dbt skipped parsing: keep the old one
    assert not saved.exists()
    (run_target / "partial_parse.msgpack").write_bytes(b"first")
    assert keep_partial_parse(run_target, saved) is True  # the warehouse's first: its folder is made
    old_inode = saved.stat().st_ino
    (run_target / "partial_parse.msgpack").unlink()
    (run_target / "partial_parse.msgpack").write_bytes(b"new")
    assert keep_partial_parse(run_target, saved) is True
    assert saved.read_bytes() == b"new"
    assert saved.stat().st_ino != old_inode  # replaced by rename, never rewritten in place
    assert sorted(p.name for p in saved.parent.iterdir()) == [saved.name]


def test_keep_partial_parse_copies_across_file_systems(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A data dir on its own volume: the repository's dbt target and the warehouse folder cannot share a link.
    import errno

    from orchestration.lib import dbt_runner

    def no_link(source: object, destination: object) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(dbt_runner.os, "link", no_link)
    run_target, saved = tmp_path / "run", tmp_path / "warehouse" / "build.duckdb.dbt-parse.msgpack"
    run_target.mkdir()
    (run_target / "partial_parse.msgpack").write_bytes(b"parsed")
    assert dbt_runner.keep_partial_parse(run_target, saved) is True
    assert saved.read_bytes() == b"parsed"
    assert sorted(p.name for p in saved.parent.iterdir()) == [saved.name]


def test_prune_run_targets_keeps_the_newest_and_anything_younger_than_a_day(tmp_path: Path) -> None:
    import os
    import time

    from orchestration.defs.transform.assets import prune_run_targets

    now = time.time()
    folders = []
    for i in range(14):
        folder = tmp_path / f"dbt_models-{i:02d}"
        folder.mkdir()
        (folder / "manifest.json").write_text("{}")
        # 00 is the newest; 00-11 are old (two days and more), 12 and 13 are old too but 13 is recent.
        age = 3_600 if i == 13 else 2 * 86_400 + i * 60
        os.utime(folder, (now - age, now - age))
        folders.append(folder)
    (tmp_path / "partial_parse.msgpack").write_text("keep me")
    deleted = prune_run_targets(tmp_path, keep=10)
    # Newest ten by mtime: 13 (an hour old) and 00-08; of the rest, 09-12 are older than a day.
    assert sorted(p.name for p in deleted) == [f"dbt_models-{i:02d}" for i in (9, 10, 11, 12)]
    assert all(f.exists() for f in folders if f not in deleted)
    assert (tmp_path / "partial_parse.msgpack").exists()
    # Even with nothing to keep, a folder younger than a day (a build running now) stays.
    prune_run_targets(tmp_path, keep=0)
    assert [p.name for p in tmp_path.glob("dbt_models-*")] == ["dbt_models-13"]


def test_the_run_process_needs_neither_scipy_stats_nor_statsmodels() -> None:
    """Loading the definitions and running the steps' statistics import neither (0.6-0.7 s per run's start).

    The analyses take their normal and t quantiles from scipy.special and the repeat-rate check writes
    out its z test (quality.marts.pooled_two_proportion_p_value); a new import of scipy.stats on the
    run's path (an asset module, or a step's statistics) fails this test.
    """
    code = """
import sys
import numpy as np
import pandas as pd
from orchestration.definitions import defs
defs().resolve_job_def("refresh")
from analysis import nps, tables
from quality import marts
months = pd.to_datetime(["2025-01-01", "2025-02-01", "2025-03-01"])
marts.repeat_rate_jump_outcome(pd.DataFrame({"period_month": months, "repeat_n": [900, 900, 900],
                                             "repeats": [300, 320, 200]}))
nps.compare_count_arrays(np.array([5]), np.array([3]), np.array([2]), np.array([4]), np.array([3]), np.array([3]))
tables.wilson_interval(np.array([3.0]), np.array([10.0]))
print(sorted(m for m in ("scipy.stats", "statsmodels") if m in sys.modules))
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert result.stdout.split("\n")[-2] == "[]", result.stdout + result.stderr
