"""The engine's own bookkeeping under lake/manifest: per-file records, the hash cache, delivery order.

Layout (engine-internal; others read the consolidated lake/load_manifest.parquet):
    lake/manifest/.lock                         guards the delivery counter and the consolidation
    lake/manifest/delivery_seq                  last delivery number handed out
    lake/manifest/<source>/.lock                one ingesting process per source at a time
    lake/manifest/<source>/hash_cache.json      relpath -> [size, mtime_ns, sha256]
    lake/manifest/<source>/records/<sha>-<path digest>.json   one FileLoadResult per delivered file
    lake/manifest/<source>/holds/, accepted/    files a blocking check held, and their acceptance (holds.py)

A record's file name carries its identity (content hash + landing path), so "is this file done?"
is a directory listing, cheap enough for a sensor that polls every 30 seconds. Every write goes to
a temporary name first and is moved into place with os.replace, so a killed process never leaves
a half-written record behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from orchestration.lib.ingest.results import FileLoadResult
from orchestration.lib.lake import LOAD_MANIFEST_SCHEMA, load_manifest_path

# Identity of an entry that was refused without reading it (a symlink out of the data dir, a fifo):
# there is no content hash, only the landing path.
UNREAD = "unread"
_HASH_CHUNK = 8 * 1024 * 1024


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary sibling and os.replace, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on `path` (created if missing) for the duration of the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in chunks so a multi-GB delivery never sits in memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def path_digest(relpath: str) -> str:
    """Short stable digest of a landing path, used in record file names (paths may hold any character)."""
    return hashlib.sha256(relpath.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def record_name(relpath: str, sha256: str | None) -> str:
    """File name of a delivery's record: its identity, content hash + landing path (holds use it too)."""
    return f"{sha256 or UNREAD}-{path_digest(relpath)}.json"


class ManifestStore:
    """Reads and writes the per-file records, the hash cache and the delivery counter of one lake."""

    def __init__(self, lake_dir: Path) -> None:
        self.lake_dir = lake_dir
        self.root = lake_dir / "manifest"

    # ---- locks ----
    def source_lock(self, source: str) -> contextlib.AbstractContextManager[None]:
        """Serialise ingestion of one source: two runs (sensor + schedule) must not load a file twice."""
        return file_lock(self.root / source / ".lock")

    def global_lock(self) -> contextlib.AbstractContextManager[None]:
        """Serialise the delivery counter and the consolidated manifest across sources and processes."""
        return file_lock(self.root / ".lock")

    # ---- records ----
    def records_dir(self, source: str) -> Path:
        """Folder of one source's per-file records."""
        return self.root / source / "records"

    def record_path(self, source: str, relpath: str, sha256: str | None) -> Path:
        """Where the record of (landing path, content) lives."""
        return self.records_dir(source) / record_name(relpath, sha256)

    def is_recorded(self, source: str, relpath: str, sha256: str | None) -> bool:
        """True when this landing path with this content already has a record (loaded, rejected or duplicate)."""
        return self.record_path(source, relpath, sha256).exists()

    def recorded_names(self, source: str) -> set[str]:
        """File names of every record of a source: one listing instead of one stat per landing file."""
        folder = self.records_dir(source)
        return {p.name for p in folder.glob("*.json")} if folder.is_dir() else set()

    def write_record(self, record: FileLoadResult) -> None:
        """Persist a file's record: the last step of loading it, so a crash before here leaves it pending."""
        path = self.record_path(record.source, record.file, record.sha256)
        atomic_write_bytes(path, record.to_json().encode("utf-8"))

    def records(self, source: str | None = None) -> list[FileLoadResult]:
        """Every record of one source (or of all sources), ordered by delivery number."""
        folders = [self.records_dir(source)] if source else sorted(self.root.glob("*/records"))
        found = [
            FileLoadResult.from_json(p.read_text(encoding="utf-8"))
            for folder in folders
            if folder.is_dir()
            for p in sorted(folder.glob("*.json"))
        ]
        return sorted(found, key=lambda r: (r.delivery_seq or 0, r.file))

    # ---- hash cache ----
    def _hash_cache_path(self, source: str) -> Path:
        return self.root / source / "hash_cache.json"

    def load_hash_cache(self, source: str) -> dict[str, list]:
        """relpath -> [size, mtime_ns, sha256]; an unreadable cache is just empty (it only saves work)."""
        path = self._hash_cache_path(source)
        try:
            cache = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return cache if isinstance(cache, dict) else {}

    def save_hash_cache(self, source: str, cache: dict[str, list]) -> None:
        """Store the hash cache (last writer wins; a lost entry only costs one re-hash)."""
        data = json.dumps(cache, ensure_ascii=False, sort_keys=True).encode("utf-8")
        atomic_write_bytes(self._hash_cache_path(source), data)

    # ---- delivery order ----
    def reserve_delivery_seq(self) -> int:
        """Hand out the next delivery number, unique and increasing across sources, runs and processes.

        A number reserved by a run that then crashes is simply skipped: the rerun takes a new one,
        so `_delivery_seq` keeps increasing with every load.
        """
        counter = self.root / "delivery_seq"
        with self.global_lock():
            try:
                last = int(counter.read_text(encoding="utf-8").strip())
            except (OSError, ValueError):
                # Counter lost (or first run): never hand out a number that a record already holds.
                last = max((r.delivery_seq or 0 for r in self.records()), default=0)
            atomic_write_bytes(counter, str(last + 1).encode("ascii"))
        return last + 1

    # ---- consolidation ----
    def write_load_manifest(self) -> Path:
        """Write every record as one row of lake/load_manifest.parquet (schema lake.LOAD_MANIFEST_SCHEMA)."""
        target = load_manifest_path(self.lake_dir)
        # Under the global lock, so the last writer has seen every record written before it started.
        with self.global_lock():
            records = self.records()
            columns = {name: [] for name in LOAD_MANIFEST_SCHEMA.names}
            for r in records:
                columns["source"].append(r.source)
                columns["file"].append(r.file)
                columns["sha256"].append(r.sha256)
                columns["size_bytes"].append(r.size_bytes)
                columns["delivery_seq"].append(r.delivery_seq)
                columns["file_format"].append(r.file_format)
                columns["encoding"].append(r.encoding)
                columns["rows_read"].append(r.rows_read)
                columns["rows_loaded"].append(r.rows_loaded)
                columns["rows_quarantined"].append(r.rows_quarantined)
                columns["status"].append(r.status)
                columns["reason"].append(r.reason)
                columns["rule_counts"].append(json.dumps(r.rule_counts, ensure_ascii=False, sort_keys=True))
                columns["extra_columns"].append(json.dumps(r.extra_columns, ensure_ascii=False))
                columns["missing_optional_columns"].append(json.dumps(r.missing_optional_columns))
                columns["loaded_at"].append(r.loaded_at)
            table = pa.table(columns, schema=LOAD_MANIFEST_SCHEMA)
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            pq.write_table(table, tmp)
            os.replace(tmp, target)
        return target
