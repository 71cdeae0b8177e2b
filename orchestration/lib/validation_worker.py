"""Great Expectations in a process of its own, started with `nps-link run` so its import overlaps the run's start.

Why a process: importing GX takes about 2.3 s of pure Python, and validating a day's files another
second or so. In the run's own process both held the GIL on the critical path of every new day:
the first ingestion step to finish a file imported GX while the other ingestion step waited for it
(BENCHMARKS.md: ingestion was 2.5-2.8 s of a new day at every scale, most of it GX). The run's
start (Dagster's imports, its definitions, the run record; about 4.5 s) uses one core, so a second
process imports GX on the other core in that time, and later validates a file's rows while the
run's ingestion goes on writing the next one. A thread cannot do either: it shares the GIL
(importing GX on a thread was measured slower, tests/bench/results/NOTES.md round 7).

`nps-link run` starts the worker (`start_worker`) before it imports Dagster, and `LoadedFileValidator`
(orchestration/lib/ingest_assets.py) hands it each group of loaded files with `current_worker()`;
without a worker (a run launched by Dagster's own tools, a test) it validates in its own process,
with the same functions and the same outcomes (`tests/orchestration/test_validation_worker.py`).

Protocol (the worker's stdin to its stdout), requests answered in order: a request is a pickled
header, `("validate", group_id, table, now, [(file, absent columns, byte count), ...])` followed by
each file's rows as an Arrow IPC stream of that many bytes, which validates the files as
`validate_group` does; or `("forget", group_id)`, which drops that group's shared GX runs
(`quality.validate.validate_batches`' `shared_runs`, kept per lake table of a run) and is not
answered. A reply is a pickled `(True, {file: ValidationOutcome})` or `(False, error text)`. The rows
go as Arrow IPC, not pickled: Arrow writes them outside the GIL, while pickling the ingestion
writer's tables held it for seconds a group (the L full refresh's ingestion took 83-108 s, when
every load still went to the worker). The worker exits at the end of its input, so it ends with
the run even when the run is killed.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import pickle
import queue
import subprocess
import sys
import threading
import traceback
from collections import deque
from collections.abc import Mapping
from concurrent.futures import Future
from datetime import datetime
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from quality.validate import SharedSampleRun, ValidationOutcome

# One group of files to validate: file name -> (its lake rows, the optional columns it lacks). The worker
# is sent Arrow rows; the run's own process may hold a file as its frame already.
Files = Mapping[str, tuple["pa.Table | pd.DataFrame", tuple[str, ...]]]

# The worker's command: this module, run with the interpreter of the run (the repository is installed
# into it). A module constant so that a test can start a worker that fails.
WORKER_COMMAND: tuple[str, ...] = (sys.executable, "-m", "orchestration.lib.validation_worker")

_current: ValidationWorker | None = None


class ValidationWorkerError(RuntimeError):
    """The validation worker failed a request, or exited before it answered one."""


def validate_group(
    table: str, now: datetime, files: Files, shared_runs: dict[tuple, SharedSampleRun]
) -> dict[str, ValidationOutcome]:
    """Validate one lake table's group of loaded files against its contract suite, one outcome per file.

    A file's rows are its lake rows as Arrow, or already as their frame (`quality.validate.lake_frame`).
    Each file is validated with the suite built at `now` for the optional columns it lacks (files
    sharing those share one suite object, so they share a GX run); `shared_runs` keeps the GX runs
    for the table's next group (`quality.validate.validate_batches`). The same function serves the
    worker and a run without one.
    """
    import pandas as pd

    from quality.suites import suite_for
    from quality.validate import lake_frame, validate_batches

    suites = {absent: suite_for(table, now=now, absent_columns=absent) for _, absent in files.values()}
    batches = {
        name: (rows if isinstance(rows, pd.DataFrame) else lake_frame(rows), suites[absent])
        for name, (rows, absent) in files.items()
    }
    return validate_batches(batches, shared_runs=shared_runs)


class ValidationWorker:
    """The run's end of a validation worker process: submit a group of files, get its outcomes later.

    `submit` returns at once: a sender thread writes the request to the worker (a busy worker does not
    hold up the ingestion thread that submitted it), a reader thread reads the replies in order and
    completes their futures. Safe to call from several ingestion threads.
    """

    def __init__(self, command: tuple[str, ...] = WORKER_COMMAND) -> None:
        self._process = subprocess.Popen(list(command), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self._requests: queue.SimpleQueue[tuple[Any, Future | None] | None] = queue.SimpleQueue()
        self._waiting: deque[Future] = deque()
        self._lock = threading.Lock()  # the order of `_waiting` is the order the requests are written
        self._failure: str | None = None
        self._sender = threading.Thread(target=self._send_loop, name="validation-worker-send", daemon=True)
        self._reader = threading.Thread(target=self._read_loop, name="validation-worker-read", daemon=True)
        self._sender.start()
        self._reader.start()

    def submit(self, group_id: str, table: str, now: datetime, files: Files) -> Future[dict[str, ValidationOutcome]]:
        """Queue one group of `table`'s files for validation; the future holds {file: outcome}."""
        future: Future[dict[str, ValidationOutcome]] = Future()
        self._requests.put((("validate", group_id, table, now, dict(files)), future))
        return future

    def forget(self, group_id: str) -> None:
        """Drop the GX runs the worker keeps for `group_id` (a table's validator is done with them)."""
        self._requests.put((("forget", group_id), None))

    def close(self) -> None:
        """End the worker: it answers what it was sent and exits at the end of its input."""
        self._requests.put(None)
        self._sender.join(timeout=60)
        try:
            self._process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._reader.join(timeout=60)

    def _send_loop(self) -> None:
        stdin = self._process.stdin
        assert stdin is not None
        while (item := self._requests.get()) is not None:
            request, future = item
            try:
                parts = _encode(request)
            except Exception as exc:  # e.g. out of memory: this request only; nothing was written
                if future is not None:
                    future.set_exception(ValidationWorkerError(f"could not send {request[:3]!r}: {exc!r}"))
                continue
            with self._lock:
                if self._failure is not None:
                    if future is not None:
                        future.set_exception(ValidationWorkerError(self._failure))
                    continue
                if future is not None:
                    self._waiting.append(future)
            try:
                for part in parts:
                    _write_all(stdin.fileno(), part)
            except OSError:  # the worker is gone (a broken pipe): fail what waits, with its status
                self._fail(f"the validation worker exited (status {self._process.wait()}) before it answered")
            except Exception as exc:  # part of a request written: the worker's input cannot be trusted now
                self._process.kill()
                self._fail(f"writing a request to the validation worker failed: {exc!r}")
        with contextlib.suppress(OSError):
            stdin.close()

    def _read_loop(self) -> None:
        stdout = self._process.stdout
        assert stdout is not None
        reason = "the validation worker exited (status {status}) before it answered"
        try:
            while True:
                try:
                    ok, payload = pickle.load(stdout)
                except (EOFError, OSError):  # the worker closed its end: it exited (or is exiting)
                    break
                with self._lock:
                    future = self._waiting.popleft()
                if ok:
                    future.set_result(payload)
                else:
                    future.set_exception(ValidationWorkerError(payload))
        except Exception as exc:  # not a reply (bytes that are no pickle, or one too many): no matching now
            reason = f"reading the validation worker's replies failed ({exc!r}); worker status {{status}}"
            self._process.kill()
        finally:
            # Whatever ended the replies, nothing may wait for one for ever (an ingestion step would hang).
            self._fail(reason.format(status=self._process.wait()))

    def _fail(self, reason: str) -> None:
        with self._lock:
            self._failure = self._failure or reason
            while self._waiting:
                self._waiting.popleft().set_exception(ValidationWorkerError(self._failure))


