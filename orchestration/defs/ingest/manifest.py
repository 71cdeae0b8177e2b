"""The load manifest: one row per delivered landing file, consolidated for dbt's `marts.load_audit`."""

import dagster as dg

from orchestration.lib.ingest import write_load_manifest
from orchestration.lib.ingest_assets import source_key
from orchestration.lib.lake import LAKE_TABLES, LOAD_MANIFEST_KEY
from orchestration.lib.resources import NpsLinkResource, WarehouseWriter
from orchestration.lib.validation_worker import stop_worker


@dg.asset(
    key=dg.AssetKey(list(LOAD_MANIFEST_KEY)),
    group_name="ingest",
    kinds={"python", "parquet"},
    deps=[source_key(table) for table in LAKE_TABLES],
)
def load_manifest(
    nps_link: NpsLinkResource,
    warehouse_writer: WarehouseWriter,  # held for the run: one run per data directory
) -> dg.MaterializeResult:
    """Every delivered file with its sha256, rows read / loaded / quarantined, status and reason.

    Grain: one row per delivery of a landing file (a re-delivered copy has its own row, status
    duplicate).
    """
    path = write_load_manifest(nps_link.settings())
    # Ingestion is over (this asset depends on every lake table): the run's validation worker, if it has
    # one, has nothing left to validate, and its memory is better given back before dbt runs.
    stop_worker()
    return dg.MaterializeResult(metadata={"path": dg.MetadataValue.path(str(path))})
