"""Tests of the demo-data generator: determinism, the contract, planted faults, and planted truth.

The checks read the landing files with their own small parser (csv/json/pyarrow) and compute the
DESIGN.md metrics in DuckDB SQL, independently of the generator's code and of the ingestion engine.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import itertools
import json
import math
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from orchestration.lib.demo_data import (
    DEFAULT_END_DATE,
    MIN_CUSTOMERS,
    SOURCES,
    STATE_DIR,
    TRUTH_FILE,
    append_day,
    generate_demo_data,
)
from quality.contract import load_contract

TOKYO = ZoneInfo("Asia/Tokyo")
END_UTC = datetime(2026, 9, 30, tzinfo=TOKYO).astimezone(UTC).replace(tzinfo=None)


# ---------------------------------------------------------------- an independent reader of the landing zone
def _decode_csv(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp932")


def _read_rows(path: Path) -> list[dict]:
    """Rows of one landing file as dicts of raw values (strings for text formats)."""
    name = path.name
    if name.endswith(".parquet"):
        return pq.read_table(path).to_pylist()
    data = path.read_bytes()
    if name.endswith(".gz"):
        data = gzip.decompress(data)
        name = name[:-3]
    if name.endswith(".jsonl"):
        return [json.loads(line) for line in data.decode("utf-8").splitlines() if line]
    reader = csv.DictReader(io.StringIO(_decode_csv(data)))
    return [{k: (v if v != "" else None) for k, v in row.items()} for row in reader]


def _timestamp(value: object) -> datetime | None:
    """Naive UTC of a contract timestamp; naive text is Asia/Tokyo. None when unparseable."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=TOKYO)
    return parsed.astimezone(UTC).replace(tzinfo=None)


def _violations(source: str, row: dict) -> list[str]:
    """Contract rules a row breaks (the quarantine reasons an ingestion engine must find)."""
    spec = load_contract().sources[source]
    now = datetime.now(UTC).replace(tzinfo=None)
    broken = []
    for col in spec.columns.values():
        value = row.get(col.name)
        if value is None:
            if col.required:
                broken.append(f"{col.name}: missing")
            continue
        if col.type == "timestamp":
            ts = _timestamp(value)
            if ts is None:
                broken.append(f"{col.name}: unparseable")
            elif ts > now:
                broken.append(f"{col.name}: future")
        elif col.type == "enum" and str(value) not in col.values:
            broken.append(f"{col.name}: not in enum")
        elif col.type == "integer" and col.name == "nps_score" and not 0 <= int(value) <= 10:
            broken.append("nps_score: out of range")
        elif col.type == "number" and col.rule == ">= 0" and float(value) < 0:
            broken.append(f"{col.name}: negative")
    for name, value in row.items():
        if name.startswith("driver_") and value is not None and not 0 <= int(value) <= 10:
            broken.append(f"{name}: out of range")
    return broken


def _load_landing(data_dir: Path) -> tuple[dict[str, list[dict]], dict[str, int], dict[str, int]]:
    """Valid rows per source (one copy of re-delivered files), quarantined counts, duplicate files."""
    valid: dict[str, list[dict]] = {s: [] for s in SOURCES}
    quarantined = dict.fromkeys(SOURCES, 0)
    duplicates = dict.fromkeys(SOURCES, 0)
    for source in SOURCES:
        seen: set[str] = set()
        for path in sorted((data_dir / "landing" / source).iterdir()):
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            if digest in seen:
                duplicates[source] += 1
                continue
            seen.add(digest)
            rows = _read_rows(path)
            required = load_contract().sources[source].required_columns
            assert rows, f"{path} has no rows"
            assert set(required) <= set(rows[0]), f"{path} lacks required columns"
            for row in rows:
                if _violations(source, row):
                    quarantined[source] += 1
                else:
                    valid[source].append(row)
    return valid, quarantined, duplicates


