"""orchestration.lib.warehouse helpers on a bare DuckDB connection."""

from __future__ import annotations

from datetime import datetime

import duckdb
import pytest

from orchestration.lib.warehouse import run_as_of


def test_run_as_of_leaves_the_connection_free_for_relational_queries() -> None:
    """The analysis assets read as_of and then query with con.sql: DuckDB 2.0 refuses that while a
    result is still open, which is what fetchone() left behind (every analysis step failed)."""
    con = duckdb.connect()
    con.execute("create schema intermediate")
    con.execute("create table intermediate.int_run_parameters as select timestamp '2026-09-29 14:59:59' as as_of_at")

    assert run_as_of(con) == datetime(2026, 9, 29, 14, 59, 59)
    assert con.sql("select 42").fetchall() == [(42,)]


def test_nps_changes_months_are_stored_as_dates_and_an_earlier_releases_timestamps_converted() -> None:
    """DESIGN.md: months are DATEs; analysis.nps_changes.period_month was a TIMESTAMP (the frame's type)."""
    import pandas as pd

    from analysis.tables import nps_changes
    from orchestration.lib.warehouse import write_run_table

    con = duckdb.connect()
    cells = pd.DataFrame({
        "period_month": pd.to_datetime(["2026-08-01", "2026-09-01"]), "survey_type": "all", "dimension": "overall",
        "dimension_value": "all", "responses": [100, 100], "promoters": [50, 30], "passives": [30, 30],
        "detractors": [20, 40],
    })
    as_of = datetime(2026, 9, 30, 14, 59, 59)
    # A warehouse from before: the same columns, the month a timestamp.
    old = nps_changes(cells).assign(period_month=pd.to_datetime(["2026-08-01", "2026-09-01"]), nps=[30.5, -10.25])
    write_run_table(con, "nps_changes", old, run_id="earlier", as_of=as_of)
    assert con.execute("select data_type from information_schema.columns where table_name = 'nps_changes' "
                       "and column_name = 'period_month'").fetchall() == [("TIMESTAMP",)]

    # This run's months are dates; its NPS happen to be whole numbers (an integer column): only the
    # month is converted, the earlier run's fractional NPS stay.
    write_run_table(con, "nps_changes", nps_changes(cells).assign(nps=[30, -10]), run_id="this", as_of=as_of)

    types = dict(con.execute("select column_name, data_type from information_schema.columns "
                             "where table_name = 'nps_changes'").fetchall())
    assert types["period_month"] == "DATE" and types["nps"] == "DOUBLE"
    rows = con.execute("select run_id, period_month, nps from analysis.nps_changes order by all").fetchall()
    assert [(run, str(month), nps) for run, month, nps in rows] == [
        ("earlier", "2026-08-01", 30.5), ("earlier", "2026-09-01", -10.25),
        ("this", "2026-08-01", 30.0), ("this", "2026-09-01", -10.0)]


def test_a_release_that_adds_or_drops_an_analysis_column_keeps_every_earlier_run() -> None:
    """The analysis tables keep every run; a release's new column (key_drivers.excluded_rule) must not drop them."""
    import pandas as pd

    from orchestration.lib.warehouse import write_run_table

    con = duckdb.connect()
    as_of = datetime(2026, 9, 30, 14, 59, 59)
    # An earlier release's table: no excluded_rule, and nothing excluded in its run (an all-NULL reason).
    before = pd.DataFrame({"driver": ["expertise", "billing"], "importance": [60.0, 40.0],
                           "excluded_reason": [None, None]})
    write_run_table(con, "key_drivers", before, run_id="earlier", as_of=as_of)

    # This release writes a reason column of text, a new column, and in another order.
    this = pd.DataFrame({"excluded_rule": [None, "shrinks_fit"], "driver": ["expertise", "pilot"],
                         "importance": [100.0, None], "excluded_reason": [None, "only 60 of the 2000"]})
    write_run_table(con, "key_drivers", this.astype({"excluded_rule": "str", "excluded_reason": "str"}),
                    run_id="this", as_of=as_of)
    # A later release no longer writes excluded_reason; a rerun of its run replaces only that run's rows.
    for _ in range(2):
        write_run_table(con, "key_drivers", this.drop(columns="excluded_reason"), run_id="later", as_of=as_of)

    # A column new in a run where it is empty takes the type of the first run with values: numbers here.
    write_run_table(con, "key_drivers", this.assign(weight=None), run_id="weights-empty", as_of=as_of)
    write_run_table(con, "key_drivers", this.assign(weight=[0.5, None]), run_id="weights-set", as_of=as_of)
    assert con.execute("select weight from analysis.key_drivers where run_id = 'weights-set' and driver = 'expertise'"
                       ).fetchall() == [(0.5,)]
    con.execute("delete from analysis.key_drivers where run_id like 'weights-%'")
    rows = con.execute("select run_id, driver, importance, excluded_reason, excluded_rule from analysis.key_drivers "
                       "order by run_id, driver").fetchall()
    assert rows == [
        ("earlier", "billing", 40.0, None, None), ("earlier", "expertise", 60.0, None, None),
        ("later", "expertise", 100.0, None, None), ("later", "pilot", None, None, "shrinks_fit"),
        ("this", "expertise", 100.0, None, None), ("this", "pilot", None, "only 60 of the 2000", "shrinks_fit"),
    ]


