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


def _count_dbapi_connects() -> tuple[list[int], object]:
    """A counter of new DBAPI connections any SQLAlchemy engine opens, and its listener to remove."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    opened = [0]

    def on_connect(*_args: object) -> None:
        opened[0] += 1

    event.listen(Engine, "connect", on_connect)
    return opened, on_connect


def _run_small_job(instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    @dg.asset
    def first() -> int:
        return 1

    @dg.asset_check(asset=first)
    def first_is_one(first: int) -> dg.AssetCheckResult:
        return dg.AssetCheckResult(passed=first == 1)

    @dg.asset
    def second(first: int) -> int:
        return first + 1

    job = dg.Definitions(assets=[first, second], asset_checks=[first_is_one]).resolve_implicit_global_asset_job_def()
    return job.execute_in_process(instance=instance)


def test_reused_connections_open_each_file_once_and_record_the_same_run(tmp_path: Path) -> None:
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    from orchestration.lib.dagster_instance import reused_sqlite_connections

    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        _run_small_job(instance)  # creates the index and run files, so both runs below start alike
        opened, listener = _count_dbapi_connects()
        try:
            plain = _run_small_job(instance)
            plain_connects = opened[0]
            opened[0] = 0
            with reused_sqlite_connections(instance):
                reused = _run_small_job(instance)
                assert instance.event_log_storage.__dict__.get("_connect") is not None
            reused_connects = opened[0]
        finally:
            event.remove(Engine, "connect", listener)
        # Dagster's own storage: a connection per event (dozens for three steps and a check); reused:
        # the run's event file, the index file and the runs file about once each (plus the first
        # has_table answer and the pool's second connection when two callers overlap).
        assert plain_connects > 30, (plain_connects, reused_connects)
        assert reused_connects <= 8, (plain_connects, reused_connects)
        # Patches gone on exit; both runs recorded alike (same events, in the run and index files).
        assert "_connect" not in instance.event_log_storage.__dict__
        assert "connect" not in instance.run_storage.__dict__

        def recorded(run_id: str) -> list[str]:
            return [e.dagster_event.event_type_value for e in instance.all_logs(run_id) if e.dagster_event]

        assert recorded(reused.run_id) == recorded(plain.run_id)
        assert instance.get_run_by_id(reused.run_id).is_success
        checks = instance.event_log_storage.get_asset_check_execution_history(
            dg.AssetCheckKey(dg.AssetKey("first"), "first_is_one"), limit=5)
        assert {c.run_id for c in checks} >= {plain.run_id, reused.run_id}
        materialized = instance.get_latest_materialization_event(dg.AssetKey("second"))
        assert materialized is not None and materialized.run_id == reused.run_id


def test_reused_connections_leave_other_storages_alone() -> None:
    from orchestration.lib.dagster_instance import reused_sqlite_connections

    instance = dg.DagsterInstance.ephemeral()  # in-memory storages: nothing to reuse
    with reused_sqlite_connections(instance):
        assert "_connect" not in vars(instance.event_log_storage)
        _run_small_job(instance)
