"""The one refresh job, its daily schedule, and the landing-zone sensor."""

import hashlib
import json
import time
from pathlib import Path

import dagster as dg

from orchestration.lib.ingest import pending_files
from orchestration.lib.ingest_assets import SETTLE_TAG
from orchestration.lib.resources import NpsLinkResource
from orchestration.lib.settings import reporting_tz_from_env
from orchestration.lib.threaded_executor import threaded_executor

# A sender that writes a file in place (instead of uploading it under a name starting with '.' and
# renaming it, which ingestion waits for) changes its size and time from one sensor tick to the next:
# a refresh starts only once the sensor has seen the pending files unchanged for this long, so it
# does not ingest half a file, and five sources delivering over a few minutes start one refresh, not
# five. Measured by the sensor's own ticks, not by the files' times, which a sender's clock, an
# unpacked archive or a copy that keeps times can set hours off.
LANDING_QUIET_SECONDS = 120
# A refresh that has not ended yet ingests what is in the landing zone when its ingestion starts; a
# second request meanwhile would only queue a refresh that finds nothing new. Files that arrive after
# its ingestion are requested at the first tick after it ends.
UNFINISHED_RUN_STATUSES = [
    dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING,
]

# One job over the whole graph, in one process (no per-asset start-up cost): independent steps run two at
# a time on threads (orchestration/lib/threaded_executor.py), and the build warehouse, which DuckDB lets
# only one process write, is never opened by another step while dbt or publish has it.
refresh_job = dg.define_asset_job(
    name="refresh",
    selection=dg.AssetSelection.all(),
    executor_def=threaded_executor,
    description="Full refresh: ingest -> dbt -> checks -> analysis -> report -> publish.",
    # One writer of the build warehouse at a time (dagster.yaml limits runs with this tag to one).
    tags={"dagster/max_runtime": 3 * 3600, "nps_link/warehouse_writer": "build"},
)

# Leadership reads the report at the start of the working day, in the zone that cuts its days
# (NPS_LINK_REPORTING_TZ, Asia/Tokyo by default), whatever the server's own zone.
_REPORTING_TZ = reporting_tz_from_env()
daily_refresh_schedule = dg.ScheduleDefinition(
    name="daily_refresh",
    job=refresh_job,
    cron_schedule="0 6 * * *",
    execution_timezone=_REPORTING_TZ,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description=f"Refresh everything at 06:00 {_REPORTING_TZ} (the reporting time zone).",
    # The clock does not wait for a sender still writing a file in place, as the landing sensor does: the
    # run leaves files modified in the last LANDING_QUIET_SECONDS for a later run (the sensor's, once
    # they are quiet) rather than load half of one. Tags of a schedule without its own function go on its runs.
    tags={SETTLE_TAG: str(LANDING_QUIET_SECONDS)},
)


@dg.sensor(job=refresh_job, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING)
def landing_zone_sensor(context: dg.SensorEvaluationContext, nps_link: NpsLinkResource) -> dg.SensorResult:
    """Start a refresh when files appear in the landing zone that the lake has not loaded yet.

    The run key is a digest of the pending files, each by path, size and modification time (what
    the ingest's hash cache takes as unchanged), so the same set of new files starts one run, and a
    file delivered again under the same name with other bytes (a corrected file, a daily reps.csv)
    starts another: Dagster skips a request whose run key already has a run. It waits while a
    refresh has not ended, and until it has seen the same pending files (the same digest, kept in
    its cursor with the time it first saw them) for LANDING_QUIET_SECONDS.
    """
    pending = pending_files(nps_link.settings())
    files = sorted(path for paths in pending.values() for path in paths)
    if not files:
        return dg.SensorResult(skip_reason="no new landing files")
    unfinished = context.instance.get_run_records(
        dg.RunsFilter(job_name=refresh_job.name, statuses=UNFINISHED_RUN_STATUSES), limit=1
    )
    if unfinished:
        run = unfinished[0].dagster_run
        return dg.SensorResult(skip_reason=f"{len(files)} new landing file(s); waiting for refresh {run.run_id} "
                                           f"({run.status.value}) to end")
    digest = hashlib.sha256("\n".join(_delivery_identity(path) for path in files).encode()).hexdigest()[:16]
    now = _now()
    seen = _seen(context.cursor)
    if seen is None or seen[0] != digest:
        return dg.SensorResult(
            skip_reason=f"{len(files)} new landing file(s), changed since the last look; waiting until they "
                        f"stay unchanged for {LANDING_QUIET_SECONDS} s",
            cursor=json.dumps({"digest": digest, "since": now}),
        )
    if now - seen[1] < LANDING_QUIET_SECONDS:
        return dg.SensorResult(skip_reason=f"{len(files)} new landing file(s), unchanged for {now - seen[1]:.0f} s; "
                                           f"waiting until they stay unchanged for {LANDING_QUIET_SECONDS} s")
    context.log.info(f"{len(files)} new landing file(s): {[str(path) for path in files[:5]]}")
    return dg.SensorResult(run_requests=[dg.RunRequest(run_key=f"landing-{digest}")])


def _now() -> float:
    """The sensor's clock (a function, so a test can move it)."""
    return time.time()


def _seen(cursor: str | None) -> tuple[str, float] | None:
    """The pending files' digest the sensor last saw and since when, from its cursor; None if unreadable."""
    try:
        state = json.loads(cursor or "")
        return str(state["digest"]), float(state["since"])
    except (ValueError, TypeError, KeyError):
        return None


def _delivery_identity(path: Path) -> str:
    """A landing file's path, size and modification time; the path alone if it has just gone."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return str(path)
    return f"{path}\t{stat.st_size}\t{stat.st_mtime_ns}"
