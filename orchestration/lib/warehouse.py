"""Small helpers for the Python assets that read marts and write the `analysis` and `ops` schemas."""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pandas as pd

if TYPE_CHECKING:
    import dagster as dg

# Steps run two at a time on threads of one process, each with its own connection to the build
# warehouse. Their writes are small (one run's result rows) but touch the shared catalog (schema,
# tables), where two concurrent DuckDB transactions can conflict: writes take turns.
_WRITE_LOCK = threading.Lock()


# The run parameters int_run_parameters stores besides its watermark and cut-off, by dbt var name.
RUN_PARAMETER_VARS = ("reporting_tz", "reporting_currency", "contact_window_days", "repeat_window_days",
                      "followup_window_days", "revenue_window_days")


def stored_run_parameters(db_path: Path) -> dict[str, Any] | None:
    """The row of `intermediate.int_run_parameters` in a warehouse file, or None when there is none.

    A file that cannot be opened (missing, locked by a writer, another DuckDB version) counts as
    none, the safe side for each caller: dbt's data tests then test every row
    (orchestration.lib.dbt.previous_input_seq), and a run is judged by the publish ledger alone
    (look_back_reason).
    """
    if not db_path.exists():
        return None
    columns = ("input_seq", "as_of_at", "latest_event_at", *RUN_PARAMETER_VARS)
    try:
        con = duckdb.connect(str(db_path), read_only=True)
    except duckdb.Error:
        return None
    try:
        row = con.execute(f"select {', '.join(columns)} from intermediate.int_run_parameters").fetchone()
    except duckdb.Error:
        return None
    finally:
        con.close()
    return dict(zip(columns, row, strict=True)) if row is not None else None


def run_as_of(con: duckdb.DuckDBPyConnection) -> datetime:
    """The run's as_of (naive UTC) as dbt computed it, so Python and SQL share one cut-off."""
    # fetchall, not fetchone: DuckDB 2.0 keeps a result that was not read to its end open, and the
    # connection then refuses relational work (con.sql) such as the analysis builders' next query.
    return con.execute("select as_of_at from intermediate.int_run_parameters").fetchall()[0][0]


def look_back_reason(con: duckdb.DuckDBPyConnection, published_db: Path) -> str | None:
    """Why this run looks back at a past date, or None for a run at the newest cut-off (or past it).

    A run looks back when its as_of was set (`--as-of`, NPS_LINK_AS_OF) before the data it loaded ends
    and before the newest cut-off ever published (the ledger `ops.published_runs` of the build
    warehouse `con`, or the published file's own if later). Such a run reproduces a past date: it
    publishes as usual (its cut-off only leaves out events after it; what later deliveries corrected
    stays corrected), but its report goes to reports/<as_of>/ only, so the latest report stays the newest
    date's, and it mails no follow-ups (they are for today's detractors; the window before a past
    as_of would mail months-old ones). A cut-off the data gives (no date set) never looks back, even
    when a correction moved it earlier.
    """
    as_of, latest_event = con.execute(
        "select as_of_at, latest_event_at from intermediate.int_run_parameters"
    ).fetchall()[0]
    if latest_event is None or as_of >= latest_event:
        return None
    newest = _newest_published_as_of(con, published_db)
    if newest is None or as_of >= newest:
        return None
    return (f"a look back: as_of {as_of:%Y-%m-%d %H:%M:%S} UTC is before the newest published cut-off, "
            f"{newest:%Y-%m-%d %H:%M:%S} UTC")


