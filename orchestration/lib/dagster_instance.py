"""How `nps-link run` writes Dagster's run history when the instance keeps it in SQLite files.

Dagster's default storage opens a new SQLite connection for every event (NullPool) and commits it
in WAL mode with SQLite's default `synchronous=FULL`: an fsync per commit, and another for the
checkpoint when the connection closes. A run writes about 700 events (every dbt model and test is
a materialization or an asset check, each also planned up front), so on a busy disk the CLI spent
more wall time waiting for fsync than running steps (about 50 of 104 s of a no-op run at S).

The per-run event files (`storage/<run_id>.db`) are written only by the run itself, and losing the
tail of one to a power cut loses that run's log, not the warehouse (which the publish step fsyncs)
nor other runs: they get `synchronous=OFF`. The shared files (the cross-run index, the run list,
schedules) keep SQLite's crash-safe `NORMAL` (WAL mode cannot be corrupted by a power cut at NORMAL;
a committed transaction may be lost). Connections of any other SQLite database are left alone.

The same storage also builds a new SQLAlchemy engine, opens a new connection and asks whether the
asset-check table exists (one more engine) for every event it stores: about 4 s of a run's
interpreter time at M, taken from the steps that run beside it. `reused_sqlite_connections` keeps one
engine and its pooled connection per file for the length of a CLI run instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# Dagster names a run's event-log shard after the run id (a UUID).
_RUN_SHARD = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.db$")

_installed: set[Path] = set()


def sqlite_sync_mode(database_file: str, instance_root: Path) -> str | None:
    """The `synchronous` setting for a SQLite file of the Dagster instance at `instance_root`, else None."""
    if not database_file:
        return None
    path = Path(database_file).resolve()
    if not path.is_relative_to(instance_root.resolve()):
        return None
    return "OFF" if _RUN_SHARD.match(path.name) else "NORMAL"


def relax_sqlite_sync(instance_root: Path) -> None:
    """Apply `sqlite_sync_mode` to every SQLite connection SQLAlchemy opens in this process from now on.

    Call once per process before the run starts; a second call for the same root does nothing.
    """
    root = instance_root.resolve()
    if root in _installed:
        return
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        if type(dbapi_connection).__module__ != "sqlite3":
            return
        cursor = dbapi_connection.cursor()
        try:
            rows = cursor.execute("PRAGMA database_list").fetchall()
            main_file = next((row[2] for row in rows if row[1] == "main"), "")
            mode = sqlite_sync_mode(main_file, root)
            if mode is not None:
                cursor.execute(f"PRAGMA synchronous={mode}")
        finally:
            cursor.close()

    event.listen(Engine, "connect", on_connect)
    _installed.add(root)


@contextmanager
def reused_sqlite_connections(instance: Any) -> Iterator[None]:
    """While open, the instance's SQLite run and event storages reuse one engine per file.

    Dagster's `SqliteEventLogStorage._connect` and `SqliteRunStorage.connect` build an engine with
    `NullPool` per call: a new `sqlite3` connection (and a WAL checkpoint when it closes) per event.
    Here each file gets one engine with SQLAlchemy's default pool for files, so a connection is
    checked out and back per event, still one at a time per event file (the storage's own lock is
    kept) and in a transaction per call exactly as before. A `has_table` answer of True is kept, since
    Dagster never drops its tables while a run writes. Storages of other kinds are left as they are.
    On exit the patches are removed and every engine is disposed (its connections closed, so the
    WAL is checkpointed as before).
    """
    from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
    from dagster._core.storage.runs.sqlite.sqlite_run_storage import SqliteRunStorage
    from sqlalchemy import create_engine

    engines: dict[str, Any] = {}
    patched: list[tuple[Any, str]] = []

    def engine_for(conn_string: str, **connect_args: Any) -> Any:
        engine = engines.get(conn_string)
        if engine is None:
            engine = engines[conn_string] = create_engine(conn_string, connect_args=connect_args)
        return engine

    event_storage = instance.event_log_storage
    if type(event_storage) is SqliteEventLogStorage:
        from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS

        @contextmanager
        def connect_shard(shard: str) -> Iterator[Any]:
            with event_storage._db_lock:
                engine = engine_for(event_storage.conn_string_for_shard(shard),
                                    timeout=SQLITE_BUSY_TIMEOUT_SECONDS)
                if shard not in event_storage._initialized_dbs:
                    event_storage._initdb(engine)
                    event_storage._initialized_dbs.add(shard)
                with engine.connect() as conn, conn.begin():
                    yield conn

        existing_tables: set[str] = set()
        uncached_has_table = event_storage.has_table

        def has_table(table_name: str) -> bool:
            if table_name not in existing_tables and uncached_has_table(table_name):
                existing_tables.add(table_name)
            return table_name in existing_tables

        event_storage._connect = connect_shard
        event_storage.has_table = has_table
        patched += [(event_storage, "_connect"), (event_storage, "has_table")]

    run_storage = instance.run_storage
    if type(run_storage) is SqliteRunStorage:

        @contextmanager
        def connect_runs() -> Iterator[Any]:
            with engine_for(run_storage._conn_string).connect() as conn, conn.begin():
                yield conn

        run_storage.connect = connect_runs
        patched.append((run_storage, "connect"))
    try:
        yield
    finally:
        for storage, name in patched:
            del storage.__dict__[name]
        for engine in engines.values():
            engine.dispose()
