"""Which analysis rows a run reads and publishes: its own or its lineage's at its as_of, never a failed run's."""

from __future__ import annotations

from datetime import datetime

import duckdb
import pandas as pd

from orchestration.lib.warehouse import (
    PARENT_RUN_TAG,
    PUBLISHED_RUNS,
    keep_published_runs_only,
    lineage_rows,
    run_lineage,
    write_run_table,
)

AS_OF = datetime(2025, 6, 30, 14, 59, 59)
NEXT_DAY = datetime(2025, 7, 1, 14, 59, 59)


def test_parent_run_tag_is_the_one_dagster_sets_on_a_reexecution() -> None:
    from dagster._core.storage.tags import PARENT_RUN_ID_TAG

    assert PARENT_RUN_TAG == PARENT_RUN_ID_TAG


def test_run_lineage_follows_parents_newest_first_and_stops_at_a_loop() -> None:
    parents = {"r3": "r2", "r2": "r1"}
    assert run_lineage("r3", parents.get) == ["r3", "r2", "r1"]
    assert run_lineage("r1", parents.get) == ["r1"]
    assert run_lineage("a", {"a": "b", "b": "a"}.get) == ["a", "b"]


def frame(value: float) -> pd.DataFrame:
    return pd.DataFrame({"effect": ["total", "direct"], "estimate": [value, value / 2]})


def test_lineage_rows_are_the_newest_lineage_runs_at_the_same_as_of() -> None:
    con = duckdb.connect()
    write_run_table(con, "link_effects", frame(1.0), run_id="r1", as_of=AS_OF)
    write_run_table(con, "link_effects", frame(2.0), run_id="r2", as_of=AS_OF)
    write_run_table(con, "link_effects", frame(9.0), run_id="other", as_of=AS_OF)  # not of this lineage
    write_run_table(con, "link_effects", frame(3.0), run_id="r3", as_of=NEXT_DAY)

    # A re-execution (r4) of r2, itself a re-execution of r1: the link step ran last in r2.
    rows = lineage_rows(con, "link_effects", ["r4", "r2", "r1"], AS_OF)
    assert rows is not None
    assert rows.to_dict("list") == {"effect": ["total", "direct"], "estimate": [2.0, 1.0]}
    # Its own rows first, when it wrote any.
    write_run_table(con, "link_effects", frame(4.0), run_id="r4", as_of=AS_OF)
    rows = lineage_rows(con, "link_effects", ["r4", "r2", "r1"], AS_OF)
    assert rows is not None and rows["estimate"].tolist() == [4.0, 2.0]
    # Another cut-off's rows, another lineage's, or a table never written: nothing to show.
    assert lineage_rows(con, "link_effects", ["r4", "r2", "r1"], NEXT_DAY) is None
    assert lineage_rows(con, "link_effects", ["r5"], AS_OF) is None
    assert lineage_rows(con, "handoff", ["r4"], AS_OF) is None


def _runs(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    return [r for (r,) in con.execute(f"select distinct run_id from analysis.{table} order by run_id").fetchall()]


def test_publish_keeps_the_rows_of_published_runs_and_drops_those_of_failed_ones() -> None:
    con = duckdb.connect()
    write_run_table(con, "link_effects", frame(1.0), run_id="r1", as_of=AS_OF)
    write_run_table(con, "handoff", frame(1.0), run_id="r1", as_of=AS_OF)

    # The first publish, of a warehouse from before the ledger: what its tables hold was published.
    assert keep_published_runs_only(con, ["r1"]) == 0
    assert [r for (r,) in con.execute(f"select run_id from {PUBLISHED_RUNS}").fetchall()] == ["r1"]

    # r2 writes its link rows, then fails a check: it never publishes. r3 does.
    write_run_table(con, "link_effects", frame(2.0), run_id="r2", as_of=AS_OF)
    write_run_table(con, "link_effects", frame(3.0), run_id="r3", as_of=NEXT_DAY)
    write_run_table(con, "handoff", frame(3.0), run_id="r3", as_of=NEXT_DAY)
    assert keep_published_runs_only(con, ["r3"]) == 2
    assert _runs(con, "link_effects") == _runs(con, "handoff") == ["r1", "r3"]

    # r4 writes both tables, and its hand-off analysis fails its check. r5 re-executes r4 from that
    # failure: the hand-off again, then report and publish. r4's link rows are this publish's, its
    # hand-off rows are superseded by r5's (the report read r5's).
    write_run_table(con, "link_effects", frame(4.0), run_id="r4", as_of=NEXT_DAY)
    write_run_table(con, "handoff", frame(float("inf")), run_id="r4", as_of=NEXT_DAY)
    write_run_table(con, "handoff", frame(5.0), run_id="r5", as_of=NEXT_DAY)
    assert keep_published_runs_only(con, ["r5", "r4"]) == 2
    assert _runs(con, "link_effects") == ["r1", "r3", "r4"]
    assert _runs(con, "handoff") == ["r1", "r3", "r5"]
    # Publishing again records nothing twice.
    keep_published_runs_only(con, ["r5", "r4"])
    assert con.execute(f"select count(*), count(distinct run_id) from {PUBLISHED_RUNS}").fetchall() == [(4, 4)]


def test_first_publish_of_an_older_warehouse_keeps_its_whole_history() -> None:
    con = duckdb.connect()
    for run in ("r1", "r2"):
        write_run_table(con, "key_drivers", frame(1.0), run_id=run, as_of=AS_OF)

    assert keep_published_runs_only(con, ["r3"]) == 0
    assert _runs(con, "key_drivers") == ["r1", "r2"]
