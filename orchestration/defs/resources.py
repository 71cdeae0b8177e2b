"""Every resource of the code location, in one place (STYLE §5)."""

import dagster as dg
from dagster_dbt import DbtCliResource

from orchestration.lib.dbt import DBT_EXECUTABLE, dbt_project
from orchestration.lib.resources import NpsLinkResource


@dg.definitions
def resources() -> dg.Definitions:
    """`nps_link` (settings and warehouse connections) and `dbt` (the dbt CLI on our project)."""
    return dg.Definitions(
        resources={
            "nps_link": NpsLinkResource(),
            "dbt": DbtCliResource(project_dir=dbt_project, dbt_executable=str(DBT_EXECUTABLE)),
        }
    )
