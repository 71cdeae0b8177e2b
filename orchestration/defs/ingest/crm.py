"""CRM deliveries (accounts, reps, activities): landing files -> typed lake Parquet, validated."""

from collections.abc import Iterator

import dagster as dg

from orchestration.lib.ingest_assets import ingest_and_check, ingest_check_specs, source_key
from orchestration.lib.resources import NpsLinkResource, WarehouseWriter


@dg.asset(key=source_key("crm_accounts"), group_name="ingest", kinds={"python", "parquet"},
          check_specs=ingest_check_specs("crm_accounts"))
def crm_accounts(
    context: dg.AssetExecutionContext,
    nps_link: NpsLinkResource,
    warehouse_writer: WarehouseWriter,  # held for the run: one run per data directory
) -> Iterator:
    """CRM customer accounts as typed lake rows, every delivery kept (latest wins in staging).

    Grain: one row per delivered account version. Rows that break a contract rule are quarantined.
    """
    yield from ingest_and_check("crm_accounts", ["crm_accounts"], nps_link.settings(), context, nps_link.accept_held)


@dg.asset(key=source_key("crm_reps"), group_name="ingest", kinds={"python", "parquet"},
          check_specs=ingest_check_specs("crm_reps"))
def crm_reps(
    context: dg.AssetExecutionContext,
    nps_link: NpsLinkResource,
    warehouse_writer: WarehouseWriter,  # held for the run: one run per data directory
) -> Iterator:
    """CRM users (reps, account managers, support agents) with team and manager, as typed lake rows."""
    yield from ingest_and_check("crm_reps", ["crm_reps"], nps_link.settings(), context, nps_link.accept_held)


@dg.asset(key=source_key("crm_activities"), group_name="ingest", kinds={"python", "parquet"},
          check_specs=ingest_check_specs("crm_activities"),
          # The largest source: started first, so the others run beside it (two steps at a time).
          op_tags={"dagster/priority": "3"})
def crm_activities(
    context: dg.AssetExecutionContext,
    nps_link: NpsLinkResource,
    warehouse_writer: WarehouseWriter,  # held for the run: one run per data directory
) -> Iterator:
    """Logged contacts between the company and its customers (outbound and inbound), as typed lake rows."""
    yield from ingest_and_check("crm_activities", ["crm_activities"], nps_link.settings(), context,
                                nps_link.accept_held)
