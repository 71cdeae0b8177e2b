"""Which analysis rows a run reads and publishes: its own or its lineage's at its as_of, never a failed run's."""

from datetime import datetime

import dagster as dg
import duckdb
import pandas as pd

from orchestration.definitions import defs
from orchestration.lib.warehouse import (
    PARENT_RUN_TAG,
    PUBLISHED_RUNS,
    keep_published_runs_only,
    lineage_rows,
    planned_steps,
    run_lineage,
    table_lineage,
    write_run_table,
)

PUBLISH_STEP = "warehouse__published"
AS_OF = datetime(2025, 6, 30, 14, 59, 59)
NEXT_DAY = datetime(2025, 7, 1, 14, 59, 59)


def frame(value: float) -> pd.DataFrame:
    return pd.DataFrame({"effect": ["total", "direct"], "estimate": [value, value / 2]})


def _runs(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    return [r for (r,) in con.execute(f"select distinct run_id from analysis.{table} order by run_id").fetchall()]


def _ledger(con: duckdb.DuckDBPyConnection) -> list[str]:
    return [r for (r,) in con.execute(f"select run_id from {PUBLISHED_RUNS} order by run_id").fetchall()]


def test_parent_run_tag_is_the_one_dagster_sets_on_a_reexecution() -> None:
    from dagster._core.storage.tags import PARENT_RUN_ID_TAG

    assert PARENT_RUN_TAG == PARENT_RUN_ID_TAG


def test_run_lineage_follows_parents_newest_first_and_stops_at_a_loop() -> None:
    parents = {"r3": "r2", "r2": "r1"}
    assert run_lineage("r3", parents.get) == ["r3", "r2", "r1"]
    assert run_lineage("r1", parents.get) == ["r1"]
    assert run_lineage("a", {"a": "b", "b": "a"}.get) == ["a", "b"]


def test_table_lineage_is_the_run_alone_for_the_analyses_it_ran_itself() -> None:
    lineage = ["r5", "r4"]
    assert table_lineage("handoff", lineage, {"handoff", "reports__leadership_report"}) == ["r5"]
    assert table_lineage("link_effects", lineage, {"handoff", "reports__leadership_report"}) == ["r5", "r4"]
    assert table_lineage("link_effects", lineage, None) == ["r5"]  # every step ran


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


def test_publish_keeps_the_rows_of_published_runs_and_drops_those_of_failed_ones() -> None:
    con = duckdb.connect()
    write_run_table(con, "link_effects", frame(1.0), run_id="r1", as_of=AS_OF)
    write_run_table(con, "handoff", frame(1.0), run_id="r1", as_of=AS_OF)

    # The first publish, of a warehouse from before the ledger: what its tables hold was published.
    assert keep_published_runs_only(con, ["r1"], as_of=AS_OF) == 0
    assert _ledger(con) == ["r1"]

    # r2 writes its link rows, then fails a check: it never publishes. r3 does.
    write_run_table(con, "link_effects", frame(2.0), run_id="r2", as_of=AS_OF)
    write_run_table(con, "link_effects", frame(3.0), run_id="r3", as_of=NEXT_DAY)
    write_run_table(con, "handoff", frame(3.0), run_id="r3", as_of=NEXT_DAY)
    assert keep_published_runs_only(con, ["r3"], as_of=NEXT_DAY) == 2
    assert _runs(con, "link_effects") == _runs(con, "handoff") == ["r1", "r3"]

    # r4 writes both tables, and its hand-off analysis fails its check. r5 re-executes r4 from that
    # failure: the hand-off again, then report and publish. r4's link rows are this publish's, its
    # hand-off rows are superseded by r5's (the report read r5's).
    write_run_table(con, "link_effects", frame(4.0), run_id="r4", as_of=NEXT_DAY)
    write_run_table(con, "handoff", frame(float("inf")), run_id="r4", as_of=NEXT_DAY)
    write_run_table(con, "handoff", frame(5.0), run_id="r5", as_of=NEXT_DAY)
    steps = {"handoff", "reports__leadership_report", PUBLISH_STEP}
    assert keep_published_runs_only(con, ["r5", "r4"], as_of=NEXT_DAY, executed_steps=steps) == 2
    assert _runs(con, "link_effects") == ["r1", "r3", "r4"]
    assert _runs(con, "handoff") == ["r1", "r3", "r5"]
    # Publishing again records nothing twice.
    keep_published_runs_only(con, ["r5", "r4"], as_of=NEXT_DAY, executed_steps=steps)
    assert _ledger(con) == ["r1", "r3", "r4", "r5"]


def test_first_publish_of_an_older_warehouse_keeps_its_whole_history() -> None:
    con = duckdb.connect()
    for run in ("r1", "r2"):
        write_run_table(con, "key_drivers", frame(1.0), run_id=run, as_of=AS_OF)

    assert keep_published_runs_only(con, ["r3"], as_of=AS_OF) == 0
    assert _runs(con, "key_drivers") == ["r1", "r2"]
    assert _ledger(con) == ["r1", "r2", "r3"]


def test_reexecuting_a_published_run_keeps_its_published_rows() -> None:
    """'Re-execute all' of yesterday's published r3 is a new day's run whose parent is r3."""
    con = duckdb.connect()
    write_run_table(con, "link_effects", frame(3.0), run_id="r3", as_of=AS_OF)
    keep_published_runs_only(con, ["r3"], as_of=AS_OF)
    write_run_table(con, "link_effects", frame(6.0), run_id="r6", as_of=NEXT_DAY)

    assert keep_published_runs_only(con, ["r6", "r3"], as_of=NEXT_DAY, executed_steps=None) == 0
    assert _runs(con, "link_effects") == ["r3", "r6"]


def test_first_publish_with_the_ledger_is_a_reexecution_of_a_run_published_before_it() -> None:
    con = duckdb.connect()
    write_run_table(con, "handoff", frame(1.0), run_id="p", as_of=AS_OF)  # published before the ledger
    write_run_table(con, "handoff", frame(2.0), run_id="c", as_of=AS_OF)

    assert keep_published_runs_only(con, ["c", "p"], as_of=AS_OF, executed_steps={"handoff"}) == 0
    assert _runs(con, "handoff") == ["c", "p"]


def test_an_analysis_rerun_that_wrote_nothing_supersedes_the_failed_runs_rows() -> None:
    con = duckdb.connect()
    write_run_table(con, "link_effects", frame(1.0), run_id="r1", as_of=AS_OF)
    keep_published_runs_only(con, ["r1"], as_of=AS_OF)
    write_run_table(con, "handoff", frame(float("inf")), run_id="r4", as_of=AS_OF)  # failed its check

    # r5 re-ran the hand-off, which found not enough data this time and wrote nothing.
    steps = {"handoff", "reports__leadership_report", PUBLISH_STEP}
    assert lineage_rows(con, "handoff", table_lineage("handoff", ["r5", "r4"], steps), AS_OF) is None
    assert keep_published_runs_only(con, ["r5", "r4"], as_of=AS_OF, executed_steps=steps) == 2
    assert _runs(con, "handoff") == []


def test_a_reexecution_after_the_marts_moved_on_keeps_no_rows_of_another_as_of() -> None:
    """p failed on day 1; the day-2 run rebuilt the marts; c re-executes p's failed step on day 2's marts."""
    con = duckdb.connect()
    write_run_table(con, "link_effects", frame(1.0), run_id="r1", as_of=AS_OF)
    keep_published_runs_only(con, ["r1"], as_of=AS_OF)
    write_run_table(con, "link_effects", frame(2.0), run_id="p", as_of=AS_OF)  # p's link ran; a later step failed

    # The report of c, at NEXT_DAY, showed no link rows: the publish keeps none of p's either.
    steps = {"handoff", "reports__leadership_report", PUBLISH_STEP}
    assert lineage_rows(con, "link_effects", table_lineage("link_effects", ["c", "p"], steps), NEXT_DAY) is None
    assert keep_published_runs_only(con, ["c", "p"], as_of=NEXT_DAY, executed_steps=steps) == 2
    assert _runs(con, "link_effects") == ["r1"]


# ---- what a run of a real Dagster instance did ----

@dg.asset(key=["analysis", "figures"])
def figures() -> None:
    """An analysis."""


@dg.asset(key=["warehouse", "published"], deps=[figures])
def published() -> None:
    """The publish."""


def test_planned_steps_are_what_a_run_of_the_instance_was_to_execute() -> None:
    with dg.instance_for_test() as instance:
        whole = dg.materialize([figures, published], instance=instance).run_id
        publish_only = dg.materialize([figures, published], instance=instance, selection=[published]).run_id

        assert planned_steps(instance, whole) == {"analysis__figures", PUBLISH_STEP}
        assert planned_steps(instance, publish_only) == {PUBLISH_STEP}
        assert planned_steps(instance, "not-a-run-of-this-instance") is None


def test_the_step_keys_named_here_are_the_refresh_jobs() -> None:
    from analysis.report import ANALYSIS_TABLES

    job = defs().resolve_job_def("refresh")
    steps = {node.name for node in job.graph.nodes}
    assert PUBLISH_STEP in steps and "reports__leadership_report" in steps
    assert set(ANALYSIS_TABLES) <= steps  # table_lineage matches a table to its step by name
