"""dbt models (staging -> intermediate -> marts) built and tested in one `dbt build`.

dbt tests become Dagster asset checks; a failing error-severity test fails this step, so nothing
downstream (analysis, report, publish) runs on a warehouse that did not pass its tests.
"""

import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DbtCliResource, dbt_assets

from orchestration.lib.dbt import (
    DBT_TARGET_DIR,
    NpsLinkDbtTranslator,
    build_finished,
    build_flags,
    build_started,
    data_test_scope_env,
    dbt_project,
    dbt_vars,
    ensure_manifest,
)
from orchestration.lib.resources import NpsLinkResource
from orchestration.lib.threaded_executor import EXCLUSIVE_TAG


class DbtBuildConfig(dg.Config):
    """Run-time knobs of the dbt step."""

    full_refresh: bool = False


@dbt_assets(
    manifest=ensure_manifest(),
    project=dbt_project,
    dagster_dbt_translator=NpsLinkDbtTranslator(),
    name="dbt_models",
    # dbt writes the build warehouse from its own process: no other step may hold it meanwhile.
    op_tags={EXCLUSIVE_TAG: "true"},
)
def dbt_models(
    context: dg.AssetExecutionContext, dbt: DbtCliResource, nps_link: NpsLinkResource, config: DbtBuildConfig
) -> Iterator[Any]:
    """The warehouse models and their dbt tests, run with this run's as_of and windows as dbt vars."""
    settings = nps_link.export_env()
    build_vars = dbt_vars(settings)
    flags, reason = build_flags(settings, full_refresh_requested=config.full_refresh)
    args = ["build", "--vars", json.dumps(build_vars), *flags]
    if reason is not None:
        context.log.warning(f"[dbt] {reason}: this build is a full refresh")
    # The dbt child inherits this process's environment. Every run has a process of its own (the
    # CLI's, or the one the run launcher starts), so setting it here cannot leak into another build.
    scope = data_test_scope_env(settings)
    os.environ.update(scope)
    build_started(settings)
    context.log.info(f"[dbt] build {' '.join(flags)} with vars {build_vars}, data-test scope {scope}")
    invocation = dbt.cli(args, context=context)
    yield from invocation.stream()
    # Reached only when dbt finished and every error-severity test passed (stream() raises otherwise).
    build_finished(settings)
    keep_partial_parse(Path(invocation.target_path), DBT_TARGET_DIR)
    prune_run_targets(DBT_TARGET_DIR)


def keep_partial_parse(run_target: Path, project_target: Path) -> bool:
    """Make this build's parsed project the one the next build starts from; True when there was one.

    dagster-dbt gives every invocation its own target folder and seeds it with the project target's
    `partial_parse.msgpack`, which `dbt parse` wrote without our --vars, so dbt threw it away and
    parsed the whole project on every run (4 s at L, 13 s at S under load). dbt writes a new file
    only when it parsed; promoting it means the next run with the same vars and files skips parsing,
    and dbt still re-parses whatever changed (it checks file hashes, vars, profile and env vars).
    A hard link plus rename: the project's file is replaced whole, never rewritten in place, so a
    concurrent run copying it reads the old or the new one, not a mix.
    """
    fresh = run_target / "partial_parse.msgpack"
    if not fresh.exists():
        return False
    staged = project_target / f".partial_parse-{uuid.uuid4().hex}.msgpack"
    try:
        os.link(fresh, staged)
        os.replace(staged, project_target / "partial_parse.msgpack")
    finally:
        staged.unlink(missing_ok=True)
    return True


def prune_run_targets(project_target: Path, *, keep: int = 10, min_age_seconds: float = 86_400) -> list[Path]:
    """Delete the per-run dbt target folders dagster-dbt leaves behind, but the newest `keep`; the deleted.

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
