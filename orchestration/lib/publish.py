"""Write-audit-publish: replace the published warehouse with the audited build, atomically.

The pipeline writes only `warehouse/build.duckdb`. When every blocking check has passed, this step
checkpoints the build (so the file holds everything, with no write-ahead log beside it), copies it
to a temporary name in the same folder, flushes it to disk, and renames it over
`warehouse/nps_link.duckdb`. A rename within one file system is atomic: an analyst's open read-only
connection keeps reading the old file (its inode lives on until the connection closes) and never
waits for us, a new connection sees the new file whole, and a run killed at any point leaves either
the old file or the new one, never a mix. Leftover temporary files of killed runs are removed here.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import duckdb

TMP_PREFIX = ".publish-"


@dataclass(frozen=True)
class PublishResult:
    """What the publish step did."""

    published_path: Path
    size_bytes: int
    seconds: float
    tables: int
    prepared: object = None  # what `prepare` returned


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _copy_file(src: Path, dst: Path) -> None:
    """Copy with the kernel's copy_file_range where it can (no user-space buffers), then fsync."""
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        size = os.fstat(fin.fileno()).st_size
        copied = 0
        try:
            while copied < size:
                n = os.copy_file_range(fin.fileno(), fout.fileno(), size - copied)
                if n == 0:
                    break
                copied += n
        except OSError:
            fin.seek(0)
            fout.seek(0)
            fout.truncate()
            shutil.copyfileobj(fin, fout, length=16 * 1024 * 1024)
        fout.flush()
        os.fsync(fout.fileno())


def remove_stale_temporaries(folder: Path) -> int:
    """Delete temporary copies left by publish steps that were killed; returns how many."""
    removed = 0
    for stale in folder.glob(f"{TMP_PREFIX}*"):
        stale.unlink(missing_ok=True)
        removed += 1
    return removed


class UnauditedBuildError(RuntimeError):
    """The build warehouse is not in a state its checks passed: publishing it would show analysts untested data."""


FAILED_CHECK_INFIX = ".check-failed-"


def failed_check_marker(build_db: Path, check: str) -> Path:
    """The file beside `build_db` that says a blocking mart check failed on it, holding the check's message."""
    return build_db.with_name(f"{build_db.name}{FAILED_CHECK_INFIX}{check}")


def record_blocking_check(build_db: Path, check: str, *, blocks: bool, message: str) -> None:
    """Leave or clear the check's marker: the publish refuses while a blocking check's last outcome failed.

    Dagster's blocking checks stop the steps after them in their own run only. A publish materialised
    alone afterwards (from the UI's asset graph) would copy marts that a Python check had just refused,
    e.g. a contact explosion: the marker stops it, until the check passes on a later build.
    """
    marker = failed_check_marker(build_db, check)
    if blocks:
        marker.write_text(message + "\n", encoding="utf-8")
    else:
        marker.unlink(missing_ok=True)


def failed_blocking_checks(build_db: Path) -> dict[str, str]:
    """The blocking checks whose last outcome on `build_db` failed, with their messages."""
    prefix = build_db.name + FAILED_CHECK_INFIX
    return {
        marker.name.removeprefix(prefix): marker.read_text(encoding="utf-8").strip()
        for marker in sorted(build_db.parent.glob(prefix + "*"))
    }


def publish_warehouse(
    build_db: Path,
    published_db: Path,
    *,
    unfinished_build: Path,
    prepare: Callable[[duckdb.DuckDBPyConnection], object] | None = None,
) -> PublishResult:
    """Atomically replace `published_db` with a checkpointed copy of `build_db`.

    `unfinished_build` is the marker a dbt build of `build_db` leaves when it did not finish with every
    test passing (orchestration.lib.dbt.unfinished_build_marker). In a refresh run the blocking checks
    keep this step from running after such a build; the marker also stops a publish started on its
    own (from the UI's asset graph) after a failed run, which would otherwise copy the untested marts.
    The markers of blocking mart checks that failed on `build_db` (`record_blocking_check`) stop it
    the same way.
    `prepare`, if given, runs on the build warehouse's connection before the checkpoint, once the
    build is known to be publishable: the last writes that belong to publishing (the run ledger).
    The caller must hold no open connection to `build_db` (DuckDB allows one writer process).
    """
    started = time.perf_counter()
    if not build_db.exists():
        raise FileNotFoundError(f"no build warehouse to publish at {build_db}")
    if unfinished_build.exists():
        raise UnauditedBuildError(
            f"not publishing {build_db}: its last dbt build did not finish with every test passing "
            f"({unfinished_build.name} is beside it); a refresh rebuilds it, and publishes once its checks pass"
        )
    failed = failed_blocking_checks(build_db)
    if failed:
        raise UnauditedBuildError(
            f"not publishing {build_db}: blocking checks failed on it: "
            + "; ".join(f"{check}: {message}" for check, message in failed.items())
            + "; a refresh publishes once they pass"
        )
    published_db.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(published_db.parent)

    con = duckdb.connect(str(build_db))
    try:
        prepared = prepare(con) if prepare is not None else None
        con.execute("checkpoint")
        tables = con.execute(
            "select count(*) from information_schema.tables where table_catalog = current_database()"
        ).fetchone()[0]
    finally:
        con.close()

    tmp = published_db.parent / f"{TMP_PREFIX}{uuid.uuid4().hex}.duckdb"
    try:
        _copy_file(build_db, tmp)
        # Open the copy once read-only: proves it is a valid database before anyone can see it.
        check = duckdb.connect(str(tmp), read_only=True)
        check.close()
        os.replace(tmp, published_db)
        _fsync_dir(published_db.parent)
    finally:
        tmp.unlink(missing_ok=True)
    return PublishResult(
        published_path=published_db,
        size_bytes=published_db.stat().st_size,
        seconds=time.perf_counter() - started,
        tables=int(tables),
        prepared=prepared,
    )
