"""dbt inside the orchestrator's own process: the project parsed while ingestion runs, built without a new interpreter.

dagster-dbt's `DbtCliResource` starts a new dbt process for every build. On a new day that process
cost more than the models it built: at S (BENCHMARKS.md) the dbt step took 10-12 s, of which dbt's
own run of 146 nodes was 6.9 s; the rest was a Python start with dbt's imports (about 2 s), loading
the project (1.5 s) and the process's exit. Measured on the same warehouse and project:
- `dbt build` as a process: 9.8-11.5 s;
- `dbtRunner().invoke(["build", ...])` in a process that has dagster-dbt imported: 7.9 s;
- `dbtRunner(manifest=parsed).invoke(["build", ...])`, the manifest parsed beforehand: 4.4-4.8 s.

So the run parses the project in a background thread as soon as it starts (`prefetch_manifest`),
which overlaps ingestion (seconds at S, half a minute at L, most of it in DuckDB with the GIL
released), and the dbt step builds with that manifest (`InProcessDbtBuild`). The manifest is used
only when everything that decides a parse is unchanged since it was made: the vars, every
`NPS_LINK_*`/`DBT_*`/`DUCKDB_PATH` environment variable (what `env_var()` can read) and the
project's files; otherwise the step parses itself, in the same process (`parse_manifest`).

dbt's events reach Dagster as they did from the process's JSON log: dbt calls back with each event,
which `msg_to_dict` turns into the very dict of a JSON log line (same keys, same values;
`tests/orchestration/test_dbt_runner.py` compares them with dagster-dbt's subprocess events), and
dagster-dbt's own `DbtCoreCliEventMessage.to_default_asset_events` makes the materializations and
asset-check results from it.

dbt keeps process-wide state (its flags, its event manager, dbt-duckdb's open database), so two
dbt invocations must never overlap in one process: `_DBT_LOCK` serialises them, and the build
closes dbt-duckdb's database when it ends (`close_dbt_duckdb`), which also checkpoints the
warehouse file before any other step opens it with its own settings.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The dbt events that carry a node's result (what dagster-dbt turns into Dagster events).
RESULT_EVENT_NAMES = frozenset({"LogSeedResult", "LogModelResult", "LogSnapshotResult", "LogTestResult"})
# Environment variables a dbt parse can read: env_var() in the project, the profile and the macros
# (ours are all NPS_LINK_* or DUCKDB_PATH), and dbt's own settings.
_PARSE_ENV_PREFIXES = ("NPS_LINK_", "DBT_")
_PARSE_ENV_NAMES = frozenset({"DUCKDB_PATH"})

# One dbt invocation at a time in this process (dbt's flags and event manager are process-wide).
_DBT_LOCK = threading.Lock()


class DbtBuildError(RuntimeError):
    """A dbt build that failed: a model or an error-severity test failed, or dbt itself raised."""


@dataclass(frozen=True)
class ParseInputs:
    """Everything that decides what a dbt parse of the project produces, as compared values."""

    project_dir: str
    profiles_dir: str
    target: str
    vars_json: str
    environment: tuple[tuple[str, str], ...]
    newest_file_mtime: float

    @classmethod
    def current(cls, project_dir: Path, profiles_dir: Path, dbt_vars: Mapping[str, Any],
                environ: Mapping[str, str] | None = None, *, target: str = "") -> ParseInputs:
        """The parse inputs as they are now: these vars, this environment, the project's files.

        `target` names the profile's output ("" for the profile's default, DuckDB).
        """
        from orchestration.lib.dbt import _newest_source_mtime

        environ = os.environ if environ is None else environ
        environment = tuple(sorted(
            (name, value) for name, value in environ.items()
            if name.startswith(_PARSE_ENV_PREFIXES) or name in _PARSE_ENV_NAMES
        ))
        return cls(str(project_dir), str(profiles_dir), target, json.dumps(dict(dbt_vars), sort_keys=True),
                   environment, _newest_source_mtime(project_dir))

    def differences(self, other: ParseInputs) -> list[str]:
        """What differs between two sets of inputs, in words (empty when they are equal)."""
        differs = []
        for name in ("project_dir", "profiles_dir", "target", "vars_json", "newest_file_mtime"):
            if getattr(self, name) != getattr(other, name):
                differs.append(name)
        mine, theirs = dict(self.environment), dict(other.environment)
        differs += [f"env {name}" for name in sorted(mine.keys() | theirs.keys()) if mine.get(name) != theirs.get(name)]
        return differs


def _common_args(inputs: ParseInputs, target_path: Path) -> list[str]:
    """The flags every invocation gets: our project, and the artifacts and log in the run's folder.

    The file log stays JSON lines, as under dagster-dbt (the benchmark reads its timestamps).
    """
    target = ["--target", inputs.target] if inputs.target else []
    return ["--project-dir", inputs.project_dir, "--profiles-dir", inputs.profiles_dir, *target,
            "--target-path", str(target_path), "--log-path", str(target_path), "--log-format-file", "json",
            "--no-send-anonymous-usage-stats"]


def seed_partial_parse(project_target: Path, run_target: Path) -> None:
    """Start a run's target folder from the project's last parse, so dbt re-parses only what changed."""
    run_target.mkdir(parents=True, exist_ok=True)
    saved = project_target / "partial_parse.msgpack"
    if saved.exists():
        shutil.copyfile(saved, run_target / "partial_parse.msgpack")


def keep_partial_parse(run_target: Path, project_target: Path) -> bool:
    """Make this build's parsed project the one the next build starts from; True when there was one.

    Every parse runs in a target folder of its own, seeded with the project target's
    `partial_parse.msgpack` (`seed_partial_parse`); `ensure_manifest`'s `dbt parse` writes that file
    without our --vars, and dbt throws a file with other vars away and parses the whole project (4 s
    at L, 13 s at S under load). Promoting this parse's file means the next run with the same vars
    and files skips parsing, and dbt still re-parses whatever changed (it checks file hashes, vars,
    profile and env vars).
    A hard link plus rename: the project's file is replaced whole, never rewritten in place, so a
    concurrent run copying it reads the old or the new one, not a mix.
    """
    fresh = run_target / "partial_parse.msgpack"
    if not fresh.exists():
        return False
    staged = project_target / f".partial_parse-{uuid.uuid4().hex}.msgpack"
    try:
        os.link(fresh, staged)
        os.replace(staged, project_target / "partial_parse.msgpack")
    finally:
        staged.unlink(missing_ok=True)
    return True


def parse_manifest(inputs: ParseInputs, target_path: Path) -> Any:
    """Parse the dbt project in this process (dbt's `parse`), returning dbt's Manifest object.

    The caller's environment must hold what `inputs` recorded: dbt reads env_var() from os.environ.
    """
    from dbt.cli.main import dbtRunner

    args = ["parse", "--quiet", "--vars", inputs.vars_json, *_common_args(inputs, target_path)]
    with _DBT_LOCK:
        result = dbtRunner().invoke(args)
    if result.exception is not None:
        raise DbtBuildError(f"dbt parse raised: {result.exception}") from result.exception
    if not result.success or result.result is None:
        raise DbtBuildError(f"dbt parse failed; see {target_path / 'dbt.log'}")
    return result.result


@dataclass
class _Prefetch:
    inputs: ParseInputs
    target_path: Path
    done: threading.Event = field(default_factory=threading.Event)
    manifest: Any = None
    error: BaseException | None = None


_prefetch_lock = threading.Lock()
_prefetch: _Prefetch | None = None


def prefetch_manifest(inputs: ParseInputs, project_target: Path) -> threading.Thread:
    """Parse the project in a background thread now, for a build later in this process to take.

    The parse writes into a folder of its own under `project_target` (`dbt_parse-<id>`), seeded
    with the project's partial parse. A second prefetch replaces the first.
    """
    global _prefetch
    target = project_target / f"dbt_parse-{uuid.uuid4().hex[:12]}"
    seed_partial_parse(project_target, target)
    pending = _Prefetch(inputs=inputs, target_path=target)
    with _prefetch_lock:
        _prefetch = pending

    def work() -> None:
        try:
            pending.manifest = parse_manifest(inputs, target)
        except BaseException as exc:  # handed to the build, which parses again itself
            pending.error = exc
        finally:
            pending.done.set()

    thread = threading.Thread(target=work, name="dbt-parse-prefetch", daemon=True)
    thread.start()
    return thread


def take_prefetched_manifest(inputs: ParseInputs) -> tuple[Any, Path | None, str]:
    """The manifest a prefetch parsed for exactly these inputs, waiting for it if still parsing.

    Returns (manifest or None, the prefetch's target folder or None, why it was not used). A
    prefetch is taken once: a later build in the same process parses again.
    """
    global _prefetch
    with _prefetch_lock:
        pending, _prefetch = _prefetch, None
    if pending is None:
        return None, None, "no parse was prefetched in this process"
    differences = pending.inputs.differences(inputs)
    if differences:
        return None, pending.target_path, f"the parse inputs changed since the prefetch ({', '.join(differences)})"
    pending.done.wait()
    if pending.error is not None:
        return None, pending.target_path, f"the prefetched parse failed ({pending.error})"
    return pending.manifest, pending.target_path, ""


def close_dbt_duckdb() -> None:
    """Close the database dbt-duckdb keeps open after a build (a checkpoint of the warehouse file).

    dbt-duckdb holds one environment per process in DuckDBConnectionManager._ENV and leaves its
    connection open after an in-process invocation; another connection to the same file with other
    settings would then fail ("different configuration"), and the file would not be checkpointed.
    Private to dbt-duckdb (pinned in constraints.txt); test_dbt_runner.py fails if it is renamed.
    """
    from dbt.adapters.duckdb.connections import DuckDBConnectionManager

    with DuckDBConnectionManager._LOCK:
        environment, DuckDBConnectionManager._ENV = DuckDBConnectionManager._ENV, None
    if environment is not None:
        environment.close()


_DONE = object()


class InProcessDbtBuild:
    """One dbt invocation (e.g. `build`) run on a thread of this process, its events streamed as dicts.

    Iterate `events()` for the result events (and error-level events) as dbt emits them, each the
    dict of a dbt JSON log line; it raises DbtBuildError at the end if dbt did not succeed.
    """

    def __init__(self, args: Sequence[str], *, manifest: Any, inputs: ParseInputs, target_path: Path) -> None:
        self.args = [*args, *_common_args(inputs, target_path)]
        self.manifest = manifest
        self.target_path = target_path
        self.error_messages: list[str] = []

    def events(self, on_event: Callable[[dict[str, Any]], None] | None = None) -> Iterator[dict[str, Any]]:
        """Run dbt and yield its result and error events as they happen; raise if dbt failed."""
        from dbt.cli.main import dbtRunner
        from dbt_common.events.functions import msg_to_dict

        events: queue.SimpleQueue[Any] = queue.SimpleQueue()

        def callback(msg: Any) -> None:
            # Called on dbt's threads for every event; only results and errors are converted.
            if msg.info.name in RESULT_EVENT_NAMES or msg.info.level == "error":
                events.put(msg_to_dict(msg))

        outcome: dict[str, Any] = {}

        def work() -> None:
            try:
                with _DBT_LOCK:
                    try:
                        outcome["result"] = dbtRunner(manifest=self.manifest, callbacks=[callback]).invoke(self.args)
                    finally:
                        close_dbt_duckdb()
            except BaseException as exc:  # re-raised on the consuming thread
                outcome["exception"] = exc
            finally:
                events.put(_DONE)

        thread = threading.Thread(target=work, name="dbt-build", daemon=True)
        thread.start()
        try:
            while (event := events.get()) is not _DONE:
                if event["info"]["level"] == "error":
                    self.error_messages.append(event["info"]["msg"])
                if on_event is not None:
                    on_event(event)
                yield event
        finally:
            # Never leave dbt writing the warehouse behind a consumer that stopped early.
            thread.join()
        self._raise_on_failure(outcome)

    def _raise_on_failure(self, outcome: dict[str, Any]) -> None:
        if "exception" in outcome:
            raise DbtBuildError(f"dbt {self.args[0]} raised: {outcome['exception']}") from outcome["exception"]
        result = outcome["result"]
        if result.exception is not None:
            raise DbtBuildError(f"dbt {self.args[0]} raised: {result.exception}") from result.exception
        if not result.success:
            details = "\n\n".join(["", "Errors from dbt's log:", *self.error_messages]) if self.error_messages else ""
            raise DbtBuildError(
                f"dbt {' '.join(self.args[:1])} failed; see the dbt log {self.target_path / 'dbt.log'}.{details}"
            )


# ---- the Dagster side: dbt's events as the dbt assets' materializations and asset checks --------


def prefetch_for_run(settings: Any) -> threading.Thread:
    """Start parsing the project for this run's dbt build, with the environment the build will have.

    Called by `nps-link run` once the definitions are loaded and before the job starts, so the parse
    overlaps ingestion. It exports what the dbt step exports (the data dir, the warehouse path, the
    data tests' scope); none of it depends on what ingestion loads.
    """
    from orchestration.lib.dbt import DBT_PROJECT_DIR, DBT_TARGET_DIR, data_test_scope_env, dbt_vars

    os.environ["NPS_LINK_DATA_DIR"] = str(settings.data_dir)
    os.environ["DUCKDB_PATH"] = str(settings.build_db_path)
    os.environ.update(data_test_scope_env(settings))
    inputs = ParseInputs.current(DBT_PROJECT_DIR, DBT_PROJECT_DIR, dbt_vars(settings))
    return prefetch_manifest(inputs, DBT_TARGET_DIR)