def _warehouse(valid: dict[str, list[dict]]) -> duckdb.DuckDBPyConnection:
    """DuckDB with typed accounts (latest updated_at wins), activities, responses and orders."""
    con = duckdb.connect()
    accounts: dict[str, dict] = {}
    for row in valid["crm_accounts"]:
        row = {
            **row,
            "created_at": _timestamp(row["created_at"]),
            "updated_at": _timestamp(row["updated_at"]),
        }
        old = accounts.get(row["customer_id"])
        if old is None or row["updated_at"] >= old["updated_at"]:
            accounts[row["customer_id"]] = row
    con.register(
        "accounts",
        pa.Table.from_pylist(
            [
                {
                    "customer_id": r["customer_id"],
                    "created_at": r["created_at"],
                    "owner_rep_id": r["owner_rep_id"],
                }
                for r in accounts.values()
            ]
        ),
    )
    con.register(
        "activities",
        pa.Table.from_pylist(
            [
                {
                    "activity_id": r["activity_id"],
                    "customer_id": r["customer_id"],
                    "direction": r["direction"],
                    "occurred_at": _timestamp(r["occurred_at"]),
                }
                for r in valid["crm_activities"]
            ]
        ),
    )
    con.register(
        "responses",
        pa.Table.from_pylist(
            [
                {
                    "response_id": r["response_id"],
                    "customer_id": r["customer_id"],
                    "nps_score": int(r["nps_score"]),
                    "responded_at": _timestamp(r["responded_at"]),
                }
                for r in valid["survey_responses"]
            ]
        ),
    )
    con.register(
        "orders",
        pa.Table.from_pylist(
            [
                {
                    "order_id": r["order_id"],
                    "customer_id": r["customer_id"],
                    "status": r.get("status") or "completed",
                    "ordered_at": _timestamp(r["ordered_at"]),
                }
                for r in valid["orders"]
            ]
        ),
    )
    return con


MEASURED_SQL = """
with as_of as (
    select max(ts) as as_of_at from (
        select occurred_at as ts from activities union all
        select responded_at from responses union all
        select ordered_at from orders
    )
),
exposure as (
    select r.response_id,
        count(a.activity_id) filter (where a.direction = 'outbound'
            and a.occurred_at {lower} r.responded_at - interval 90 day
            and a.occurred_at < r.responded_at) as contacts_before
    from responses as r
    left join activities as a on a.customer_id = r.customer_id
    group by r.response_id
),
repeat as (
    select r.response_id,
        max(case when o.status = 'completed' and o.ordered_at > r.responded_at
                 and o.ordered_at <= r.responded_at + interval 90 day then 1 else 0 end) as any_order
    from responses as r
    left join orders as o on o.customer_id = r.customer_id
    group by r.response_id
)
select r.response_id, e.contacts_before,
    e.contacts_before
        / (greatest(1, least(90, date_diff('second', c.created_at, r.responded_at) / 86400.0)) / 30)
        as contacts_per_month,
    case when r.responded_at + interval 90 day > (select as_of_at from as_of) then null
         else coalesce(p.any_order, 0) end as repeat_after
from responses as r
join accounts as c on c.customer_id = r.customer_id
join exposure as e on e.response_id = r.response_id
join repeat as p on p.response_id = r.response_id
order by r.response_id
"""


def _measured(con: duckdb.DuckDBPyConnection, lower: str = ">=") -> dict[str, tuple]:
    rows = con.execute(MEASURED_SQL.format(lower=lower)).fetchall()
    return {r[0]: r[1:] for r in rows}


def _draws(data_dir: Path) -> dict[str, dict]:
    table = pq.read_table(data_dir / STATE_DIR / "responses_truth.parquet")
    return {r["response_id"]: r for r in table.to_pylist()}


