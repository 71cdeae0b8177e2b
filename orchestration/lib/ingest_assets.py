"""What every ingestion asset does: load one source's new files, validate them, and describe the load.

An ingestion asset carries two blocking checks, so a bad delivery stops the run before dbt and the
published warehouse stays as it was:
- `contract_expectations`: the Great Expectations suite of the lake table (derived from the
  contract) on the typed rows of every file loaded in this run, one outcome per file; the files are
  validated together, about a million rows at a time (`quality.validate.validate_batches`: one GX
  run per suite and schema, on a sample of the first such group, for the schema checks; every other
  expectation exact over every row, per file);
- `quarantine_share`: no loaded file quarantined more than NPS_LINK_QUARANTINE_BLOCK_SHARE of its rows,
  and every file reconciles (rows read = loaded + quarantined).
The block lasts for the run in which the file arrives: a rerun after the engineer has looked publishes
the rows that did load (the file is in the manifest and not loaded again).
Validation outcomes are pickled under <data_dir>/quality/<run_id>/outcomes/, and every ingestion
asset re-renders the run's data docs from all outcomes so far: the docs exist even when a blocking
check stops the run, which is when they are needed most.
Great Expectations (and the pyspark it imports) is loaded only when a file is to be validated, so a
run with no new files does not pay its start-up.
"""

from __future__ import annotations

import pickle
import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
import pandas as pd

from orchestration.lib.ingest import FileLoadResult, SourceLoadResult, ingest_source
from orchestration.lib.lake import LAKE_TABLES, raw_dir
from orchestration.lib.settings import Settings
from quality.thresholds import quarantine_share_outcome

if TYPE_CHECKING:
    from quality.validate import ValidationOutcome

CONTRACT_CHECK = "contract_expectations"
_DOCS_LOCK = threading.Lock()
SHARE_CHECK = "quarantine_share"


def source_key(table: str) -> dg.AssetKey:
    """Asset key of a lake table: the dbt source it feeds, e.g. crm_accounts -> ["crm", "accounts"]."""
    return dg.AssetKey(list(LAKE_TABLES[table]))


def ingest_check_specs(table: str) -> list[dg.AssetCheckSpec]:
    """The two blocking checks every ingestion asset carries (see the module docstring)."""
    key = source_key(table)
    return [
        dg.AssetCheckSpec(CONTRACT_CHECK, asset=key, blocking=True,
                          description="Great Expectations suite of the contract on every file loaded in this run."),
        dg.AssetCheckSpec(SHARE_CHECK, asset=key, blocking=True,
                          description="No file quarantined more than the allowed share of its rows; counts reconcile."),
    ]


def _metadata(result: SourceLoadResult) -> dict[str, dg.MetadataValue]:
    files = result.files
    table_rows = [
        f"| {f.file} | {f.status} | {f.rows_read} | {f.rows_loaded} | {f.rows_quarantined} | "
        f"{(f.reason or '').replace('|', '/')[:160]} |"
        for f in files
    ]
    return {
        "new_files": dg.MetadataValue.int(len(files)),
        "rows_read": dg.MetadataValue.int(result.rows_read),
        "rows_loaded": dg.MetadataValue.int(result.rows_loaded),
        "rows_quarantined": dg.MetadataValue.int(result.rows_quarantined),
        "files_rejected": dg.MetadataValue.int(len(result.rejected)),
        "files_duplicate": dg.MetadataValue.int(len(result.duplicates)),
        "files": dg.MetadataValue.md(
            "| file | status | read | loaded | quarantined | reason |\n|---|---|---|---|---|---|\n"
            + ("\n".join(table_rows) if table_rows else "| (no new files) | | | | | |")
        ),
    }


def outcomes_dir(settings: Settings, run_id: str) -> Path:
    """Where this run's validation outcomes are kept until the data docs are written."""
    return settings.quality_dir / run_id / "outcomes"


# Files validated together hold their frames in memory at once; past this many rows the next file
# starts a new group (one more GX run, about 0.25 s). Measured on the M benchmark's 25 crm_activities
# files (2.3 M rows): peak RSS 0.50 GB validating file by file, 0.76 GB in groups of 1 M rows, 1.09 GB
# in groups of 2 M. The process keeps its peak into the later steps, so the smaller groups.
VALIDATION_GROUP_ROWS = 1_000_000


