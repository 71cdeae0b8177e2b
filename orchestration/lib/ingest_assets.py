"""What every ingestion asset does: load one source's new files, validate them, and describe the load.

An ingestion asset carries two blocking checks, so a bad delivery stops the run before dbt and the
published warehouse stays as it was:
- `contract_expectations`: the Great Expectations suite of the lake table (derived from the
  contract) on the typed rows of every file loaded in this run, one outcome per file. The rows are
  validated as ingestion writes them (handed over by the writer, not read back from the lake), about
  a million rows at a time (`quality.validate.validate_batches`: one GX run per suite and schema, on
  a sample of the first such group, for the schema checks; every other expectation exact over every
  row, per file);
- `quarantine_share`: no loaded file quarantined more than NPS_LINK_QUARANTINE_BLOCK_SHARE of its rows,
  every file reconciles (rows read = loaded + quarantined), and no file was refused whole.
A file that fails either check is *held* (orchestration/lib/ingest/holds.py): its rows are in the lake
by then (none of them, for a refused file), so every later run's check of the table fails on it too,
naming it, until a person accepts it (`nps-link accept FILE`, or the `accept_held` field of the
`nps_link` resource in the launchpad). Only then does a run publish its loaded rows (or publish
without the refused file). Without the hold, the next run (the landing sensor's, the
06:00 schedule's) would see no new file and publish them with no one having looked.
Validation outcomes are pickled under <data_dir>/quality/<run_id>/outcomes/, and every ingestion
asset re-renders the run's data docs from all outcomes so far: the docs exist even when a blocking
check stops the run, which is when they are needed most.
Great Expectations (and the pyspark it imports) is loaded only when a file is to be validated, so a
run with no new files does not pay its start-up; under `nps-link run` it is loaded and run in the
run's validation worker process instead (orchestration/lib/validation_worker.py).
"""

from __future__ import annotations

import pickle
import re
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from orchestration.lib.ingest import FileLoadResult, SourceLoadResult, ingest_source
from orchestration.lib.ingest.holds import (
    Hold,
    NoSuchHoldError,
    accept_held,
    open_holds,
    record_hold,
    release_hold,
)
from orchestration.lib.ingest.manifest import ManifestStore
from orchestration.lib.lake import LAKE_TABLES, raw_dir
from orchestration.lib.settings import Settings
from orchestration.lib.validation_worker import current_worker, validate_group
from quality.thresholds import ThresholdOutcome, quarantine_share_outcome

if TYPE_CHECKING:
    from quality.validate import SharedSampleRun, ValidationOutcome

CONTRACT_CHECK = "contract_expectations"
# A run tag: a run that carries it (the 06:00 schedule's) leaves a landing file modified within this many
# seconds for a later run, as the landing sensor waits for files to stay unchanged before it asks for one.
SETTLE_TAG = "nps_link/settle_seconds"
_DOCS_LOCK = threading.Lock()
SHARE_CHECK = "quarantine_share"
# Why a file is held that ingestion loaded but whose suite has not judged it yet (see ingest_and_check).
UNJUDGED = "loaded, but the run stopped before its Great Expectations suite judged it; the next run validates it"


def source_key(table: str) -> dg.AssetKey:
    """Asset key of a lake table: the dbt source it feeds, e.g. crm_accounts -> ["crm", "accounts"]."""
    return dg.AssetKey(list(LAKE_TABLES[table]))