def stale_followup_window_reason(con: duckdb.DuckDBPyConnection) -> str | None:
    """Why the follow-up window before this run's as_of is past, or None when its detractors are recent.

    Follow-ups are for detractors of the last `followup_window_days`. A run set to a date at least
    that long before the newest event it loaded (a first deployment's `--as-of` in last year, which
    no published cut-off marks as a look back yet) would mail detractors that are, by the data's own
    clock, already past the window. The data's newest event stands for "now", not the wall clock,
    so a run on demo or replayed data judges by the data it has.
    """
    as_of, latest_event, window_days = con.execute(
        "select as_of_at, latest_event_at, followup_window_days from intermediate.int_run_parameters"
    ).fetchall()[0]
    if latest_event is None or latest_event - as_of < timedelta(days=window_days):
        return None
    return (f"the follow-up window ends at as_of {as_of:%Y-%m-%d %H:%M:%S} UTC, {window_days} days or more before "
            f"the newest event loaded ({latest_event:%Y-%m-%d %H:%M:%S} UTC): its detractors are past the window")


def _newest_published_as_of(con: duckdb.DuckDBPyConnection, published_db: Path) -> datetime | None:
    """The newest cut-off ever published: the build's publish ledger's, or the published file's if later."""
    cut_offs = []
    if has_column(con, PUBLISHED_RUNS, "as_of"):
        cut_offs.append(con.execute(f"select max(as_of) from {PUBLISHED_RUNS}").fetchall()[0][0])
    published = stored_run_parameters(published_db)
    if published is not None:
        cut_offs.append(published["as_of_at"])
    return max((c for c in cut_offs if c is not None), default=None)


def has_column(con: duckdb.DuckDBPyConnection, table: str, column: str, *, catalog: str | None = None) -> bool:
    """Whether `schema.table` (of the attached database `catalog`, else any) exists with `column`."""
    schema, name = table.split(".")
    return con.execute(
        "select count(*) from information_schema.columns where table_schema = ? and table_name = ? "
        "and column_name = ? and (? is null or table_catalog = ?)",
        [schema, name, column, catalog, catalog],
    ).fetchall()[0][0] > 0


def write_run_table(con: duckdb.DuckDBPyConnection, table: str, frame: pd.DataFrame, *, run_id: str,
                    as_of: datetime) -> int:
    """Append one run's rows to `analysis.<table>` (run_id and as_of first), replacing that run's old rows.

    The analysis tables keep every run (grain "run x ..."), so leadership can see how estimates move,
    and a new release keeps them too: a column it adds is added to the table (NULL in the earlier
    runs' rows), a column it no longer writes stays (NULL in its rows), and a column whose type
    changed (a month once stored as a timestamp, now a DATE) is converted in place.
    """
    out = frame.reset_index(drop=True).copy()
    out.insert(0, "as_of", pd.Timestamp(as_of))
    out.insert(0, "run_id", run_id)
    with _WRITE_LOCK:
        return _replace_run_rows(con, table, out, run_id)


# Column types an earlier release stored that the rows of this one replace, converting the rows kept:
# months once written as midnight timestamps, now DATEs (analysis.nps_changes.period_month). Any other
# difference (an integer column whose run had a NULL and came as a float) is cast on insert as before:
# narrowing a stored type could lose the earlier runs' values.
_TYPE_UPGRADES = {("TIMESTAMP", "DATE")}
# A frame column with nothing but None (an object column) has DuckDB's NULL type: stored so, it takes
# the type of the first run with values (text or numbers alike).
_NULL_TYPE = '"NULL"'


def _converted_in_place(stored: str, incoming: str) -> bool:
    """Whether a stored column takes this run's type, keeping the earlier runs' values."""
    # A column of the NULL type holds nothing but NULLs: any type keeps them.
    return (stored, incoming) in _TYPE_UPGRADES or (stored == _NULL_TYPE and incoming != _NULL_TYPE)


