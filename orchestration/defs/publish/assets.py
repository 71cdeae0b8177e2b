"""Publish: the audited build warehouse replaces the analysts' read-only file, atomically."""

import dagster as dg
import duckdb

from orchestration.lib.dbt import unfinished_build_marker
from orchestration.lib.publish import publish_warehouse
from orchestration.lib.resources import NpsLinkResource, WarehouseWriter
from orchestration.lib.threaded_executor import EXCLUSIVE_TAG
from orchestration.lib.warehouse import dagster_run_lineage, keep_published_runs_only, planned_steps, run_as_of

# The last assets of the graph: everything upstream of them (ingest, dbt, analysis) must have succeeded,
# with its blocking checks, before analysts see a new warehouse.
PUBLISH_AFTER = [
    dg.AssetKey(["reports", "leadership_report"]),
    dg.AssetKey(["ops", "detractor_followups_sent"]),
    dg.AssetKey(["marts", "fct_customer_months"]),
    dg.AssetKey(["marts", "load_audit"]),
]


@dg.asset(
    key=dg.AssetKey(["warehouse", "published"]),
    group_name="publish",
    kinds={"duckdb"},
    deps=PUBLISH_AFTER,
    # The copy is taken with no other connection to the build warehouse open in this process.
    op_tags={EXCLUSIVE_TAG: "true"},
)
def published_warehouse(
    context: dg.AssetExecutionContext,
    nps_link: NpsLinkResource,
    warehouse_writer: WarehouseWriter,  # held for the run: one writer per data directory
) -> dg.MaterializeResult:
    """The published warehouse `warehouse/nps_link.duckdb` that analysts open read-only.

    Runs last: only a build whose blocking checks all passed reaches this step. See
    orchestration/lib/publish.py for why an analyst's open connection is never blocked. The run (and
    any it re-executes) joins the ledger `ops.published_runs`; analysis rows of runs not in it, left
    by runs that failed, are deleted before the copy.
    """
    settings = nps_link.settings()
    lineage = dagster_run_lineage(context.instance, context.run_id)

    def record_published_runs(con: duckdb.DuckDBPyConnection) -> int:
        return keep_published_runs_only(
            con, lineage, as_of=run_as_of(con), executed_steps=planned_steps(context.instance, context.run_id)
        )

    result = publish_warehouse(
        settings.build_db_path,
        settings.published_db_path,
        unfinished_build=unfinished_build_marker(settings),
        prepare=record_published_runs,
    )
    context.log.info(f"[publish] {result.published_path} ({result.size_bytes / 1e6:.1f} MB) in {result.seconds:.2f} s")
    if result.prepared:
        context.log.warning(f"[publish] {result.prepared} analysis rows of runs that never published left out")
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(result.published_path)),
            "size_mb": dg.MetadataValue.float(round(result.size_bytes / 1e6, 2)),
            "tables": dg.MetadataValue.int(result.tables),
            "seconds": dg.MetadataValue.float(round(result.seconds, 3)),
        }
    )
