"""Every resource of the code location, in one place (STYLE §5)."""

import shutil
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import dagster as dg

from orchestration.lib.dbt import DBT_PROJECT_DIR, DBT_TARGET_DIR
from orchestration.lib.dbt_runner import (
    RESULT_EVENT_NAMES,
    InProcessDbtBuild,
    ParseInputs,
    keep_partial_parse,
    parse_manifest,
    seed_partial_parse,
    take_prefetched_manifest,
)
from orchestration.lib.resources import NpsLinkResource


class NpsLinkDbtResource(dg.ConfigurableResource):
    """dbt on our project, run inside this process instead of a new dbt process per build.

    The project is parsed ahead (`nps-link run` starts that while ingestion runs) or, without a
    prefetch (a run launched from the UI), in this process when the build starts; either way no new
    interpreter starts and dbt's imports are paid once (orchestration/lib/dbt_runner.py has the
    measurements). dbt's events become the same Dagster events as with dagster-dbt's
    `DbtCliResource`, through dagster-dbt's own translation, so materializations, asset checks and
    subset selection are unchanged.
    """

    project_dir: str = str(DBT_PROJECT_DIR)
    profiles_dir: str = str(DBT_PROJECT_DIR)
    # The profile's output to build on ("" for its default, DuckDB); e.g. "spark" (README, On a cluster).
    target: str = ""

    def build(
        self, context: dg.AssetExecutionContext, args: Sequence[str], *, dbt_vars: Mapping[str, Any]
    ) -> Iterator[Any]:
        """Run `dbt <args>` (e.g. `build` with flags; no --vars, they come from `dbt_vars`) for the
        context's selection and yield the dbt assets' Dagster events as dbt finishes each node.

        Raises DbtBuildError (after the events of every node that ran) when a model or an
        error-severity test failed. The parse's partial-parse file is promoted to the project's
        target folder, so the next run's parse starts from it.
        """
        from dagster_dbt import DagsterDbtTranslator
        from dagster_dbt.asset_utils import get_updated_cli_invocation_params_for_context
        from dagster_dbt.core.dbt_cli_event import DbtCoreCliEventMessage

        params = get_updated_cli_invocation_params_for_context(
            context=context, manifest={}, dagster_dbt_translator=DagsterDbtTranslator()
        )
        # dagster-dbt copies the project elsewhere when a subset needs a generated selector.
        project_dir = Path(params.dbt_project.project_dir) if params.dbt_project else Path(self.project_dir)
        ours = project_dir.resolve() == Path(self.project_dir).resolve()
        project_target = DBT_TARGET_DIR if ours else project_dir / "target"
        # Named as dagster-dbt names its folders (the benchmark and prune_run_targets find them by it).
        op_name, run_id = context.op_execution_context.op.name, context.run.run_id
        run_target = project_target / f"{op_name}-{run_id[:7]}-{uuid.uuid4().hex[:7]}"
        inputs = ParseInputs.current(project_dir, Path(self.profiles_dir), dbt_vars, target=self.target)

        manifest, parse_target, why_not = take_prefetched_manifest(inputs) if ours else (None, None, "a project copy")
        if manifest is None:
            context.log.info(f"[dbt] parsing the project in this process: {why_not}")
            seed_partial_parse(project_target, run_target)
            manifest, parse_target = parse_manifest(inputs, run_target), run_target
        if ours and parse_target is not None:
            keep_partial_parse(parse_target, project_target)
            if parse_target != run_target:
                shutil.rmtree(parse_target, ignore_errors=True)

        full_args = [*args, "--vars", inputs.vars_json, *params.selection_args]
        if params.indirect_selection:
            full_args += ["--indirect-selection", params.indirect_selection]
        context.log.info(f"[dbt] in-process: dbt {' '.join(full_args)}")
        build = InProcessDbtBuild(full_args, manifest=manifest, inputs=inputs, target_path=run_target)
        for raw_event in build.events():
            if raw_event["info"]["name"] not in RESULT_EVENT_NAMES:
                continue
            event = DbtCoreCliEventMessage(raw_event=raw_event, event_history_metadata={})
            yield from event.to_default_asset_events(
                manifest=params.manifest,
                dagster_dbt_translator=params.dagster_dbt_translator,
                context=context,
                target_path=run_target,
                project=params.dbt_project,
            )


@dg.definitions
def resources() -> dg.Definitions:
    """`nps_link` (settings and warehouse connections) and `dbt` (dbt on our project, in this process)."""
    return dg.Definitions(
        resources={
            "nps_link": NpsLinkResource(),
            "dbt": NpsLinkDbtResource(),
        }
    )
