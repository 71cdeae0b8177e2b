"""The grain tests' shortcut on DuckDB (macros/generic_tests.sql) fails on exactly the rows a plain
`group by` of every key fails on.

GIVEN a table of 20,000 unique keys with planted repeats: a key twice, a key three times, NULL keys
repeated, and composite keys repeated, one of them with a NULL part,
WHEN the project's `unique` (duckdb__test_unique, which replaces dbt's own on DuckDB) and
`unique_combination_of_columns` are compiled against it, on the whole table and on a `where`-scoped
subquery as dbt passes a scoped model,
THEN each returns the same rows as the plain grouping: every duplicated key once, with its count,
and NULL single keys skipped as dbt's own unique test skips them.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from dbt.cli.main import dbtRunner

from orchestration.lib.dbt import DBT_PROJECT_DIR

TABLE = "keys_with_repeats"


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DuckDB file holding the planted table (`seq` 1 for the first half of the rows, 2 after)."""
    path = tmp_path_factory.mktemp("grain") / "grain.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute(f"""
            create table {TABLE} as
            select 'K' || i as single_key, 'A' || (i % 97) as part_a, i as part_b, if(i < 10000, 1, 2) as seq
            from range(20000) as numbers(i)
        """)
        con.execute(f"""
            insert into {TABLE} values
                ('K5', 'X', -1, 1),          -- K5 twice: both in seq 1
                ('K15000', 'X', -2, 2),      -- K15000 three times: all in seq 2
                ('K15000', 'X', -3, 2),
                ('K7', 'X', -4, 2),          -- K7 once in each seq: a repeat of the whole table only
                (NULL, 'X', -5, 2),          -- NULL keys: not a failure of `unique`
                (NULL, 'X', -6, 2),
                ('P1', 'A8', 8, 2),          -- (A8, 8) twice, across seqs
                ('P2', NULL, -7, 2),         -- (NULL, -7) twice: a composite key with a NULL part
                ('P3', NULL, -7, 2)
        """)
    return path


def _compile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sql: str) -> str:
    """The project's Jinja `sql` compiled for DuckDB (dbt compile --inline)."""
    monkeypatch.setenv("NPS_LINK_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DUCKDB_PATH", str(tmp_path / "scratch.duckdb"))
    monkeypatch.setenv("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    result = dbtRunner().invoke([
        "compile", "--inline", sql, "--project-dir", str(DBT_PROJECT_DIR),
        "--profiles-dir", str(DBT_PROJECT_DIR), "--target-path", str(tmp_path / "target"),
        "--log-path", str(tmp_path / "logs"), "--quiet",
    ])
    assert result.success, result.exception
    return result.result.results[0].node.compiled_code


def _rows(warehouse: Path, sql: str) -> list[tuple]:
    """Every row of `sql` on the planted warehouse, in a fixed order (NULLs included)."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return sorted(con.execute(sql).fetchall(), key=repr)


@pytest.mark.parametrize("model", [TABLE, f"(select * from {TABLE} where seq > 1) dbt_subquery"])
def test_unique_fails_on_the_same_keys_as_a_plain_group_by(
    warehouse: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model: str,
) -> None:
    compiled = _compile(tmp_path, monkeypatch, f"{{{{ test_unique('{model}', 'single_key') }}}}")
    assert "lag(key_hash)" in compiled  # the shortcut, not dbt's own test
    plain = f"""select single_key, count(*) from {model} where single_key is not null
                group by single_key having count(*) > 1"""
    expected = _rows(warehouse, plain)
    assert _rows(warehouse, compiled) == expected
    assert expected == ([("K15000", 3), ("K5", 2), ("K7", 2)] if model == TABLE else [("K15000", 3)])


@pytest.mark.parametrize("model", [TABLE, f"(select * from {TABLE} where seq > 1) dbt_subquery"])
def test_unique_combination_fails_on_the_same_keys_as_a_plain_group_by(
    warehouse: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model: str,
) -> None:
    compiled = _compile(
        tmp_path, monkeypatch, f"{{{{ test_unique_combination_of_columns('{model}', ['part_a', 'part_b']) }}}}",
    )
    assert "lag(key_hash)" in compiled
    plain = f"select part_a, part_b, count(*) from {model} group by part_a, part_b having count(*) > 1"
    expected = _rows(warehouse, plain)
    assert _rows(warehouse, compiled) == expected
    assert expected == ([("A8", 8, 2), (None, -7, 2)] if model == TABLE else [(None, -7, 2)])