def _hashes(data_dir: Path) -> dict[str, str]:
    return {
        p.relative_to(data_dir).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(data_dir.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory):
    data_dir = tmp_path_factory.mktemp("demo") / "data"
    summary = generate_demo_data(data_dir, customers=900, seed=11)
    valid, quarantined, duplicates = _load_landing(data_dir)
    return data_dir, summary, valid, quarantined, duplicates


# ---------------------------------------------------------------- determinism
def test_generate_same_seed_writes_identical_bytes_and_other_seed_differs(tmp_path: Path) -> None:
    first = generate_demo_data(tmp_path / "a", customers=300, seed=3)
    generate_demo_data(tmp_path / "b", customers=300, seed=3)
    generate_demo_data(tmp_path / "c", customers=300, seed=4)
    a, b, c = _hashes(tmp_path / "a"), _hashes(tmp_path / "b"), _hashes(tmp_path / "c")
    assert a == b
    assert len(a) == len(first.files) + 1 + 7  # landing files, demo_truth.json, 7 state files
    common = set(a) & set(c)
    assert [k for k in common if k.startswith("landing/") and a[k] != c[k]], (
        "another seed must change the data"
    )


def test_generate_rerun_into_same_dir_replaces_its_files(tmp_path: Path) -> None:
    generate_demo_data(tmp_path, customers=300, seed=3)
    before = _hashes(tmp_path)
    generate_demo_data(tmp_path, customers=300, seed=3)
    assert _hashes(tmp_path) == before


def test_generate_refuses_landing_files_it_did_not_write(tmp_path: Path) -> None:
    foreign = tmp_path / "landing" / "orders" / "real_export.csv"
    foreign.parent.mkdir(parents=True)
    foreign.write_text("order_id\n1\n")
    with pytest.raises(FileExistsError):
        generate_demo_data(tmp_path, customers=300)
    assert foreign.exists()


@pytest.mark.parametrize("customers", [MIN_CUSTOMERS, 500])
def test_a_small_demo_keeps_every_file_under_the_default_quarantine_threshold(tmp_path: Path, customers: int) -> None:
    """The demo's first run must publish: no file may hold more faulty rows than the 5% a run refuses.

    The faults have a floor per kind (every rule is exercised); at 500 customers they used to be 7-10%
    of the side files they go to, and `nps-link run` refused the demo's own data.
    """
    generate_demo_data(tmp_path, customers=customers, seed=3)
    for source in SOURCES:
        for path in sorted((tmp_path / "landing" / source).iterdir()):
            rows = _read_rows(path)
            faulty = sum(1 for row in rows if _violations(source, row))
            assert faulty <= 0.04 * len(rows), f"{path.name}: {faulty} of {len(rows)} rows break a rule"


def test_generate_below_the_smallest_demo_says_why(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=f"at least {MIN_CUSTOMERS}.*faulty rows"):
        generate_demo_data(tmp_path, customers=MIN_CUSTOMERS - 1)


def test_generate_end_date_in_future_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="future"):
        generate_demo_data(tmp_path, customers=300, end_date=date.today() + timedelta(days=2))


# ---------------------------------------------------------------- contract and faults
def test_generate_rows_meet_contract_except_documented_faults(demo) -> None:
    _, summary, valid, quarantined, duplicates = demo
    assert quarantined == summary.expected_quarantined == summary.truth["faults"]["expected_quarantined_rows"]
    for source in SOURCES:
        assert len(valid[source]) + quarantined[source] == summary.rows[source], source
    assert duplicates == {**dict.fromkeys(SOURCES, 0), "crm_reps": 1}


def test_generate_parquet_format_meets_contract(tmp_path: Path) -> None:
    summary = generate_demo_data(tmp_path, customers=300, seed=5, fmt="parquet")
    suffixes = {p.name.split(".", 1)[1] for p in summary.files}
    assert "parquet" in suffixes
    _, quarantined, _ = _load_landing(tmp_path)
    assert quarantined == summary.expected_quarantined


def test_generate_every_valid_event_is_before_end_date(demo) -> None:
    _, _, valid, _, _ = demo
    times = [_timestamp(r["occurred_at"]) for r in valid["crm_activities"]]
    times += [_timestamp(r["responded_at"]) for r in valid["survey_responses"]]
    times += [_timestamp(r["ordered_at"]) for r in valid["orders"]]
    times += [_timestamp(r["created_at"]) for r in valid["crm_accounts"]]
    assert max(times) < END_UTC
    assert min(times) >= END_UTC - timedelta(days=731)


