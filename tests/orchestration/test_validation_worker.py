"""The validation worker: the same outcomes as validating in the run's process, its failures named, its end."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta

import pytest

from orchestration.lib import ingest_assets, validation_worker
from orchestration.lib.ingest import FileLoadResult
from orchestration.lib.settings import Settings
from tests.orchestration.test_ingest_validation import _rows


def _comparable(outcomes: dict) -> dict:
    """Outcomes without their timings (the only thing allowed to differ between two validations)."""
    return {name: dataclasses.replace(o, elapsed_seconds=0.0) for name, o in outcomes.items()}


def _validate_files(settings: Settings, run_id: str) -> dict:
    """Three crm_reps files (the second with a bad team) and two accounts files, one missing a column."""
    reps = ingest_assets.LoadedFileValidator("crm_reps", settings, run_id)
    for name, changes in (("a", None), ("b", {2: {"team": "marketing"}}), ("c", None)):
        reps.add(FileLoadResult("crm_reps", f"crm_reps/{name}.csv", name * 64, "loaded", 6, 6),
                 _rows("crm_reps", changes))
    accounts = ingest_assets.LoadedFileValidator("crm_accounts", settings, run_id)
    no_segments = {i: {"segment": None} for i in range(6)}
    accounts.add(FileLoadResult("crm_accounts", "crm_accounts/a.csv", "a" * 64, "loaded", 6, 6),
                 _rows("crm_accounts", no_segments))
    accounts.add(FileLoadResult("crm_accounts", "crm_accounts/b.csv", "b" * 64, "loaded", 6, 6,
                                missing_optional_columns=["segment"]), _rows("crm_accounts", no_segments))
    return {**reps.finish(), **accounts.finish()}


@pytest.fixture
def worker():
    started = validation_worker.start_worker()
    yield started
    validation_worker.stop_worker()


@pytest.mark.parametrize("worker_max_rows", [1_000_000, 6], ids=["by the worker", "too large for it"])
def test_the_worker_gives_the_outcomes_validating_here_gives(tmp_path, monkeypatch, worker, worker_max_rows):
    monkeypatch.setattr(ingest_assets, "VALIDATION_GROUP_ROWS", 10)  # reps a and b in one group, c in the next
    # With 6, each table's first group (12 rows) is too large: every group is validated here.
    monkeypatch.setattr(ingest_assets, "WORKER_MAX_GROUP_ROWS", worker_max_rows)
    submitted = []
    real_submit = worker.submit
    monkeypatch.setattr(worker, "submit", lambda *a: submitted.append(list(a[3])) or real_submit(*a))
    # One moment for every group: the suites quote it ("not after the load"), and it is taken in this process.
    fixed = datetime.now(UTC) + timedelta(seconds=30)

    class FixedNow(datetime):
        @classmethod
        def now(cls, tz=None):
            return fixed

    monkeypatch.setattr(ingest_assets, "datetime", FixedNow)
    settings = Settings(data_dir=tmp_path)
    by_worker = _validate_files(settings, "run-worker")
    every_group = [["crm_reps: crm_reps/a.csv", "crm_reps: crm_reps/b.csv"],
                   ["crm_accounts: crm_accounts/a.csv", "crm_accounts: crm_accounts/b.csv"],
                   ["crm_reps: crm_reps/c.csv"]]  # reps c waits for the reps validator's finish
    assert submitted == (every_group if worker_max_rows > 12 else [])
    validation_worker.stop_worker()
    here = _validate_files(settings, "run-here")
    assert list(by_worker) == list(here) and _comparable(by_worker) == _comparable(here)
    assert [name for name, o in by_worker.items() if not o.success] == ["crm_reps: crm_reps/b.csv"]
    assert all(o.elapsed_seconds > 0 for o in by_worker.values())  # the harness sums them
    # Kept for the data docs as before.
    assert (ingest_assets.outcomes_dir(settings, "run-worker") / "crm_reps.pkl").exists()


def test_a_request_the_worker_cannot_validate_fails_with_the_table_and_files_named(worker):
    now = datetime.now(UTC).replace(tzinfo=None)
    bad = worker.submit("g1", "no_such_table", now, {"no_such_table: x.csv": (_rows("crm_reps"), ())})
    named = r"validating no_such_table \(no_such_table: x.csv\)"
    with pytest.raises(validation_worker.ValidationWorkerError, match=named):
        bad.result(timeout=120)
    # The worker goes on serving.
    good = worker.submit("g2", "crm_reps", now, {"crm_reps: a.csv": (_rows("crm_reps"), ())})
    assert good.result(timeout=120)["crm_reps: a.csv"].success


def test_a_request_that_cannot_be_sent_fails_alone_and_the_worker_goes_on(worker, monkeypatch):
    real_encode = validation_worker._encode

    def encode(request):
        if request[0] == "validate" and request[1] == "too-big":
            raise MemoryError("no room for the rows")
        return real_encode(request)

    monkeypatch.setattr(validation_worker, "_encode", encode)
    now = datetime.now(UTC).replace(tzinfo=None)
    unsent = worker.submit("too-big", "crm_reps", now, {"crm_reps: a.csv": (_rows("crm_reps"), ())})
    with pytest.raises(validation_worker.ValidationWorkerError, match="MemoryError"):
        unsent.result(timeout=60)
    # Nothing of it reached the worker, so the next reply is the next request's.
    good = worker.submit("g2", "crm_reps", now, {"crm_reps: b.csv": (_rows("crm_reps"), ())})
    assert good.result(timeout=120)["crm_reps: b.csv"].success


@pytest.mark.parametrize(
    "answer", ["pickle.dump('not a reply', sys.stdout.buffer)", "sys.stdout.buffer.write(bytes([255, 255]))"],
    ids=["a pickle of something else", "bytes that are no pickle"],
)
def test_a_reply_that_is_not_one_fails_what_waits_instead_of_hanging(answer):
    # A worker that answers with something else and stays alive: the futures must not wait for ever.
    garbled = f"import pickle, sys, time; sys.stdin.buffer.read(1); {answer}; sys.stdout.flush(); time.sleep(120)"
    worker = validation_worker.ValidationWorker((sys.executable, "-c", garbled))
    now = datetime.now(UTC).replace(tzinfo=None)
    waiting = worker.submit("g", "crm_reps", now, {"crm_reps: a.csv": (_rows("crm_reps"), ())})
    with pytest.raises(validation_worker.ValidationWorkerError, match="reading the validation worker's replies"):
        waiting.result(timeout=60)
    worker.close()


def test_a_worker_that_dies_fails_what_waits_for_it():
    exits = "import sys; sys.stdin.buffer.read(1); sys.exit(3)"
    dying = validation_worker.ValidationWorker((sys.executable, "-c", exits))
    now = datetime.now(UTC).replace(tzinfo=None)
    waiting = dying.submit("g", "crm_reps", now, {"crm_reps: a.csv": (_rows("crm_reps"), ())})
    with pytest.raises(validation_worker.ValidationWorkerError, match=r"exited \(status 3\)"):
        waiting.result(timeout=60)
    later = dying.submit("g", "crm_reps", now, {"crm_reps: b.csv": (_rows("crm_reps"), ())})
    with pytest.raises(validation_worker.ValidationWorkerError):
        later.result(timeout=60)
    dying.close()


def test_with_a_worker_the_run_process_never_imports_great_expectations(tmp_path):
    code = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from orchestration.lib import validation_worker
        from orchestration.lib.settings import Settings
        from tests.orchestration.test_validation_worker import _validate_files
        validation_worker.start_worker()
        outcomes = _validate_files(Settings(data_dir=Path({str(tmp_path)!r})), "run-1")
        validation_worker.stop_worker()
        print(len(outcomes), "great_expectations" in sys.modules)
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["5", "False"]


def test_the_worker_ends_with_a_run_killed_outright(tmp_path):
    # A run killed with SIGKILL never stops its worker; the worker sees the end of its input and exits.
    code = textwrap.dedent("""
        import sys, time
        from orchestration.lib import validation_worker
        worker = validation_worker.start_worker()
        print(worker._process.pid, flush=True)
        time.sleep(600)
    """)
    run = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert run.stdout is not None
    worker_pid = int(run.stdout.readline())
    os.kill(run.pid, signal.SIGKILL)
    run.wait()
    deadline = time.monotonic() + 60  # it may still be importing GX when its input ends
    while time.monotonic() < deadline:
        try:
            os.kill(worker_pid, 0)
        except ProcessLookupError:
            break
        # A zombie of init's still answers kill(0); its state in /proc says it is gone.
        try:
            with open(f"/proc/{worker_pid}/stat") as stat:
                if stat.read().split(")")[-1].split()[0] == "Z":
                    break
        except FileNotFoundError:
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"the validation worker {worker_pid} outlived its run by 60 s")
