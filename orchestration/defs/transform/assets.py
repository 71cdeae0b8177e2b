"""dbt models (staging -> intermediate -> marts) built and tested in one `dbt build`.

dbt tests become Dagster asset checks; a failing error-severity test fails this step, so nothing
downstream (analysis, report, publish) runs on a warehouse that did not pass its tests.
"""

import json
from collections.abc import Iterator
from typing import Any

import dagster as dg
from dagster_dbt import DbtCliResource, dbt_assets

from orchestration.lib.dbt import NpsLinkDbtTranslator, dbt_project, dbt_vars, ensure_manifest
from orchestration.lib.resources import NpsLinkResource


class DbtBuildConfig(dg.Config):
    """Run-time knobs of the dbt step."""

    full_refresh: bool = False


@dbt_assets(
    manifest=ensure_manifest(),
    project=dbt_project,
    dagster_dbt_translator=NpsLinkDbtTranslator(),
    name="dbt_models",
)
def dbt_models(
    context: dg.AssetExecutionContext, dbt: DbtCliResource, nps_link: NpsLinkResource, config: DbtBuildConfig
) -> Iterator[Any]:
    """The warehouse models and their dbt tests, run with this run's as_of and windows as dbt vars."""
    settings = nps_link.export_env()
    args = ["build", "--vars", json.dumps(dbt_vars(settings))]
    if config.full_refresh:
        args.append("--full-refresh")
    context.log.info(f"[dbt] build with vars {dbt_vars(settings)}")
    yield from dbt.cli(args, context=context).stream()
