"""Every contract rule: a row that breaks it is quarantined with its reason, the rest of the file loads."""

from __future__ import annotations

import csv
import itertools
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from orchestration.lib.ingest import FileLoadResult, ingest_source
from orchestration.lib.ingest.rules import _trimmed, _typed
from orchestration.lib.lake import lake_schema, quarantine_dir, raw_dir
from orchestration.lib.settings import Settings
from quality.contract import ColumnSpec, load_contract

NOW = datetime(2025, 6, 1)  # "not in the future" is judged against this instant (naive UTC)

# One valid row per source; each case below breaks exactly one value of it.
VALID: dict[str, dict[str, str]] = {
    "crm_accounts": {
        "customer_id": "c1",
        "segment": "smb",
        "created_at": "2025-01-01T00:00:00+09:00",
        "updated_at": "2025-01-02T00:00:00+09:00",
    },
    "crm_reps": {"rep_id": "r1", "team": "new_sales", "active": "true"},
    "crm_activities": {
        "activity_id": "a1",
        "customer_id": "c1",
        "activity_type": "call",
        "direction": "outbound",
        "occurred_at": "2025-01-02 09:00:00",
        "duration_minutes": "5",
    },
    "survey_responses": {
        "response_id": "s1",
        "survey_type": "relational",
        "customer_id": "c1",
        "responded_at": "2025-02-01T12:00:00+09:00",
        "nps_score": "9",
        "driver_ease": "8",
    },
    "orders": {
        "order_id": "o1",
        "customer_id": "c1",
        "ordered_at": "2025-03-01",
        "amount": "100.5",
        "currency": "USD",
        "status": "completed",
    },
}