def ingest_check_specs(table: str) -> list[dg.AssetCheckSpec]:
    """The two blocking checks every ingestion asset carries (see the module docstring)."""
    key = source_key(table)
    return [
        dg.AssetCheckSpec(
            CONTRACT_CHECK, asset=key, blocking=True,
            description="Great Expectations suite of the contract on every file loaded in this run; no file "
                        "that failed it held from an earlier run."),
        dg.AssetCheckSpec(
            SHARE_CHECK, asset=key, blocking=True,
            description="No file quarantined more than the allowed share of its rows or was refused whole; "
                        "counts reconcile; no such file held from an earlier run."),
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
        "files_left_for_a_later_run": dg.MetadataValue.json(result.unsettled),
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
# A table whose first group has up to this many rows is validated by the run's validation worker;
# one with a larger first group here (all of a table's groups in one place, sharing their GX runs). The
# worker pays off when a core is idle: a new day's few files (at a million customers 69k contacts)
# are validated beside the run's start and ingestion. A full refresh keeps both cores busy with
# ingestion, and there handing 27M rows to one worker (copying them through a pipe, converting them
# there, one group after another) cost more than it saved: at L its ingestion took 42.3 s against 34.2 s
# validated here, 19 CPU-s more (tests/bench/results/NOTES.md, round 14).
WORKER_MAX_GROUP_ROWS = 200_000


class LoadedFileValidator:
    """Validates one lake table's files of this run as ingestion writes them, one outcome per file.

    `add` receives each file's rows exactly as written to the lake (`ingest_source`'s `on_written`,
    on its writer thread), so nothing is read back from the lake. Files are validated together in
    groups of about VALIDATION_GROUP_ROWS rows (`validate_batches`); each file keeps its own suite
    (its missing optional columns) and its own outcome, named after it. A group is judged at the
    moment it is complete, which is after every file in it was loaded, as "not after the load"
    requires; the groups still share one GX run per suite and schema. `finish` validates the last
    group and keeps the outcomes for the run's data docs. Calls must not overlap (one writer thread
    per source does not).

    Under `nps-link run` a table whose first group has up to WORKER_MAX_GROUP_ROWS rows goes to the
    run's validation worker, a process that imported GX while the run started and validates a group
    while ingestion writes the next file (orchestration/lib/validation_worker.py); a larger load, and
    every load without a worker, is validated here by the same function, and Great Expectations is
    imported when its first group is complete.
    """

    def __init__(self, table: str, settings: Settings, run_id: str) -> None:
        self.table = table
        self.settings = settings
        self.run_id = run_id
        self._outcomes: dict[str, ValidationOutcome] = {}
        self._group: dict[str, tuple[pa.Table | pd.DataFrame, tuple[str, ...]]] = {}
        self._rows = 0
        # The groups share their GX sample run (one per suite and schema): 15 of the 16 runs of the L
        # benchmark's crm_activities, 0.5 s each, were the same schema checks again. With a worker the
        # worker keeps them, under this validator's own id.
        self._shared_runs: dict[tuple, SharedSampleRun] = {}
        self._worker = current_worker()
        self._group_id = f"{run_id}:{table}:{uuid.uuid4().hex}"
        self._pending: list[Future[dict[str, ValidationOutcome]]] = []
        self._by_worker: bool | None = None

    def add(self, loaded: FileLoadResult, rows: pa.Table) -> None:
        """Queue one loaded file's lake rows; validate the queued group once it reaches VALIDATION_GROUP_ROWS."""
        from quality.validate import lake_frame  # pandas and Arrow only; GX is imported when validating

        absent = tuple(sorted(loaded.missing_optional_columns or ()))
        if self._by_worker is None and (self._worker is None or self._rows + rows.num_rows > WORKER_MAX_GROUP_ROWS):
            # Validated here (decided once, so a table's groups share their GX runs). Each file is held as
            # its frame from now on, not as its Arrow rows: one copy of a million-row group, not two.
            self._by_worker = False
            self._group = {name: (lake_frame(kept), a) for name, (kept, a) in self._group.items()}
        held = rows if self._by_worker is not False else lake_frame(rows)
        self._group[f"{self.table}: {loaded.file}"] = (held, absent)
        self._rows += rows.num_rows
        if self._rows >= VALIDATION_GROUP_ROWS:
            self._validate_group()

    def _validate_group(self) -> None:
        now = datetime.now(UTC).replace(tzinfo=None)
        if self._by_worker is None:  # a first group small enough for the worker (add decides otherwise)
            self._by_worker = self._worker is not None
        if self._by_worker and self._worker is not None:
            self._pending.append(self._worker.submit(self._group_id, self.table, now, self._group))
        else:
            self._outcomes.update(validate_group(self.table, now, self._group, self._shared_runs))
        self._group, self._rows = {}, 0

    def finish(self) -> dict[str, ValidationOutcome]:
        """Validate what is queued; keep every outcome under `outcomes_dir` (for the data docs) and return them."""
        if self._group:
            self._validate_group()
        if self._by_worker and self._worker is not None:
            try:
                for pending in self._pending:
                    self._outcomes.update(pending.result())
            finally:
                self._pending = []
                self._worker.forget(self._group_id)
        if self._outcomes:
            folder = outcomes_dir(self.settings, self.run_id)
            folder.mkdir(parents=True, exist_ok=True)
            with _DOCS_LOCK:  # another ingestion step (thread) may be reading the folder for its data docs
                (folder / f"{self.table}.pkl").write_bytes(pickle.dumps(self._outcomes))
        return dict(self._outcomes)


def _held_text(held: Sequence[Hold]) -> str:
    """The part of a check's message about files held since earlier runs, with what to do."""
    return (f"{len(held)} file(s) held since an earlier run until a person accepts them: "
            + "; ".join(h.describe() for h in held)
            + ". Accept with `nps-link accept FILE` (or accept_held in the run's nps_link config) to publish "
            "what of them loaded, or deliver a corrected file and accept the held one")


def contract_check(table: str, outcomes: dict[str, ValidationOutcome],
                   held: Sequence[Hold] = ()) -> dg.AssetCheckResult:
    """The `contract_expectations` check result for one lake table: this run's files, and files held before."""
    failing = {name: o for name, o in outcomes.items() if not o.success}
    failures = [f"- **{name}**: {o.summary()}" for name, o in failing.items()]
    metadata: dict[str, object] = {
        "files_validated": len(outcomes),
        "rows_validated": sum(o.rows for o in outcomes.values()),
        "sampled_files": sum(o.sampled for o in outcomes.values()),
        "failures": dg.MetadataValue.md("\n".join(failures) or "none"),
    }
    if held:
        metadata["message"] = _held_text(held)
        metadata["held_files"] = dg.MetadataValue.md("\n".join(f"- {h.describe()}" for h in held))
    return dg.AssetCheckResult(
        asset_key=source_key(table),
        check_name=CONTRACT_CHECK,
        passed=not failing and not held,
        metadata=metadata,
    )


def share_check(table: str, outcome: ThresholdOutcome, held: Sequence[Hold] = ()) -> dg.AssetCheckResult:
    """The `quarantine_share` check result: this run's files' `outcome` (`share_outcome`), and files held before."""
    message = outcome.message if not held else f"{_held_text(held)}. This run: {outcome.message}"
    return dg.AssetCheckResult(
        asset_key=source_key(table),
        check_name=SHARE_CHECK,
        passed=outcome.success and not held,
        metadata={
            "max_share": outcome.max_share,
            "files_checked": outcome.files_checked,
            "message": message,
            "rejected_files": dg.MetadataValue.md(
                "\n".join(f"- {r.file}: {r.reason}" for r in outcome.rejected) or "none"
            ),
            "held_files": dg.MetadataValue.md("\n".join(f"- {h.describe()}" for h in held) or "none"),
        },
    )


def share_outcome(files: Sequence[FileLoadResult], settings: Settings) -> ThresholdOutcome:
    """The load thresholds' verdict on this run's files (quality.thresholds)."""
    manifest = pd.DataFrame([asdict(f) for f in files], columns=list(FileLoadResult.__dataclass_fields__))
    return quarantine_share_outcome(manifest, max_share=settings.quarantine_block_share)


def _accept_configured(source: str, accept: Sequence[str], settings: Settings, context: dg.AssetExecutionContext
                       ) -> None:
    """Accept the held files of `source` that the run's config names; a name no hold fits fails the step.

    Names are matched across every source, as `nps-link accept` does, so a file name two held files share
    fails here too; each ingestion step accepts its own source's files.
    """
    for name in accept:
        try:
            accepted = accept_held(settings.lake_dir, name, source=source,
                                   note=f"accept_held in the config of Dagster run {context.run_id}",
                                   accepted_by=f"Dagster run {context.run_id}")
        except NoSuchHoldError as exc:
            raise dg.Failure(f"accept_held: {exc}") from None
        for hold in accepted:
            context.log.warning(f"[ingest] accepted held {hold.file} ({hold.table}: {hold.check}) as configured")


def _validate_unjudged(held: Sequence[Hold], validators: dict[str, LoadedFileValidator], settings: Settings,
                       loaded_now: set[str]) -> dict[tuple[str, str, str | None], FileLoadResult]:
    """Hand the validators the lake rows of every held file a stopped run loaded but did not judge.

    Returns the (table, file, sha256) handed over, with each file's manifest record. A file whose lake
    rows are gone stays held, for a person to look at; so does one whose landing path this run loaded
    again with other bytes (`loaded_now`), as a validator names a file's outcome by its path.
    """
    unjudged = [h for h in held if h.check == CONTRACT_CHECK and h.reason == UNJUDGED and h.table in validators]
    if not unjudged:
        return {}
    records = {(r.file, r.sha256): r for r in ManifestStore(settings.lake_dir).records(unjudged[0].source)
               if r.status == "loaded"}
    handed: dict[tuple[str, str, str | None], FileLoadResult] = {}
    for hold in unjudged:
        record = records.get((hold.file, hold.sha256))
        lake_file = raw_dir(settings.lake_dir, hold.table) / f"{hold.sha256}.parquet"
        if record is None or hold.file in loaded_now or not lake_file.is_file():
            continue
        validators[hold.table].add(record, pq.read_table(lake_file))
        handed[(hold.table, hold.file, hold.sha256)] = record
    return handed


def ingest_and_check(
    source: str, tables: Sequence[str], settings: Settings, context: dg.AssetExecutionContext,
    accept: Sequence[str] = (),
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """Load `source`'s new files, then yield a materialization and the two checks for each lake table it feeds.

    `accept` names held files to accept first (the run's `accept_held` config). A file of this run that
    fails a check is held from then on (see the module docstring).
    """
    _accept_configured(source, accept, settings, context)
    held_before = open_holds(settings.lake_dir, source)
    validators = {table: LoadedFileValidator(table, settings, context.run_id) for table in tables}

    def validate_written(table: str, loaded: FileLoadResult, rows: pa.Table) -> None:
        # Held before its manifest record exists, until its suite has judged it: a run stopped in between
        # (the validation worker died, a kill) must not leave a loaded file that no check has seen and
        # that the next run, finding nothing new, would publish.
        record_hold(settings.lake_dir, loaded, table=table, check=CONTRACT_CHECK, reason=UNJUDGED,
                    run_id=context.run_id)
        validators[table].add(loaded, rows)

    settle = context.run.tags.get(SETTLE_TAG)
    settled_before = time.time() - float(settle) if settle else None
    result = ingest_source(source, settings, on_written=validate_written, settled_before=settled_before)
    log = context.log
    if result.unsettled:
        log.warning(f"[ingest] {source}: left for a later run, modified in the last {settle} s (still being "
                    f"written?): {', '.join(result.unsettled)}")
    log.info(
        f"[ingest] {source}: {len(result.files)} new file(s), {result.rows_loaded} rows loaded, "
        f"{result.rows_quarantined} quarantined, {len(result.rejected)} file(s) rejected, "
        f"{len(result.duplicates)} duplicate(s)"
    )
    for rejected in result.rejected:
        log.warning(f"[ingest] {source}: rejected {rejected.file}: {rejected.reason}")
    # A file an earlier, stopped run held unjudged is judged here: loaded again if it had no manifest record
    # yet, else from its rows in the lake.
    reloaded = {(f.file, f.sha256) for f in result.files}
    held_before = [h for h in held_before if (h.file, h.sha256) not in reloaded]
    rejudged = _validate_unjudged(held_before, validators, settings, {f.file for f in result.files})
    held_before = [h for h in held_before if (h.table, h.file, h.sha256) not in rejudged]
    by_file = {f.file: f for f in result.files if f.status != "duplicate"}
    by_file |= {record.file: record for record in rejudged.values()}
    shares = share_outcome(result.files, settings)
    # Before validation finishes (the last group is judged in `finish`), so a run stopped there keeps them.
    for table in tables:
        for file, reasons in shares.reasons_by_file.items():
            record_hold(settings.lake_dir, by_file[file], table=table, check=SHARE_CHECK,
                        reason="; ".join(reasons), run_id=context.run_id)
    for table in tables:
        outcomes = validators[table].finish()
        for name, outcome in outcomes.items():
            loaded = by_file[name.removeprefix(f"{table}: ")]
            if outcome.success:
                release_hold(settings.lake_dir, loaded, table=table, check=CONTRACT_CHECK)
                continue
            log.warning(f"[quality] {name}: {outcome.summary()}")
            record_hold(settings.lake_dir, loaded, table=table, check=CONTRACT_CHECK,
                        reason=outcome.summary(), run_id=context.run_id)
        for hold in (h for h in held_before if h.table == table):
            log.warning(f"[ingest] {table}: still held, not published until accepted: {hold.describe()}")
        yield dg.MaterializeResult(
            asset_key=source_key(table), metadata=_metadata(result) if table == source else {}
        )
        held = [h for h in held_before if h.table == table]
        yield contract_check(table, outcomes, [h for h in held if h.check == CONTRACT_CHECK])
        yield share_check(table, shares, [h for h in held if h.check == SHARE_CHECK])
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
