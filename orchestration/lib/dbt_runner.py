"""dbt inside the orchestrator's own process: parsed and built without a new interpreter.

dagster-dbt's `DbtCliResource` starts a new dbt process for every build. On a new day that process
cost more than the models it built: at S (BENCHMARKS.md) the dbt step took 10-12 s, of which dbt's
own run of 146 nodes was 6.9 s; the rest was a Python start with dbt's imports (about 2 s), loading
the project (1.5 s), the process's exit and dagster-dbt reading its output. The dbt step now parses
the project with `parse_manifest` (dbtRunner's `parse`, from the partial parse the last run left)
and builds with that manifest (`InProcessDbtBuild`), both in the step's own process.

Parsing ahead on a thread while ingestion runs was tried and dropped: a pure-Python parse beside
ingestion's threads slowed them through the GIL by more than the parse saved (M's full refresh,
two runs each: 37.5-39.8 s with the parse ahead, 34.4-35.3 s with the parse in the dbt step, where
it takes about 2 s).

dbt's events reach Dagster as they did from the process's JSON log: dbt calls back with each event,
which `msg_to_dict` turns into the very dict of a JSON log line (same keys, same values;
`tests/orchestration/test_dbt_runner.py` compares them with a dbt process's events), and
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
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The dbt events that carry a node's result (what dagster-dbt turns into Dagster events).
RESULT_EVENT_NAMES = frozenset({"LogSeedResult", "LogModelResult", "LogSnapshotResult", "LogTestResult"})

# One dbt invocation at a time in this process (dbt's flags and event manager are process-wide).
_DBT_LOCK = threading.Lock()


class DbtBuildError(RuntimeError):
    """A dbt build that failed: a model or an error-severity test failed, or dbt itself raised."""


@dataclass(frozen=True)
class DbtProjectArgs:
    """Which project an invocation runs, with which profile output and vars."""

    project_dir: str
    profiles_dir: str
    vars_json: str
    # The profile's output ("" for its default, DuckDB); e.g. "spark" (README, On a cluster).
    target: str = ""

    @classmethod
    def of(
        cls, project_dir: Path, profiles_dir: Path, dbt_vars: Mapping[str, Any], *, target: str = ""
    ) -> DbtProjectArgs:
        """The arguments for this project and these vars (as JSON, the form `--vars` takes)."""
        return cls(str(project_dir), str(profiles_dir), json.dumps(dict(dbt_vars), sort_keys=True), target)


def _common_args(project: DbtProjectArgs, target_path: Path) -> list[str]:
    """The flags every invocation gets: our project, and the artifacts and log in the run's folder.

    The file log stays JSON lines, as under dagster-dbt (the benchmark reads its timestamps).
    """
    target = ["--target", project.target] if project.target else []
    return ["--project-dir", project.project_dir, "--profiles-dir", project.profiles_dir, *target,
            "--target-path", str(target_path), "--log-path", str(target_path), "--log-format-file", "json",
            "--no-send-anonymous-usage-stats"]


def seed_partial_parse(saved: Path, run_target: Path) -> None:
    """Start a run's target folder from the saved last parse (`saved`), so dbt re-parses only what changed."""
    run_target.mkdir(parents=True, exist_ok=True)
    if saved.exists():
        shutil.copyfile(saved, run_target / "partial_parse.msgpack")


def keep_partial_parse(run_target: Path, saved: Path) -> bool:
    """Make this build's parsed project the one the next build starts from (`saved`); True when there was one.

    Every build parses in a target folder of its own, seeded with the saved `partial_parse.msgpack`
    (`seed_partial_parse`). dbt throws a saved parse away and parses the whole project when the
    vars, the profile (the warehouse's path is in it) or the env vars the project reads differ: on
    S's project a full parse took 4.3-4.9 CPU-s, one from a matching file 1.2-1.3 s. So each
    warehouse keeps its own (`orchestration.lib.dbt.dbt_parse_state_file`); with one file for the
    project, a build of another data dir in between (another business unit's warehouse, a Spark
    build, `ensure_manifest`'s `dbt parse` without our vars) cost the next build a full parse. dbt
    still re-parses whatever changed (it checks file hashes, vars, profile and env vars).
    A hard link plus rename: the saved file is replaced whole, never rewritten in place, so a
    concurrent run copying it reads the old or the new one, not a mix.
    """
    fresh = run_target / "partial_parse.msgpack"
    if not fresh.exists():
        return False
    saved.parent.mkdir(parents=True, exist_ok=True)
    staged = saved.with_name(f".{saved.name}-{uuid.uuid4().hex}")
    try:
        try:
            os.link(fresh, staged)
        except OSError:  # another file system (a data dir on its own volume): a copy does as well
            shutil.copyfile(fresh, staged)
        os.replace(staged, saved)
    finally:
        staged.unlink(missing_ok=True)
    return True


def parse_manifest(project: DbtProjectArgs, target_path: Path) -> Any:
    """Parse the dbt project in this process (dbt's `parse`), returning dbt's Manifest object.

    dbt reads env_var() from os.environ, so the caller exports the run's environment first. No
    manifest.json is written here: the build that uses this manifest writes its own artifacts.
    """
    from dbt.cli.main import dbtRunner

    # The parse's file log at dbt's default (debug: whether it parsed anew or reused the last parse), even when
    # `nps-link run` quiets dbt's console with DBT_LOG_LEVEL, whose value dbt also takes for the file log.
    file_level = [] if os.environ.get("DBT_LOG_LEVEL_FILE") else ["--log-level-file", "debug"]
    args = ["parse", "--quiet", "--no-write-json", *file_level, "--vars", project.vars_json,
            *_common_args(project, target_path)]
    with _DBT_LOCK:
        result = dbtRunner().invoke(args)
    if result.exception is not None:
        raise DbtBuildError(f"dbt parse raised: {result.exception}") from result.exception
    if not result.success or result.result is None:
        raise DbtBuildError(f"dbt parse failed; see {target_path / 'dbt.log'}")
    return result.result


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

    def __init__(self, args: Sequence[str], *, manifest: Any, project: DbtProjectArgs, target_path: Path) -> None:
        self.args = [*args, "--vars", project.vars_json, *_common_args(project, target_path)]
        self.manifest = manifest
        self.target_path = target_path
        self.error_messages: list[str] = []

    def events(self) -> Iterator[dict[str, Any]]:
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
                yield event
        finally:
            # Never leave dbt writing the warehouse behind a consumer that stopped early.
            thread.join()
        self._raise_on_failure(outcome)

    def _raise_on_failure(self, outcome: dict[str, Any]) -> None:
        # dbt raised (inside its runner or around it), or it ran and a node failed.
        exception = outcome.get("exception") or outcome["result"].exception
        if exception is not None:
            raise DbtBuildError(f"dbt {self.args[0]} raised: {exception}") from exception
        if not outcome["result"].success:
            details = "\n\n".join(["", "Errors from dbt's log:", *self.error_messages]) if self.error_messages else ""
            raise DbtBuildError(f"dbt {self.args[0]} failed; see the dbt log {self.target_path / 'dbt.log'}.{details}")