# (source, column, bad value, rule reported, fragment of the reason after "<file> row 2: ")
ACC, REP, ACT, SUR, ORD = "crm_accounts", "crm_reps", "crm_activities", "survey_responses", "orders"
CASES = [
    (ACC, "customer_id", "", "customer_id:required", "customer_id is empty, breaks rule customer_id is required"),
    (ACC, "created_at", "yesterday", "created_at:type", "created_at=yesterday breaks rule created_at is an ISO 8601"),
    (ACC, "created_at", "2030-01-01T00:00:00Z", "created_at:not_in_future", "breaks rule created_at not in the future"),
    (ACC, "created_at", "", "created_at:required", "created_at is empty"),
    (ACC, "updated_at", "2025-02-30T00:00:00", "updated_at:type", "updated_at=2025-02-30T00:00:00 breaks rule"),
    # Nine fraction digits are ISO 8601 as systems write it (.NET, Java); ten are not a time anyone writes.
    (ACC, "updated_at", "2025-01-01T00:00:00.1234567890", "updated_at:type", "breaks rule updated_at is an ISO 8601"),
    (REP, "rep_id", " ", "rep_id:required", "rep_id is empty"),
    (REP, "team", "ceo", "team:enum", "team=ceo breaks rule team in (new_sales, account_management, support, other)"),
    (REP, "team", "", "team:required", "team is empty"),
    (REP, "active", "maybe", "active:type", "active=maybe breaks rule active is a boolean"),
    (ACT, "activity_id", "", "activity_id:required", "activity_id is empty"),
    (ACT, "customer_id", "", "customer_id:required", "customer_id is empty"),
    (ACT, "activity_type", "fax", "activity_type:enum", "activity_type=fax breaks rule activity_type in"),
    (ACT, "activity_type", "", "activity_type:required", "activity_type is empty"),
    (ACT, "direction", "", "direction:required", "direction is empty"),
    (ACT, "direction", "sideways", "direction:enum", "direction=sideways breaks rule direction in"),
    (ACT, "occurred_at", "2025-13-01 10:00", "occurred_at:type", "occurred_at=2025-13-01 10:00 breaks rule"),
    (ACT, "occurred_at", "2025-06-02T00:00:00", "occurred_at:not_in_future", "not in the future"),
    (ACT, "occurred_at", "", "occurred_at:required", "occurred_at is empty"),
    (ACT, "duration_minutes", "-5", "duration_minutes:range", "duration_minutes=-5 breaks rule duration_minutes >= 0"),
    (ACT, "duration_minutes", "ten", "duration_minutes:type", "duration_minutes=ten breaks rule"),
    (ACT, "duration_minutes", "inf", "duration_minutes:type", "is a finite number"),
    (SUR, "response_id", "", "response_id:required", "response_id is empty"),
    (SUR, "survey_type", "", "survey_type:required", "survey_type is empty"),
    (SUR, "survey_type", "annual", "survey_type:enum", "survey_type=annual breaks rule survey_type in"),
    (SUR, "customer_id", "", "customer_id:required", "customer_id is empty"),
    (SUR, "responded_at", "2025/02/01 12:00", "responded_at:type", "responded_at=2025/02/01 12:00 breaks"),
    (SUR, "responded_at", "2031-01-01", "responded_at:not_in_future", "responded_at not in the future"),
    (SUR, "responded_at", "", "responded_at:required", "responded_at is empty"),
    (SUR, "nps_score", "11", "nps_score:range", "nps_score=11 breaks rule 0 <= nps_score <= 10"),
    (SUR, "nps_score", "-1", "nps_score:range", "nps_score=-1 breaks rule 0 <= nps_score <= 10"),
    (SUR, "nps_score", "8.5", "nps_score:type", "nps_score=8.5 breaks rule nps_score is an integer"),
    (SUR, "nps_score", "", "nps_score:required", "nps_score is empty"),
    (SUR, "driver_ease", "12", "driver_ease:range", "driver_ease=12 breaks rule 0 <= driver_ease <= 10"),
    (SUR, "driver_ease", "good", "driver_ease:type", "driver_ease=good breaks rule driver_ease is an integer"),
    (ORD, "order_id", "", "order_id:required", "order_id is empty"),
    (ORD, "customer_id", "", "customer_id:required", "customer_id is empty"),
    (ORD, "ordered_at", "2025-07-01", "ordered_at:not_in_future", "ordered_at not in the future"),
    (ORD, "ordered_at", "", "ordered_at:required", "ordered_at is empty"),
    (ORD, "ordered_at", "1 March 2025", "ordered_at:type", "ordered_at=1 March 2025 breaks rule"),
    (ORD, "amount", "1,000", "amount:type", "amount=1,000 breaks rule amount is a decimal"),
    (ORD, "amount", "", "amount:required", "amount is empty"),
    (ORD, "currency", "XYZ", "currency:iso4217", "currency=XYZ breaks rule currency is an active ISO 4217"),
    (ORD, "status", "pending", "status:enum", "status=pending breaks rule status in (completed, cancelled, refunded)"),
]


def write_csv(settings: Settings, source: str, name: str, rows: list[dict[str, str]]) -> Path:
    path = settings.landing_dir / source / name
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path


def only_file(settings: Settings, source: str) -> FileLoadResult:
    result = ingest_source(source, settings, now=NOW)
    assert len(result.files) == 1
    return result.files[0]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=(tmp_path / "data").resolve())


