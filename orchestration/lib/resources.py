"""The Dagster resource that hands every asset the run's `Settings` and warehouse connections."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import duckdb

from orchestration.lib.settings import Settings


class NpsLinkResource(dg.ConfigurableResource):
    """Settings of this run: the data dir and as_of, resolved from the environment when not configured.

    Environments differ by environment variables alone (see .env.example); the two fields exist so a
    run launched from the UI's launchpad can point at another data dir or cut-off without a restart.
    """

    data_dir: str | None = None
    as_of: str | None = None

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
