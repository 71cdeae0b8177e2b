"""`nps-link sql`: the analysts' shell on the published warehouse, read-only."""

from __future__ import annotations

import csv
import hashlib
import io
from pathlib import Path

import duckdb

from tests.conftest import run_cli


def _published(data_dir: Path) -> Path:
    return data_dir / "warehouse" / "nps_link.duckdb"


def test_sql_prints_a_table_or_every_row_as_csv_and_never_writes(published_demo: Path) -> None:
    query = "select period_month, responses from marts.nps_by_period where dimension = 'overall' " \
            "and survey_type = 'all' order by period_month"
    con = duckdb.connect(str(_published(published_demo)), read_only=True)
    expected = con.execute(query).fetchall()
    con.close()
    before = hashlib.sha256(_published(published_demo).read_bytes()).hexdigest()

    table = run_cli(published_demo, "sql", "--data-dir", str(published_demo), query)
    assert table.returncode == 0, table.stderr
    assert "period_month" in table.stdout and f"{expected[0][1]}" in table.stdout

    as_csv = run_cli(published_demo, "sql", "--data-dir", str(published_demo), "--csv", query)
    assert as_csv.returncode == 0, as_csv.stderr
    rows = list(csv.reader(io.StringIO(as_csv.stdout)))
    assert rows[0] == ["period_month", "responses"]
    assert rows[1:] == [[str(month), str(n)] for month, n in expected]  # every row, not the table's 40

    refused = run_cli(published_demo, "sql", "--data-dir", str(published_demo), "drop table marts.load_audit")
    assert refused.returncode == 1 and "read-only" in refused.stderr and "Traceback" not in refused.stderr
    assert hashlib.sha256(_published(published_demo).read_bytes()).hexdigest() == before


def test_sql_without_a_published_warehouse_says_where_it_looked(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "sql", "--data-dir", str(tmp_path), "select 1")
    assert result.returncode == 2
    assert f"there is no published warehouse at {_published(tmp_path)}" in result.stderr