@pytest.mark.parametrize(("source", "column", "bad", "rule", "fragment"), CASES, ids=[c[3] + "=" + c[2] for c in CASES])
def test_ingest_row_breaking_rule_is_quarantined_with_reason_and_rest_loads(
    settings: Settings, source: str, column: str, bad: str, rule: str, fragment: str
) -> None:
    good = VALID[source]
    key = load_contract().sources[source].key
    broken = {**good, key: good[key] + "-2", column: bad} if column != key else {**good, column: bad}
    rows = [good, broken, {**good, key: good[key] + "-3"}]
    write_csv(settings, source, "delivery.csv", rows)

    loaded = only_file(settings, source)

    assert (loaded.status, loaded.rows_read, loaded.rows_loaded, loaded.rows_quarantined) == ("loaded", 3, 2, 1)
    assert loaded.rule_counts == {rule: 1}
    raw = pq.read_table(raw_dir(settings.lake_dir, source) / f"{loaded.sha256}.parquet")
    assert raw.column("_row_number").to_pylist() == [1, 3]
    quarantined = pq.read_table(quarantine_dir(settings.lake_dir, source) / f"{loaded.sha256}.parquet").to_pylist()
    assert len(quarantined) == 1
    row = quarantined[0]
    assert (row["_row_number"], row["_rule"], row["_source_file"]) == (2, rule, f"{source}/delivery.csv")
    assert row["_reason"].startswith(f"{source}/delivery.csv row 2: ")
    assert fragment in row["_reason"]
    # The raw value is kept exactly as delivered (CSV turns an empty field into NULL).
    assert row[column] == (bad or None)


def test_ingest_cases_cover_every_rule_of_the_contract() -> None:
    """A rule added to the contract must get a case above (and an implementation in the engine)."""
    covered = {(source, rule.split(":")[0], rule.split(":")[1]) for source, _c, _b, rule, _f in CASES}
    for source, spec in load_contract().sources.items():
        for col in [*spec.columns.values(), *spec.column_patterns.values()]:
            name = "driver_ease" if col.name == "driver_*" else col.name
            if col.required and col.default is None:
                assert (source, name, "required") in covered, (source, name)
            if col.type not in ("string", "enum"):
                assert (source, name, "type") in covered, (source, name)
            if col.type == "enum":
                assert (source, name, "enum") in covered, (source, name)
            if col.rule:
                assert any(s == source and c == name and k not in ("required", "type", "enum") for s, c, k in covered)


def test_ingest_row_breaking_several_rules_reports_first_in_contract_order_and_counts_once(settings: Settings) -> None:
    good = VALID["survey_responses"]
    # customer_id comes before nps_score in the contract, so its rule is the one reported.
    broken = {**good, "response_id": "s2", "customer_id": "", "nps_score": "99"}
    write_csv(settings, "survey_responses", "x.csv", [good, broken])

    loaded = only_file(settings, "survey_responses")

    assert (loaded.rows_read, loaded.rows_loaded, loaded.rows_quarantined) == (2, 1, 1)
    assert loaded.rule_counts == {"customer_id:required": 1}


def test_ingest_valid_rows_are_typed_per_contract_with_defaults_applied(settings: Settings) -> None:
    write_csv(
        settings,
        "orders",
        "o.csv",
        [
            {
                "order_id": " o1 ",
                "customer_id": "c1",
                "ordered_at": "2025-03-01",
                "amount": "-12.3456",
                "currency": "usd",
            },
            {"order_id": "o2", "customer_id": "c1", "ordered_at": "2025-03-01", "amount": "7", "currency": ""},
        ],
    )
    write_csv(settings, "crm_reps", "r.csv", [{"rep_id": "r1", "team": " Support "}, {"rep_id": "r2", "team": "other"}])

    orders = only_file(settings, "orders")
    reps = only_file(settings, "crm_reps")

    assert orders.missing_optional_columns == ["status", "product_line"]
    table = pq.read_table(raw_dir(settings.lake_dir, "orders") / f"{orders.sha256}.parquet")
    assert table.schema == lake_schema("orders")
    got = table.select(["order_id", "amount", "currency", "status"]).to_pylist()
    assert got == [
        {"order_id": "o1", "amount": Decimal("-12.3456"), "currency": "USD", "status": "completed"},
        {"order_id": "o2", "amount": Decimal("7.0000"), "currency": "JPY", "status": "completed"},
    ]
    rep_rows = pq.read_table(raw_dir(settings.lake_dir, "crm_reps") / f"{reps.sha256}.parquet").to_pylist()
    assert [(r["team"], r["active"]) for r in rep_rows] == [("support", True), ("other", True)]


