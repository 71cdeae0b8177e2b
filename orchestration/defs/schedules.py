"""The one refresh job, its daily schedule, and the landing-zone sensor."""

import hashlib

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

    The run key is a digest of the pending file list, so the same set of new files starts one run.
    """
    pending = pending_files(nps_link.settings())
    names = sorted(str(path) for paths in pending.values() for path in paths)
    if not names:
        return dg.SensorResult(skip_reason="no new landing files")
    digest = hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]
    context.log.info(f"{len(names)} new landing file(s): {names[:5]}")
    return dg.SensorResult(run_requests=[dg.RunRequest(run_key=f"landing-{digest}")])
