"""The one refresh job, its daily schedule, and the landing-zone sensor."""

import hashlib
from pathlib import Path

import dagster as dg

from orchestration.lib.ingest import pending_files
from orchestration.lib.resources import NpsLinkResource
from orchestration.lib.threaded_executor import threaded_executor

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

# The seed companies read the report at the start of the Tokyo working day.
daily_refresh_schedule = dg.ScheduleDefinition(
    name="daily_refresh",
    job=refresh_job,
    cron_schedule="0 6 * * *",
    execution_timezone="Asia/Tokyo",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Refresh everything at 06:00 Asia/Tokyo.",
)


@dg.sensor(job=refresh_job, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING)
def landing_zone_sensor(context: dg.SensorEvaluationContext, nps_link: NpsLinkResource) -> dg.SensorResult:
    """Start a refresh when files appear in the landing zone that the lake has not loaded yet.

    The run key is a digest of the pending files, each by path, size and modification time (what
    the ingest's hash cache takes as unchanged), so the same set of new files starts one run, and a
    file delivered again under the same name with other bytes (a corrected file, a daily reps.csv)
    starts another: Dagster skips a request whose run key already has a run.
    """
    pending = pending_files(nps_link.settings())
    files = sorted(path for paths in pending.values() for path in paths)
    if not files:
        return dg.SensorResult(skip_reason="no new landing files")
    digest = hashlib.sha256("\n".join(_delivery_identity(path) for path in files).encode()).hexdigest()[:16]
    context.log.info(f"{len(files)} new landing file(s): {[str(path) for path in files[:5]]}")
    return dg.SensorResult(run_requests=[dg.RunRequest(run_key=f"landing-{digest}")])


def _delivery_identity(path: Path) -> str:
    """A landing file's path, size and modification time; the path alone if it has just gone."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return str(path)
    return f"{path}\t{stat.st_size}\t{stat.st_mtime_ns}"