def test_ingest_integer_written_with_zero_fraction_loads_as_integer(settings: Settings) -> None:
    good = VALID["survey_responses"]
    write_csv(settings, "survey_responses", "s.csv", [{**good, "nps_score": "7.0", "driver_ease": "10"}])

    loaded = only_file(settings, "survey_responses")

    table = pq.read_table(raw_dir(settings.lake_dir, "survey_responses") / f"{loaded.sha256}.parquet")
    assert table.column("nps_score").to_pylist() == [7]


def test_ingest_survey_driver_columns_are_written_long_for_loaded_rows_only(settings: Settings) -> None:
    good = VALID["survey_responses"]
    rows = [
        {**good, "driver_ease": "8", "Driver_Speed": "3"},
        {**good, "response_id": "s2", "driver_ease": "", "Driver_Speed": "10"},
        {**good, "response_id": "s3", "nps_score": "42", "driver_ease": "1", "Driver_Speed": "1"},
    ]
    write_csv(settings, "survey_responses", "s.csv", rows)

    loaded = only_file(settings, "survey_responses")

    assert loaded.extra_columns == []
    table = pq.read_table(raw_dir(settings.lake_dir, "survey_driver_scores") / f"{loaded.sha256}.parquet")
    assert table.schema == lake_schema("survey_driver_scores")
    got = [(r["response_id"], r["driver"], r["score"], r["_row_number"]) for r in table.to_pylist()]
    assert got == [("s1", "ease", 8, 1), ("s1", "speed", 3, 1), ("s2", "speed", 10, 2)]


def test_ingest_survey_driver_items_in_any_script_or_with_spaces_are_items(settings: Settings) -> None:
    """Items named in the survey's own language, or with hyphens or spaces, are rated and checked like any other."""
    good = {**VALID["survey_responses"], "driver_対応速度": "9", "Driver_Ease-Of-Use": "4", "driver_first week": "7"}
    good["driver_"] = "5"  # no item name: an extra column
    rows = [
        good,
        {**good, "response_id": "s2", "driver_対応速度": "11"},
        {**good, "response_id": "s3", "Driver_Ease-Of-Use": "42"},
    ]
    write_csv(settings, "survey_responses", "s.csv", rows)

    loaded = only_file(settings, "survey_responses")

    assert loaded.extra_columns == ["driver_"]
    assert loaded.rule_counts == {"driver_対応速度:range": 1, "driver_ease-of-use:range": 1}
    quarantined = pq.read_table(quarantine_dir(settings.lake_dir, "survey_responses") / f"{loaded.sha256}.parquet")
    reasons = quarantined.column("_reason").to_pylist()
    assert "driver_対応速度=11 breaks rule 0 <= driver_対応速度 <= 10" in reasons[0]
    assert "driver_ease-of-use=42 breaks rule 0 <= driver_ease-of-use <= 10" in reasons[1]
    table = pq.read_table(raw_dir(settings.lake_dir, "survey_driver_scores") / f"{loaded.sha256}.parquet")
    got = [(r["driver"], r["score"]) for r in table.to_pylist()]
    assert got == [("ease", 8), ("対応速度", 9), ("ease-of-use", 4), ("first week", 7)]


# Characters that decide trimming: the ASCII space, Unicode space separators (trimmed), and
# look-alikes that are not separators (tab, line break, zero-width space, BOM: kept).
_EDGE_CHARACTERS = [" ", "\u3000", "\u00a0", "\u2009", "\u202f", "\t", "\n", "\u200b", "\ufeff", "\u0085", "a", "日"]


def test_trim_shortcut_gives_exactly_duckdbs_trim() -> None:
    """The rules skip trim() for values it cannot change; that must never change a value."""
    values = ["", "abc", "a b", None]
    values += ["".join(p) for n in (1, 2, 3) for p in itertools.product(_EDGE_CHARACTERS, repeat=n)]
    values += [f"{c}id-1{d}" for c in _EDGE_CHARACTERS for d in _EDGE_CHARACTERS]
    with duckdb.connect() as con:
        differing = con.execute(
            f"SELECT v FROM (SELECT unnest($v) AS v) WHERE trim(v) IS DISTINCT FROM {_trimmed('v')}", {"v": values}
        ).fetchall()
    assert differing == []


