"""Billing deliveries (orders, invoices, credit notes): landing files -> typed lake Parquet."""

import dagster as dg

from orchestration.lib.ingest_assets import load_source, source_key
from orchestration.lib.resources import NpsLinkResource


@dg.asset(key=source_key("orders"), group_name="ingest", kinds={"python", "parquet"})
def orders(context: dg.AssetExecutionContext, nps_link: NpsLinkResource) -> dg.MaterializeResult:
    """Orders and invoices (amounts in their own currency; may be negative for credit notes) as typed lake rows."""
    _, metadata = load_source("orders", nps_link.settings(), context.log)
    return dg.MaterializeResult(metadata=metadata)
