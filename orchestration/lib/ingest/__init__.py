"""The ingestion engine: landing files -> typed lake Parquet, quarantine, rejected files and a manifest.

Plain Python over DuckDB and Arrow (no Dagster); the Dagster assets and the sensor call these.
"""

from orchestration.lib.ingest.engine import (
    ingest_all,
    ingest_source,
    pending_files,
    unknown_landing_entries,
    write_load_manifest,
)
from orchestration.lib.ingest.results import FileLoadResult, SourceLoadResult

__all__ = [
    "FileLoadResult",
    "SourceLoadResult",
    "ingest_all",
    "ingest_source",
    "pending_files",
    "unknown_landing_entries",
    "write_load_manifest",
]
