"""dbt in the orchestrator's own process (orchestration/lib/dbt_runner.py).

GIVEN a small lake of CRM activities,
WHEN the same `dbt build` runs once as a dbt process with JSON logs (what dagster-dbt's
DbtCliResource reads) and once in this process on a copy of the same warehouse,
THEN the result events are the same, node by node, and so are the materializations and asset-check
results dagster-dbt makes of them; the warehouse file is closed afterwards (another connection with
other settings opens it). A failing error-severity test raises after its events.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import duckdb
import pytest

from orchestration.lib.dbt import (
    DBT_EXECUTABLE,
    DBT_PROJECT_DIR,
    TEST_SCOPE_ENV,
    NpsLinkDbtTranslator,
    dbt_parse_state_file,
    ensure_manifest,
)
from orchestration.lib.dbt_runner import (
    RESULT_EVENT_NAMES,
    DbtBuildError,
    DbtProjectArgs,
    InProcessDbtBuild,
    keep_partial_parse,
    parse_manifest,
    seed_partial_parse,
)
from orchestration.lib.settings import Settings
from tests.dbt.test_dbt_build import activities_lake, activity

# The marts' upstream and the tests on them alone (a singular test also reading other marts is left out).
SELECT = ["--select", "+fct_crm_contacts", "--indirect-selection", "cautious", "--exclude-resource-type", "unit_test"]
VALID_ACTIVITIES = [
    activity("A1", "C1", "R1", "outbound", "2025-05-01 00:00:00"),
    activity("A2", "C2", "R1", "inbound", "2025-05-02 00:00:00"),
]
# Fields of a result event that differ between any two runs (times, ids, threads).
# `index` is the node's place in the order the two threads happened to start nodes.
VOLATILE = {"ts", "invocation_id", "pid", "thread", "execution_time", "node_started_at", "node_finished_at",
            "msg", "timing", "adapter_response", "message", "index"}


def _environment(root: Path, db_path: Path) -> dict[str, str]:
    return {"NPS_LINK_DATA_DIR": str(root / "data"), "DUCKDB_PATH": str(db_path), TEST_SCOPE_ENV: ""}


def _stable(value: Any) -> Any:
    """An event with the fields that differ between any two runs left out."""
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


def _by_node(events: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(e["info"]["name"], e["data"]["node_info"]["unique_id"]): _stable(e) for e in events
            if e["info"]["name"] in RESULT_EVENT_NAMES}


def _dagster_events(events: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """What dagster-dbt makes of the events (no context: materializations and check evaluations)."""
    from dagster_dbt.core.dbt_cli_event import DbtCoreCliEventMessage

    # The manifest the code location's dbt assets are built from (parsed here if a fresh clone has none).
    manifest = json.loads(ensure_manifest().read_text())
    made = []
    results = [e for e in events if e["info"]["name"] in RESULT_EVENT_NAMES]
    for raw in sorted(results, key=lambda e: e["data"]["node_info"]["unique_id"]):
        message = DbtCoreCliEventMessage(raw_event=raw, event_history_metadata={})
        for event in message.to_default_asset_events(manifest=manifest, dagster_dbt_translator=NpsLinkDbtTranslator()):
            check = getattr(event, "asset_check_key", None)
            metadata = sorted(k for k in event.metadata if k != "Execution Duration")
            made.append((type(event).__name__, event.asset_key.to_user_string(), check.name if check else None,
                         getattr(event, "passed", None), metadata))
    return made


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A lake of valid activities and a warehouse built from it once (by a dbt process)."""
    root = tmp_path_factory.mktemp("dbt_runner")
    activities_lake(root, VALID_ACTIVITIES)
    env = {**os.environ, **_environment(root, root / "build.duckdb"), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    completed = subprocess.run(
        [str(DBT_EXECUTABLE), "build", *SELECT, "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir",
         str(DBT_PROJECT_DIR), "--target-path", str(root / "target"), "--log-path", str(root / "target"), "--quiet"],
        env=env, capture_output=True, text=True, check=False,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-2000:]
    return root


def _in_process(root: Path, db_path: Path, args: list[str], monkeypatch: pytest.MonkeyPatch,
                events: list[dict[str, Any]]) -> None:
    """Run `dbt <args>` in this process on `db_path`, appending its events to `events` as they come."""
    for name, value in _environment(root, db_path).items():
        monkeypatch.setenv(name, value)
    project = DbtProjectArgs.of(DBT_PROJECT_DIR, DBT_PROJECT_DIR, {})
    manifest = parse_manifest(project, db_path.parent / f"parse-{db_path.stem}")
    target_path = db_path.parent / f"target-{db_path.stem}"
    build = InProcessDbtBuild(args, manifest=manifest, project=project, target_path=target_path)
    for event in build.events():
        events.append(event)


def test_in_process_build_gives_dagster_the_events_of_a_dbt_process(
    built: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One file name in two folders: DuckDB names the database after the file, and events carry it.
    process_db, in_process_db = built / "process" / "build.duckdb", built / "in_process" / "build.duckdb"
    for copy in (process_db, in_process_db):
        copy.parent.mkdir()
        shutil.copyfile(built / "build.duckdb", copy)

    env = {**os.environ, **_environment(built, process_db), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    completed = subprocess.run(
        [str(DBT_EXECUTABLE), "build", *SELECT, "--log-format", "json", "--project-dir", str(DBT_PROJECT_DIR),
         "--profiles-dir", str(DBT_PROJECT_DIR), "--target-path", str(built / "target-process"),
         "--log-path", str(built / "target-process")],
        env=env, capture_output=True, text=True, check=True,
    )
    from_process = [json.loads(line) for line in completed.stdout.splitlines() if line.startswith("{")]

    from_this_process: list[dict[str, Any]] = []
    _in_process(built, in_process_db, ["build", *SELECT], monkeypatch, from_this_process)

    expected = _by_node(from_process)
    assert len(expected) > 20  # seeds, models and their tests ran
    assert _by_node(from_this_process) == expected
    made = _dagster_events(from_this_process)
    assert made == _dagster_events(from_process)
    assert {"AssetMaterialization", "AssetCheckEvaluation"} <= {kind for kind, *_ in made}
    # dbt-duckdb's database was closed (and checkpointed): other settings can open the file now.
    con = duckdb.connect(str(in_process_db), config={"threads": 1, "memory_limit": "1GB"})
    assert con.execute("select count(*) from marts.fct_crm_contacts").fetchall() == [(2,)]
    con.close()


def test_a_failing_test_raises_after_its_events(built: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db_path = built / "planted.duckdb"
    shutil.copyfile(built / "build.duckdb", db_path)
    con = duckdb.connect(str(db_path))
    con.execute("update staging.stg_crm__activities set direction = 'sideways' where activity_id = 'A1'")
    con.close()

    events: list[dict[str, Any]] = []
    with pytest.raises(DbtBuildError, match="accepted_values_stg_crm__activities_direction"):
        _in_process(built, db_path, ["test", "--select", "stg_crm__activities"], monkeypatch, events)
    failed = [e for e in events if e["info"]["name"] == "LogTestResult" and e["data"]["status"] == "fail"]
    assert [e["data"]["node_info"]["node_name"] for e in failed] == [
        "accepted_values_stg_crm__activities_direction__outbound__inbound"]
    duckdb.connect(str(db_path), config={"threads": 1}).close()  # closed after a failure too


def test_an_invocation_names_the_project_its_target_vars_and_run_folder(tmp_path: Path) -> None:
    project = DbtProjectArgs.of(DBT_PROJECT_DIR, DBT_PROJECT_DIR, {"b": 1, "a": ""}, target="spark")
    args = InProcessDbtBuild(["build", "--full-refresh"], manifest=None, project=project, target_path=tmp_path).args
    assert args[:4] == ["build", "--full-refresh", "--vars", '{"a": "", "b": 1}']
    assert args[args.index("--target") + 1] == "spark"
    assert args[args.index("--project-dir") + 1] == str(DBT_PROJECT_DIR)
    # Artifacts and the JSON file log in the run's own folder (the benchmark reads both there).
    assert [args[args.index(flag) + 1] for flag in ("--target-path", "--log-path", "--log-format-file")] == [
        str(tmp_path), str(tmp_path), "json"]
    default = DbtProjectArgs.of(DBT_PROJECT_DIR, DBT_PROJECT_DIR, {})
    assert "--target" not in InProcessDbtBuild(["build"], manifest=None, project=default, target_path=tmp_path).args


def test_dbt_duckdb_still_keeps_the_environment_we_close() -> None:
    # close_dbt_duckdb relies on dbt-duckdb's private class attributes: fail here if an upgrade renames them.
    from dbt.adapters.duckdb.connections import DuckDBConnectionManager

    assert {"_ENV", "_LOCK"} <= set(vars(DuckDBConnectionManager))


def _parse_for(root: Path, warehouse: str, saved: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """dbt's log of a parse for `<root>/<warehouse>.duckdb` as a build does it (from `saved`, kept there)."""
    for name, value in _environment(root, root / f"{warehouse}.duckdb").items():
        monkeypatch.setenv(name, value)
    run_target = root / f"parse-{len(list(root.glob('parse-*')))}"
    seed_partial_parse(saved, run_target)
    parse_manifest(DbtProjectArgs.of(DBT_PROJECT_DIR, DBT_PROJECT_DIR, {}), run_target)
    keep_partial_parse(run_target, saved)
    return (run_target / "dbt.log").read_text()


def test_each_warehouse_parses_from_its_own_last_parse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # dbt discards a parse made for another profile, and the warehouse's path is in the profile: a
    # build of one warehouse after another's would parse the whole project if they shared the file.
    unit_a, unit_b = Settings(data_dir=tmp_path / "unit_a"), Settings(data_dir=tmp_path / "unit_b")
    saved_a = dbt_parse_state_file(unit_a)
    assert saved_a.parent == unit_a.warehouse_dir
    assert len({saved_a, dbt_parse_state_file(unit_b), dbt_parse_state_file(unit_a, "spark")}) == 3

    first = _parse_for(tmp_path, "a", saved_a, monkeypatch)
    assert "because saved manifest not found" in first and saved_a.exists()  # nothing to start from yet
    shared = tmp_path / "one_file_for_the_project.msgpack"
    shutil.copyfile(saved_a, shared)
    between = _parse_for(tmp_path, "b", shared, monkeypatch)  # another warehouse's build in between
    assert "Unable to do partial parsing because profile has changed" in between
    again = _parse_for(tmp_path, "a", saved_a, monkeypatch)
    assert "Unable to do partial parsing" not in again
    assert "Nothing changed, skipping partial parsing" in again
