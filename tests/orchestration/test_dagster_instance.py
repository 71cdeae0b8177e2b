"""The CLI's run history writes: fewer fsyncs for a run's own event file, crash-safe shared files."""

from __future__ import annotations

import uuid
from pathlib import Path

import dagster as dg
import sqlalchemy as sa

from orchestration.lib.dagster_instance import relax_sqlite_sync, sqlite_sync_mode


def test_sync_mode_by_file_of_the_instance(tmp_path: Path) -> None:
    run_shard = tmp_path / "storage" / f"{uuid.uuid4()}.db"
    assert sqlite_sync_mode(str(run_shard), tmp_path) == "OFF"
    assert sqlite_sync_mode(str(tmp_path / "storage" / "index.db"), tmp_path) == "NORMAL"
    assert sqlite_sync_mode(str(tmp_path / "history" / "runs.db"), tmp_path) == "NORMAL"
    assert sqlite_sync_mode(str(tmp_path.parent / "elsewhere" / f"{uuid.uuid4()}.db"), tmp_path) is None
    assert sqlite_sync_mode("", tmp_path) is None  # an in-memory database


def test_instance_connections_get_the_mode_and_other_databases_keep_sqlites_default(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    relax_sqlite_sync(home)
    # PRAGMA synchronous: 0 OFF, 1 NORMAL, 2 FULL (SQLite's default).
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        storage = instance.event_log_storage
        with storage.run_connection(str(uuid.uuid4())) as conn:
            assert conn.execute(sa.text("PRAGMA synchronous")).scalar() == 0
        with storage.index_connection() as conn:
            assert conn.execute(sa.text("PRAGMA synchronous")).scalar() == 1
    other = sa.create_engine(f"sqlite:///{tmp_path / 'other.db'}")
    with other.connect() as conn:
        assert conn.execute(sa.text("PRAGMA synchronous")).scalar() == 2
    other.dispose()