def test_timestamps_become_naive_utc_exactly_as_at_time_zone_utc() -> None:
    """Epoch microseconds to TIMESTAMP is the same instant as `AT TIME ZONE 'UTC'`, at the range's edges too."""
    values = [
        "0001-01-01 00:00:00+00", "9999-12-31 23:59:59.999999Z", "1969-12-31T23:59:59.999999Z", "2024-02-29",
        "2024-03-31 02:30:00", "2024-10-27 02:30:00+0100", "2025-01-01T00:00:00.5-03:30", "2025-13-01", "today",
    ]  # fmt: skip
    spec = ColumnSpec(name="at", type="timestamp")
    old = (
        "CASE WHEN contains(substr(v, 11), '+') OR contains(substr(v, 11), '-') OR ends_with(v, 'Z') "
        "THEN TRY_CAST(v AS TIMESTAMPTZ) AT TIME ZONE 'UTC' "
        "ELSE (TRY_CAST(v AS TIMESTAMP) AT TIME ZONE 'Europe/Berlin') AT TIME ZONE 'UTC' END"
    )
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        rows = con.execute(
            f"SELECT v, {_typed(spec, 'v', 'Europe/Berlin')}, {old} FROM (SELECT unnest($v) AS v)", {"v": values}
        ).fetchall()
    assert [(v, new) for v, new, _ in rows if new is not None] == [(v, old) for v, _, old in rows if old is not None]
    assert sum(new is not None for _, new, _ in rows) == 7


def test_ingest_key_repeated_within_a_file_quarantines_the_conflicting_rows_and_all_but_one_exact_copy(
    settings: Settings,
) -> None:
    """sources.yaml: the key is unique within a file. Before, both rows loaded and staging kept the
    later one, so the earlier one vanished on the next run without a reason (the GE check blocked one run)."""
    source = "survey_responses"
    good = VALID[source]
    key = load_contract().sources[source].key
    score = "nps_score"
    rows = [
        {**good, key: "SRX1"},
        {**good, key: "SRX105", score: "10"},  # row 2: two versions of SRX105 (rows 2 and 3)
        {**good, key: "SRX105", score: "3"},
        {**good, key: "SRX7"},  # row 4, then an exact copy of it in row 5
        {**good, key: "SRX7"},
        {**good, key: "SRX9"},
    ]
    write_csv(settings, source, "bad_rows.csv", rows)

    loaded = only_file(settings, source)

    # THEN every row is counted: 3 load (SRX1, SRX7 once, SRX9), 3 are quarantined with their reason
    assert (loaded.rows_read, loaded.rows_loaded, loaded.rows_quarantined) == (6, 3, 3)
    assert loaded.rule_counts == {f"{key}:unique_in_file": 3}
    raw = pq.read_table(raw_dir(settings.lake_dir, source) / f"{loaded.sha256}.parquet")
    assert raw.column("_row_number").to_pylist() == [1, 4, 6]
    quarantined = pq.read_table(quarantine_dir(settings.lake_dir, source) / f"{loaded.sha256}.parquet")
    reasons = dict(zip(quarantined.column("_row_number").to_pylist(), quarantined.column("_reason").to_pylist(),
                       strict=True))
    file = f"{source}/bad_rows.csv"
    assert reasons == {
        2: f"{file} row 2: {key}=SRX105 breaks rule {key} is unique within a file: rows 2, 3 carry it with "
           "different values",
        3: f"{file} row 3: {key}=SRX105 breaks rule {key} is unique within a file: rows 2, 3 carry it with "
           "different values",
        5: f"{file} row 5: a copy of row 4 ({key}=SRX7), which loads",
    }
    # AND the delivered values are kept as delivered (the score of 10 is not lost)
    assert quarantined.column(score).to_pylist() == ["10", "3", good[score]]


