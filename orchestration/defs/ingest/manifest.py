"""The load manifest: one row per delivered landing file, consolidated for dbt's `marts.load_audit`."""

import dagster as dg

from orchestration.lib.ingest import unknown_landing_entries, write_load_manifest
from orchestration.lib.ingest_assets import source_key
from orchestration.lib.lake import LAKE_TABLES, LOAD_MANIFEST_KEY
from orchestration.lib.resources import NpsLinkResource, WarehouseWriter
from orchestration.lib.validation_worker import stop_worker


@dg.asset(
    key=dg.AssetKey(list(LOAD_MANIFEST_KEY)),
    group_name="ingest",
    kinds={"python", "parquet"},
    deps=[source_key(table) for table in LAKE_TABLES],
    check_specs=[dg.AssetCheckSpec(
        "landing_layout", asset=dg.AssetKey(list(LOAD_MANIFEST_KEY)),
        description="Every file in the landing zone is in a source's folder (landing/<source>/), so none is "
                    "left unread without a word.")],
)
def load_manifest(
    context: dg.AssetExecutionContext,
    nps_link: NpsLinkResource,
    warehouse_writer: WarehouseWriter,  # held for the run: one run per data directory
):
    """Every delivered file with its sha256, rows read / loaded / quarantined, status and reason.

    Grain: one row per delivery of a landing file (a re-delivered copy has its own row, status
    duplicate). Its `landing_layout` check (a warning) names what lies in landing/ outside the
    sources' folders: files there are not read.
    """
    settings = nps_link.settings()
    path = write_load_manifest(settings)
    # Ingestion is over (this asset depends on every lake table): the run's validation worker, if it has
    # one, has nothing left to validate, and its memory is better given back before dbt runs.
    stop_worker()
    yield dg.MaterializeResult(metadata={"path": dg.MetadataValue.path(str(path))})
    unknown = unknown_landing_entries(settings)
    described = ", ".join(f"landing/{name} ({n} file{'s' if n != 1 else ''})" for name, n in unknown.items())
    if unknown:
        context.log.warning(f"[ingest] not a source's folder, not read: {described}")
    yield dg.AssetCheckResult(
        passed=not unknown,
        severity=dg.AssetCheckSeverity.WARN,
        description=(f"not read, not a source's folder: {described}; sources are landing/<source>/ with <source> "
                     "one of sources.yaml's keys") if unknown else None,
        metadata={"unknown_entries": dg.MetadataValue.json(unknown)},
    )
