"""Write-audit-publish: the published warehouse is replaced whole, and readers are never blocked."""

from __future__ import annotations

import multiprocessing as mp
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from orchestration.lib import publish
from orchestration.lib.publish import TMP_PREFIX, UnauditedBuildError, publish_warehouse, record_blocking_check
from orchestration.lib.warehouse import keep_published_runs_only, write_run_table


def _build(path: Path, version: int, rows: int = 20_000) -> None:
    con = duckdb.connect(str(path))
    con.execute("create schema if not exists marts")
    con.execute("create or replace table marts.t as select range as id, ? as version from range(?)", [version, rows])
    con.close()


def _reader(published: str, seconds: float, hold: bool, out: mp.Queue) -> None:
    """Query the published file in a loop: on one held connection, or on a fresh one each time.

    DuckDB shares one database instance per process and path, so the two modes run in separate
    processes: a held connection keeps its snapshot (the old file), a fresh one sees the newest file.
    """
    errors: list[str] = []
    seen: set[int] = set()
    reads = 0
    held = duckdb.connect(published, read_only=True) if hold else None
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            con = held or duckdb.connect(published, read_only=True)
            count, versions, version = con.execute(
                "select count(*), count(distinct version), min(version) from marts.t"
            ).fetchone()
            if held is None:
                con.close()
            if count != 20_000 or versions != 1:
                errors.append(f"half-built table seen: {count} rows, {versions} versions")
            seen.add(int(version))
            reads += 1
        except Exception as exc:  # any error at all fails the test
            errors.append(repr(exc))
    if held is not None:
        held.close()
    out.put((hold, reads, sorted(seen), errors))


def test_publish_replaces_file_and_cleans_temporaries(tmp_path: Path) -> None:
    build, published = tmp_path / "build.duckdb", tmp_path / "nps_link.duckdb"
    _build(build, 1)
    (tmp_path / f"{TMP_PREFIX}killed.duckdb").write_bytes(b"partial copy of a killed run")
    result = publish_warehouse(build, published, unfinished_build=tmp_path / "unfinished")
    assert result.published_path == published
    assert not list(tmp_path.glob(f"{TMP_PREFIX}*"))
    con = duckdb.connect(str(published), read_only=True)
    assert con.execute("select count(*), min(version) from marts.t").fetchone() == (20_000, 1)
    con.close()


def test_publish_without_build_raises_and_keeps_published(tmp_path: Path) -> None:
    published = tmp_path / "nps_link.duckdb"
    _build(published, 7)
    before = published.read_bytes()
    with pytest.raises(FileNotFoundError):
        publish_warehouse(tmp_path / "missing.duckdb", published, unfinished_build=tmp_path / "unfinished")
    assert published.read_bytes() == before


def test_publish_after_an_unfinished_dbt_build_refuses_and_keeps_published(tmp_path: Path) -> None:
    build, published = tmp_path / "build.duckdb", tmp_path / "nps_link.duckdb"
    _build(published, 7)
    _build(build, 8)  # marts rebuilt by a build whose tests failed
    marker = tmp_path / "build.duckdb.dbt-build-unfinished"
    marker.touch()
    before = published.read_bytes()

    prepared: list[str] = []

    def record_publish(con: duckdb.DuckDBPyConnection) -> None:
        prepared.append("called")
        con.execute("create or replace table marts.published_by as select 'this run' as run")

    with pytest.raises(UnauditedBuildError, match="did not finish with every test passing"):
        publish_warehouse(build, published, unfinished_build=marker, prepare=record_publish)

    assert published.read_bytes() == before
    assert prepared == []  # nothing written into a build that is not published
    marker.unlink()  # a later build finished with its tests passing
    publish_warehouse(build, published, unfinished_build=marker, prepare=record_publish)
    con = duckdb.connect(str(published), read_only=True)
    assert con.execute("select min(version) from marts.t").fetchone() == (8,)
    assert con.execute("select run from marts.published_by").fetchall() == [("this run",)]  # in the copy
    con.close()


