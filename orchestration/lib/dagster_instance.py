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
"""

from __future__ import annotations

import re
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
