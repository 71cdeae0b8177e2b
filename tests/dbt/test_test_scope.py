"""Data tests sized to the run (macros/test_scope.sql): an incremental build checks only the rows
delivered since the last published build, a full build checks every row.

GIVEN a lake of activities whose first delivery holds a planted violation (direction 'sideways'),
staged once, and later deliveries,
WHEN stg_crm__activities is built with its tests (dbt build, as in the pipeline) incrementally with
the previous watermark in NPS_LINK_TEST_SCOPE_SINCE, with --full-refresh, without a watermark, and
after a delivery that plants a second violation,
THEN the limited tests skip the old row, still fail on the new violation (and count only it), and the
full builds fail on the old one: full coverage on --full-refresh and whenever there is no watermark.
The same holds for a mart that is a view (fct_crm_contacts), scoped by the staged rows' delivery.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from orchestration.lib.dbt import DBT_EXECUTABLE, DBT_PROJECT_DIR, TEST_SCOPE_ENV
from orchestration.lib.lake import ensure_lake_tables
from tests.dbt.test_dbt_build import activities_lake, activity, write_delivery

DIRECTION_TEST = "accepted_values_stg_crm__activities_direction__outbound__inbound"


def _dbt(root: Path, command: str, select: str, *args: str, since: int | str = "") -> dict[str, dict]:
    """`dbt <command> --select <select>` on the test's warehouse; the results by node name."""
    env = {**os.environ, "NPS_LINK_DATA_DIR": str(root / "data"), "DUCKDB_PATH": str(root / "build.duckdb"),
           "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", TEST_SCOPE_ENV: str(since)}
    subprocess.run(
        [str(DBT_EXECUTABLE), command, "--select", select, "--indirect-selection", "cautious",
         *args, "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR),
         "--target-path", str(root / "target"), "--log-path", str(root / "logs"),
         "--quiet"],
        env=env, capture_output=True, text=True, check=False,
    )
    results = json.loads((root / "target" / "run_results.json").read_text())["results"]
    return {r["unique_id"].split(".")[2]: r for r in results}


def _models(root: Path, since: int | str = "") -> dict[str, dict]:
    """The seeds and models fct_crm_contacts is built from, and it, without any test."""
    return _dbt(root, "build", "+fct_crm_contacts", "--exclude-resource-type", "test",
                "--exclude-resource-type", "unit_test", since=since)


def _build(root: Path, *args: str, since: int | str = "") -> dict[str, dict]:
    """`dbt build` of stg_crm__activities and the tests on it alone; the results by test name."""
    return _dbt(root, "build", "stg_crm__activities", *args, since=since)


def _direction_test(results: dict[str, dict]) -> dict:
    return results[DIRECTION_TEST]


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A lake whose first activities delivery (seq 1) holds the planted old violation A2."""
    root = tmp_path_factory.mktemp("test_scope")
    activities_lake(root, [
        activity("A1", "C1", "R1", "outbound", "2025-05-01 00:00:00"),
        activity("A2", "C1", "R1", "sideways", "2025-05-02 00:00:00"),
    ])
    return root


def test_limited_tests_skip_old_rows_and_full_builds_see_them(lake: Path) -> None:
    # The first build has no previous one: every row is tested, and the planted row fails.
    first = _direction_test(_build(lake))
    assert (first["status"], first["failures"]) == ("fail", 1)

    # A valid delivery (seq 2), built incrementally with the watermark 1: only A3 is tested.
    write_delivery(lake / "data" / "lake", "crm_activities", 2, [
        activity("A3", "C1", "R1", "inbound", "2025-05-03 00:00:00"),
    ])
    incremental = _build(lake, since=1)
    assert _direction_test(incremental)["status"] == "pass"
    assert "_delivery_seq > 1" in _direction_test(incremental)["compiled_code"]
    assert all(r["status"] == "pass" for name, r in incremental.items() if name.startswith(("not_null", "unique")))

    # --full-refresh tests every row whatever the var says.
    full = _direction_test(_build(lake, "--full-refresh", since=1))
    assert (full["status"], full["failures"]) == ("fail", 1)

    # No watermark (no published build to trust): every row again.
    assert _direction_test(_build(lake))["status"] == "fail"


def test_a_violation_in_new_rows_still_fails_the_limited_test(lake: Path) -> None:
    # A later delivery (seq 3) plants a second violation; the old one (seq 1) is below the watermark.
    write_delivery(lake / "data" / "lake", "crm_activities", 3, [
        activity("A4", "C2", "R1", "upward", "2025-05-04 00:00:00"),
        activity("A5", "C2", "R1", "outbound", "2025-05-04 01:00:00"),
    ])
    limited = _direction_test(_build(lake, since=2))
    # Exactly the new violation: the limited test saw A4 and A5, not A2.
    assert (limited["status"], limited["failures"]) == ("fail", 1)


def test_a_view_mart_is_scoped_by_the_delivery_of_its_staged_rows(tmp_path: Path) -> None:
    # A view mart has no rows of its own: its grain tests are scoped by the delivery of the staged
    # rows it shows (fct_crm_contacts._delivery_seq). Delivery 1 plants an activity without a key,
    # which staging keeps (one row per key, NULL included). Seeds and models are built without their
    # tests, so that staging's own failing not_null test does not skip the marts.
    lake_dir = tmp_path / "data" / "lake"
    ensure_lake_tables(lake_dir)
    write_delivery(lake_dir, "crm_activities", 1, [
        activity("B1", "C1", "R1", "outbound", "2025-05-01 00:00:00"),
        activity(None, "C1", "R1", "inbound", "2025-05-02 00:00:00"),  # type: ignore[arg-type]
    ])
    assert all(r["status"] in ("success", "pass") for r in _models(tmp_path).values())
    grain_tests = ("unique_fct_crm_contacts_activity_id", "not_null_fct_crm_contacts_activity_id")
    first = _dbt(tmp_path, "test", "fct_crm_contacts")
    assert (first[grain_tests[1]]["status"], first[grain_tests[1]]["failures"]) == ("fail", 1)

    # A valid delivery (seq 2), built incrementally and tested with the watermark 1: only B2 is read.
    write_delivery(lake_dir, "crm_activities", 2, [activity("B2", "C2", "R1", "outbound", "2025-05-03 00:00:00")])
    assert all(r["status"] in ("success", "pass") for r in _models(tmp_path, since=1).values())
    limited = _dbt(tmp_path, "test", "fct_crm_contacts", since=1)
    for name in grain_tests:
        assert limited[name]["status"] == "pass", name
        assert "_delivery_seq > 1" in limited[name]["compiled_code"], name

    # Without a watermark every row of the view is tested again, and the old row fails.
    whole = _dbt(tmp_path, "test", "fct_crm_contacts")
    assert (whole[grain_tests[1]]["status"], whole[grain_tests[1]]["failures"]) == ("fail", 1)
    assert "_delivery_seq >" not in whole[grain_tests[1]]["compiled_code"]
