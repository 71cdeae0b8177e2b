"""Formats, encodings, column matching and time zones of landing files."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from orchestration.lib.ingest import FileLoadResult, ingest_source, readers
from orchestration.lib.lake import lake_schema, raw_dir
from orchestration.lib.settings import Settings

NOW = datetime(2025, 6, 1)
SURVEY_HEADER = "response_id,survey_type,customer_id,responded_at,nps_score,comment"


def land(settings: Settings, source: str, name: str, data: bytes) -> Path:
    path = settings.landing_dir / source / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def only_file(settings: Settings, source: str) -> FileLoadResult:
    result = ingest_source(source, settings, now=NOW)
    assert len(result.files) == 1
    return result.files[0]


def raw_rows(settings: Settings, table: str, sha: str | None) -> list[dict]:
    table_file = raw_dir(settings.lake_dir, table) / f"{sha}.parquet"
    loaded = pq.read_table(table_file)
    assert loaded.schema == lake_schema(table)
    return loaded.to_pylist()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=(tmp_path / "data").resolve())


def test_ingest_cp932_csv_is_detected_and_transcoded(settings: Settings) -> None:
    text = f"{SURVEY_HEADER}\ns1,relational,c1,2025-01-01 09:00:00,3,対応が遅い。担当者に連絡がつかない\n"
    land(settings, "survey_responses", "sjis.csv", text.encode("cp932"))

    loaded = only_file(settings, "survey_responses")

    assert (loaded.status, loaded.encoding, loaded.rows_loaded) == ("loaded", "cp932", 1)
    assert raw_rows(settings, "survey_responses", loaded.sha256)[0]["comment"] == "対応が遅い。担当者に連絡がつかない"


def test_ingest_utf8_with_non_ascii_after_a_long_ascii_prefix_stays_utf8(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first non-ASCII byte lies many read chunks in: detection must scan the whole file, and a
    # multi-byte character split across two chunks must not look like an encoding error.
    monkeypatch.setattr(readers, "_CHUNK", 1001)
    filler = "".join(f"s{i},relational,c1,2025-01-01 09:00:00,9,ok\n" for i in range(2_000))
    text = f"{SURVEY_HEADER}\n{filler}last,relational,c1,2025-01-01 09:00:00,9,素晴らしい対応でした\n"
    land(settings, "survey_responses", "long.csv", text.encode("utf-8"))

    loaded = only_file(settings, "survey_responses")

    assert (loaded.encoding, loaded.rows_loaded) == ("utf-8", 2_001)
    assert raw_rows(settings, "survey_responses", loaded.sha256)[-1]["comment"] == "素晴らしい対応でした"


def test_ingest_cp932_after_a_long_ascii_prefix_is_detected(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(readers, "_CHUNK", 1001)
    filler = "".join(f"s{i},relational,c1,2025-01-01 09:00:00,9,ok\n" for i in range(2_000))
    text = f"{SURVEY_HEADER}\n{filler}last,relational,c1,2025-01-01 09:00:00,9,ありがとう\n"
    land(settings, "survey_responses", "long.csv", text.encode("cp932"))

    loaded = only_file(settings, "survey_responses")

    assert (loaded.encoding, loaded.rows_loaded) == ("cp932", 2_001)
    assert raw_rows(settings, "survey_responses", loaded.sha256)[-1]["comment"] == "ありがとう"


def test_ingest_utf8_bom_is_stripped_so_first_column_matches(settings: Settings) -> None:
    land(settings, "crm_reps", "bom.csv", b"\xef\xbb\xbfrep_id,team\nr1,support\n")

    loaded = only_file(settings, "crm_reps")

    assert (loaded.status, loaded.encoding, loaded.rows_loaded) == ("loaded", "utf-8-sig", 1)
    assert raw_rows(settings, "crm_reps", loaded.sha256)[0]["rep_id"] == "r1"


def test_ingest_gzipped_jsonl_loads_with_json_numbers_and_nulls(settings: Settings) -> None:
    lines = [
        {"response_id": "s1", "survey_type": "relational", "customer_id": "c1", "responded_at": "2025-01-01T00:00:00Z",
         "nps_score": 10, "driver_ease": 9},
        {"response_id": "s2", "survey_type": "transactional", "customer_id": "c2", "touchpoint": "support",
         "responded_at": "2025-01-02T00:00:00Z", "nps_score": 4, "comment": None},
    ]  # fmt: skip
    data = "\n".join(json.dumps(line, ensure_ascii=False) for line in lines) + "\n"
    land(settings, "survey_responses", "batch.jsonl.gz", gzip.compress(data.encode("utf-8")))

    loaded = only_file(settings, "survey_responses")

    assert (loaded.status, loaded.file_format, loaded.rows_loaded) == ("loaded", "jsonl+gzip", 2)
    rows = raw_rows(settings, "survey_responses", loaded.sha256)
    assert [(r["response_id"], r["nps_score"], r["touchpoint"]) for r in rows] == [
        ("s1", 10, None),
        ("s2", 4, "support"),
    ]
    drivers = raw_rows(settings, "survey_driver_scores", loaded.sha256)
    assert [(d["response_id"], d["driver"], d["score"]) for d in drivers] == [("s1", "ease", 9)]


def test_ingest_ndjson_record_that_is_not_an_object_rejects_file(settings: Settings) -> None:
    land(settings, "crm_reps", "reps.ndjson", b'{"rep_id": "r1", "team": "support"}\n[1, 2]\n')

    loaded = only_file(settings, "crm_reps")

    assert loaded.status == "rejected"
    assert "record 2" in (loaded.reason or "")


@pytest.mark.parametrize("gzipped", [False, True])
def test_ingest_jsonl_with_a_broken_line_rejects_the_file_naming_that_line(settings: Settings, gzipped: bool) -> None:
    # GIVEN a hand-edited export whose second record lost its closing brace (a blank line before it)
    data = (b'{"rep_id": "r1", "team": "support"}\n\n{"rep_id": "r2", "team": "support"\n'
            b'{"rep_id": "r3", "team": "other"}\n')
    name = "reps.jsonl.gz" if gzipped else "reps.jsonl"
    land(settings, "crm_reps", name, gzip.compress(data) if gzipped else data)

    loaded = only_file(settings, "crm_reps")

    # THEN the file is rejected, and the reason names the broken line as an editor counts it
    assert loaded.status == "rejected"
    assert loaded.reason == f"unreadable: crm_reps/{name} has line 3 that is not valid JSON (Expecting ',' " \
                            "delimiter: column 35)"


def test_ingest_parquet_with_native_types_loads_with_exact_utc(settings: Settings) -> None:
    table = pa.table(
        {
            "Order_ID": ["o1", "o2"],
            "customer_id": ["c1", "c2"],
            # An aware timestamp carries its instant; a naive one is local time in the source zone.
            "ordered_at": pa.array([datetime(2025, 1, 1, 3, 0, tzinfo=UTC)] * 2, pa.timestamp("us", tz="UTC")),
            "amount": pa.array([1234.5, -10.0], pa.float64()),
            "status": ["completed", "refunded"],
        }
    )
    path = settings.landing_dir / "orders" / "orders.parquet"
    path.parent.mkdir(parents=True)
    pq.write_table(table, path)

    loaded = only_file(settings, "orders")

    assert (loaded.status, loaded.file_format, loaded.rows_loaded) == ("loaded", "parquet", 2)
    rows = raw_rows(settings, "orders", loaded.sha256)
    assert [(r["order_id"], r["ordered_at"], str(r["amount"])) for r in rows] == [
        ("o1", datetime(2025, 1, 1, 3, 0), "1234.5000"),
        ("o2", datetime(2025, 1, 1, 3, 0), "-10.0000"),
    ]


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_ingest_parquet_timestamps_load_as_their_text_would(tmp_path: Path, unit: str) -> None:
    """Typed Parquet timestamps skip text parsing (readers.StagedFile.instants) and must give what the
    same instants written as text give: an aware one as given, a naive one as local time in the source
    zone (across a DST change), NULL as missing, and the not-in-future rule on the typed value."""
    settings = Settings(data_dir=(tmp_path / "data").resolve(), source_tz="America/New_York")
    customers = ["winter", "summer", "missing", "late"]
    utc = [datetime(2025, 1, 15, 17, 0, 1), datetime(2025, 7, 15, 16, 0), None, datetime(2025, 9, 1)]
    wall = [datetime(2025, 1, 15, 12, 0, 1), datetime(2025, 7, 15, 12, 0), None, datetime(2025, 8, 31, 20)]
    deliveries = {
        "aware": (pa.array([v and v.replace(tzinfo=UTC) for v in utc], pa.timestamp(unit, tz="UTC")),
                  "winter,2025-01-15T17:00:01Z\nsummer,2025-07-15T16:00:00Z\nmissing,\nlate,2025-09-01T00:00:00Z\n"),
        "naive": (pa.array(wall, pa.timestamp(unit)),
                  "winter,2025-01-15 12:00:01\nsummer,2025-07-15 12:00:00\nmissing,\nlate,2025-08-31 20:00:00\n"),
    }
    for name, (column, text) in deliveries.items():
        pq.write_table(pa.table({"customer_id": customers, "created_at": column}),
                       land(settings, "crm_accounts", f"{name}.parquet", b""))
        land(settings, "crm_accounts", f"{name}.csv", f"customer_id,created_at\n{text}".encode())

    files = {Path(f.file).name: f for f in ingest_source("crm_accounts", settings, now=datetime(2025, 8, 1)).files}

    for name in deliveries:
        typed, as_text = files[f"{name}.parquet"], files[f"{name}.csv"]
        expected_rules = {"created_at:required": 1, "created_at:not_in_future": 1}
        assert typed.rule_counts == as_text.rule_counts == expected_rules
        rows = [(r["customer_id"], r["created_at"]) for r in raw_rows(settings, "crm_accounts", typed.sha256)]
        assert rows == [(r["customer_id"], r["created_at"]) for r in raw_rows(settings, "crm_accounts", as_text.sha256)]
        assert rows == [("winter", utc[0]), ("summer", utc[1])]
        # ... and the typed values were used, not the text.
        delivered = settings.landing_dir / "crm_accounts" / f"{name}.parquet"
        staged = readers.stage_file(duckdb.connect(), delivered, tmp_path)
        assert staged.instants == {1: name == "aware"}


def test_ingest_gzipped_parquet_loads(settings: Settings) -> None:
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table({"rep_id": ["r1"], "team": ["other"], "active": [False]}), sink)
    land(settings, "crm_reps", "reps.parquet.gz", gzip.compress(sink.getvalue().to_pybytes()))

    loaded = only_file(settings, "crm_reps")

    assert (loaded.status, loaded.file_format) == ("loaded", "parquet+gzip")
    assert raw_rows(settings, "crm_reps", loaded.sha256)[0]["active"] is False


def test_ingest_tsv_splits_on_tabs_and_keeps_commas_in_values(settings: Settings) -> None:
    text = SURVEY_HEADER.replace(",", "\t") + "\ns1\trelational\tc1\t2025-01-01 09:00:00\t7\tslow, but friendly\n"
    land(settings, "survey_responses", "r.tsv", text.encode())

    loaded = only_file(settings, "survey_responses")

    assert (loaded.file_format, loaded.rows_loaded) == ("tsv", 1)
    assert raw_rows(settings, "survey_responses", loaded.sha256)[0]["comment"] == "slow, but friendly"


@pytest.mark.parametrize(
    ("delivered", "stored_utc"),
    [
        ("2025-01-01 09:00:00", datetime(2025, 1, 1, 0, 0)),  # naive: Asia/Tokyo (UTC+9)
        ("2025-01-01T09:00", datetime(2025, 1, 1, 0, 0)),
        ("2025-01-01", datetime(2024, 12, 31, 15, 0)),  # a date is midnight in the source zone
        ("2025-01-01T09:00:00Z", datetime(2025, 1, 1, 9, 0)),
        ("2025-01-01T09:00:00+05:30", datetime(2025, 1, 1, 3, 30)),
        ("2025-01-01T09:00:00-0800", datetime(2025, 1, 1, 17, 0)),
        ("2025-01-01T09:00:00.123456+09:00", datetime(2025, 1, 1, 0, 0, 0, 123456)),
        # .NET's round-trip format (seven digits) and Java's Instant (nine): cut to microseconds
        ("2025-01-01T09:00:00.1234567+09:00", datetime(2025, 1, 1, 0, 0, 0, 123456)),
        ("2025-01-01T09:00:00.123456789Z", datetime(2025, 1, 1, 9, 0, 0, 123456)),
        ("2025-01-01 09:00:00.999999999", datetime(2025, 1, 1, 0, 0, 0, 999999)),
    ],
)
def test_ingest_timestamp_is_stored_as_naive_utc(settings: Settings, delivered: str, stored_utc: datetime) -> None:
    land(settings, "crm_accounts", "a.csv", f"customer_id,created_at\nc1,{delivered}\n".encode())

    loaded = only_file(settings, "crm_accounts")

    assert raw_rows(settings, "crm_accounts", loaded.sha256)[0]["created_at"] == stored_utc


def test_ingest_naive_timestamp_follows_configured_source_zone_with_dst(tmp_path: Path) -> None:
    settings = Settings(data_dir=(tmp_path / "data").resolve(), source_tz="America/New_York")
    land(
        settings,
        "crm_accounts",
        "a.csv",
        b"customer_id,created_at\nwinter,2025-01-15 12:00:00\nsummer,2025-07-15 12:00\n",
    )

    loaded = ingest_source("crm_accounts", settings, now=datetime(2025, 8, 1)).files[0]

    rows = raw_rows(settings, "crm_accounts", loaded.sha256)
    assert [r["created_at"] for r in rows] == [datetime(2025, 1, 15, 17, 0), datetime(2025, 7, 15, 16, 0)]


def test_ingest_not_in_future_uses_given_aware_now(settings: Settings) -> None:
    land(
        settings,
        "crm_accounts",
        "a.csv",
        b"customer_id,created_at\nok,2025-01-01T09:00:00Z\nlate,2025-01-01T09:00:01Z\n",
    )
    tokyo = timezone(timedelta(hours=9))

    loaded = ingest_source("crm_accounts", settings, now=datetime(2025, 1, 1, 18, 0, tzinfo=tokyo)).files[0]

    assert (loaded.rows_loaded, loaded.rule_counts) == (1, {"created_at:not_in_future": 1})


def test_ingest_column_names_match_ignoring_case_and_spaces(settings: Settings) -> None:
    land(settings, "crm_reps", "r.csv", b" REP_ID ,Team\t,Manager_Rep_Id\nr1,support,r0\n")

    loaded = only_file(settings, "crm_reps")

    assert (loaded.status, loaded.extra_columns) == ("loaded", [])
    row = raw_rows(settings, "crm_reps", loaded.sha256)[0]
    assert (row["rep_id"], row["team"], row["manager_rep_id"]) == ("r1", "support", "r0")


def test_ingest_header_only_csv_loads_with_zero_rows(settings: Settings) -> None:
    land(settings, "crm_reps", "empty_day.csv", b"rep_id,team\n")

    loaded = only_file(settings, "crm_reps")

    assert (loaded.status, loaded.rows_read, loaded.rows_loaded, loaded.rows_quarantined) == ("loaded", 0, 0, 0)
    assert raw_rows(settings, "crm_reps", loaded.sha256) == []


def test_ingest_unknown_extension_is_rejected_with_reason(settings: Settings) -> None:
    land(settings, "crm_reps", "reps.xlsx", b"PK\x03\x04whatever")

    loaded = only_file(settings, "crm_reps")

    assert loaded.status == "rejected"
    assert loaded.reason is not None and "unknown_format" in loaded.reason and "'.xlsx'" in loaded.reason


def test_ingest_quoted_values_with_newlines_and_quotes_load_intact(settings: Settings) -> None:
    body = SURVEY_HEADER + '\ns1,relational,c1,2025-01-01,8,"line one\nsaid ""ok"""\n'
    land(settings, "survey_responses", "q.csv", body.encode())

    loaded = only_file(settings, "survey_responses")

    assert raw_rows(settings, "survey_responses", loaded.sha256)[0]["comment"] == 'line one\nsaid "ok"'


def test_ingest_crlf_line_endings_leave_no_carriage_returns_in_values(settings: Settings) -> None:
    land(settings, "crm_reps", "crlf.csv", b"rep_id,team,active\r\nr1,support,true\r\nr2,other,false\r\n")

    loaded = only_file(settings, "crm_reps")

    rows = raw_rows(settings, "crm_reps", loaded.sha256)
    assert [(r["rep_id"], r["team"], r["active"]) for r in rows] == [("r1", "support", True), ("r2", "other", False)]
