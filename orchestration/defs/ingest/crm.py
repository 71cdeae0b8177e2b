"""CRM deliveries (accounts, reps, activities): landing files -> typed lake Parquet."""

import dagster as dg

from orchestration.lib.ingest_assets import load_source, source_key
from orchestration.lib.resources import NpsLinkResource


@dg.asset(key=source_key("crm_accounts"), group_name="ingest", kinds={"python", "parquet"})
def crm_accounts(context: dg.AssetExecutionContext, nps_link: NpsLinkResource) -> dg.MaterializeResult:
    """CRM customer accounts as typed lake rows, every delivery kept (latest wins in staging).

    Grain: one row per delivered account version. Rows that break a contract rule are quarantined.
    """
    _, metadata = load_source("crm_accounts", nps_link.settings(), context.log)
    return dg.MaterializeResult(metadata=metadata)


@dg.asset(key=source_key("crm_reps"), group_name="ingest", kinds={"python", "parquet"})
def crm_reps(context: dg.AssetExecutionContext, nps_link: NpsLinkResource) -> dg.MaterializeResult:
    """CRM users (reps, account managers, support agents) with team and manager, as typed lake rows."""
    _, metadata = load_source("crm_reps", nps_link.settings(), context.log)
    return dg.MaterializeResult(metadata=metadata)


@dg.asset(key=source_key("crm_activities"), group_name="ingest", kinds={"python", "parquet"})
def crm_activities(context: dg.AssetExecutionContext, nps_link: NpsLinkResource) -> dg.MaterializeResult:
    """Logged contacts between the company and its customers (outbound and inbound), as typed lake rows."""
    _, metadata = load_source("crm_activities", nps_link.settings(), context.log)
    return dg.MaterializeResult(metadata=metadata)
