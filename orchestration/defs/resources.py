"""Every resource of the code location, in one place (STYLE §5)."""

import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import dagster as dg

from orchestration.lib.dbt import DBT_PROJECT_DIR, DBT_TARGET_DIR
from orchestration.lib.dbt_runner import (
    RESULT_EVENT_NAMES,
    DbtProjectArgs,
    InProcessDbtBuild,
    keep_partial_parse,
    parse_manifest,
    seed_partial_parse,
)
from orchestration.lib.resources import NpsLinkResource, warehouse_writer
from orchestration.lib.run_lock import WAREHOUSE_WRITER
from orchestration.lib.threaded_executor import threaded_executor


class NpsLinkDbtResource(dg.ConfigurableResource):
    """dbt on our project, run inside this process instead of a new dbt process per build.

    The step parses the project and builds it with dbt's programmatic runner: no new interpreter
    starts, dbt's imports are paid once per process, and the parse starts from the partial parse
    the last build of the same warehouse left (orchestration/lib/dbt_runner.py has the
    measurements). dbt's events become the same Dagster events as with dagster-dbt's
    `DbtCliResource`, through dagster-dbt's own translation, so materializations, asset checks and
    subset selection are unchanged.
    """

    project_dir: str = str(DBT_PROJECT_DIR)
    profiles_dir: str = str(DBT_PROJECT_DIR)
    # The profile's output to build on ("" for its default, DuckDB); e.g. "spark" (README, On a cluster).
    target: str = ""

    def build(
        self,
        context: dg.AssetExecutionContext,
        args: Sequence[str],
        *,
        dbt_vars: Mapping[str, Any],
        saved_parse: Path,
    ) -> Iterator[Any]:
        """Run `dbt <args>` (e.g. `build` with flags; no --vars, they come from `dbt_vars`) for the
        context's selection and yield the dbt assets' Dagster events as dbt finishes each node.

        Raises DbtBuildError (after the events of every node that ran) when a model or an
        error-severity test failed. The parse starts from `saved_parse` (the warehouse's last parse,
        `orchestration.lib.dbt.dbt_parse_state_file`) and leaves its own there, so the next build
        of the same warehouse re-parses only what changed.
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
        project = DbtProjectArgs.of(project_dir, Path(self.profiles_dir), dbt_vars, target=self.target)

        # A copy of the project (above) parses from and for its own target folder only.
        saved = saved_parse if ours else project_target / "partial_parse.msgpack"
        seed_partial_parse(saved, run_target)
        manifest = parse_manifest(project, run_target)
        if ours:
            keep_partial_parse(run_target, saved)

        full_args = [*args, *params.selection_args]
        if params.indirect_selection:
            full_args += ["--indirect-selection", params.indirect_selection]
        context.log.info(f"[dbt] in-process: dbt {' '.join(full_args)} --vars {project.vars_json}")
        build = InProcessDbtBuild(full_args, manifest=manifest, project=project, target_path=run_target)
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
    """`nps_link` (settings and warehouse connections), `dbt` (dbt on our project, in this process) and
    `warehouse_writer` (one run per data directory at a time); and every job's executor.

    Not only the refresh job runs on the threaded executor: a materialisation from the UI's asset
    graph would otherwise get Dagster's default, a process per step, which sets the run lock up and
    lets it go again for every step, so another run could slip in between two of them.
    """
    return dg.Definitions(
        resources={
            "nps_link": NpsLinkResource(),
            "dbt": NpsLinkDbtResource(),
            WAREHOUSE_WRITER: warehouse_writer,
        },
        executor=threaded_executor,
    )
