"""NPS survey deliveries: landing files -> typed responses and their driver items in the lake, validated."""

from collections.abc import Iterator

import dagster as dg

from orchestration.lib.ingest_assets import ingest_and_check, ingest_check_specs, source_key
from orchestration.lib.resources import NpsLinkResource, WarehouseWriter
from quality.contract import DRIVER_SCORES_TABLE

TABLES = ["survey_responses", DRIVER_SCORES_TABLE]


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            source_key("survey_responses"), group_name="ingest", kinds={"python", "parquet"},
            description="NPS responses (relational and transactional) as typed lake rows, every delivery kept.",
        ),
        dg.AssetSpec(
            source_key(DRIVER_SCORES_TABLE), group_name="ingest", kinds={"python", "parquet"},
            description="The driver_* items of each response, long: one row per response and item rated.",
        ),
    ],
    check_specs=[spec for table in TABLES for spec in ingest_check_specs(table)],
    op_tags={"dagster/priority": "2"},  # the second-largest source (see crm_activities)
)
def survey_responses(
    context: dg.AssetExecutionContext,
    nps_link: NpsLinkResource,
    warehouse_writer: WarehouseWriter,  # held for the run: one run per data directory
) -> Iterator:
    """Survey responses and their driver items: one landing file feeds both lake tables."""
    yield from ingest_and_check("survey_responses", TABLES, nps_link.settings(), context, nps_link.accept_held)