def _encode(request: tuple) -> list[Any]:
    """A request as the pieces to write: its pickled header, then each file's rows as Arrow IPC."""
    if request[0] != "validate":
        return [pickle.dumps(request, protocol=pickle.HIGHEST_PROTOCOL)]
    import pyarrow as pa

    _, group_id, table, now, files = request
    streams, listed = [], []
    for name, (rows, absent) in files.items():
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, rows.schema) as writer:
            writer.write_table(rows)
        streams.append(sink.getvalue())
        listed.append((name, absent, streams[-1].size))
    return [pickle.dumps(("validate", group_id, table, now, listed), protocol=pickle.HIGHEST_PROTOCOL), *streams]


def _decode_files(requests: IO[bytes], listed: list[tuple[str, tuple[str, ...], int]]) -> dict[str, Any]:
    """Read the Arrow IPC streams that follow a request's header: {file: (rows, absent columns)}."""
    import pyarrow as pa

    files = {}
    for name, absent, size in listed:
        data = requests.read(size)
        if len(data) < size:
            raise EOFError(f"the request ended inside {name}'s rows")
        files[name] = (pa.ipc.open_stream(pa.py_buffer(data)).read_all(), absent)
    return files


def _write_all(fd: int, data: Any) -> None:
    """Write `data` to the pipe `fd` in as few system calls as the kernel allows.

    A blocking pipe write returns when all of it is in the pipe, so a file's rows go in one call that
    waits for the worker to read them without holding the GIL, instead of one call per 64 KB piece
    through a buffered file, each of which has to win the GIL back from the ingestion threads.
    """
    view = memoryview(data).cast("B")
    while view:
        view = view[os.write(fd, view):]


def start_worker(command: tuple[str, ...] = WORKER_COMMAND) -> ValidationWorker:
    """Start this process's validation worker (it begins importing GX at once) and make it current."""
    global _current
    _current = ValidationWorker(command)
    return _current


def current_worker() -> ValidationWorker | None:
    """This process's validation worker, or None: then validate in this process."""
    return _current


def stop_worker() -> None:
    """End this process's validation worker, if it has one."""
    global _current
    worker, _current = _current, None
    if worker is not None:
        worker.close()


def serve(requests: IO[bytes], replies: IO[bytes]) -> int:
    """The worker's loop: answer validation requests until the end of the input (see the module docstring)."""
    shared: dict[str, dict[tuple, SharedSampleRun]] = {}
    while True:
        try:
            request = pickle.load(requests)
        except EOFError:
            return 0
        if request[0] == "forget":
            shared.pop(request[1], None)
            continue
        _, group_id, table, now, listed = request
        files = _decode_files(requests, listed)
        try:
            reply: tuple[bool, Any] = (True, validate_group(table, now, files, shared.setdefault(group_id, {})))
        except Exception:  # the run reports it as the ingestion step's error
            reply = (False, f"validating {table} ({', '.join(files)}) failed:\n{traceback.format_exc()}")
        del files, request
        pickle.dump(reply, replies, protocol=pickle.HIGHEST_PROTOCOL)
        replies.flush()


def main() -> int:
    """`python -m orchestration.lib.validation_worker`: import GX now, then serve requests on stdin/stdout."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    # Replies go to the original stdout; anything a library prints goes to stderr instead of into them.
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    # The point of starting early: GX's import (through the suites), done before the first file arrives.
    for module in ("quality.suites", "quality.validate"):
        importlib.import_module(module)

    return serve(sys.stdin.buffer, replies)


if __name__ == "__main__":
    status = main()
    sys.stderr.flush()
    # Every reply is written and flushed; tearing down GX's modules would only keep the run waiting.
    os._exit(status)
