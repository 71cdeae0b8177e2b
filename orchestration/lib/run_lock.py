"""One pipeline run per data directory at a time, whichever way it was started.

The build warehouse has one writer at a time: DuckDB's file lock stops two connections, but not two
runs taking turns, and the publish step copies the file with no connection open. Runs that Dagster
launches queue behind each other (dagster.yaml's tag limit); `nps-link run` starts outside that
queue. Both take `<data_dir>/warehouse/.run.lock` (an flock, released by the kernel when the holder
dies): the CLI before it starts the job, the job's steps through the `warehouse_writer`
resource, which Dagster sets up once for the whole run. Within one process the lock is re-entrant,
so the job that `nps-link run` starts finds its own CLI's lock already held.
"""

from __future__ import annotations

import fcntl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

LOCK_NAME = ".run.lock"
# The Dagster resource that holds the lock for a run (orchestration/lib/resources.py `warehouse_writer`),
# required by every step that reads or writes the data dir: ingestion and the load manifest (a delivery
# landing in the lake during another run's dbt build could fall below that build's watermark), dbt,
# the mart checks (they open the build warehouse), the analyses, the follow-ups ledger, the report and
# the publish (tests/orchestration/test_run_lock.py holds the rule).
WAREHOUSE_WRITER = "warehouse_writer"
POLL_SECONDS = 1.0


class WarehouseBusyError(RuntimeError):
    """Another process runs the pipeline on this data directory."""


_guard = threading.Lock()
_held: dict[Path, tuple[IO[str], int]] = {}  # lock file -> (its open file, how many holders in this process)


def _try_flock(handle: IO[str]) -> bool:
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@contextmanager
def pipeline_run_lock(
    warehouse_dir: Path, *, wait_seconds: float = 0.0, on_wait: Callable[[Path], None] | None = None
) -> Iterator[Path]:
    """Hold the data directory's run lock for the block; yields the lock file's path.

    Waits up to `wait_seconds` for another process to let go (calling `on_wait` once, when it first
    has to), then raises WarehouseBusyError naming the lock file.
    """
    warehouse_dir.mkdir(parents=True, exist_ok=True)
    path = (warehouse_dir / LOCK_NAME).resolve()
    with _guard:
        entry = _held.get(path)
        if entry is not None:
            _held[path] = (entry[0], entry[1] + 1)
    if entry is None:
        handle = open(path, "w")  # noqa: SIM115 - kept open while held: closing it releases the lock
        deadline = time.monotonic() + wait_seconds
        waited = False
        while not _try_flock(handle):
            if time.monotonic() >= deadline:
                handle.close()
                raise WarehouseBusyError(f"another nps-link run holds {path}; not starting a second writer")
            if not waited and on_wait is not None:
                on_wait(path)
            waited = True
            time.sleep(POLL_SECONDS)
        with _guard:
            _held[path] = (handle, 1)
    try:
        yield path
    finally:
        with _guard:
            handle, holders = _held[path]
            if holders > 1:
                _held[path] = (handle, holders - 1)
            else:
                del _held[path]
                handle.close()
