"""Billing deliveries (orders, invoices, credit notes): landing files -> typed lake Parquet, validated."""

from collections.abc import Iterator

import dagster as dg

from orchestration.lib.ingest_assets import ingest_and_check, ingest_check_specs, source_key
from orchestration.lib.resources import NpsLinkResource, WarehouseWriter


@dg.asset(key=source_key("orders"), group_name="ingest", kinds={"python", "parquet"},
          check_specs=ingest_check_specs("orders"))
def orders(
    context: dg.AssetExecutionContext,
    nps_link: NpsLinkResource,
    warehouse_writer: WarehouseWriter,  # held for the run: one run per data directory
) -> Iterator:
    """Orders, invoices and credit notes (amounts in their own currency) as typed lake rows."""
    yield from ingest_and_check("orders", ["orders"], nps_link.settings(), context, nps_link.accept_held)
