"""Landing -> lake: find new landing files, type and check them, write raw / quarantine / rejected.

One call of `ingest_source` handles every landing file of one source that has no manifest record
yet, in delivery order (mtime, then path). Per file, in this order:
  1. safety: an entry that is a symlink to (or resolves) outside the data dir, or is not a regular
     file, is refused without being read;
  2. identity: sha256 of the bytes; bytes already loaded for this source (under any name) make a
     'duplicate' that loads nothing;
  3. read into DuckDB as text (readers.py), compile and run the contract's rules (rules.py);
  4. write lake/raw/<table>/<sha256>.parquet (and survey_driver_scores), the quarantine file, or
     the rejected copy with its reason, each through a temporary name and os.replace;
  5. write the manifest record, last. A process killed before step 5 leaves the file pending; the
     rerun rewrites the same sha256-named outputs, so the file is loaded exactly once.

Choices worth knowing: a header-only CSV (or an empty JSONL of blank lines) loads with 0 rows; a
0-byte file is rejected. A rejected file reports rows_read = rows_loaded = rows_quarantined = 0.
Entries whose name starts with '.' are skipped: that is how uploads in progress are named.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import json
import os
import shutil
import stat
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from orchestration.lib.ingest.manifest import ManifestStore, atomic_write_bytes, sha256_of
from orchestration.lib.ingest.readers import RejectFile, parquet_damage, quote_literal, stage_file
from orchestration.lib.ingest.results import FileLoadResult, SourceLoadResult
from orchestration.lib.ingest.rules import CheckPlan, compile_checks, naive_utc
from orchestration.lib.lake import ensure_lake_tables, lake_schema, quarantine_dir, raw_dir, rejected_dir
from orchestration.lib.settings import Settings
from quality.contract import DRIVER_SCORES_TABLE, SourceSpec, load_contract
from quality.pii import keyed_hash, load_or_create_pii_key

DRIVER_PATTERN = "driver_*"
# Writes one lake file (Parquet through a temporary name) and returns the rows it wrote when asked to
# keep them (else None); runs on the writer thread.
WriteJob = Callable[[], pa.Table | None]
# Called on the writer thread with (lake table, the file's load result, the rows of its lake file) once
# that file is in place, before the file's manifest record is written.
OnWritten = Callable[[str, FileLoadResult, pa.Table], None]
_BATCH_ROWS = 1_000_000
_QUARANTINE_META = {
    "_source_file": pa.string(),
    "_row_number": pa.int64(),
    "_rule": pa.string(),
    "_reason": pa.string(),
}


@dataclass(frozen=True)
class _Entry:
    """One landing entry as scanned: where it is, whether it may be read, and its stat for the hash cache."""

    path: Path
    relpath: str  # relative to the landing dir, '/'-separated
    refusal: str | None  # why the entry must not be read; None when it is a safe regular file
    size: int
    mtime_ns: int


# ---------------------------------------------------------------------------------------------
# Finding work


def _inspect(path: Path, settings: Settings, data_root: Path) -> _Entry:
    relpath = path.relative_to(settings.landing_dir).as_posix()
    link = path.lstat()
    try:
        target = path.resolve(strict=True)
    except (OSError, RuntimeError):
        return _Entry(path, relpath, "is a broken or looping symbolic link", 0, link.st_mtime_ns)
    if not target.is_relative_to(data_root):
        return _Entry(path, relpath, "resolves to outside the data directory; not read", 0, link.st_mtime_ns)
    st = target.stat()
    if not stat.S_ISREG(st.st_mode):
        return _Entry(path, relpath, "is not a regular file; not read", 0, link.st_mtime_ns)
    return _Entry(path, relpath, None, st.st_size, st.st_mtime_ns)


def _scan(settings: Settings, source: str) -> list[_Entry]:
    root = settings.landing_dir / source
    if not root.is_dir():
        return []
    data_root = settings.data_dir.resolve()
    entries: list[_Entry] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        # A symlinked folder is not walked into: it is an entry of its own, refused if it leads out.
        linked = [d for d in dirnames if (here / d).is_symlink()]
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in linked)
        entries += [_inspect(here / n, settings, data_root) for n in filenames + linked if not n.startswith(".")]
    return sorted(entries, key=lambda e: (e.mtime_ns, e.relpath))


def _pending(store: ManifestStore, settings: Settings, source: str) -> list[tuple[_Entry, str | None]]:
    """Entries of a source without a manifest record, with their sha256 (hashed only when not cached)."""
    cache = store.load_hash_cache(source)
    fresh: dict[str, list] = {}
    recorded = store.recorded_names(source)
    pending: list[tuple[_Entry, str | None]] = []
    for entry in _scan(settings, source):
        sha: str | None = None
        if entry.refusal is None:
            hit = cache.get(entry.relpath)
            if isinstance(hit, list) and hit[:2] == [entry.size, entry.mtime_ns]:
                sha = hit[2]
            else:
                try:
                    sha = sha256_of(entry.path)
                except OSError as exc:
                    entry = replace(entry, refusal=f"cannot be read: {exc.strerror or exc}")
            if sha is not None:
                fresh[entry.relpath] = [entry.size, entry.mtime_ns, sha]
        if store.record_path(source, entry.relpath, sha).name not in recorded:
            pending.append((entry, sha))
    if fresh != cache:  # also drops entries of files no longer in the landing zone
        store.save_hash_cache(source, fresh)
    return pending


def pending_files(settings: Settings) -> dict[str, list[Path]]:
    """Landing files per source that have no manifest record yet (what the next ingest will process).

    Cheap enough for a sensor polling every 30 s: a file is hashed only when its (size, mtime)
    differs from the hash cache, and "recorded?" is answered by one directory listing per source.
    Every contract source is a key, with an empty list when nothing is pending.
    """
    store = ManifestStore(settings.lake_dir)
    return {
        source: [entry.path for entry, _ in _pending(store, settings, source)] for source in load_contract().sources
    }


def unknown_landing_entries(settings: Settings) -> dict[str, int]:
    """Folders and files directly under landing/ that are not a source's folder, with the files each holds.

    sources.yaml: files go to landing/<source>/ with <source> one of the contract's keys. A file put
    in `landing/ordres/` (a typo) or straight into landing/ would otherwise be ignored without a
    word. Dot-names are skipped, as everywhere in the landing zone (uploads in progress).
    """
    landing = settings.landing_dir
    if not landing.is_dir():
        return {}
    sources = set(load_contract().sources)
    unknown: dict[str, int] = {}
    for entry in sorted(landing.iterdir()):
        if entry.name.startswith(".") or (entry.is_dir() and entry.name in sources):
            continue
        if entry.is_dir():
            files = sum(1 for p in entry.rglob("*") if p.is_file() and not p.name.startswith("."))
            if files:  # an empty folder (an archive made ready) leaves nothing unread
                unknown[f"{entry.name}/"] = files
        else:
            unknown[entry.name] = 1
    return unknown


# ---------------------------------------------------------------------------------------------
# Writing outputs


def _write_query(
    con: duckdb.DuckDBPyConnection,
    sql: str,
    params: dict,
    schema: pa.Schema,
    target: Path,
    names: list[str] | None = None,
    transform: Callable[[pa.RecordBatch], pa.RecordBatch] | None = None,
    dictionary: bool | list[str] = True,
    keep: bool = False,
) -> WriteJob:
    """Run a query now; return the job that writes its rows to `target` with exactly `schema`.

    The rows are fetched here, so the connection is free for the next file as soon as this
    returns; the Parquet encoding (and `transform`, e.g. the PII hashing) happens in the job,
    which `ingest_source` runs on a writer thread while DuckDB works on the next file. The job
    writes through a temporary file and os.replace. `dictionary` names the columns worth
    dictionary encoding (default: all); it changes the encoding only, never a value. With `keep`
    the job returns the rows exactly as written (after `transform` and the cast to `schema`).
    """
    return _write_batches(
        list(con.sql(sql, params=params).to_arrow_reader(_BATCH_ROWS)),
        schema,
        target,
        names,
        transform,
        dictionary,
        keep,
    )


def _write_batches(
    batches: list[pa.RecordBatch],
    schema: pa.Schema,
    target: Path,
    names: list[str] | None = None,
    transform: Callable[[pa.RecordBatch], pa.RecordBatch] | None = None,
    dictionary: bool | list[str] = True,
    keep: bool = False,
) -> WriteJob:
    """The job that writes `batches` to `target` (see `_write_query`)."""

    def write() -> pa.Table | None:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        written: list[pa.RecordBatch] = []
        with pq.ParquetWriter(tmp, schema, use_dictionary=dictionary) as writer:
            while batches:
                batch = batches.pop(0)  # each batch is released once written, unless kept
                if names is not None:
                    batch = batch.rename_columns(names)
                if transform is not None:
                    batch = transform(batch)
                batch = batch.cast(schema)
                writer.write_batch(batch)
                if keep:
                    written.append(batch)
        os.replace(tmp, target)
        return pa.Table.from_batches(written, schema) if keep else None

    return write


def _pii_keys(spec: SourceSpec, key: bytes) -> Callable[[pa.RecordBatch], pa.RecordBatch] | None:
    """Append the keyed hash of every personal-data column (trimmed, lower-cased: one address, one key)."""
    if not spec.pii_columns:
        return None

    def add_keys(batch: pa.RecordBatch) -> pa.RecordBatch:
        columns = {name: batch.column(name) for name in batch.schema.names}
        for name, key_name in zip(spec.pii_columns, spec.pii_key_columns, strict=True):
            normalised = pc.utf8_lower(pc.utf8_trim_whitespace(batch.column(name)))
            columns[key_name] = keyed_hash(normalised, key)
        return pa.RecordBatch.from_pydict(columns).select(lake_schema(spec.name).names)

    return add_keys


def _dictionary_columns(spec: SourceSpec) -> list[str]:
    """Lake columns worth dictionary encoding: all but those (nearly) unique per row.

    The key, the row number, the PII hashes and the contract's timestamps are distinct on almost
    every row; building a dictionary for them costs a third of the write and is then thrown away.
    """
    unique = {spec.key, "_row_number", *spec.pii_key_columns}
    unique |= {name for name, col in spec.columns.items() if col.type == "timestamp"}
    return [name for name in lake_schema(spec.name).names if name not in unique]


def _metadata_sql() -> str:
    return (
        "$file AS _source_file, $sha AS _file_sha256, _rn AS _row_number, "
        "CAST($seq AS BIGINT) AS _delivery_seq, CAST($loaded_at AS TIMESTAMP) AS _loaded_at"
    )


def _write_raw(
    checked: pa.Table, spec: SourceSpec, plan: CheckPlan, lake: Path, meta: dict, pii_key: bytes, keep: bool
) -> WriteJob:
    """The loaded rows, typed, with their provenance; cut from the checked rows in Arrow (no second query).

    With `keep` the job returns them as written, for validation without reading the file back.
    """
    loaded = checked.filter(pc.is_null(checked.column("_rule")))
    n = loaded.num_rows
    columns = {col: loaded.column(f"t{k}") for k, col in enumerate(plan.contract_columns)}
    columns |= {
        "_source_file": pa.repeat(pa.scalar(meta["file"], pa.string()), n),
        "_file_sha256": pa.repeat(pa.scalar(meta["sha"], pa.string()), n),
        "_row_number": loaded.column("_rn"),
        "_delivery_seq": pa.repeat(pa.scalar(meta["seq"], pa.int64()), n),
        "_loaded_at": pa.repeat(pa.scalar(meta["loaded_at"], pa.timestamp("us")), n),
    }
    rows = pa.table(columns)
    return _write_batches(
        rows.to_batches(_BATCH_ROWS),
        lake_schema(spec.name),
        raw_dir(lake, spec.name) / f"{meta['sha']}.parquet",
        transform=_pii_keys(spec, pii_key),
        dictionary=_dictionary_columns(spec),
        keep=keep,
    )


def _write_drivers(
    con: duckdb.DuckDBPyConnection, spec: SourceSpec, plan: CheckPlan, lake: Path, meta: dict, keep: bool
) -> WriteJob:
    """survey_driver_scores: the driver_* columns of loaded rows, long (one row per rated item).

    `keep` as in `_write_raw`.
    """
    target = raw_dir(lake, DRIVER_SCORES_TABLE) / f"{meta['sha']}.parquet"
    schema = lake_schema(DRIVER_SCORES_TABLE)
    prefix = DRIVER_PATTERN.rstrip("*")
    drivers = [(j, col.removeprefix(prefix)) for j, col in enumerate(plan.pattern_columns) if col.startswith(prefix)]
    if not drivers:

        def write_empty() -> pa.Table | None:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            pq.write_table(schema.empty_table(), tmp)
            os.replace(tmp, target)
            return schema.empty_table() if keep else None

        return write_empty
    key = plan.contract_columns.index(spec.key)
    items = ", ".join(f"{{'driver': {quote_literal(name)}, 'score': p{j}}}" for j, name in drivers)
    sql = f"""
        SELECT response_id, d.driver AS driver, d.score AS score, {_metadata_sql()}
        FROM (SELECT _rn, t{key} AS response_id, unnest([{items}]) AS d FROM checked WHERE _rule IS NULL)
        WHERE d.score IS NOT NULL
    """
    return _write_query(con, sql, meta, schema, target, keep=keep)


def _write_quarantine(
    con: duckdb.DuckDBPyConnection, names: list[str], lake: Path, source: str, meta: dict
) -> WriteJob:
    """Quarantined rows as delivered (every column as text) plus where they came from and why."""
    # DuckDB, reading the file back, tells column names apart only ignoring case.
    metadata = {name.lower() for name in _QUARANTINE_META}
    columns: list[str] = []
    taken: set[str] = set(metadata)
    for name in names:
        shown = name if name.strip() else "(unnamed)"
        # A delivered column may not shadow the quarantine's own metadata columns (_Rule neither).
        shown = f"{shown} (delivered)" if shown.lower() in metadata else shown
        # Nor another delivered column: extra columns may share a name (blank headers, Note and note).
        # Later ones are numbered.
        unique, n = shown, 1
        while unique.lower() in taken:
            n += 1
            unique = f"{shown} ({n})"
        taken.add(unique.lower())
        columns.append(unique)
    schema = pa.schema(
        [pa.field(n, pa.string()) for n in columns] + [pa.field(n, t) for n, t in _QUARANTINE_META.items()]
    )
    raw = "".join(f"s.c{i}, " for i in range(len(names)))
    sql = f"""
        SELECT {raw}$file AS _source_file, s._rn AS _row_number, k._rule, k._reason
        FROM src AS s JOIN checked AS k ON s._rn = k._rn
        WHERE k._rule IS NOT NULL
        ORDER BY s._rn
    """
    params = {"file": meta["file"]}
    return _write_query(con, sql, params, schema, quarantine_dir(lake, source) / f"{meta['sha']}.parquet", schema.names)


def _reject(
    settings: Settings, entry: _Entry, source: str, result: FileLoadResult, rule: str, text: str
) -> FileLoadResult:
    """Refuse a whole file: copy it (unless unsafe to read) to lake/rejected/<source>/ beside <name>.reason.json.

    An earlier refused delivery under the same name (other bytes) is kept, renamed by its sha256.
    """
    reason = f"{rule}: {entry.relpath} {text}"
    inside = Path(entry.relpath).relative_to(source)
    dest = rejected_dir(settings.lake_dir, source) / inside
    dest.parent.mkdir(parents=True, exist_ok=True)
    _set_aside_earlier_rejection(dest, result.sha256)
    if entry.refusal is None:
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
        shutil.copyfile(entry.path, tmp)
        os.replace(tmp, dest)
    doc = {"source": source, "file": entry.relpath, "sha256": result.sha256, "rule": rule, "reason": reason}
    doc["rejected_at"] = datetime.now(UTC).replace(tzinfo=None).isoformat()
    atomic_write_bytes(
        dest.with_name(dest.name + ".reason.json"), json.dumps(doc, ensure_ascii=False, indent=2).encode()
    )
    return replace(result, status="rejected", reason=reason)


def _set_aside_earlier_rejection(dest: Path, sha256: str) -> None:
    """Rename the refused copy at `dest` and its reason to <stem>.<sha12>.<suffixes> if it is another delivery.

    Sources re-use file names (daily.csv every day); the refused copy may be the only one left of
    those bytes, so a later refusal of the same name must not overwrite it. The newest stays at the
    plain name, where a data engineer looks first.
    """
    reason_file = dest.with_name(dest.name + ".reason.json")
    if not reason_file.exists():
        return
    earlier_sha = json.loads(reason_file.read_bytes()).get("sha256") or ""
    if earlier_sha == sha256:
        return  # the same bytes refused again: the copy is the same
    stem, dot, suffixes = dest.name.partition(".")
    kept = dest.with_name(f"{stem}.{earlier_sha[:12] or 'earlier'}{dot}{suffixes}")
    if dest.exists():
        os.replace(dest, kept)
    os.replace(reason_file, kept.with_name(kept.name + ".reason.json"))


def _error_text(exc: BaseException) -> str:
    # DuckDB errors quote the offending line, which may be megabytes long: keep the gist only.
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip() and not ln.startswith("Original Line")]
    text = " ".join(lines[:2]) or type(exc).__name__
    return text if len(text) <= 300 else text[:300] + "…"


# ---------------------------------------------------------------------------------------------
# Loading


# The loads' scratch folders (one per load, named `<source>-*`) under the lake.
SCRATCH_DIR = ".work"


def remove_scratch_of_killed_loads(settings: Settings, source: str) -> int:
    """Delete what a killed load of `source` left behind; returns how many entries were removed.

    A load killed mid-file (out of memory on a large CP932 or gzipped delivery, a `kill -9`) leaves its
    scratch folder under lake/.work (a transcoded or inflated copy and DuckDB's spill files, gigabytes
    at times) and `.<name>.<pid>.tmp` files beside the lake files, and each retry would leave more.
    Called under the source's lock (and a run's lock), so no load of this source is using them.
    """
    spec = load_contract().sources[source]
    tables = [source, *([DRIVER_SCORES_TABLE] if spec.column_patterns else [])]
    lake = settings.lake_dir
    removed = 0
    scratch_root = lake / SCRATCH_DIR
    for stale in scratch_root.glob(f"{source}-*") if scratch_root.is_dir() else []:
        shutil.rmtree(stale, ignore_errors=True)
        removed += 1
    folders = [raw_dir(lake, t) for t in tables] + [quarantine_dir(lake, source), rejected_dir(lake, source)]
    for folder in folders:
        for stale in folder.rglob(".*.tmp") if folder.is_dir() else []:
            stale.unlink(missing_ok=True)
            removed += 1
    return removed


@contextlib.contextmanager
def _workspace(settings: Settings, source: str) -> Iterator[tuple[duckdb.DuckDBPyConnection, Path]]:
    """An in-memory DuckDB and a scratch folder (inside the data dir), both gone when the block ends."""
    scratch_root = settings.lake_dir / SCRATCH_DIR
    scratch_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"{source}-", dir=scratch_root) as scratch:
        con = duckdb.connect(
            ":memory:",
            config={
                "threads": settings.duckdb_threads,
                "memory_limit": settings.duckdb_memory_limit,
                "temp_directory": str(Path(scratch) / "spill"),
                "preserve_insertion_order": True,  # row numbers and output order follow the file
                "autoinstall_known_extensions": False,  # offline: json, parquet and icu are built in
            },
        )
        try:
            con.execute("SET TimeZone = 'UTC'")
            yield con, Path(scratch)
        finally:
            con.close()


def _load_file(
    con: duckdb.DuckDBPyConnection,
    scratch: Path,
    settings: Settings,
    spec: SourceSpec,
    entry: _Entry,
    base: FileLoadResult,
    now: datetime,
    keep: bool,
) -> tuple[FileLoadResult, list[tuple[str | None, WriteJob]]]:
    """Check one file; return its result and the jobs that write its lake files (none if rejected).

    Each job comes with the lake table it writes (None for the quarantine file); with `keep` the lake
    tables' jobs return the rows they wrote.
    """
    con.unregister("checked")
    # The previous file's scratch relations; `staged` is a view for Parquet and a table otherwise.
    scratch_relations = con.execute(
        """
        SELECT view_name, 'VIEW' FROM duckdb_views() WHERE temporary AND view_name IN ('src', 'staged')
        UNION ALL
        SELECT table_name, 'TABLE' FROM duckdb_tables() WHERE temporary AND table_name IN ('staged', 'checked', 'jraw')
        """
    ).fetchall()
    for name, kind in scratch_relations:
        con.execute(f"DROP {kind} {name}")
    work = Path(tempfile.mkdtemp(dir=scratch))
    try:
        try:
            staged = stage_file(con, entry.path, work)
            base = replace(base, file_format=staged.file_format, encoding=staged.encoding)
            plan = compile_checks(spec, staged.names, source_tz=settings.source_tz, instants=staged.instants)
        except RejectFile as exc:
            return _reject(settings, entry, spec.name, base, exc.rule, exc.reason), []
        except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
            reason = f"is not intact gzip data: {_error_text(exc)}"
            return _reject(settings, entry, spec.name, base, "unreadable", reason), []
        except (duckdb.Error, csv.Error) as exc:
            return _reject(settings, entry, spec.name, base, "unreadable", f"cannot be read: {_error_text(exc)}"), []

        loaded_at = datetime.now(UTC).replace(tzinfo=None)
        meta = {"file": entry.relpath, "sha": base.sha256, "seq": base.delivery_seq, "loaded_at": loaded_at}
        # Every value is typed with TRY_CAST-style expressions, so an error from this point on is the
        # engine's or the machine's (e.g. out of memory), not the file's: it must fail the run and
        # leave the file pending, not reject a good delivery. The one exception is a Parquet file
        # whose footer read well in staging but whose data is damaged: unless it is refused, it would
        # fail every run and hold back every later delivery of its source.
        # The checked rows come to Arrow once: the raw file is cut from them there, and DuckDB reads
        # them back in place (a registered view) for the counts, driver scores and quarantine.
        try:
            checked = con.sql(plan.sql, params=plan.parameters(entry.relpath, now)).to_arrow_table()
        except duckdb.Error:
            damage = parquet_damage(con, staged.parquet) if staged.parquet else None
            if damage is None:
                raise
            reason = f"cannot be read: {_error_text(damage)}"
            return _reject(settings, entry, spec.name, base, "unreadable", reason), []
        checked = _quarantine_repeated_keys(con, checked, spec, plan, entry.relpath)
        con.register("checked", checked)
        counts = dict(con.execute("SELECT _rule, count(*) FROM checked GROUP BY _rule").fetchall())
        pii_key = load_or_create_pii_key(settings.data_dir, os.environ) if spec.pii_columns else b""
        jobs: list[tuple[str | None, WriteJob]] = [
            (spec.name, _write_raw(checked, spec, plan, settings.lake_dir, meta, pii_key, keep))
        ]
        if DRIVER_PATTERN in spec.column_patterns:
            jobs.append((DRIVER_SCORES_TABLE, _write_drivers(con, spec, plan, settings.lake_dir, meta, keep)))
        quarantined = sum(n for rule, n in counts.items() if rule is not None)
        if quarantined:
            jobs.append((None, _write_quarantine(con, staged.names, settings.lake_dir, spec.name, meta)))
        result = replace(
            base,
            status="loaded",
            rows_read=sum(counts.values()),
            rows_loaded=counts.get(None, 0),
            rows_quarantined=quarantined,
            rule_counts={rule: n for rule, n in sorted(counts.items(), key=lambda kv: str(kv[0])) if rule},
            extra_columns=plan.extra_columns,
            missing_optional_columns=plan.missing_optional_columns,
            loaded_at=loaded_at,
        )
        return result, jobs
    finally:
        shutil.rmtree(work, ignore_errors=True)


# Rows a repeated key's reason names at most (a key repeated a thousand times is one reason, not a page).
_REPEATED_ROWS_SHOWN = 5


def _quarantine_repeated_keys(
    con: duckdb.DuckDBPyConnection, checked: pa.Table, spec: SourceSpec, plan: CheckPlan, file: str
) -> pa.Table:
    """The checked rows with every row whose key repeats within the file quarantined, with its reason.

    The contract's key is unique within one file (a later file replaces a row; within one file which
    row is the record is unknowable), except where a version column orders versions of a key
    (`SourceSpec.version_column`: crm_accounts' updated_at), whose versions all load for staging to
    rank. Rows that repeat a key with different values and no such order are all quarantined,
    naming the key's rows; an exact copy of an earlier row (an export glitch) is quarantined as a
    copy and the first loads. Either way every row is counted and none is lost in a later
    deduplication. Costs one distinct count of the key per file (about 0.15 s per million rows);
    only a file whose keys repeat is looked at further, and then by grouping, linear in its rows.
    """
    k = plan.contract_columns.index(spec.key)
    con.register("_checked_keys", checked)
    try:
        (repeats,) = con.execute(
            f"SELECT count(t{k}) - count(DISTINCT t{k}) FROM _checked_keys WHERE _rule IS NULL"
        ).fetchall()[0]
        if not repeats:
            return checked
        content = ", ".join([f"t{i}" for i in range(len(plan.contract_columns))]
                            + [f"p{j}" for j in range(len(plan.pattern_columns))])
        version = f"t{plan.contract_columns.index(spec.version_column)}" if spec.version_column else "NULL"
        # Versions are ordered when every distinct content of the key has its own, non-empty version.
        ordered = "count(v) = count(*) AND count(DISTINCT v) = count(*)" if spec.version_column else "false"
        shown = _REPEATED_ROWS_SHOWN
        return con.sql(
            f"""
            WITH loaded AS (
                SELECT _rn, t{k} AS k, hash({content}) AS h, {version} AS v
                FROM _checked_keys
                WHERE _rule IS NULL AND t{k} IS NOT NULL
            ),
            repeated_keys AS (
                SELECT k, count(*) AS n_rows, list(_rn ORDER BY _rn)[1:{shown}] AS first_rows
                FROM loaded GROUP BY k HAVING count(*) > 1
            ),
            key_rows AS (
                SELECT loaded.* FROM loaded JOIN repeated_keys USING (k)
            ),
            contents AS (
                SELECT k, h, min(_rn) AS first_rn, any_value(v) AS v FROM key_rows GROUP BY k, h
            ),
            per_key AS (
                SELECT k, count(*) > 1 AND NOT ({ordered}) AS conflicting FROM contents GROUP BY k
            ),
            repeated AS (
                SELECT r._rn, CASE
                    WHEN p.conflicting THEN concat(
                        $key, '=', r.k, ' breaks rule ', $key, ' is unique within a file: rows ',
                        array_to_string(rk.first_rows, ', '),
                        CASE WHEN rk.n_rows > {shown} THEN concat(' and ', rk.n_rows - {shown}, ' more') ELSE '' END,
                        ' carry it with different values')
                    ELSE concat('a copy of row ', c.first_rn, ' (', $key, '=', r.k, '), which loads')
                END AS reason
                FROM key_rows AS r
                JOIN repeated_keys AS rk USING (k)
                JOIN per_key AS p USING (k)
                JOIN contents AS c ON c.k = r.k AND c.h = r.h
                WHERE p.conflicting OR r._rn <> c.first_rn
            )
            SELECT c.* REPLACE (
                CASE WHEN r._rn IS NULL THEN c._rule ELSE concat($key, ':unique_in_file') END AS _rule,
                CASE WHEN r._rn IS NULL THEN c._reason ELSE concat($file, ' row ', c._rn, ': ', r.reason) END
                    AS _reason
            )
            FROM _checked_keys AS c
            LEFT JOIN repeated AS r ON r._rn = c._rn
            ORDER BY c._rn
            """,
            params={"key": spec.key, "file": file},
        ).to_arrow_table()
    finally:
        con.unregister("_checked_keys")


def _run_jobs(
    jobs: list[tuple[str | None, WriteJob]], result: FileLoadResult, on_written: OnWritten | None
) -> None:
    """Write one file's lake files in order, handing each lake table's rows to `on_written` once written."""
    for table, job in jobs:
        rows = job()
        if table is not None and on_written is not None and rows is not None:
            on_written(table, result, rows)


def _record(store: ManifestStore, result: FileLoadResult, written: Future[None]) -> FileLoadResult:
    """Wait until a file's lake files are written, then write its manifest record (last: until then it is pending)."""
    written.result()  # re-raises a failed write: the run fails and the file stays pending
    store.write_record(result)
    return result


def ingest_source(
    source: str, settings: Settings, *, now: datetime | None = None, on_written: OnWritten | None = None,
    settled_before: float | None = None,
) -> SourceLoadResult:
    """Load every landing file of `source` not yet in the manifest into the lake; return what each became.

    `now` is the instant "not in the future" is judged against (default: the current UTC time;
    a naive value is taken as UTC). Also refreshes lake/load_manifest.parquet and makes sure every
    raw table exists, so downstream readers work even before the first delivery.

    `settled_before` (epoch seconds), when given, leaves pending every file modified after it: a
    scheduled run started while a sender writes a file in place would otherwise load half of it. They
    are listed in the result's `unsettled` and loaded by a later run. A time as far ahead of this
    machine's clock as the settle window reaches back counts as recent too (a file share whose server
    clock runs ahead); one further ahead says nothing about the file and is loaded. A sender whose
    clock runs behind by more than the window is not caught: the landing sensor, which watches the
    files by its own clock, is the surer guard.

    `on_written(table, result, rows)`, when given, receives the rows of every lake file written
    (`rows` equal the file's content, value for value) on the writer thread, in delivery order, as
    soon as the file is in place: the ingestion assets validate them there, beside DuckDB's check of
    the next file, instead of reading the file back afterwards. It runs before the file's manifest
    record is written, so if it raises, the run fails and the file stays pending: the rerun loads
    and hands it over again.
    """
    spec = load_contract().sources.get(source)
    if spec is None:
        raise ValueError(f"unknown source {source!r}; the contract has {', '.join(load_contract().sources)}")
    cutoff = naive_utc(now or datetime.now(UTC))
    ensure_lake_tables(settings.lake_dir)
    store = ManifestStore(settings.lake_dir)
    results: list[FileLoadResult] = []
    with store.source_lock(source):
        remove_scratch_of_killed_loads(settings, source)
        pending = _pending(store, settings, source)
        unsettled = _still_written(pending, settled_before)
        pending = [(entry, sha) for entry, sha in pending if entry.relpath not in unsettled]
        if pending:
            loaded = {r.sha256: r for r in store.records(source) if r.status == "loaded"}
            # One writer thread encodes file N's Parquet while DuckDB checks file N+1. File N's
            # record is still written only after its lake files are in place, and records keep
            # delivery order; a run that dies leaves the unrecorded files pending, as before.
            with (
                _workspace(settings, source) as (con, scratch),
                ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"lake-{source}") as writer,
            ):
                unrecorded: tuple[FileLoadResult, Future[None]] | None = None
                for entry, sha in pending:
                    base = FileLoadResult(
                        source=source,
                        file=entry.relpath,
                        sha256=sha,
                        status="rejected",
                        size_bytes=entry.size,
                        delivery_seq=store.reserve_delivery_seq(),
                    )
                    jobs: list[tuple[str | None, WriteJob]] = []
                    if entry.refusal is not None:
                        result = _reject(settings, entry, source, base, "unsafe_path", entry.refusal)
                    elif sha in loaded:
                        first = loaded[sha]
                        reason = f"same bytes as {first.file} (delivery {first.delivery_seq}); nothing loaded again"
                        result = replace(base, status="duplicate", reason=reason)
                    else:
                        keep = on_written is not None  # the writer keeps the rows only for someone
                        result, jobs = _load_file(con, scratch, settings, spec, entry, base, cutoff, keep)
                    result = replace(result, loaded_at=result.loaded_at or datetime.now(UTC).replace(tzinfo=None))
                    if result.status == "loaded":
                        loaded[sha] = result
                    written = writer.submit(_run_jobs, jobs, result, on_written)
                    if unrecorded is not None:
                        results.append(_record(store, *unrecorded))
                    unrecorded = (result, written)
                if unrecorded is not None:
                    results.append(_record(store, *unrecorded))
    store.write_load_manifest()
    return SourceLoadResult(source=source, files=results, unsettled=sorted(unsettled))


def _still_written(pending: list[tuple[_Entry, str | None]], settled_before: float | None) -> set[str]:
    """Landing paths among `pending` modified after `settled_before` (epoch s), up to as far ahead of the present."""
    if settled_before is None:
        return set()
    since, present = int(settled_before * 1e9), time.time_ns()
    ahead = present + (present - since)
    return {entry.relpath for entry, _ in pending if entry.refusal is None and since < entry.mtime_ns <= ahead}


def ingest_all(settings: Settings, *, now: datetime | None = None) -> dict[str, SourceLoadResult]:
    """Run `ingest_source` for every contract source, in contract order."""
    return {source: ingest_source(source, settings, now=now) for source in load_contract().sources}


def write_load_manifest(settings: Settings) -> Path:
    """Consolidate every per-file record into lake/load_manifest.parquet; return its path.

    The file has exactly the columns of `lake.LOAD_MANIFEST_SCHEMA`, one row per delivered file.
    """
    ensure_lake_tables(settings.lake_dir)
    return ManifestStore(settings.lake_dir).write_load_manifest()
