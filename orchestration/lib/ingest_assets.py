"""What every ingestion asset does: load one source's new landing files and describe the load."""

from __future__ import annotations

import dagster as dg

from orchestration.lib.ingest import SourceLoadResult, ingest_source
from orchestration.lib.lake import LAKE_TABLES
from orchestration.lib.settings import Settings


def source_key(table: str) -> dg.AssetKey:
    """Asset key of a lake table: the dbt source it feeds, e.g. crm_accounts -> ["crm", "accounts"]."""
    return dg.AssetKey(list(LAKE_TABLES[table]))


def load_source(source: str, settings: Settings, log: dg.DagsterLogManager) -> tuple[SourceLoadResult, dict]:
    """Ingest one source's pending files; return the load result and the asset metadata summarising it."""
    result = ingest_source(source, settings)
    files = result.files
    by_status = {s: [f for f in files if f.status == s] for s in ("loaded", "rejected", "duplicate")}
    rows_read = sum(f.rows_read for f in files)
    rows_loaded = sum(f.rows_loaded for f in files)
    rows_quarantined = sum(f.rows_quarantined for f in files)
    log.info(
        f"[ingest] {source}: {len(files)} new file(s), {rows_loaded} rows loaded, "
        f"{rows_quarantined} quarantined, {len(by_status['rejected'])} file(s) rejected, "
        f"{len(by_status['duplicate'])} duplicate(s)"
    )
    for rejected in by_status["rejected"]:
        log.warning(f"[ingest] {source}: rejected {rejected.file}: {rejected.reason}")
    table_rows = [
        f"| {f.file} | {f.status} | {f.rows_read} | {f.rows_loaded} | {f.rows_quarantined} | "
        f"{(f.reason or '').replace('|', '/')[:160]} |"
        for f in files
    ]
    return result, {
        "new_files": dg.MetadataValue.int(len(files)),
        "rows_read": dg.MetadataValue.int(rows_read),
        "rows_loaded": dg.MetadataValue.int(rows_loaded),
        "rows_quarantined": dg.MetadataValue.int(rows_quarantined),
        "files_rejected": dg.MetadataValue.int(len(by_status["rejected"])),
        "files_duplicate": dg.MetadataValue.int(len(by_status["duplicate"])),
        "files": dg.MetadataValue.md(
            "| file | status | read | loaded | quarantined | reason |\n|---|---|---|---|---|---|\n"
            + ("\n".join(table_rows) if table_rows else "| (no new files) | | | | | |")
        ),
    }