def validate_loaded_files(
    table: str, files: Sequence[FileLoadResult], settings: Settings, run_id: str
) -> dict[str, ValidationOutcome]:
    """Run the table's suite on the typed rows of every file loaded in this run, one outcome per file; keep them.

    Files are validated in groups of about VALIDATION_GROUP_ROWS rows (`validate_batches`); each
    file keeps its own suite (its missing optional columns) and its own outcome, named after it.
    """
    loaded_files = [f for f in files if f.status == "loaded" and f.sha256 is not None]
    if not loaded_files:
        return {}
    # Imported here: GX (via the suites) costs seconds of start-up and is needed only for new files.
    from quality.suites import suite_for
    from quality.validate import SharedSampleRun, lake_frame, validate_batches

    now = datetime.now(UTC).replace(tzinfo=None)
    outcomes: dict[str, ValidationOutcome] = {}
    group: dict[str, tuple[pd.DataFrame, object]] = {}
    suites: dict[tuple[str, ...], object] = {}
    # The groups share their GX sample run (one per suite and schema): 15 of the 16 runs of the L
    # benchmark's crm_activities, 0.5 s each, were the same schema checks again.
    shared_runs: dict[tuple, SharedSampleRun] = {}
    rows = 0
    for loaded in loaded_files:
        frame = lake_frame(raw_dir(settings.lake_dir, table) / f"{loaded.sha256}.parquet")
        # One suite object per set of missing columns: files sharing it share a GX run.
        absent = tuple(sorted(loaded.missing_optional_columns or ()))
        if absent not in suites:
            suites[absent] = suite_for(table, now=now, absent_columns=absent)
        suite = suites[absent]
        group[f"{table}: {loaded.file}"] = (frame, suite)
        rows += len(frame)
        if rows >= VALIDATION_GROUP_ROWS:
            outcomes.update(validate_batches(group, shared_runs=shared_runs))
            group, rows = {}, 0
    if group:
        outcomes.update(validate_batches(group, shared_runs=shared_runs))
    folder = outcomes_dir(settings, run_id)
    folder.mkdir(parents=True, exist_ok=True)
    with _DOCS_LOCK:  # another ingestion step (thread) may be reading the folder for its data docs
        (folder / f"{table}.pkl").write_bytes(pickle.dumps(outcomes))
    return outcomes


def contract_check(table: str, outcomes: dict[str, ValidationOutcome]) -> dg.AssetCheckResult:
    """The `contract_expectations` check result for one lake table."""
    failing = {name: o for name, o in outcomes.items() if not o.success}
    return dg.AssetCheckResult(
        asset_key=source_key(table),
        check_name=CONTRACT_CHECK,
        passed=not failing,
        metadata={
            "files_validated": len(outcomes),
            "rows_validated": sum(o.rows for o in outcomes.values()),
            "sampled_files": sum(o.sampled for o in outcomes.values()),
            "failures": dg.MetadataValue.md(
                "\n".join(f"- **{name}**: {o.summary()}" for name, o in failing.items()) or "none"
            ),
        },
    )


def share_check(table: str, files: Sequence[FileLoadResult], settings: Settings) -> dg.AssetCheckResult:
    """The `quarantine_share` check result over the files of this run."""
    manifest = pd.DataFrame([asdict(f) for f in files], columns=list(FileLoadResult.__dataclass_fields__))
    outcome = quarantine_share_outcome(manifest, max_share=settings.quarantine_block_share)
    return dg.AssetCheckResult(
        asset_key=source_key(table),
        check_name=SHARE_CHECK,
        passed=outcome.success,
        metadata={
            "max_share": outcome.max_share,
            "files_checked": outcome.files_checked,
            "message": outcome.message,
            "rejected_files": dg.MetadataValue.md(
                "\n".join(f"- {r.file}: {r.reason}" for r in outcome.rejected) or "none"
            ),
        },
    )


def ingest_and_check(
    source: str, tables: Sequence[str], settings: Settings, context: dg.AssetExecutionContext
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """Load `source`'s new files, then yield a materialization and the two checks for each lake table it feeds."""
    result = ingest_source(source, settings)
    log = context.log
    log.info(
        f"[ingest] {source}: {len(result.files)} new file(s), {result.rows_loaded} rows loaded, "
        f"{result.rows_quarantined} quarantined, {len(result.rejected)} file(s) rejected, "
        f"{len(result.duplicates)} duplicate(s)"
    )
    for rejected in result.rejected:
        log.warning(f"[ingest] {source}: rejected {rejected.file}: {rejected.reason}")
    for table in tables:
        outcomes = validate_loaded_files(table, result.files, settings, context.run_id)
        for name, outcome in outcomes.items():
            if not outcome.success:
                log.warning(f"[quality] {name}: {outcome.summary()}")
        yield dg.MaterializeResult(
            asset_key=source_key(table), metadata=_metadata(result) if table == source else {}
        )
        yield contract_check(table, outcomes)
        yield share_check(table, result.files, settings)
    docs = write_run_data_docs(settings, context.run_id)
    if docs is not None:
        log.info(f"[quality] data docs: {docs}")


def write_run_data_docs(settings: Settings, run_id: str) -> Path | None:
    """Render this run's data docs from the outcomes the ingestion assets kept; None when nothing was validated."""
    from quality.data_docs import write_data_docs

    folder = outcomes_dir(settings, run_id)
    # Ingestion steps may run side by side on threads (orchestration/lib/threaded_executor.py): one
    # renders the docs at a time, from outcomes no other step is half-way through writing.
    with _DOCS_LOCK:
        outcomes: dict[str, ValidationOutcome] = {}
        for pickled in sorted(folder.glob("*.pkl")) if folder.exists() else []:
            outcomes.update(pickle.loads(pickled.read_bytes()))
        if not outcomes:
            return None
        return write_data_docs(outcomes, settings.quality_dir, run_id=re.sub(r"[^A-Za-z0-9_-]", "-", run_id))
