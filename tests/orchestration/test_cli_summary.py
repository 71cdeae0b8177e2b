"""`nps-link run`'s summary: the files of this run only, whatever the machine's time zone; why each check failed."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from orchestration.cli import CHECK_NOTE_CHARS, check_failure_note
from orchestration.lib.lake import LOAD_MANIFEST_SCHEMA

# The summary as the CLI prints it, in a fresh interpreter: DuckDB takes its session zone from the
# process's zone (TZ) when it starts, so the zone must be set before DuckDB is loaded.
SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from orchestration.cli import _print_quality_summary
    from orchestration.lib.settings import Settings

    _print_quality_summary(Settings(data_dir=Path(sys.argv[1])), float(sys.argv[2]))
    """
)


def _manifest_row(source: str, status: str, rows: int, loaded_at: datetime) -> dict[str, object]:
    row: dict[str, object] = {name: None for name in LOAD_MANIFEST_SCHEMA.names}
    row.update(source=source, file=f"{source}/{status}.csv", status=status, rows_read=rows, rows_loaded=rows,
               rows_quarantined=0, loaded_at=loaded_at)
    return row


@pytest.mark.parametrize("zone", ["UTC", "Asia/Tokyo", "America/New_York"])
def test_quality_summary_lists_the_files_loaded_since_the_run_started_in_any_zone(tmp_path: Path, zone: str) -> None:
    started = time.time()
    started_utc = datetime.fromtimestamp(started, UTC).replace(tzinfo=None)  # the manifest's naive UTC
    rows = [
        _manifest_row("crm_reps", "loaded", 7, started_utc - timedelta(hours=3)),  # an earlier run's file
        _manifest_row("orders", "loaded", 11, started_utc + timedelta(seconds=5)),  # this run's
    ]
    (tmp_path / "lake").mkdir()
    pq.write_table(pa.Table.from_pylist(rows, schema=LOAD_MANIFEST_SCHEMA), tmp_path / "lake" / "load_manifest.parquet")

    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path), repr(started)],
        env={**os.environ, "TZ": zone}, capture_output=True, text=True, timeout=120, check=True,
    )

    summary = result.stdout.split("Data quality (files delivered in this run):", 1)[1]
    assert "orders" in summary and "11" in summary
    assert "crm_reps" not in summary


def _evaluation(description: str | None = None, **metadata: object) -> dg.AssetCheckEvaluation:
    return dg.AssetCheckEvaluation(asset_key=dg.AssetKey(["survey", "responses"]), check_name="a_check", passed=False,
                                   metadata=metadata, description=description)


def test_a_failed_checks_note_is_its_description_else_the_metadata_that_says_why() -> None:
    assert check_failure_note(_evaluation("the reason\nin two lines", message="not this")) == "the reason in two lines"
    assert check_failure_note(_evaluation(message="a.csv: 25.0% of rows quarantined")) == (
        "a.csv: 25.0% of rows quarantined")
    assert check_failure_note(_evaluation(failures="none", reason="not enough data")) == "not enough data"
    assert check_failure_note(_evaluation(**{"dagster_dbt/failed_row_count": 1234})) == "1,234 row(s) fail the test"
    assert check_failure_note(_evaluation(rows=3)) == ""
    long = check_failure_note(_evaluation(message="x" * 1000))
    assert len(long) == CHECK_NOTE_CHARS and long.endswith("...")