def test_ingest_keys_that_repeat_only_in_rows_broken_otherwise_are_not_repeats(settings: Settings) -> None:
    source = "survey_responses"
    good = VALID[source]
    key = load_contract().sources[source].key
    rows = [{**good, key: "SRX1"}, {**good, key: "SRX1", "nps_score": "11"}]  # row 2 breaks the range rule
    write_csv(settings, source, "one_bad.csv", rows)
    loaded = only_file(settings, source)
    assert (loaded.rows_loaded, loaded.rule_counts) == (1, {"nps_score:range": 1})


def test_ingest_versions_of_an_account_in_one_file_load_when_updated_at_orders_them(settings: Settings) -> None:
    """sources.yaml: crm_accounts.updated_at "orders versions of the same customer" (a change-history export)."""
    good = VALID["crm_accounts"]
    rows = [
        {**good, "customer_id": "C1", "segment": "smb", "updated_at": "2025-01-02T00:00:00+09:00"},
        {**good, "customer_id": "C1", "segment": "enterprise", "updated_at": "2025-03-02T00:00:00+09:00"},
        {**good, "customer_id": "C2", "segment": "smb", "updated_at": "2025-01-05T00:00:00+09:00"},
        {**good, "customer_id": "C2", "segment": "enterprise", "updated_at": "2025-01-05T00:00:00+09:00"},
        {**good, "customer_id": "C3", "segment": "smb", "updated_at": ""},
        {**good, "customer_id": "C3", "segment": "enterprise", "updated_at": "2025-01-07T00:00:00+09:00"},
        {**good, "customer_id": "C1", "segment": "enterprise", "updated_at": "2025-03-02T00:00:00+09:00"},
    ]
    write_csv(settings, "crm_accounts", "history.csv", rows)
    loaded = only_file(settings, "crm_accounts")
    # THEN C1's two versions load (and its exact copy in row 7 is quarantined as a copy); C2's two rows
    # share one updated_at and C3's one has none: no order tells their versions apart, so they are quarantined.
    raw = pq.read_table(raw_dir(settings.lake_dir, "crm_accounts") / f"{loaded.sha256}.parquet")
    assert raw.column("_row_number").to_pylist() == [1, 2]
    quarantined = pq.read_table(quarantine_dir(settings.lake_dir, "crm_accounts") / f"{loaded.sha256}.parquet")
    reasons = dict(zip(quarantined.column("_row_number").to_pylist(), quarantined.column("_reason").to_pylist(),
                       strict=True))
    assert sorted(reasons) == [3, 4, 5, 6, 7]
    assert reasons[7].endswith("a copy of row 2 (customer_id=C1), which loads")
    assert "customer_id=C2 breaks rule customer_id is unique within a file: rows 3, 4 carry it" in reasons[3]


def test_ingest_a_key_repeated_on_fifty_thousand_rows_is_quarantined_in_one_reason_each(settings: Settings) -> None:
    """An export with a placeholder id on every row: linear work, and each reason names five rows, not all."""
    good = VALID["crm_activities"]
    rows = [{**good, "activity_id": "PLACEHOLDER", "duration_minutes": str(i % 100)} for i in range(50_000)]
    rows.append({**good, "activity_id": "a-unique"})
    write_csv(settings, "crm_activities", "placeholder.csv", rows)
    loaded = only_file(settings, "crm_activities")
    assert (loaded.rows_read, loaded.rows_loaded, loaded.rows_quarantined) == (50_001, 1, 50_000)
    quarantined = pq.read_table(quarantine_dir(settings.lake_dir, "crm_activities") / f"{loaded.sha256}.parquet",
                                columns=["_reason"]).column("_reason").to_pylist()
    assert quarantined[0].endswith("activity_id=PLACEHOLDER breaks rule activity_id is unique within a file: "
                                   "rows 1, 2, 3, 4, 5 and 49995 more carry it with different values")
