"""Which analysis rows the leadership report reads: its run's, or those of the run it re-executes, at its as_of."""

from __future__ import annotations

from datetime import datetime

import duckdb
import pandas as pd

from orchestration.defs.report.assets import PARENT_RUN_TAG, lineage_rows, run_lineage
from orchestration.lib.warehouse import write_run_table

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
