"""dbt models (staging -> intermediate -> marts) built and tested in one `dbt build`.

dbt tests become Dagster asset checks; a failing error-severity test fails this step, so nothing
downstream (analysis, report, publish) runs on a warehouse that did not pass its tests.
"""

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import dbt_assets

from orchestration.defs.resources import NpsLinkDbtResource
from orchestration.lib.dbt import (
    DBT_TARGET_DIR,
    NpsLinkDbtTranslator,
    build_finished,
    build_flags,
    build_started,
    data_test_scope_env,
    dbt_parse_state_file,
    dbt_project,
    dbt_vars,
    ensure_manifest,
    project_fingerprint,
    subset_build_finished,
)
from orchestration.lib.resources import NpsLinkResource, WarehouseWriter
from orchestration.lib.threaded_executor import EXCLUSIVE_TAG


class DbtBuildConfig(dg.Config):
    """Run-time knobs of the dbt step."""

    full_refresh: bool = False


@dbt_assets(
    manifest=ensure_manifest(),
    project=dbt_project,
    dagster_dbt_translator=NpsLinkDbtTranslator(),
    name="dbt_models",
    # dbt writes the build warehouse (in this process, but with its own DuckDB settings): no other
    # step may hold the file meanwhile.
    op_tags={EXCLUSIVE_TAG: "true"},
)
def dbt_models(
    context: dg.AssetExecutionContext,
    dbt: NpsLinkDbtResource,
    nps_link: NpsLinkResource,
    config: DbtBuildConfig,
    warehouse_writer: WarehouseWriter,  # held for the run: one writer per data directory
) -> Iterator[Any]:
    """The warehouse models and their dbt tests, run with this run's as_of and windows as dbt vars."""
    settings = nps_link.export_env()
    build_vars = dbt_vars(settings)
    # The project as this build will parse it (before it does): what build_finished records.
    fingerprint = project_fingerprint(Path(dbt.project_dir), Path(dbt.profiles_dir))
    flags, reason = build_flags(
        settings, full_refresh_requested=config.full_refresh, fingerprint=fingerprint, target=dbt.target
    )
    if reason is not None:
        context.log.warning(f"[dbt] {reason}: this build is a full refresh")
    # dbt reads env_var() from this process's environment. Every run has a process of its own (the
    # CLI's, or the one the run launcher starts), so setting it here cannot leak into another build.
    scope = data_test_scope_env(settings)
    os.environ.update(scope)
    finished_before = build_started(settings, dbt.target)
    context.log.info(f"[dbt] build {' '.join(flags)} with vars {build_vars}, data-test scope {scope}")
    # Raises after the events of every node that ran when a model or an error-severity test failed.
    yield from dbt.build(context, ["build", *flags], dbt_vars=build_vars,
                         saved_parse=dbt_parse_state_file(settings, dbt.target))
    if context.is_subset:
        subset_build_finished(
            settings, finished_before=finished_before, full_refresh_due=reason is not None, target=dbt.target
        )
    else:
        build_finished(settings, fingerprint, dbt.target)
    prune_run_targets(DBT_TARGET_DIR)


def prune_run_targets(project_target: Path, *, keep: int = 10, min_age_seconds: float = 86_400) -> list[Path]:
    """Delete the per-run dbt target folders (`dbt_models-*`) but the newest `keep`; the deleted.

    Every build gets its own `dbt_models-*` folder (manifest, compiled SQL, run_results: about 8 MB
    at any scale), which would otherwise grow by gigabytes a year of daily runs. The newest few stay
    for debugging, and nothing younger than a day is touched, so a build running in parallel (the
    CLI while the UI runs one) never loses its folder.
    """
    runs = sorted(project_target.glob("dbt_models-*"), key=lambda p: p.stat().st_mtime, reverse=True)
    cutoff = time.time() - min_age_seconds
    deleted = []
    for folder in runs[keep:]:
        if folder.is_dir() and folder.stat().st_mtime < cutoff:
            shutil.rmtree(folder, ignore_errors=True)
            deleted.append(folder)
    return deleted