def _replace_run_rows(con: duckdb.DuckDBPyConnection, table: str, out: pd.DataFrame, run_id: str) -> int:
    con.execute("create schema if not exists analysis")
    con.register("run_rows", out)
    try:
        existing = con.execute(
            "select column_name, data_type from information_schema.columns "
            "where table_schema = 'analysis' and table_name = ? order by ordinal_position",
            [table],
        ).fetchall()
        target = f'analysis."{table}"'
        if not existing:
            con.execute(f"create table {target} as select * from run_rows")
            return len(out)
        stored = dict(existing)
        incoming = {name: kind for name, kind, *_ in con.execute("describe run_rows").fetchall()}
        for column, kind in incoming.items():
            if column not in stored:
                con.execute(f'alter table {target} add column "{column}" {kind}')
            elif _converted_in_place(stored[column], kind):
                con.execute(f'alter table {target} alter column "{column}" type {kind}')
        con.execute(f"delete from {target} where run_id = ?", [run_id])
        # By name: the table's column order may differ from the frame's, and a column the frame
        # lacks is NULL for this run.
        con.execute(f"insert into {target} by name select * from run_rows")
    finally:
        con.unregister("run_rows")
    return len(out)


# Dagster tags a re-execution ("from failure", or of selected steps) with the run it re-executes.
PARENT_RUN_TAG = "dagster/parent_run_id"


def run_lineage(run_id: str, parent_of: Callable[[str], str | None]) -> list[str]:
    """This run, then the run it re-executes, and so on: newest first.

    A re-execution runs only some steps under a new run id; the analysis steps it did not repeat
    wrote their rows under an earlier id of the lineage, and the report must still find them.
    """
    lineage = [run_id]
    while (parent := parent_of(lineage[-1])) and parent not in lineage:
        lineage.append(parent)
    return lineage


def table_lineage(table: str, lineage: list[str], executed_steps: Collection[str] | None) -> list[str]:
    """The runs of `lineage` whose rows of `analysis.<table>` may stand for this run.

    The run alone when it ran the table's own step (`executed_steps` None: every step), even if that
    step wrote nothing (not enough data): the rows of a run it re-executes are then another build's.
    Otherwise the whole lineage, whose newest run that wrote the table is the one that counts.
    """
    return lineage[:1] if executed_steps is None or table in executed_steps else lineage


def lineage_rows(
    con: duckdb.DuckDBPyConnection, table: str, lineage: list[str], as_of: datetime
) -> pd.DataFrame | None:
    """The rows of `analysis.<table>` for `as_of` from the newest run of `lineage` that wrote any, run columns dropped.

    None if none did (or the table was never written): the report then says so, and never shows
    figures of another run or cut-off. `lineage` as `table_lineage` gives it.
    """
    if table not in _analysis_tables(con):
        return None
    frame = con.execute(
        f'select * from analysis."{table}" where list_contains(?, run_id) and as_of is not distinct from ?',
        [lineage, as_of],
    ).df()
    if not len(frame):
        return None
    newest = min(frame["run_id"].unique(), key=lineage.index)
    return frame[frame["run_id"] == newest].drop(columns=["run_id", "as_of"]).reset_index(drop=True)


def _analysis_tables(con: duckdb.DuckDBPyConnection) -> list[str]:
    return [name for (name,) in con.execute(
        "select table_name from information_schema.tables "
        "where table_schema = 'analysis' and table_type = 'BASE TABLE' order by table_name"
    ).fetchall()]


def dagster_run_lineage(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """`run_lineage` of a run of `instance`, read from its runs' tags."""

    def parent_of(child: str) -> str | None:
        run = instance.get_run_by_id(child)
        return run.tags.get(PARENT_RUN_TAG) if run is not None else None

    return run_lineage(run_id, parent_of)


def planned_steps(instance: dg.DagsterInstance, run_id: str) -> set[str] | None:
    """The step keys a run of `instance` was planned to execute (a re-execution: only some); None if unknown."""
    run = instance.get_run_by_id(run_id)
    if run is None or run.execution_plan_snapshot_id is None:
        return None
    return set(instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id).step_keys_to_execute)


# The ledger of the runs whose analysis rows analysts may see: every run whose publish step got as far
# as the copy (with the runs it re-executed). Rows of other runs are deleted when a run publishes.
PUBLISHED_RUNS = "ops.published_runs"


