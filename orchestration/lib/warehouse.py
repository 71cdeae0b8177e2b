"""Small helpers for the Python assets that read marts and write the `analysis` and `ops` schemas."""

from __future__ import annotations

import threading
from datetime import datetime

import duckdb
import pandas as pd

# Steps run two at a time on threads of one process, each with its own connection to the build
# warehouse. Their writes are small (one run's result rows) but touch the shared catalog (schema,
# tables), where two concurrent DuckDB transactions can conflict: writes take turns.
_WRITE_LOCK = threading.Lock()


def run_as_of(con: duckdb.DuckDBPyConnection) -> datetime:
    """The run's as_of (naive UTC) as dbt computed it, so Python and SQL share one cut-off."""
    # fetchall, not fetchone: DuckDB 2.0 keeps a result that was not read to its end open, and the
    # connection then refuses relational work (con.sql) such as the analysis builders' next query.
    return con.execute("select as_of_at from intermediate.int_run_parameters").fetchall()[0][0]


def write_run_table(con: duckdb.DuckDBPyConnection, table: str, frame: pd.DataFrame, *, run_id: str,
                    as_of: datetime) -> int:
    """Append one run's rows to `analysis.<table>` (run_id and as_of first), replacing that run's old rows.

    The analysis tables keep every run (grain "run x ..."), so leadership can see how estimates move.
    If the frame's columns changed since the table was created (a new release), the table is rebuilt.
    """
    out = frame.reset_index(drop=True).copy()
    out.insert(0, "as_of", pd.Timestamp(as_of))
    out.insert(0, "run_id", run_id)
    with _WRITE_LOCK:
        return _replace_run_rows(con, table, out, run_id)


def _replace_run_rows(con: duckdb.DuckDBPyConnection, table: str, out: pd.DataFrame, run_id: str) -> int:
    con.execute("create schema if not exists analysis")
    con.register("run_rows", out)
    try:
        existing = con.execute(
            "select column_name from information_schema.columns "
            "where table_schema = 'analysis' and table_name = ? order by ordinal_position",
            [table],
        ).fetchall()
        target = f'analysis."{table}"'
        if [c for (c,) in existing] != list(out.columns):
            con.execute(f"create or replace table {target} as select * from run_rows")
        else:
            con.execute(f"delete from {target} where run_id = ?", [run_id])
            con.execute(f"insert into {target} by name select * from run_rows")
    finally:
        con.unregister("run_rows")
    return len(out)
