"""Build the dbt project on a tiny hand-made lake and check every metric against hand-computed values.

GIVEN a lake of a few customers, contacts, responses and orders written with pyarrow (the expected
value of every figure is worked out in the comments next to the rows),
WHEN `dbt build` runs on it (seeds, models, dbt unit tests and data tests) with as_of
2025-06-30 14:59:59 UTC, i.e. 2025-06-30 23:59:59 in Tokyo, the end of June in the reporting time zone,
THEN the build succeeds and the warehouse holds exactly the numbers DESIGN.md's definitions give.

The build runs once per module (about 10 s); each test reads one aspect of the resulting warehouse.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Iterator
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dbt.cli.main import dbtRunner, dbtRunnerResult

from orchestration.lib.lake import LOAD_MANIFEST_SCHEMA, ensure_lake_tables, lake_schema, load_manifest_path

DBT_PROJECT_DIR = Path(__file__).resolve().parents[2] / "dbt_project"
AS_OF = "2025-06-30 14:59:59"
PII_COLUMNS = {"contact_email", "customer_name", "rep_name", "email", "respondent_email"}


def ts(text: str) -> datetime:
    """A naive UTC timestamp from 'YYYY-MM-DD HH:MM:SS' (how the lake stores time)."""
    return datetime.fromisoformat(text)


def write_delivery(lake_dir: Path, table: str, seq: int, rows: list[dict[str, Any]]) -> None:
    """Write one delivered file of `table` as ingestion would: contract columns + load metadata."""
    schema = lake_schema(table)
    meta = {
        "_source_file": f"{table}/delivery_{seq}.csv",
        "_file_sha256": f"{seq:064d}",
        "_delivery_seq": seq,
        "_loaded_at": ts("2025-07-10 00:00:00"),
    }
    columns: dict[str, list[Any]] = {name: [] for name in schema.names}
    for number, row in enumerate(rows, start=1):
        # A row may name its own _row_number: driver scores carry the row of their response.
        full = {**meta, "_row_number": number, **row}
        for name in schema.names:
            columns[name].append(full.get(name))
    folder = lake_dir / "raw" / table
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns, schema=schema), folder / f"delivery_{seq}.parquet")


def activities_lake(root: Path, rows: list[dict[str, Any]]) -> Path:
    """A lake under `root/data` with every table's schema and one activities delivery (seq 1) of `rows`."""
    lake_dir = root / "data" / "lake"
    ensure_lake_tables(lake_dir)
    write_delivery(lake_dir, "crm_activities", 1, rows)
    return lake_dir


def activity(activity_id: str, customer_id: str, rep_id: str, direction: str, occurred_at: str) -> dict[str, Any]:
    """One CRM activity row (a call)."""
    return {
        "activity_id": activity_id,
        "customer_id": customer_id,
        "rep_id": rep_id,
        "activity_type": "call",
        "direction": direction,
        "occurred_at": ts(occurred_at),
    }


def response(
    response_id: str,
    customer_id: str,
    survey_type: str,
    touchpoint: str | None,
    responded_at: str,
    score: int,
    comment: str | None = None,
) -> dict[str, Any]:
    """One survey response row, with a respondent e-mail that must never reach the warehouse."""
    return {
        "response_id": response_id,
        "survey_type": survey_type,
        "customer_id": customer_id,
        "touchpoint": touchpoint,
        "responded_at": ts(responded_at),
        "nps_score": score,
        "comment": comment,
        "respondent_email": f"{response_id}@example.com",
    }


def order(order_id: str, customer_id: str, ordered_at: str, amount: str, currency: str, status: str) -> dict[str, Any]:
    """One order row; amount as a decimal string in the order's currency."""
    return {
        "order_id": order_id,
        "customer_id": customer_id,
        "ordered_at": ts(ordered_at),
        "amount": Decimal(amount),
        "currency": currency,
        "status": status,
        "product_line": "placement",
    }