def test_generate_planted_faults_are_present_as_counted(demo) -> None:
    data_dir, summary, valid, _, _ = demo
    faults = summary.truth["faults"]
    landing = data_dir / "landing"
    cp932 = (landing / faults["encodings"]["cp932"][0]).read_bytes()
    with pytest.raises(UnicodeDecodeError):
        cp932.decode("utf-8")
    assert "担当" in cp932.decode("cp932")
    assert gzip.decompress((landing / faults["gzip_files"][0]).read_bytes())
    redelivered = faults["redelivered_files"][0]
    assert (landing / redelivered["file"]).read_bytes() == (
        landing / redelivered["same_bytes_as"]
    ).read_bytes()
    known = {r["customer_id"] for r in valid["crm_accounts"]}
    orphan_acts = [r for r in valid["crm_activities"] if r["customer_id"] not in known]
    orphan_resps = [r for r in valid["survey_responses"] if r["customer_id"] not in known]
    assert len(orphan_acts) == faults["orphans"]["crm_activities"]
    assert len(orphan_resps) == faults["orphans"]["survey_responses"]
    raw = [str(r["occurred_at"]) for r in valid["crm_activities"]]
    assert any(s.endswith("Z") for s in raw) and any(s.endswith("+09:00") for s in raw)
    assert any(len(s) == 19 for s in raw)  # naive, read in Asia/Tokyo
    # Accounts delivered twice: the delta carries a later updated_at and a new owner.
    versions: dict[str, list[dict]] = {}
    for row in valid["crm_accounts"]:
        versions.setdefault(row["customer_id"], []).append(row)
    twice = {k: v for k, v in versions.items() if len(v) == 2}
    assert len(twice) == faults["accounts_redelivered"]["customers"]
    for cid, owner in faults["accounts_redelivered"]["owner_after"].items():
        latest = max(twice[cid], key=lambda r: _timestamp(r["updated_at"]))
        assert latest["owner_rep_id"] == owner
        assert min(twice[cid], key=lambda r: _timestamp(r["updated_at"]))["owner_rep_id"] != owner


# ---------------------------------------------------------------- planted structure, measured in SQL
def test_generate_measured_repeat_in_sql_equals_generator_draws(demo) -> None:
    data_dir, summary, valid, _, _ = demo
    measured = _measured(_warehouse(valid))
    draws = _draws(data_dir)
    compared = 0
    for response_id, (_, _, repeat_after) in measured.items():
        if repeat_after is None:
            continue
        assert repeat_after == draws[response_id]["repeat_draw"], response_id
        compared += 1
    assert compared == summary.truth["link"]["n_responses"]
    # The check means something only if windows of one customer overlap with different draws.
    by_customer: dict[str, list[dict]] = {}
    for d in draws.values():
        by_customer.setdefault(d["customer_id"], []).append(d)
    overlaps = 0
    for rows in by_customer.values():
        rows.sort(key=lambda d: d["responded_at"])
        for x, y in itertools.pairwise(rows):
            close = (y["responded_at"] - x["responded_at"]) < timedelta(days=90)
            overlaps += close and x["repeat_draw"] != y["repeat_draw"]
    assert overlaps >= 10


def test_generate_exposure_in_sql_equals_generator_exposure(demo) -> None:
    data_dir, _, valid, _, _ = demo
    con = _warehouse(valid)
    measured = _measured(con)
    # Window edges never tie with an event, so an inclusive or exclusive lower edge counts the same.
    assert _measured(con, lower=">") == measured
    draws = _draws(data_dir)
    delivered = [k for k in draws if k in measured]
    assert len(delivered) > 1000
    for response_id in delivered:
        contacts, cpm, _ = measured[response_id]
        assert contacts == draws[response_id]["contacts_before"], response_id
        assert math.isclose(cpm, draws[response_id]["contacts_per_month"], rel_tol=1e-9, abs_tol=1e-12)