def test_publish_after_a_failed_blocking_mart_check_refuses_until_it_passes(tmp_path: Path) -> None:
    """A publish materialised alone after a run whose contact-explosion check failed must not copy those marts."""
    build, published = tmp_path / "build.duckdb", tmp_path / "nps_link.duckdb"
    _build(published, 7)
    _build(build, 8)
    before = published.read_bytes()
    message = "C1 logged 900 contacts in 2026-09 against a median of 2"
    record_blocking_check(build, "contact_count_explosion", blocks=True, message=message)
    record_blocking_check(build, "nps_month_on_month_jump", blocks=False, message="a warning, passed or not")

    with pytest.raises(UnauditedBuildError, match=f"blocking checks failed on it: contact_count_explosion: {message}"):
        publish_warehouse(build, published, unfinished_build=tmp_path / "no-marker")

    assert published.read_bytes() == before
    record_blocking_check(build, "contact_count_explosion", blocks=False, message="no explosion")  # the next build
    publish_warehouse(build, published, unfinished_build=tmp_path / "no-marker")
    con = duckdb.connect(str(published), read_only=True)
    assert con.execute("select min(version) from marts.t").fetchone() == (8,)
    con.close()


def test_a_run_whose_copy_failed_is_published_with_the_next_publish(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ledger is written before the copy: a full disk then loses the copy, not the run's audited rows."""
    build, published = tmp_path / "build.duckdb", tmp_path / "nps_link.duckdb"
    as_of = datetime(2025, 6, 30, 14, 59, 59)

    def run_writes_its_rows(run_id: str) -> None:
        con = duckdb.connect(str(build))
        write_run_table(con, "link_effects", pd.DataFrame({"estimate": [1.0]}), run_id=run_id, as_of=as_of)
        con.close()

    def ledger(run_id: str) -> Callable[[duckdb.DuckDBPyConnection], int]:
        return lambda con: keep_published_runs_only(con, [run_id], as_of=as_of)

    def disk_full(src: Path, dst: Path) -> None:
        raise OSError(28, "No space left on device")

    run_writes_its_rows("r1")
    publish_warehouse(build, published, unfinished_build=tmp_path / "unfinished", prepare=ledger("r1"))
    before = published.read_bytes()
    run_writes_its_rows("r8")
    monkeypatch.setattr(publish, "_copy_file", disk_full)
    with pytest.raises(OSError, match="No space left"):
        publish_warehouse(build, published, unfinished_build=tmp_path / "unfinished", prepare=ledger("r8"))
    assert published.read_bytes() == before
    monkeypatch.undo()

    # r9 publishes on its own once there is room: r8's rows are published, not dropped as a failed run's.
    result = publish_warehouse(build, published, unfinished_build=tmp_path / "unfinished", prepare=ledger("r9"))

    assert result.prepared == 0
    con = duckdb.connect(str(published), read_only=True)
    assert con.execute("select run_id from analysis.link_effects order by run_id").fetchall() == [("r1",), ("r8",)]
    assert con.execute("select run_id from ops.published_runs order by run_id").fetchall() == [
        ("r1",), ("r8",), ("r9",)
    ]
    con.close()


def test_publish_while_readers_query_in_loop_never_blocks_or_shows_partial_tables(tmp_path: Path) -> None:
    # GIVEN a published warehouse and a reader process querying it in a loop (fresh and held connections)
    build, published = tmp_path / "build.duckdb", tmp_path / "nps_link.duckdb"
    _build(build, 0)
    publish_warehouse(build, published, unfinished_build=tmp_path / "unfinished")
    ctx = mp.get_context("spawn")
    queue: mp.Queue = ctx.Queue()
    readers = [ctx.Process(target=_reader, args=(str(published), 6.0, hold, queue)) for hold in (True, False)]
    for reader in readers:
        reader.start()
    time.sleep(1.5)
    # WHEN the pipeline rebuilds and publishes several new versions meanwhile
    for version in range(1, 6):
        _build(build, version)
        publish_warehouse(build, published, unfinished_build=tmp_path / "unfinished")
        time.sleep(0.3)
    outcomes = {hold: (reads, seen, errors) for hold, reads, seen, errors in (queue.get(timeout=60) for _ in readers)}
    for reader in readers:
        reader.join(timeout=30)
    # THEN no reader ever failed or saw a half-built table; the held connection kept its snapshot,
    # and reconnecting readers saw the new versions appear
    for reads, _, errors in outcomes.values():
        assert errors == []
        assert reads > 20
    assert outcomes[True][1] == [0]
    assert max(outcomes[False][1]) >= 2
