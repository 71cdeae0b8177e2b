"""The Dagster resource that hands every asset the run's `Settings` and warehouse connections."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb
from pydantic import Field

from orchestration.lib.run_lock import pipeline_run_lock
from orchestration.lib.settings import Settings


class NpsLinkResource(dg.ConfigurableResource):
    """Settings of this run: the data dir and as_of, resolved from the environment when not configured.

    Environments differ by environment variables alone (see .env.example); the fields exist so a run
    launched from the UI's launchpad can point at another data dir or cut-off without a restart, or
    accept files a blocking ingestion check held (`accept_held`).
    """

    data_dir: str | None = None
    as_of: str | None = None
    accept_held: list[str] = Field(
        default_factory=list,
        description="Held deliveries to accept before ingestion judges its checks, as `nps-link accept FILE` "
        "does: landing paths (survey_responses/batch.csv) or a file name only one held file has.",
    )

    def settings(self) -> Settings:
        """Resolve the run's settings: configured fields win over NPS_LINK_* environment variables."""
        from datetime import date

        return Settings.from_env(
            data_dir=self.data_dir,
            as_of=date.fromisoformat(self.as_of) if self.as_of else None,
        )

    def export_env(self) -> Settings:
        """Resolve settings and export the paths that dbt's profile and sources read via env_var().

        dagster-dbt starts dbt with this process's environment, so the run's data dir must be there.
        """
        settings = self.settings()
        os.environ["NPS_LINK_DATA_DIR"] = str(settings.data_dir)
        os.environ["DUCKDB_PATH"] = str(settings.build_db_path)
        return settings

    @contextmanager
    def build_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-write connection to the build warehouse (the only writer), closed on exit."""
        settings = self.settings()
        settings.warehouse_dir.mkdir(parents=True, exist_ok=True)
        con = duckdb.connect(
            str(settings.build_db_path),
            config={"threads": settings.duckdb_threads, "memory_limit": settings.duckdb_memory_limit},
        )
        try:
            yield con
        finally:
            con.close()


# What a step receives for the run lock: the path of the lock file its run holds. A name for
# the annotation, so that the steps' `warehouse_writer: WarehouseWriter` parameters say what they take.
WarehouseWriter = dg.ResourceParam[Path]


@dg.resource(
    required_resource_keys={"nps_link"},
    config_schema={
        "wait_seconds": dg.Field(
            int, default_value=3 * 3600,  # the refresh job's dagster/max_runtime: no run holds it longer
            description="How long a run waits for another run of the same data directory to finish.",
        )
    },
    description="The data directory's run lock, held from the run's start to its end.",
)
def warehouse_writer(init_context: dg.InitResourceContext) -> Iterator[Path]:
    """The data directory's run lock (orchestration/lib/run_lock.py), held from the run's start to its end.

    Every step that reads or writes the data dir takes it as a parameter
    (`warehouse_writer: WarehouseWriter`), so Dagster sets it up once before the run's first step and
    tears it down after the last. The data directory is the run's own `nps_link` resource's (a
    launchpad may point it elsewhere). A run that finds another process holding the lock (an
    `nps-link run` started by hand) waits up to `wait_seconds` for it, then fails before any step.
    """

    def report_wait(path: Path) -> None:
        init_context.log.info(f"[warehouse] another nps-link run holds {path}; waiting for it to finish")

    settings = init_context.resources.nps_link.settings()
    wait_seconds = init_context.resource_config["wait_seconds"]
    with pipeline_run_lock(settings.warehouse_dir, wait_seconds=wait_seconds, on_wait=report_wait) as lock_file:
        yield lock_file