def test_the_follow_up_window_is_past_once_it_ends_its_length_before_the_newest_event() -> None:
    from datetime import timedelta

    from orchestration.lib.warehouse import stale_followup_window_reason

    con = duckdb.connect()
    as_of = datetime(2025, 6, 30, 14, 59, 59)
    _set_run_parameters(con, as_of, as_of)  # the cut-off the data gives: the newest event
    assert stale_followup_window_reason(con) is None
    _set_run_parameters(con, as_of, as_of + timedelta(days=14) - timedelta(seconds=1))  # 14-day window
    assert stale_followup_window_reason(con) is None
    _set_run_parameters(con, as_of, as_of + timedelta(days=14))
    reason = stale_followup_window_reason(con)
    assert reason is not None and "2025-06-30 14:59:59" in reason and "2025-07-14 14:59:59" in reason


def _with_run_parameters(path: str, as_of: datetime, latest_event: datetime) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(path)
    _set_run_parameters(con, as_of, latest_event)
    return con


def _set_run_parameters(con: duckdb.DuckDBPyConnection, as_of: datetime, latest_event: datetime) -> None:
    """What a dbt build of this cut-off leaves in the warehouse."""
    con.execute("create schema if not exists intermediate")
    con.execute("create or replace table intermediate.int_run_parameters as select 7 as input_seq, "
                "?::timestamp as as_of_at, ?::timestamp as latest_event_at, 'Asia/Tokyo' as reporting_tz, "
                "'JPY' as reporting_currency, 90 as contact_window_days, 90 as repeat_window_days, "
                "14 as followup_window_days, 365 as revenue_window_days", [as_of, latest_event])


def test_a_run_looks_back_only_with_a_set_date_before_its_data_and_the_newest_published_cut_off(tmp_path) -> None:
    from orchestration.lib.warehouse import PUBLISHED_RUNS, keep_published_runs_only, look_back_reason

    published = tmp_path / "nps_link.duckdb"
    september = datetime(2026, 9, 29, 14, 51, 20)
    june, july = datetime(2026, 6, 30, 14, 59, 59), datetime(2026, 7, 31, 14, 59, 59)
    # Nothing published yet: whatever the date, a run is not a look back.
    build = _with_run_parameters(":memory:", june, september)
    assert look_back_reason(build, published) is None
    # A warehouse whose ledger predates its as_of column: the published file's cut-off counts.
    _with_run_parameters(str(published), september, september).close()
    build.execute(f"create schema ops; create table {PUBLISHED_RUNS} (run_id varchar, published_at timestamp)")
    reason = look_back_reason(build, published)
    assert reason is not None and "2026-06-30 14:59:59" in reason and "2026-09-29 14:51:20" in reason
    # From now on the ledger keeps each published run's cut-off: September's run published again, then
    # the look back to June published (analysts rolled back; the file is June's).
    keep_published_runs_only(build, ["september-run"], as_of=september)
    keep_published_runs_only(build, ["june-run"], as_of=june)
    assert build.execute(f"select run_id, as_of from {PUBLISHED_RUNS} order by as_of").fetchall() == [
        ("june-run", june), ("september-run", september)]
    _with_run_parameters(str(published), june, september).close()
    # --as-of 2026-07-31 next: still a look back, against the newest cut-off ever published, not June's.
    _set_run_parameters(build, july, september)
    assert "2026-09-29 14:51:20" in (look_back_reason(build, published) or "")
    # The cut-off the data gives (no date set), even when a correction made it earlier: not a look back.
    _set_run_parameters(build, june, june)
    assert look_back_reason(build, published) is None
    # A set date at or after the newest cut-off (a daily run with NPS_LINK_AS_OF): not a look back.
    _set_run_parameters(build, september, datetime(2026, 10, 1))
    assert look_back_reason(build, published) is None


@pytest.mark.parametrize("ledger", ["without its as_of column", "none yet"])
def test_a_ledger_from_before_keeps_the_newest_cut_off_its_runs_published(tmp_path, ledger: str) -> None:
    """Upgraded, a ledger must not forget September once a look back to June is published over it."""
    import pandas as pd

    from orchestration.lib.warehouse import PUBLISHED_RUNS, keep_published_runs_only, look_back_reason, write_run_table

    published = tmp_path / "nps_link.duckdb"
    september = datetime(2026, 9, 29, 14, 51, 20)
    june, july = datetime(2026, 6, 30, 14, 59, 59), datetime(2026, 7, 31, 14, 59, 59)
    build = _with_run_parameters(":memory:", june, september)
    write_run_table(build, "link_effects", pd.DataFrame({"estimate": [1.0]}), run_id="september-run", as_of=september)
    if ledger == "without its as_of column":
        build.execute(f"create schema ops; create table {PUBLISHED_RUNS} (run_id varchar, published_at timestamp)")
        build.execute(f"insert into {PUBLISHED_RUNS} values ('september-run', now()::timestamp)")
    _with_run_parameters(str(published), september, september).close()

    assert look_back_reason(build, published) is not None  # June, after September
    write_run_table(build, "link_effects", pd.DataFrame({"estimate": [0.5]}), run_id="june-run", as_of=june)
    keep_published_runs_only(build, ["june-run"], as_of=june)
    _with_run_parameters(str(published), june, september).close()  # analysts now have June

    assert dict(build.execute(f"select run_id, as_of from {PUBLISHED_RUNS}").fetchall()) == {
        "september-run": september, "june-run": june}
    _set_run_parameters(build, july, september)
    assert look_back_reason(build, published) is not None  # July is still before September