def test_generate_truth_effects_are_finite_with_planted_signs(demo) -> None:
    _, summary, _, _, _ = demo
    effects = summary.truth["link"]["effects"]
    assert all(math.isfinite(v) for v in effects.values())
    assert 0.3 < effects["a_path"] < 0.6
    assert 0.03 < effects["b_path"] < 0.07
    assert effects["indirect"] > 0 and effects["direct"] > 0
    assert math.isclose(effects["total"], effects["indirect"] + effects["direct"])
    assert math.isclose(effects["total"], effects["total_joint"], rel_tol=0.05)
    assert math.isclose(effects["a_path"], effects["a_path_same_draws"], rel_tol=0.1)
    assert 0.2 < effects["proportion_mediated"] < 0.8
    stored = json.loads((summary.data_dir / TRUTH_FILE).read_text(encoding="utf-8"))
    assert stored["link"]["effects"] == effects
    assert set(stored["link"]["covariates"]) >= {"segment", "business_unit", "survey_type", "tenure_days"}


def test_generate_naive_contact_score_association_exceeds_true_a_path(demo) -> None:
    data_dir, summary, _, _, _ = demo
    draws = list(_draws(data_dir).values())
    x = [d["contacts_per_month"] for d in draws]
    y = [d["nps_score"] for d in draws]
    mx, my = sum(x) / len(x), sum(y) / len(y)
    naive = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True)) / sum((a - mx) ** 2 for a in x)
    a_path = summary.truth["link"]["effects"]["a_path"]
    assert naive > a_path * 1.1
    assert summary.truth["confounding"]["segment_adjusted_slope_score_on_cpm"] < naive


# ---------------------------------------------------------------- append_day
def test_append_day_writes_only_new_files_for_the_next_day(tmp_path: Path) -> None:
    generate_demo_data(tmp_path, customers=2000, seed=2)
    before = _hashes(tmp_path / "landing")
    summary = append_day(tmp_path, seed=2)
    after = _hashes(tmp_path / "landing")
    assert {k: after[k] for k in before} == before
    new = set(after) - set(before)
    assert new == {p.relative_to(tmp_path / "landing").as_posix() for p in summary.files}
    assert {n.split("/")[0] for n in new} == set(SOURCES) - {"crm_reps"}
    day_lo = datetime(2026, 9, 30, tzinfo=TOKYO).astimezone(UTC).replace(tzinfo=None)
    day_hi = day_lo + timedelta(days=1)
    counts = dict.fromkeys(SOURCES, 0)
    for path in summary.files:
        source = path.parent.name
        for row in _read_rows(path):
            column = {
                "crm_activities": "occurred_at",
                "survey_responses": "responded_at",
                "orders": "ordered_at",
                "crm_accounts": "updated_at",
            }[source]
            assert day_lo <= _timestamp(row[column]) < day_hi, (path, row)
            assert not _violations(source, row)
            counts[source] += 1
    assert counts == summary.rows
    assert counts["crm_activities"] > 0 and counts["crm_accounts"] > 0
    assert summary.truth["state"]["next_day"] == (DEFAULT_END_DATE + timedelta(days=1)).isoformat()
    second = append_day(tmp_path, seed=2)
    assert all("2026-10-01" in p.name or "20261001" in p.name for p in second.files)
    assert not set(second.files) & set(summary.files)
    # The new days come from the same simulation: with the later as_of, responses that were censored
    # get a measured repeat, and it still equals the generator's draw.
    valid, _, _ = _load_landing(tmp_path)
    measured = _measured(_warehouse(valid))
    draws = _draws(tmp_path)
    uncensored = {k: v[2] for k, v in measured.items() if v[2] is not None}
    assert len(uncensored) > summary.truth["link"]["n_responses"]
    assert all(draws[k]["repeat_draw"] == v for k, v in uncensored.items())
    assert all(measured[k][0] == draws[k]["contacts_before"] for k in measured)
