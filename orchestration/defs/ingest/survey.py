"""NPS survey deliveries: landing files -> typed responses and their driver items, in the lake."""

from collections.abc import Iterator

import dagster as dg

from orchestration.lib.ingest_assets import load_source, source_key
from orchestration.lib.resources import NpsLinkResource


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            source_key("survey_responses"),
            group_name="ingest",
            kinds={"python", "parquet"},
            description="NPS responses (relational and transactional) as typed lake rows, every delivery kept.",
        ),
        dg.AssetSpec(
            source_key("survey_driver_scores"),
            group_name="ingest",
            kinds={"python", "parquet"},
            description="The driver_* items of each response, long: one row per response and item rated.",
        ),
    ],
)
def survey_responses(context: dg.AssetExecutionContext, nps_link: NpsLinkResource) -> Iterator[dg.MaterializeResult]:
    """Survey responses and their driver items: one landing file feeds both lake tables."""
    _, metadata = load_source("survey_responses", nps_link.settings(), context.log)
    yield dg.MaterializeResult(asset_key=source_key("survey_responses"), metadata=metadata)
    yield dg.MaterializeResult(asset_key=source_key("survey_driver_scores"))