def write_tiny_lake(lake_dir: Path) -> None:
    """The hand-made lake. All times are naive UTC; JST = UTC + 9 h."""
    ensure_lake_tables(lake_dir)

    # Accounts. C1's later delivery wins (segment enterprise, not smb), though only its first has an
    # updated_at: a version without one counts as of its load (2025-07-10). C2's first delivery wins
    # despite arriving first, because its CRM updated_at is later (updated_at orders versions first).
    # C3 has no segment (-> 'unknown' in nps_by_period). C4 is created after as_of.
    # C9 never arrives: an orphan seen in facts.
    def account(cid: str, segment: str | None, bu: str, created: str, owner: str, updated: str | None) -> dict:
        return {
            "customer_id": cid,
            "customer_name": f"Name of {cid}",
            "segment": segment,
            "business_unit": bu,
            "industry": "services",
            "region": "kanto",
            "created_at": ts(created),
            "owner_rep_id": owner,
            "contact_email": f"{cid}@example.com",
            "updated_at": ts(updated) if updated else None,
        }

    write_delivery(lake_dir, "crm_accounts", 1, [
        account("C1", "smb", "staffing", "2024-01-01 00:00:00", "R1", "2025-02-01 00:00:00"),
        account("C2", "mid_market", "media", "2025-03-24 12:00:00", "R2", "2025-02-01 00:00:00"),
        account("C3", None, "finance", "2023-06-01 00:00:00", "R1", None),
    ])
    write_delivery(lake_dir, "crm_accounts", 4, [
        account("C1", "enterprise", "staffing", "2024-01-01 00:00:00", "R1", None),
        account("C2", "smb", "media", "2025-03-24 12:00:00", "R2", "2025-01-01 00:00:00"),
        account("C4", "smb", "media", "2025-07-02 00:00:00", "R2", None),
    ])

    # Reps: R1 account management, R2 new sales (its second delivery corrects 'support'), R3 their
    # manager. R9 is referenced by an activity only: an orphan rep.
    def rep(rid: str, team: str, manager: str | None) -> dict:
        return {"rep_id": rid, "rep_name": f"Rep {rid}", "team": team, "manager_rep_id": manager,
                "email": f"{rid}@example.com", "active": True}

    write_delivery(lake_dir, "crm_reps", 2, [rep("R1", "account_management", "R3"), rep("R2", "support", "R3"),
                                             rep("R3", "other", None)])
    write_delivery(lake_dir, "crm_reps", 5, [rep("R2", "new_sales", "R3")])

    write_delivery(lake_dir, "crm_activities", 3, [
        # 2024-12-31 23:59:59 UTC = 2025-01-01 08:59:59 JST: January in Tokyo. One second before RA's window.
        activity("A2", "C1", "R2", "outbound", "2024-12-31 23:59:59"),
        # Exactly 90 days before RA (2025-04-01 00:00): inside the window.
        activity("A1", "C1", "R2", "outbound", "2025-01-01 00:00:00"),
        # Two days after C1's first order (2025-02-10 12:00): its first week, by new sales.
        activity("A7", "C1", "R2", "outbound", "2025-02-12 00:00:00"),
        activity("A4", "C1", "R1", "inbound", "2025-03-15 00:00:00"),
        # First account-management contact after the first order: hand-off 37.5 days.
        activity("A5", "C1", "R1", "outbound", "2025-03-20 00:00:00"),
        # At RA's response instant: not before RA, but inside RE's window.
        activity("A3", "C1", "R1", "outbound", "2025-04-01 00:00:00"),
        # After as_of: in no mart.
        activity("A6", "C1", "R1", "outbound", "2025-07-01 00:00:00"),
        activity("B1", "C2", "R2", "outbound", "2025-03-25 00:00:00"),
        activity("B2", "C2", "R2", "outbound", "2025-03-28 00:00:00"),
        activity("B3", "C2", "R2", "outbound", "2025-03-31 00:00:00"),
        activity("D1", "C9", "R9", "outbound", "2025-05-20 00:00:00"),
    ])

    # Responses (first delivery: RA scored 5; the re-delivery's 9 wins).
    write_delivery(lake_dir, "survey_responses", 6, [
        response("RA", "C1", "relational", None, "2025-04-01 00:00:00", 5),
        response("RC", "C3", "relational", None, "2025-05-15 00:00:00", 7),
    ])
    write_delivery(lake_dir, "survey_responses", 7, [
        # RA: window [2025-01-01, 2025-04-01): A1, A7, A5 outbound (A2 too early, A3 at the instant),
        # A4 inbound. Old account: exposure 90 d -> 3 / (90 / 30) = 1.0 a month.
        # Repeat window (04-01, 06-30 00:00] closes before as_of: observed; O2 (06-29) -> 1.
        response("RA", "C1", "relational", None, "2025-04-01 00:00:00", 9),
        # RB: C2 created 2025-03-24 12:00 -> 7.5 days -> 3 contacts / (7.5 / 30) = 12.0 a month.
        # Repeat window closes at 06-30 00:00 <= as_of: observed; only a cancelled order -> 0.
        response("RB", "C2", "transactional", "onboarding", "2025-04-01 00:00:00", 6, "返信が遅い"),
        # RG: no contacts, exposure 90 -> 0; window ends 07-19 > as_of -> repeat NULL.
        response("RG", "C3", "relational", None, "2025-04-20 00:00:00", 8),
        # RH: 31.5 days after C2's creation -> 3 / (31.5 / 30) = 2.857142...; repeat NULL (07-24).
        response("RH", "C2", "relational", None, "2025-04-25 00:00:00", 10),
        # RC: passive in May; repeat NULL.
        response("RC", "C3", "relational", None, "2025-05-15 00:00:00", 7),
        # RD: orphan; 2025-05-31 15:30 UTC = 2025-06-01 00:30 JST -> June. D1 -> 1 contact over the
        # full 90-day window (no created_at) -> 1/3 a month.
        response("RD", "C9", "transactional", None, "2025-05-31 15:30:00", 10),
        # RE: window [2025-03-22, 2025-06-20): A3 only -> 1 contact, no inbound (A4 03-15 too early).
        # Follow-up due 2025-07-04 > as_of: still in the window.
        response("RE", "C1", "transactional", "support", "2025-06-20 00:00:00", 3, "請求書が間違っていた"),
        # RF: after as_of, in no mart.
        response("RF", "C1", "relational", None, "2025-07-05 00:00:00", 0),
    ])

    # Driver scores carry the file row of their response (as ingestion writes them). RA's first
    # delivered row had three items, its latest only two: the latest set wins. RC's re-delivery has
    # no ratings at all, so its old ones must not survive.
    def driver(rid: str, row_number: int, name: str, score: int) -> dict:
        return {"response_id": rid, "driver": name, "score": score, "_row_number": row_number}

    write_delivery(lake_dir, "survey_driver_scores", 6, [
        driver("RA", 1, "responsiveness", 4), driver("RA", 1, "expertise", 5), driver("RA", 1, "speed", 3),
        driver("RC", 2, "speed", 6)])
    write_delivery(lake_dir, "survey_driver_scores", 7, [
        driver("RA", 1, "responsiveness", 9), driver("RA", 1, "expertise", 8), driver("RB", 2, "responsiveness", 2),
        driver("RF", 8, "responsiveness", 0)])

    # Orders (fx: USD 150, EUR 163 JPY). O2's re-delivery corrects 90 USD to 100 USD.
    write_delivery(lake_dir, "orders", 8, [order("O2", "C1", "2025-06-29 00:00:00", "90", "USD", "completed")])
    write_delivery(lake_dir, "orders", 9, [
        # C1's first order (12:00, for a fractional hand-off); 1630 JPY, before RA and RE.
        order("O0", "C1", "2025-02-10 12:00:00", "10", "EUR", "completed"),
        # At RA's instant: neither before nor after RA; before RE.
        order("O1", "C1", "2025-04-01 00:00:00", "1000", "JPY", "completed"),
        order("O2", "C1", "2025-06-29 00:00:00", "100", "USD", "completed"),
        order("O3", "C2", "2025-05-01 00:00:00", "50", "EUR", "cancelled"),
        order("O4", "C2", "2025-08-01 00:00:00", "70", "USD", "completed"),
        # 2025-06-01 00:00 UTC = 09:00 JST, June; 200 EUR = 32600 JPY.
        order("O5", "C9", "2025-06-01 00:00:00", "200", "EUR", "completed"),
    ])

    manifest = pa.Table.from_pylist(
        [
            {"source": "crm_accounts", "file": "crm_accounts/a.csv", "sha256": "a" * 64, "size_bytes": 120,
             "delivery_seq": 1, "file_format": "csv", "encoding": "utf-8", "rows_read": 3, "rows_loaded": 3,
             "rows_quarantined": 0, "status": "loaded", "reason": None, "rule_counts": "{}",
             "extra_columns": "[]", "missing_optional_columns": "[]", "loaded_at": ts("2025-07-10 00:00:00")},
            {"source": "orders", "file": "orders/bad.csv", "sha256": "b" * 64, "size_bytes": 80,
             "delivery_seq": 10, "file_format": "csv", "encoding": "cp932", "rows_read": 0, "rows_loaded": 0,
             "rows_quarantined": 0, "status": "rejected", "reason": "missing required column: amount",
             "rule_counts": "{}", "extra_columns": "[]", "missing_optional_columns": "[]",
             "loaded_at": ts("2025-07-10 00:00:01")},
        ],
        schema=LOAD_MANIFEST_SCHEMA,
    )
    pq.write_table(manifest, load_manifest_path(lake_dir))


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dbtRunnerResult, Path]]:
    """Run `dbt build` once on the tiny lake; yield the result and the warehouse path."""
    root = tmp_path_factory.mktemp("dbt_build")
    write_tiny_lake(root / "lake")
    db_path = root / "warehouse" / "build.duckdb"
    db_path.parent.mkdir(parents=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NPS_LINK_DATA_DIR", str(root))
        mp.setenv("DUCKDB_PATH", str(db_path))
        mp.setenv("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
        result = dbtRunner().invoke([
            "build",
            "--project-dir", str(DBT_PROJECT_DIR),
            "--profiles-dir", str(DBT_PROJECT_DIR),
            # Own target and log dirs, so parallel runs and the orchestrator's manifest never collide.
            "--target-path", str(root / "target"),
            "--log-path", str(root / "logs"),
            "--vars", json.dumps({"as_of": AS_OF}),
            "--quiet",
        ])
    yield result, db_path


@pytest.fixture(scope="module")
def warehouse(build: tuple[dbtRunnerResult, Path]) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection to the built warehouse (only once the build succeeded)."""
    result, db_path = build
    assert result.success, f"dbt build failed: {result.exception or _failures(result)}"
    con = duckdb.connect(str(db_path))
    yield con
    con.close()


def _failures(result: dbtRunnerResult) -> list[str]:
    return [f"{r.node.name}: {r.status} {r.message}" for r in result.result or [] if r.status in ("error", "fail")]


def rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[tuple]:
    """All rows of a query, fetched fully (DuckDB refuses new work while a result is open)."""
    return con.execute(sql).fetchall()


def by_key(con: duckdb.DuckDBPyConnection, sql: str) -> dict[Any, tuple]:
    """Rows of a query keyed by their first column."""
    return {row[0]: row[1:] for row in rows(con, sql)}


def moe95(promoters: int, detractors: int, n: int) -> float:
    """DESIGN.md's NPS margin of error, computed here independently of the SQL macro."""
    p, d = promoters / n, detractors / n
    return 1.96 * 100 * math.sqrt((p + d - (p - d) ** 2) / n)


def test_dbt_build_tiny_lake_runs_unit_and_data_tests_without_failure(
    build: tuple[dbtRunnerResult, Path],
) -> None:
    result, _ = build
    assert result.success, _failures(result)
    statuses = {r.node.unique_id: r.status for r in result.result}
    unit_tests = [uid for uid in statuses if uid.startswith("unit_test.")]
    data_tests = [uid for uid in statuses if uid.startswith("test.")]
    assert len(unit_tests) >= 7
    assert all(statuses[uid] == "pass" for uid in unit_tests)
    assert len(data_tests) > 100
    # The only warnings allowed are the orphan checks in staging (C9 has no account): expected data.
    warned = sorted(uid for uid in data_tests if statuses[uid] == "warn")
    assert warned and all("relationships_stg_" in uid and "stg_crm__accounts" in uid for uid in warned), warned


def test_fct_survey_responses_contact_window_counts_outbound_before_response_only(
    warehouse: duckdb.DuckDBPyConnection,
) -> None:
    got = by_key(warehouse, "select response_id, contacts_before, inbound_before from marts.fct_survey_responses")
    assert got == {
        "RA": (3, 1),  # A1 (exactly 90 d before), A7, A5; not A2 (1 s early) nor A3 (at the instant); A4 inbound
        "RB": (3, 0),
        "RG": (0, 0),
        "RH": (3, 0),
        "RC": (0, 0),
        "RD": (1, 0),
        "RE": (1, 0),  # A3 only
    }


def test_fct_survey_responses_exposure_days_fractional_for_young_accounts(
    warehouse: duckdb.DuckDBPyConnection,
) -> None:
    got = by_key(warehouse, "select response_id, exposure_days, contacts_per_month from marts.fct_survey_responses")
    expected = {
        "RA": (90.0, 1.0),
        "RB": (7.5, 12.0),  # created 7.5 days before
        "RG": (90.0, 0.0),
        "RH": (31.5, 3 / (31.5 / 30)),
        "RC": (90.0, 0.0),
        "RD": (90.0, 1 / 3),  # orphan: the full window
        "RE": (90.0, 1 / 3),
    }
    assert got.keys() == expected.keys()
    for response_id, (exposure, per_month) in expected.items():
        assert got[response_id] == (pytest.approx(exposure, abs=1e-9), pytest.approx(per_month, abs=1e-9))


def test_fct_survey_responses_repeat_after_censored_when_window_ends_after_as_of(
    warehouse: duckdb.DuckDBPyConnection,
) -> None:
    got = by_key(warehouse, "select response_id, repeat_after from marts.fct_survey_responses")
    assert got == {
        "RA": (1,),  # O2 on 06-29 within (04-01, 06-30 00:00]; O1 at the instant does not count
        "RB": (0,),  # only a cancelled order; O4 is after as_of
        "RG": (None,), "RH": (None,), "RC": (None,), "RD": (None,), "RE": (None,),
    }


def test_fct_survey_responses_revenue_windows_and_after_as_of_response_excluded(
    warehouse: duckdb.DuckDBPyConnection,
) -> None:
    got = by_key(
        warehouse,
        "select response_id, revenue_prior_365d, revenue_next_365d, is_orphan_customer, segment, tenure_days "
        "from marts.fct_survey_responses",
    )
    assert "RF" not in got  # answered after as_of
    assert got["RA"][:4] == (1630.0, None, False, "enterprise")  # O0 only; next 365 d still open
    assert got["RE"][:2] == (2630.0, None)  # O0 + O1
    assert got["RD"][2:] == (True, None, None)  # orphan: no segment, no tenure
    assert got["RB"][4] == pytest.approx(7.5)


def test_nps_by_period_counts_nps_and_moe_match_hand_computation(warehouse: duckdb.DuckDBPyConnection) -> None:
    cells = {
        (row[0], row[1], row[2], row[3]): row[4:]
        for row in rows(
            warehouse,
            "select period_month, survey_type, dimension, dimension_value, responses, promoters, passives, "
            "detractors, nps, nps_moe95 from marts.nps_by_period",
        )
    }
    april, may, june = date(2025, 4, 1), date(2025, 5, 1), date(2025, 6, 1)
    # April, all types: RA 9 (P), RB 6 (D), RG 8 (Pa), RH 10 (P) -> NPS 100 x (2 - 1) / 4 = 25.
    n, p, pa_, d = cells[(april, "all", "overall", "all")][:4]
    assert (n, p, pa_, d) == (4, 2, 1, 1)
    assert cells[(april, "all", "overall", "all")][4] == pytest.approx(25.0)
    assert cells[(april, "all", "overall", "all")][5] == pytest.approx(moe95(2, 1, 4))
    # April relational: RA, RG, RH -> 100 x 2 / 3.
    assert cells[(april, "relational", "overall", "all")][0] == 3
    assert cells[(april, "relational", "overall", "all")][4] == pytest.approx(200 / 3)
    # A single response has no margin of error.
    assert cells[(april, "transactional", "overall", "all")] == (1, 0, 0, 1, -100.0, None)
    # Segments in April: mid_market = RB + RH, C3's missing segment is 'unknown'.
    assert cells[(april, "all", "segment", "mid_market")][:4] == (2, 1, 0, 1)
    assert cells[(april, "all", "segment", "mid_market")][5] == pytest.approx(moe95(1, 1, 2))
    assert cells[(april, "all", "segment", "unknown")][:4] == (1, 0, 1, 0)
    assert cells[(april, "all", "touchpoint", "unknown")][0] == 3
    assert cells[(may, "all", "overall", "all")][:4] == (1, 0, 1, 0)
    # June (Tokyo): RD (05-31 15:30 UTC) and RE; RF is after as_of.
    assert cells[(june, "all", "overall", "all")][:4] == (2, 1, 0, 1)
    assert cells[(june, "transactional", "business_unit", "unknown")][:4] == (1, 1, 0, 0)
    assert (date(2025, 7, 1), "all", "overall", "all") not in cells
    assert not any(key[0] == date(2025, 5, 1) and key[1] == "transactional" for key in cells)


def test_fct_customer_months_tokyo_month_cut_and_dense_spine(warehouse: duckdb.DuckDBPyConnection) -> None:
    counts = by_key(warehouse, "select customer_id, count(*) from marts.fct_customer_months group by 1")
    # Jan 2024..Jun 2025, Mar..Jun 2025, Jun 2023..Jun 2025, May..Jun 2025; C4 is created after as_of.
    assert counts == {"C1": (18,), "C2": (4,), "C3": (25,), "C9": (2,)}
    c1 = {
        row[0]: row[1:]
        for row in rows(
            warehouse,
            "select month, contacts, inbound_contacts, responses, avg_nps_score, revenue, orders "
            "from marts.fct_customer_months where customer_id = 'C1'",
        )
    }
    assert c1[date(2024, 12, 1)] == (0, 0, 0, None, 0.0, 0)  # A2 is 2024-12-31 UTC but January in Tokyo
    assert c1[date(2025, 1, 1)] == (2, 0, 0, None, 0.0, 0)  # A2 and A1
    assert c1[date(2025, 2, 1)] == (1, 0, 0, None, 1630.0, 1)
    assert c1[date(2025, 3, 1)] == (1, 1, 0, None, 0.0, 0)
    assert c1[date(2025, 4, 1)] == (1, 0, 1, 9.0, 1000.0, 1)
    assert c1[date(2025, 6, 1)] == (0, 0, 1, 3.0, 15000.0, 1)  # A6 (07-01) is after as_of
    c2_may = rows(warehouse, "select revenue, orders from marts.fct_customer_months "
                             "where customer_id = 'C2' and month = date '2025-05-01'")
    assert c2_may == [(0.0, 0)]  # a cancelled order is no revenue
    c9_june = rows(warehouse, "select responses, revenue from marts.fct_customer_months "
                              "where customer_id = 'C9' and month = date '2025-06-01'")
    assert c9_june == [(1, 32600.0)]  # RD at 00:30 JST June 1st


def test_staging_redelivered_rows_latest_delivery_wins(warehouse: duckdb.DuckDBPyConnection) -> None:
    assert by_key(warehouse, "select customer_id, segment from staging.stg_crm__accounts") == {
        "C1": ("enterprise",), "C2": ("mid_market",), "C3": (None,), "C4": ("smb",),
    }
    assert rows(warehouse, "select team from staging.stg_crm__reps where rep_id = 'R2'") == [("new_sales",)]
    assert rows(warehouse, "select nps_score from staging.stg_survey__responses where response_id = 'RA'") == [(9,)]
    assert rows(warehouse, "select amount from staging.stg_billing__orders where order_id = 'O2'") == [
        (Decimal("100.0000"),)
    ]
    assert by_key(warehouse, "select driver, score from marts.fct_survey_driver_scores where response_id = 'RA'") == {
        "responsiveness": (9,), "expertise": (8,),
    }
    assert by_key(warehouse, "select response_id, count(*) from marts.fct_survey_driver_scores group by 1") == {
        "RA": (2,), "RB": (1,),  # not RC (its latest version has no ratings), not RF (after as_of)
    }


def test_dims_orphans_kept_and_flagged(warehouse: duckdb.DuckDBPyConnection) -> None:
    customers = by_key(warehouse, "select customer_id, is_orphan, segment from marts.dim_customers")
    assert customers == {
        "C1": (False, "enterprise"), "C2": (False, "mid_market"), "C3": (False, None), "C4": (False, "smb"),
        "C9": (True, None),
    }
    reps = by_key(warehouse, "select rep_id, is_orphan, team from marts.dim_reps")
    assert reps == {
        "R1": (False, "account_management"), "R2": (False, "new_sales"), "R3": (False, "other"), "R9": (True, None),
    }
    assert rows(warehouse, "select is_orphan_customer from marts.fct_crm_contacts where activity_id = 'D1'") == [
        (True,)
    ]


def test_dim_customers_onboarding_and_handoff_from_first_order(warehouse: duckdb.DuckDBPyConnection) -> None:
    got = by_key(
        warehouse,
        "select customer_id, first_order_at, outbound_contacts_first_7d, handoff_days from marts.dim_customers",
    )
    # C1: first order 02-10 12:00; A7 (new sales) in its first week; A5 (account management) 37.5 d later.
    assert got["C1"] == (ts("2025-02-10 12:00:00"), 1, pytest.approx(37.5))
    assert got["C2"] == (None, None, None)  # cancelled orders only (O4 is after as_of)
    assert got["C9"] == (ts("2025-06-01 00:00:00"), 0, None)


def test_fct_orders_amount_reporting_uses_seed_rates_and_cut_off(warehouse: duckdb.DuckDBPyConnection) -> None:
    assert by_key(warehouse, "select order_id, amount_reporting from marts.fct_orders") == {
        "O0": (1630.0,), "O1": (1000.0,), "O2": (15000.0,), "O3": (8150.0,), "O5": (32600.0,),
    }


def test_detractor_followups_lists_detractors_with_owner_and_manager(warehouse: duckdb.DuckDBPyConnection) -> None:
    got = by_key(
        warehouse,
        "select response_id, owner_rep_id, manager_rep_id, comment, is_in_followup_window, followup_due_at "
        "from marts.detractor_followups",
    )
    assert got == {
        "RB": ("R2", "R3", "返信が遅い", False, ts("2025-04-15 00:00:00")),
        "RE": ("R1", "R3", "請求書が間違っていた", True, ts("2025-07-04 00:00:00")),
    }


def test_int_run_parameters_as_of_var_is_the_cut_off(warehouse: duckdb.DuckDBPyConnection) -> None:
    got = rows(warehouse, "select as_of_at, latest_event_at, contact_window_days from intermediate.int_run_parameters")
    assert got == [(ts(AS_OF), ts("2025-08-01 00:00:00"), 90)]  # O4 (08-01) is the latest event loaded


def test_load_audit_one_row_per_manifest_entry(warehouse: duckdb.DuckDBPyConnection) -> None:
    assert by_key(warehouse, "select file, status, rows_unaccounted from marts.load_audit") == {
        "crm_accounts/a.csv": ("loaded", 0),
        "orders/bad.csv": ("rejected", None),
    }


def test_warehouse_no_personal_data_columns_in_any_schema(warehouse: duckdb.DuckDBPyConnection) -> None:
    columns = rows(
        warehouse,
        "select table_schema, table_name, column_name from information_schema.columns "
        "where table_schema in ('staging', 'intermediate', 'marts')",
    )
    assert {schema for schema, _, _ in columns} == {"staging", "intermediate", "marts"}
    assert [c for c in columns if c[2].lower() in PII_COLUMNS] == []
    with_comment = {table for _, table, column in columns if column == "comment"}
    assert with_comment <= {"stg_survey__responses", "int_responses_categorized", "detractor_followups"}


def test_warehouse_views_resolve_in_a_copy_under_another_file_name(
    warehouse: duckdb.DuckDBPyConnection, build: tuple[dbtRunnerResult, Path]
) -> None:
    # The publish step copies build.duckdb to nps_link.duckdb, and DuckDB names a database after its
    # file: every view must still resolve there (DuckDB stores a view without its own catalog name,
    # and views over the lake use absolute paths), or analysts' staging/intermediate queries break.
    _, db_path = build
    warehouse.execute("checkpoint")
    published = db_path.with_name("nps_link.duckdb")
    shutil.copy(db_path, published)
    con = duckdb.connect(str(published), read_only=True)
    try:
        views = rows(con, "select table_schema, table_name from information_schema.tables where table_type = 'VIEW'")
        assert len(views) >= 5
        for schema, name in views:
            con.execute(f'select count(*) from "{schema}"."{name}"').fetchall()
    finally:
        con.close()
