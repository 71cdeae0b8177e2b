"""Every resource of the code location, in one place (STYLE §5)."""

from functools import cached_property
from importlib.metadata import version as installed_version
from typing import Any

import dagster as dg
from dagster_dbt import DbtCliResource
from packaging import version

from orchestration.lib.dbt import DBT_EXECUTABLE, dbt_project
from orchestration.lib.resources import NpsLinkResource


class NpsLinkDbtCliResource(DbtCliResource):
    """The dbt CLI without the two start-up costs dagster-dbt pays before every invocation.

    - `_initialize_dbt_core_adapter` builds an in-process dbt adapter (loads the profile, the project
      and every macro: 6.5 s at L, 9 s at S under load), used only by `fetch_row_counts()` and
      `fetch_column_metadata()`, which we do not call. Events, materializations and asset checks come
      from dbt's JSON log on stdout and need no adapter (dagster-dbt runs the Fusion engine that way).
    - `_cli_version` runs `dbt --version` (a whole dbt interpreter start) to learn what we know:
      `dbt_executable` is the dbt of this venv, so its version is the installed dbt-core's.

    Both are private methods of dagster-dbt (pinned in constraints.txt); tests/orchestration/
    test_definitions.py fails if an upgrade renames them, so this cannot silently stop working.
    """

    def _initialize_dbt_core_adapter(self, args: Any) -> None:  # type: ignore[override]
        return None

    @cached_property
    def _cli_version(self) -> version.Version:
        return version.parse(installed_version("dbt-core"))


@dg.definitions
def resources() -> dg.Definitions:
    """`nps_link` (settings and warehouse connections) and `dbt` (the dbt CLI on our project)."""
    return dg.Definitions(
        resources={
            "nps_link": NpsLinkResource(),
            "dbt": NpsLinkDbtCliResource(project_dir=dbt_project, dbt_executable=str(DBT_EXECUTABLE)),
        }
    )
