"""orchestration.lib.warehouse helpers on a bare DuckDB connection."""

from __future__ import annotations

from datetime import datetime

import duckdb

from orchestration.lib.warehouse import run_as_of


def test_run_as_of_leaves_the_connection_free_for_relational_queries() -> None:
    """The analysis assets read as_of and then query with con.sql: DuckDB 2.0 refuses that while a
    result is still open, which is what fetchone() left behind (every analysis step failed)."""
    con = duckdb.connect()
    con.execute("create schema intermediate")
    con.execute("create table intermediate.int_run_parameters as select timestamp '2026-09-29 14:59:59' as as_of_at")

    assert run_as_of(con) == datetime(2026, 9, 29, 14, 59, 59)
    assert con.sql("select 42").fetchall() == [(42,)]