def keep_published_runs_only(
    con: duckdb.DuckDBPyConnection,
    lineage: list[str],
    *,
    as_of: datetime | None,
    executed_steps: Collection[str] | None = None,
) -> int:
    """Record `lineage` as published, and delete from every `analysis.*` table the rows of runs never published.

    Called by the publish step before its copy: a run that failed (an analysis that wrote its rows
    and then failed its check, or a step after it) left its rows in the build warehouse, and a later
    run's publish would otherwise show them to analysts beside the audited ones.
    - Of the runs of `lineage` (this run, then the runs it re-executes; `executed_steps` this run's
      steps, None for all), a table keeps what the report read: the rows at `as_of` of the newest
      run `table_lineage` allows. The rows of the lineage's other runs that were not published
      before are superseded; a run published before keeps its history.
    - Recorded before the copy, a run whose copy then failed (a full disk) is published with the
      next publish, rows and all.
    - A warehouse from before this ledger takes every run its tables hold as published.
    - The ledger keeps each run's cut-off (`as_of`; for runs recorded before it was kept, the newest
      as_of of their analysis rows), from which `look_back_reason` knows the newest date ever published.
    Returns how many rows were deleted.
    """
    published_at = datetime.now(UTC).replace(tzinfo=None)  # naive UTC, as every *_at of the warehouse
    with _WRITE_LOCK:
        con.execute("create schema if not exists ops")
        tables = _analysis_tables(con)
        # table -> {run with rows in it: whether some of them are at `as_of`}, and each run's newest
        # cut-off in any table (for a ledger that did not record it yet), one scan a table
        runs_of: dict[str, dict[str, bool]] = {}
        cut_off_of: dict[str, datetime] = {}
        for table in tables:
            rows = con.execute(
                f'select run_id, bool_or(as_of is not distinct from ?), max(as_of) from analysis."{table}" '
                "group by run_id",
                [as_of],
            ).fetchall()
            runs_of[table] = {run: at_as_of for run, at_as_of, _ in rows}
            for run, _, newest in rows:
                if newest is not None and (run not in cut_off_of or newest > cut_off_of[run]):
                    cut_off_of[run] = newest
        holders = {table: set(runs) for table, runs in runs_of.items()}
        ledger_exists = has_column(con, PUBLISHED_RUNS, "run_id")
        if ledger_exists:
            published_before = {run for (run,) in con.execute(f"select run_id from {PUBLISHED_RUNS}").fetchall()}
            if not has_column(con, PUBLISHED_RUNS, "as_of"):
                # A ledger from before the cut-off was recorded (look_back_reason reads it): each run's
                # cut-off from its analysis rows, NULL for a run that has none left.
                con.execute(f"alter table {PUBLISHED_RUNS} add column as_of timestamp")
                for run in sorted(published_before & cut_off_of.keys()):
                    con.execute(f"update {PUBLISHED_RUNS} set as_of = ? where run_id = ?", [cut_off_of[run], run])
        else:
            con.execute(f"create table {PUBLISHED_RUNS} "
                        "(run_id varchar not null, published_at timestamp not null, as_of timestamp)")
            published_before = set().union(*holders.values())
        published = published_before | set(lineage)
        for run in sorted(published - (published_before if ledger_exists else set())):
            con.execute(f"insert into {PUBLISHED_RUNS} by name select ? as run_id, ? as published_at, ? as as_of",
                        [run, published_at, as_of if run in lineage else cut_off_of.get(run)])
        deleted = 0
        for table in tables:
            shown = [run for run in table_lineage(table, lineage, executed_steps) if runs_of[table].get(run)][:1]
            superseded = {run for run in lineage if run in holders[table] and run not in published_before}
            gone = sorted(((holders[table] - published) | superseded) - set(shown))
            if gone:
                deleted += con.execute(
                    f'delete from analysis."{table}" where list_contains(?, run_id)', [gone]
                ).fetchall()[0][0]
        return deleted
