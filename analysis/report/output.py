"""Write the rendered report and its analysis tables to the reports folder, atomically."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import pandas as pd

REPORT_FILE = "leadership_report.html"
# Columns that may hold personal data or free text; a table handed in with one by mistake is written without it.
PRIVATE_COLUMNS = frozenset({"comment", "comments", "email", "e_mail", "customer_name", "rep_email", "name"})
_TABLE_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class ReportPaths:
    """Where write_report put the report: the latest copy, the dated copy, and each table's CSV in both."""

    latest_html: Path
    dated_html: Path
    latest_csv: dict[str, Path] = field(default_factory=dict)
    dated_csv: dict[str, Path] = field(default_factory=dict)


def _write_atomic(path: Path, data: bytes) -> None:
    """Write a file by way of a temporary file in the same folder and a rename, so readers never see half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def _csv_bytes(frame: pd.DataFrame) -> bytes:
    public = frame.drop(columns=[c for c in frame.columns if str(c).lower() in PRIVATE_COLUMNS])
    return public.to_csv(index=False).encode("utf-8")


def write_report(
    html: str, reports_dir: Path, *, as_of: date, tables: Mapping[str, pd.DataFrame], latest: bool = True
) -> ReportPaths:
    """Write the report as `reports_dir/leadership_report.html` and `reports_dir/<as_of>/`, with table CSVs.

    With `latest=False` (a run that looks back at a past date) only the dated folder is written, and
    the latest report stays the newest date's.

    Each table goes to `<name>.csv` beside both copies. Every file is replaced atomically; the dated
    copy is written first and the latest HTML last, so the latest report never points at a run whose
    files are not all there. Earlier dated folders are kept (history). Table names must be plain
    identifiers (they become file names); columns that may hold personal data are left out of the CSVs.
    A table CSV of an earlier report that this one has no table for (an analysis without enough data
    this time) is removed from the folder written, so no CSV stands beside a report it does not belong to.
    """
    for name in tables:
        if not _TABLE_NAME.match(name):
            raise ValueError(f"table name {name!r} is not a plain lowercase identifier")
    reports_dir = Path(reports_dir)
    dated_dir = reports_dir / as_of.isoformat()
    encoded = {name: _csv_bytes(frame) for name, frame in tables.items()}
    page = html.encode("utf-8")
    paths = ReportPaths(latest_html=reports_dir / REPORT_FILE, dated_html=dated_dir / REPORT_FILE)
    for name, data in encoded.items():
        paths.dated_csv[name] = dated_dir / f"{name}.csv"
        _write_atomic(paths.dated_csv[name], data)
    _remove_other_tables(dated_dir, keep=encoded)
    _write_atomic(paths.dated_html, page)
    if not latest:
        return paths
    for name, data in encoded.items():
        paths.latest_csv[name] = reports_dir / f"{name}.csv"
        _write_atomic(paths.latest_csv[name], data)
    _remove_other_tables(reports_dir, keep=encoded)
    _write_atomic(paths.latest_html, page)
    return paths


def _remove_other_tables(folder: Path, *, keep: Mapping[str, object]) -> None:
    """Delete the table CSVs in `folder` (names as write_report writes them) that are not in `keep`."""
    for csv in folder.glob("*.csv"):
        if _TABLE_NAME.match(csv.stem) and csv.stem not in keep:
            csv.unlink(missing_ok=True)
