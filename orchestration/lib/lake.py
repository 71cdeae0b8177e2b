"""Layout of the lake under <data_dir>/lake and how its tables are named for dbt and Dagster.

The lake is the hand-off between ingestion (Python) and dbt (SQL): typed Parquet, one folder per
table, every file named by the sha256 of the landing file it came from, so re-running a load
rewrites the same file instead of adding a copy.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from quality.contract import DRIVER_SCORES_SCHEMA, DRIVER_SCORES_TABLE, load_contract

# lake table -> (dbt source name, dbt table name). The Dagster asset key of each ingestion output is
# [dbt source, dbt table], which is also dagster-dbt's key for that dbt source: one lineage graph.
LAKE_TABLES: dict[str, tuple[str, str]] = {
    "crm_accounts": ("crm", "accounts"),
    "crm_reps": ("crm", "reps"),
    "crm_activities": ("crm", "activities"),
    "survey_responses": ("survey", "responses"),
    DRIVER_SCORES_TABLE: ("survey", "driver_scores"),
    "orders": ("billing", "orders"),
}
LOAD_MANIFEST_KEY = ("lake", "load_manifest")
EMPTY_FILE_NAME = "_schema.parquet"

# Columns of lake/load_manifest.parquet: one row per delivered landing file (marts.load_audit).
LOAD_MANIFEST_SCHEMA = pa.schema(
    [
        pa.field("source", pa.string()),
        pa.field("file", pa.string()),  # path relative to <data_dir>/landing
        pa.field("sha256", pa.string()),
        pa.field("size_bytes", pa.int64()),
        pa.field("delivery_seq", pa.int64()),
        pa.field("file_format", pa.string()),
        pa.field("encoding", pa.string()),
        pa.field("rows_read", pa.int64()),
        pa.field("rows_loaded", pa.int64()),
        pa.field("rows_quarantined", pa.int64()),
        pa.field("status", pa.string()),  # loaded | rejected | duplicate
        pa.field("reason", pa.string()),
        pa.field("rule_counts", pa.string()),  # JSON object rule -> quarantined rows
        pa.field("extra_columns", pa.string()),  # JSON list: schema drift, kept out of typed tables
        pa.field("missing_optional_columns", pa.string()),  # JSON list
        pa.field("loaded_at", pa.timestamp("us")),  # UTC, naive
    ]
)


def lake_schema(table: str) -> pa.Schema:
    """Arrow schema of one lake/raw table."""
    if table == DRIVER_SCORES_TABLE:
        return DRIVER_SCORES_SCHEMA
    return load_contract().sources[table].lake_schema()


def raw_dir(lake_dir: Path, table: str) -> Path:
    return lake_dir / "raw" / table


def quarantine_dir(lake_dir: Path, source: str) -> Path:
    return lake_dir / "quarantine" / source


def rejected_dir(lake_dir: Path, source: str) -> Path:
    return lake_dir / "rejected" / source


def load_manifest_path(lake_dir: Path) -> Path:
    return lake_dir / "load_manifest.parquet"


def ensure_lake_tables(lake_dir: Path) -> None:
    """Give every raw table a zero-row file with its schema, so dbt can read a table before its first delivery.

    Safe when several ingestion steps (threads or processes) call it at once: each writes its own
    temporary file, and the identical results replace one another atomically.
    """
    writer = f"{os.getpid()}.{threading.get_ident()}"
    for table in LAKE_TABLES:
        folder = raw_dir(lake_dir, table)
        folder.mkdir(parents=True, exist_ok=True)
        empty = folder / EMPTY_FILE_NAME
        if not empty.exists():
            schema = lake_schema(table)
            tmp = empty.with_name(f".{empty.name}.{writer}.tmp")
            pq.write_table(schema.empty_table(), tmp)
            tmp.replace(empty)
    manifest = load_manifest_path(lake_dir)
    if not manifest.exists():
        manifest.parent.mkdir(parents=True, exist_ok=True)
        tmp = manifest.with_name(f".{manifest.name}.{writer}.tmp")
        pq.write_table(LOAD_MANIFEST_SCHEMA.empty_table(), tmp)
        tmp.replace(manifest)
