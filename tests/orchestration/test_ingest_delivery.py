"""Deliveries over time: reconciliation, re-delivery, rejection, drift, hostile inputs, crashes, the manifest."""

from __future__ import annotations

import gzip
import json
import os
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from orchestration.lib.ingest import FileLoadResult, SourceLoadResult, ingest_source, pending_files, write_load_manifest
from orchestration.lib.ingest import engine as ingest_engine
from orchestration.lib.ingest.manifest import ManifestStore
from orchestration.lib.lake import LAKE_TABLES, LOAD_MANIFEST_SCHEMA, lake_schema, load_manifest_path, raw_dir
from orchestration.lib.settings import Settings

NOW = datetime(2025, 6, 1)
SURVEY_HEADER = "response_id,survey_type,customer_id,responded_at,nps_score"


def land(settings: Settings, source: str, name: str, data: bytes | str, *, mtime: int | None = None) -> Path:
    path = settings.landing_dir / source / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    if mtime is not None:  # delivery order is (mtime, name): pin it where a test depends on it
        os.utime(path, ns=(mtime * 10**9, mtime * 10**9))
    return path


def survey_csv(*rows: str) -> str:
    return SURVEY_HEADER + "\n" + "".join(row + "\n" for row in rows)


def ingest(settings: Settings, source: str = "survey_responses") -> SourceLoadResult:
    return ingest_source(source, settings, now=NOW)


def by_file(result: SourceLoadResult) -> dict[str, FileLoadResult]:
    return {f.file.split("/", 1)[1]: f for f in result.files}


def lake_files(settings: Settings) -> dict[str, bytes]:
    """Every data file of the lake (raw, quarantine, rejected) with its bytes."""
    return {
        str(p.relative_to(settings.lake_dir)): p.read_bytes()
        for sub in ("raw", "quarantine", "rejected")
        for p in sorted((settings.lake_dir / sub).rglob("*"))
        if p.is_file()
    }


def raw_rows(settings: Settings, table: str = "survey_responses") -> list[dict]:
    files = sorted(raw_dir(settings.lake_dir, table).glob("*.parquet"))
    return [row for f in files for row in pq.read_table(f).to_pylist()]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=(tmp_path / "data").resolve())


def test_ingest_every_file_reconciles_read_with_loaded_plus_quarantined(settings: Settings) -> None:
    land(
        settings,
        "survey_responses",
        "a.csv",
        survey_csv("s1,relational,c1,2025-01-01,9", "s2,relational,c1,2025-01-01,X"),
    )
    land(settings, "survey_responses", "b.csv", survey_csv("s3,relational,,2025-01-01,9", "s4,annual,c1,2025-01-01,2"))
    land(settings, "survey_responses", "c.csv", "response_id,nps_score\ns5,9\n")
    land(settings, "survey_responses", "d.csv", survey_csv())

    result = ingest(settings)

    assert [f.status for f in result.files] == ["loaded", "loaded", "rejected", "loaded"]
    for f in result.files:
        assert f.rows_read == f.rows_loaded + f.rows_quarantined
        assert f.rows_quarantined == sum(f.rule_counts.values())
    manifest = pq.read_table(load_manifest_path(settings.lake_dir))
    assert manifest.schema == LOAD_MANIFEST_SCHEMA
    for row in manifest.to_pylist():
        assert row["rows_read"] == row["rows_loaded"] + row["rows_quarantined"]
    assert (result.rows_read, result.rows_loaded, result.rows_quarantined) == (4, 1, 3)
    assert len(raw_rows(settings)) == 1


def test_ingest_same_bytes_under_another_name_is_duplicate_and_changes_nothing(settings: Settings) -> None:
    body = survey_csv("s1,relational,c1,2025-01-01,9", "s2,relational,c1,2025-01-01,11")
    land(settings, "survey_responses", "2025-01.csv", body, mtime=1_700_000_000)
    first = ingest(settings).files[0]
    before = lake_files(settings)

    land(settings, "survey_responses", "resent/2025-01-copy.csv", body, mtime=1_700_000_100)
    again = ingest(settings)

    assert [(f.file, f.status) for f in again.files] == [("survey_responses/resent/2025-01-copy.csv", "duplicate")]
    dup = again.files[0]
    assert (dup.rows_read, dup.rows_loaded, dup.rows_quarantined) == (0, 0, 0)
    assert dup.reason is not None and "survey_responses/2025-01.csv" in dup.reason
    assert lake_files(settings) == before
    assert len(raw_rows(settings)) == first.rows_loaded == 1
    assert ingest(settings).files == []  # nothing pending any more


def test_ingest_later_file_with_existing_key_loads_with_higher_delivery_seq(settings: Settings) -> None:
    land(settings, "survey_responses", "day1.csv", survey_csv("s1,relational,c1,2025-01-01,3"), mtime=1_700_000_000)
    first = ingest(settings).files[0]
    land(settings, "survey_responses", "day2.csv", survey_csv("s1,relational,c1,2025-01-01,8"), mtime=1_700_000_100)
    second = ingest(settings).files[0]

    assert second.status == "loaded" and second.rows_loaded == 1
    assert second.delivery_seq is not None and first.delivery_seq is not None
    assert second.delivery_seq > first.delivery_seq
    history = sorted((r["_delivery_seq"], r["response_id"], r["nps_score"]) for r in raw_rows(settings))
    assert history == [(first.delivery_seq, "s1", 3), (second.delivery_seq, "s1", 8)]


def test_ingest_delivery_seq_follows_mtime_then_name_and_increases_across_sources(settings: Settings) -> None:
    land(settings, "survey_responses", "b.csv", survey_csv("s2,relational,c1,2025-01-01,9"), mtime=1_700_000_000)
    land(settings, "survey_responses", "a.csv", survey_csv("s1,relational,c1,2025-01-01,9"), mtime=1_700_000_000)
    land(settings, "survey_responses", "0-late.csv", survey_csv("s3,relational,c1,2025-01-01,9"), mtime=1_700_000_500)
    land(settings, "crm_reps", "r.csv", "rep_id,team\nr1,other\n")

    surveys = ingest(settings)
    reps = ingest(settings, "crm_reps")

    assert [(f.file, f.delivery_seq) for f in surveys.files] == [
        ("survey_responses/a.csv", 1),
        ("survey_responses/b.csv", 2),
        ("survey_responses/0-late.csv", 3),
    ]
    assert reps.files[0].delivery_seq == 4


def test_ingest_missing_required_column_rejects_file_with_copy_and_reason_file(settings: Settings) -> None:
    land(
        settings,
        "survey_responses",
        "in/no_score.csv",
        "response_id,survey_type,customer_id,responded_at\ns1,relational,c1,2025-01-01\n",
    )

    result = ingest(settings).files[0]

    assert (result.status, result.rows_read, result.rows_loaded, result.rows_quarantined) == ("rejected", 0, 0, 0)
    rejected = settings.lake_dir / "rejected" / "survey_responses" / "in" / "no_score.csv"
    assert rejected.read_bytes() == (settings.landing_dir / "survey_responses" / "in" / "no_score.csv").read_bytes()
    reason = json.loads(rejected.with_name("no_score.csv.reason.json").read_text())
    assert reason["file"] == "survey_responses/in/no_score.csv"
    assert reason["rule"] == "missing_required_columns"
    assert "nps_score" in reason["reason"]
    assert raw_rows(settings) == []


def test_ingest_extra_column_is_recorded_as_drift_and_kept_out_of_typed_table(settings: Settings) -> None:
    land(
        settings,
        "survey_responses",
        "x.csv",
        SURVEY_HEADER + ",Channel,comment\ns1,relational,c1,2025-01-01,9,web,hi\n",
    )

    result = ingest(settings).files[0]
    write_load_manifest(settings)

    assert (result.status, result.extra_columns) == ("loaded", ["Channel"])
    assert "comment" not in result.missing_optional_columns
    assert (
        "Channel"
        not in pq.read_schema(raw_dir(settings.lake_dir, "survey_responses") / f"{result.sha256}.parquet").names
    )
    manifest = pq.read_table(load_manifest_path(settings.lake_dir)).to_pylist()
    assert json.loads(manifest[0]["extra_columns"]) == ["Channel"]
    assert "touchpoint" in json.loads(manifest[0]["missing_optional_columns"])


def test_ingest_symlink_outside_data_dir_is_refused_unread(settings: Settings, tmp_path: Path) -> None:
    secret = tmp_path / "outside" / "secret.csv"
    secret.parent.mkdir()
    secret.write_text(survey_csv("s1,relational,c1,2025-01-01,9"))
    link = settings.landing_dir / "survey_responses" / "link.csv"
    link.parent.mkdir(parents=True)
    link.symlink_to(secret)

    result = ingest(settings).files[0]

    assert (result.status, result.sha256) == ("rejected", None)
    assert (
        result.reason is not None and "unsafe_path" in result.reason and "outside the data directory" in result.reason
    )
    rejected = settings.lake_dir / "rejected" / "survey_responses" / "link.csv"
    assert not rejected.exists()  # never copied, never read
    assert json.loads(rejected.with_name("link.csv.reason.json").read_text())["rule"] == "unsafe_path"
    assert raw_rows(settings) == []
    assert ingest(settings).files == []  # refused once, not again on every run


def test_ingest_symlink_inside_data_dir_is_loaded(settings: Settings) -> None:
    target = settings.data_dir / "exports" / "real.csv"
    target.parent.mkdir(parents=True)
    target.write_text(survey_csv("s1,relational,c1,2025-01-01,9"))
    link = settings.landing_dir / "survey_responses" / "link.csv"
    link.parent.mkdir(parents=True)
    link.symlink_to(target)

    assert ingest(settings).files[0].status == "loaded"


def survey_parquet(bad_comment: bytes = b"ok", *, rows: int = 200, bad_row: int = 0) -> bytes:
    """A survey Parquet file whose comment at `bad_row` holds `bad_comment` (bytes as stored; the others "ok").

    Row groups of 10,000 rows, so a bad value deep in a large file is read after the first ones.
    """
    texts = [b"ok"] * rows
    texts[bad_row] = bad_comment
    comments = pa.Array.from_buffers(  # bytes labelled as text without checking them, as a faulty writer does
        pa.string(), rows, pa.array(texts, pa.binary()).buffers()
    )
    table = pa.table({
        "response_id": [f"s{i}" for i in range(rows)], "survey_type": ["relational"] * rows,
        "customer_id": ["c1"] * rows, "responded_at": ["2025-01-01"] * rows, "nps_score": [9] * rows,
        "comment": comments,
    })
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="snappy", row_group_size=10_000)
    return sink.getvalue().to_pybytes()


def with_damaged_data_page(parquet: bytes) -> bytes:
    """The file with bytes inside its first data page inverted; the footer (at the end) stays intact."""
    damaged = bytearray(parquet)
    for i in range(40, 120):
        damaged[i] ^= 0xFF
    return bytes(damaged)


@pytest.mark.parametrize(
    ("name", "data", "rule"),
    [
        ("empty.csv", b"", "empty_file"),
        (
            "truncated.csv.gz",
            gzip.compress(survey_csv("s1,relational,c1,2025-01-01,9").encode() * 50)[:-30],
            "unreadable",
        ),
        ("fake.csv.gz", b"plain text, not gzip", "unreadable"),
        ("broken.parquet", b"PAR1 this is not really parquet PAR1", "unreadable"),
        ("noise.parquet", os.urandom(2048), "unreadable"),
        ("garbage.csv", bytes(range(256)) * 8, "binary_content"),
        ("noise.csv", bytes(range(1, 256)) * 8, "encoding"),
        ("ragged.csv", survey_csv("s1,relational,c1,2025-01-01,9,unexpected"), "unreadable"),
        ("half.jsonl", b'{"response_id": "s1", "nps_score": 9}\n{"response_id": "s2", "nps', "unreadable"),
        ("dupes.csv", "response_id,Response_ID,survey_type,customer_id,responded_at,nps_score\n", "duplicate_columns"),
        ("dupe_items.csv", SURVEY_HEADER + ",driver_ease,Driver_Ease\n", "duplicate_columns"),
        # Footer intact, data not: staging reads only the footer, the damage shows when rows are read.
        ("damaged_page.parquet", with_damaged_data_page(survey_parquet()), "unreadable"),
        ("damaged_page.parquet.gz", gzip.compress(with_damaged_data_page(survey_parquet())), "unreadable"),
        ("not_utf8.parquet", survey_parquet(b"\xff\xfe"), "unreadable"),
        # Past the first chunks that a read of the file alone hands over.
        ("not_utf8_deep.parquet", survey_parquet(b"\xff\xfe", rows=400_000, bad_row=390_000), "unreadable"),
    ],
)
def test_ingest_corrupt_file_is_rejected_with_reason_and_run_continues(
    settings: Settings, name: str, data: bytes | str, rule: str
) -> None:
    land(settings, "survey_responses", name, data, mtime=1_700_000_000)
    land(settings, "survey_responses", "zz-good.csv", survey_csv("s1,relational,c1,2025-01-01,9"), mtime=1_700_000_100)

    files = by_file(ingest(settings))

    assert files[name].status == "rejected"
    assert files[name].reason is not None and files[name].reason.startswith(f"{rule}: survey_responses/{name} ")
    assert (settings.lake_dir / "rejected" / "survey_responses" / f"{name}.reason.json").exists()
    assert files["zz-good.csv"].status == "loaded"


def test_ingest_damaged_parquet_is_refused_once_and_holds_back_no_later_delivery(settings: Settings) -> None:
    land(settings, "survey_responses", "a.parquet", survey_parquet(b"\xff\xfe"), mtime=1_700_000_000)
    land(settings, "survey_responses", "b.csv", survey_csv("s9,relational,c1,2025-01-01,9"), mtime=1_700_000_100)

    files = by_file(ingest(settings))

    assert (files["a.parquet"].status, files["b.csv"].status) == ("rejected", "loaded")
    assert "not valid UTF8" in (files["a.parquet"].reason or "")
    assert (settings.lake_dir / "rejected" / "survey_responses" / "a.parquet").read_bytes() == survey_parquet(
        b"\xff\xfe"
    )
    assert pending_files(settings)["survey_responses"] == []
    assert ingest(settings).files == []


def test_ingest_engine_error_on_a_sound_parquet_file_fails_the_run_and_leaves_it_pending(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the file's own damage refuses it: any other error while checking must not reject a good delivery."""
    land(settings, "survey_responses", "a.parquet", survey_parquet())
    compile_checks = ingest_engine.compile_checks

    def failing_plan(*args: object, **kwargs: object) -> object:
        plan = compile_checks(*args, **kwargs)
        return replace(plan, sql="SELECT error('the engine failed ' || $file) AS _rn")

    monkeypatch.setattr(ingest_engine, "compile_checks", failing_plan)

    with pytest.raises(duckdb.Error, match="the engine failed"):
        ingest(settings)
    assert not (settings.lake_dir / "rejected").exists()
    assert [p.name for p in pending_files(settings)["survey_responses"]] == ["a.parquet"]


def test_ingest_refused_file_of_a_reused_name_keeps_the_earlier_refused_delivery(settings: Settings) -> None:
    first = "rep_id\nr1\n"
    land(settings, "crm_reps", "daily.csv", first, mtime=1_700_000_000)
    first_sha = ingest(settings, "crm_reps").files[0].sha256
    second = "rep_id,name\nr2,x\n"
    land(settings, "crm_reps", "daily.csv", second, mtime=1_700_000_100)

    refused = ingest(settings, "crm_reps").files[0]

    rejected = settings.lake_dir / "rejected" / "crm_reps"
    assert refused.status == "rejected" and first_sha is not None
    assert (rejected / "daily.csv").read_text() == second  # the newest at the plain name
    assert json.loads((rejected / "daily.csv.reason.json").read_text())["sha256"] == refused.sha256
    kept = rejected / f"daily.{first_sha[:12]}.csv"
    assert kept.read_text() == first
    assert json.loads(kept.with_name(kept.name + ".reason.json").read_text())["sha256"] == first_sha
    assert len(list(rejected.iterdir())) == 4


def test_ingest_extra_columns_sharing_a_name_are_drift_not_a_refusal(settings: Settings) -> None:
    # A spreadsheet export's trailing empty columns have blank headers; Note and note are two extras.
    land(
        settings,
        "survey_responses",
        "x.csv",
        SURVEY_HEADER + ",,,Note,note,_Rule\n"
        "s1,relational,c1,2025-01-01,9,,,a,b,x\ns2,relational,c1,2025-01-01,11,,,c,d,y\n",
    )

    result = ingest(settings).files[0]

    assert (result.status, result.rows_loaded, result.rows_quarantined) == ("loaded", 1, 1)
    assert result.extra_columns == ["", "", "Note", "note", "_Rule"]
    quarantine = settings.lake_dir / "quarantine" / "survey_responses" / f"{result.sha256}.parquet"
    relation = duckdb.sql(f"SELECT * FROM read_parquet('{quarantine}')")
    names = [d[0] for d in relation.description]
    assert names[5:] == [
        "(unnamed)", "(unnamed) (2)", "Note", "note (2)", "_Rule (delivered)",
        "_source_file", "_row_number", "_rule", "_reason",
    ]
    assert relation.fetchall()[0][4:10] == ("11", None, None, "c", "d", "y")
    assert duckdb.sql(f"SELECT _rule FROM read_parquet('{quarantine}')").fetchall() == [("nps_score:range",)]


def test_ingest_ten_megabyte_field_quarantines_only_its_row(settings: Settings) -> None:
    huge = "x" * (10 * 1024 * 1024)
    body = SURVEY_HEADER + ",comment\ns1,relational,c1,2025-01-01,9,ok\ns2,relational,c1,2025-01-01,9," + huge + "\n"
    land(settings, "survey_responses", "big.csv", body)

    result = ingest(settings).files[0]

    assert (result.status, result.rows_loaded, result.rows_quarantined) == ("loaded", 1, 1)
    assert result.rule_counts == {"comment:max_length": 1}
    quarantined = pq.read_table(settings.lake_dir / "quarantine" / "survey_responses" / f"{result.sha256}.parquet")
    row = quarantined.to_pylist()[0]
    assert len(row["comment"]) == len(huge)  # kept whole in quarantine
    assert row["_reason"] == (
        "survey_responses/big.csv row 2: comment has 10485760 bytes, breaks rule value length <= 1048576 bytes"
    )


def test_ingest_sql_like_column_name_and_values_are_only_data(settings: Settings) -> None:
    evil_header = '"""; drop table x; --",' + SURVEY_HEADER
    land(
        settings,
        "survey_responses",
        "evil.csv",
        evil_header + "\n'); drop table staged; --,s1,relational,c1,2025-01-01,9\n",
    )

    result = ingest(settings).files[0]

    assert (result.status, result.rows_loaded, result.extra_columns) == ("loaded", 1, ['"; drop table x; --'])
    assert raw_rows(settings)[0]["response_id"] == "s1"


def test_ingest_sql_like_value_in_quarantine_keeps_delivered_column_names(settings: Settings) -> None:
    header = '"""; drop table x; --",' + SURVEY_HEADER
    land(settings, "survey_responses", "evil.csv", header + "\n'); --,s1,relational,c1,2025-01-01,eleven\n")

    result = ingest(settings).files[0]

    table = pq.read_table(settings.lake_dir / "quarantine" / "survey_responses" / f"{result.sha256}.parquet")
    assert table.column_names[:2] == ['"; drop table x; --', "response_id"]
    assert table.to_pylist()[0]['"; drop table x; --'] == "'); --"


def test_ingest_crash_before_manifest_record_reloads_file_exactly_once_on_rerun(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    land(
        settings,
        "survey_responses",
        "a.csv",
        survey_csv("s1,relational,c1,2025-01-01,9", "s2,relational,c1,2025-01-01,99"),
    )

    def killed(self: ManifestStore, record: FileLoadResult) -> None:
        raise KeyboardInterrupt("process killed after writing outputs, before the manifest record")

    with monkeypatch.context() as patch:
        patch.setattr(ManifestStore, "write_record", killed)
        with pytest.raises(KeyboardInterrupt):
            ingest(settings)
    assert [p.name for p in pending_files(settings)["survey_responses"]] == ["a.csv"]

    rerun = ingest(settings)

    assert [(f.status, f.rows_loaded, f.rows_quarantined) for f in rerun.files] == [("loaded", 1, 1)]
    sha = rerun.files[0].sha256
    assert sorted(p.name for p in raw_dir(settings.lake_dir, "survey_responses").iterdir()) == [
        f"{sha}.parquet",
        "_schema.parquet",
    ]
    assert [r["response_id"] for r in raw_rows(settings)] == ["s1"]
    assert ingest(settings).files == []
    assert not list(settings.lake_dir.rglob("*.tmp"))


def test_pending_files_hashes_unchanged_files_only_once(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    land(settings, "crm_reps", "r.csv", "rep_id,team\nr1,other\n")
    hashed: list[Path] = []
    real = ingest_engine.sha256_of
    monkeypatch.setattr(ingest_engine, "sha256_of", lambda p: hashed.append(p) or real(p))

    first = pending_files(settings)
    second = pending_files(settings)

    assert first == second
    assert [p.name for p in first["crm_reps"]] == ["r.csv"]
    assert set(first) == set(ingest_engine.load_contract().sources)
    assert len(hashed) == 1
    ingest(settings, "crm_reps")
    assert pending_files(settings)["crm_reps"] == []
    assert len(hashed) == 1


def test_pending_files_changed_content_at_same_path_is_pending_again(settings: Settings) -> None:
    land(settings, "crm_reps", "r.csv", "rep_id,team\nr1,other\n", mtime=1_700_000_000)
    ingest(settings, "crm_reps")

    land(settings, "crm_reps", "r.csv", "rep_id,team\nr1,support\n", mtime=1_700_000_100)

    assert [p.name for p in pending_files(settings)["crm_reps"]] == ["r.csv"]
    assert ingest(settings, "crm_reps").files[0].status == "loaded"


def test_pending_files_skips_hidden_in_progress_uploads(settings: Settings) -> None:
    land(settings, "crm_reps", ".r.csv.part", "rep_id,team\nr1,oth")

    assert pending_files(settings)["crm_reps"] == []


def test_ingest_without_deliveries_creates_every_raw_table_and_an_empty_manifest(settings: Settings) -> None:
    result = ingest(settings, "orders")

    assert result.files == []
    for table in LAKE_TABLES:
        schema_file = raw_dir(settings.lake_dir, table) / "_schema.parquet"
        assert pq.read_schema(schema_file) == lake_schema(table)
    assert pq.read_table(write_load_manifest(settings)).num_rows == 0


def test_write_load_manifest_has_one_row_per_file_with_exact_schema(settings: Settings) -> None:
    land(settings, "survey_responses", "a.csv", survey_csv("s1,relational,c1,2025-01-01,9"), mtime=1_700_000_000)
    land(settings, "survey_responses", "b.csv", survey_csv("s1,relational,c1,2025-01-01,9"), mtime=1_700_000_100)
    land(settings, "survey_responses", "c.txt", "nope", mtime=1_700_000_200)
    land(settings, "crm_reps", "r.csv", "rep_id,team\nr1,other\n")
    ingest(settings)
    ingest(settings, "crm_reps")

    path = write_load_manifest(settings)

    table = pq.read_table(path)
    assert path == load_manifest_path(settings.lake_dir)
    assert table.schema == LOAD_MANIFEST_SCHEMA
    rows = table.to_pylist()
    assert [(r["file"], r["status"], r["delivery_seq"]) for r in rows] == [
        ("survey_responses/a.csv", "loaded", 1),
        ("survey_responses/b.csv", "duplicate", 2),
        ("survey_responses/c.txt", "rejected", 3),
        ("crm_reps/r.csv", "loaded", 4),
    ]
    assert all(r["loaded_at"] is not None and r["size_bytes"] > 0 for r in rows)
    assert json.loads(rows[0]["rule_counts"]) == {}


def test_ingest_unknown_source_raises(settings: Settings) -> None:
    with pytest.raises(ValueError, match="unknown source 'surveys'"):
        ingest_source("surveys", settings)


def test_on_written_hands_over_exactly_each_lake_files_rows_in_delivery_order(settings: Settings) -> None:
    # The ingestion assets validate these rows instead of reading the files back, so they must be the
    # files' content: typed, with provenance, PII keys and the long driver scores; never the quarantine.
    land(
        settings,
        "survey_responses",
        "a.csv",
        "response_id,survey_type,customer_id,responded_at,nps_score,driver_speed,driver_care\n"
        "s1,relational,c1,2025-01-01,9,8,\n"
        "s2,relational,c1,2025-01-01,X,7,6\n"
        "s3,transactional,c2,2025-01-02T10:00:00+09:00,3,,2\n",
        mtime=1_700_000_000,
    )
    land(settings, "survey_responses", "b.csv", survey_csv("s4,annual,c3,2025-01-03,10"), mtime=1_700_000_001)
    land(
        settings,
        "crm_accounts",
        "accounts.csv",
        "customer_id,created_at,contact_email\nc1,2025-01-01T00:00:00Z, Taro@Example.jp\n",
    )
    handed: list[tuple[str, str, object]] = []

    def keep(table: str, loaded: FileLoadResult, rows: object) -> None:
        handed.append((table, loaded.file, rows))

    results = {s: ingest_source(s, settings, now=NOW, on_written=keep) for s in ("survey_responses", "crm_accounts")}
    shas = {f.file: f.sha256 for r in results.values() for f in r.files}
    assert [(table, file) for table, file, _ in handed] == [
        ("survey_responses", "survey_responses/a.csv"),
        ("survey_driver_scores", "survey_responses/a.csv"),
        ("survey_responses", "survey_responses/b.csv"),
        ("survey_driver_scores", "survey_responses/b.csv"),
        ("crm_accounts", "crm_accounts/accounts.csv"),
    ]
    for table, file, rows in handed:
        written = pq.read_table(raw_dir(settings.lake_dir, table) / f"{shas[file]}.parquet")
        assert rows.schema == lake_schema(table)
        assert rows.equals(written), (table, file)
    assert [r["response_id"] for r in handed[0][2].to_pylist()] == ["s1", "s3"]  # s2 is quarantined
    assert handed[1][2].num_rows == 2 and handed[3][2].num_rows == 0  # rated items of s1 and s3 only
    assert handed[4][2].column("contact_email_key")[0].as_py() is not None


def test_on_written_raising_fails_the_run_and_the_file_stays_pending(settings: Settings) -> None:
    land(settings, "survey_responses", "a.csv", survey_csv("s1,relational,c1,2025-01-01,9"), mtime=1_700_000_000)
    land(settings, "survey_responses", "b.csv", survey_csv("s2,relational,c1,2025-01-01,8"), mtime=1_700_000_001)

    def broken(table: str, loaded: FileLoadResult, rows: object) -> None:
        if loaded.file.endswith("b.csv"):
            raise RuntimeError("validation crashed")

    with pytest.raises(RuntimeError, match="validation crashed"):
        ingest_source("survey_responses", settings, now=NOW, on_written=broken)
    # a was recorded; b was not, so it is validated again by the rerun instead of slipping through.
    assert [p.name for p in pending_files(settings)["survey_responses"]] == ["b.csv"]
    handed: list[str] = []
    rerun = ingest_source("survey_responses", settings, now=NOW, on_written=lambda t, f, r: handed.append(t))
    assert [(f.file, f.status) for f in rerun.files] == [("survey_responses/b.csv", "loaded")]
    assert handed == ["survey_responses", "survey_driver_scores"]
    assert [r["response_id"] for r in raw_rows(settings)] in (["s1", "s2"], ["s2", "s1"])


def test_a_file_outside_the_sources_folders_is_named_by_the_load_manifests_check(tmp_path: Path) -> None:
    """sources.yaml: landing/<source>/; a mistyped folder must not be ignored without a word."""
    import dagster as dg

    from orchestration.definitions import defs
    from orchestration.lib.ingest import unknown_landing_entries
    from orchestration.lib.lake import LOAD_MANIFEST_KEY

    landing = tmp_path / "landing"
    (landing / "orders").mkdir(parents=True)
    (landing / "ordres").mkdir()
    (landing / "ordres" / "orders_2025-06-30.csv").write_text("order_id\n1\n")
    (landing / "ordres" / ".uploading.csv").write_text("x")
    (landing / "notes.txt").write_text("x")
    (landing / ".DS_Store").write_text("x")
    settings = Settings(data_dir=tmp_path)
    assert unknown_landing_entries(settings) == {"notes.txt": 1, "ordres/": 1}

    key = dg.AssetKey(list(LOAD_MANIFEST_KEY))
    job = defs().resolve_implicit_global_asset_job_def().get_subset(asset_selection={key})
    result = job.execute_in_process(run_config={"resources": {"nps_link": {"config": {"data_dir": str(tmp_path)}}}},
                                    instance=dg.DagsterInstance.ephemeral())
    [check] = result.get_asset_check_evaluations()
    assert check.check_name == "landing_layout" and not check.passed
    assert check.severity == dg.AssetCheckSeverity.WARN
    assert "landing/notes.txt (1 file), landing/ordres/ (1 file)" in (check.description or "")

    # Moved where it belongs: the folder holds nothing left unread (only an upload in progress).
    (landing / "ordres" / "orders_2025-06-30.csv").rename(landing / "orders" / "orders_2025-06-30.csv")
    (landing / "notes.txt").unlink()
    assert unknown_landing_entries(settings) == {}


def test_ingest_removes_what_a_killed_load_of_the_source_left_and_nothing_of_another_source(
    settings: Settings,
) -> None:
    from orchestration.lib.lake import quarantine_dir, rejected_dir
    from quality.contract import DRIVER_SCORES_TABLE

    lake = settings.lake_dir
    left_behind = [
        lake / ".work" / "survey_responses-k1l2" / "inflated.csv",  # a killed load's scratch copy
        raw_dir(lake, "survey_responses") / ".abc.parquet.4242.tmp",
        raw_dir(lake, DRIVER_SCORES_TABLE) / ".abc.parquet.4242.tmp",
        quarantine_dir(lake, "survey_responses") / ".abc.parquet.4242.tmp",
        rejected_dir(lake, "survey_responses") / "sub" / ".x.csv.4242.tmp",
    ]
    another_sources = [lake / ".work" / "orders-z9" / "spill.tmp", raw_dir(lake, "orders") / ".o.parquet.7.tmp"]
    for path in left_behind + another_sources:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * 1000)
    land(settings, "survey_responses", "a.csv", survey_csv("s1,relational,c1,2025-01-01,9"))

    result = ingest(settings)

    assert [f.status for f in result.files] == ["loaded"]
    assert [p for p in left_behind if p.exists()] == []
    assert not (lake / ".work" / "survey_responses-k1l2").exists()
    assert all(p.exists() for p in another_sources)  # another source's load may be running beside this one


def test_a_file_modified_within_the_settle_time_is_left_for_a_later_run(tmp_path: Path) -> None:
    """The 06:00 schedule's runs pass settled_before: a sender still writing a file in place is not half-loaded."""
    import time

    settings = Settings(data_dir=tmp_path)
    now = time.time()
    land(settings, "survey_responses", "settled.csv", survey_csv("R1,relational,C1,2025-05-01T10:00:00,9"),
         mtime=int(now) - 600)
    land(settings, "survey_responses", "writing.csv", survey_csv("R2,relational,C1,2025-05-01T10:00:00,9"))
    # A file share whose clock runs a minute ahead: recent all the same. An hour ahead says nothing: loaded.
    land(settings, "survey_responses", "share.csv", survey_csv("R3,relational,C1,2025-05-01T10:00:00,9"),
         mtime=int(now) + 60)
    land(settings, "survey_responses", "ahead.csv", survey_csv("R4,relational,C1,2025-05-01T10:00:00,9"),
         mtime=int(now) + 3600)
    result = ingest_source("survey_responses", settings, now=NOW, settled_before=now - 120)
    assert sorted(by_file(result)) == ["ahead.csv", "settled.csv"]
    assert result.unsettled == ["survey_responses/share.csv", "survey_responses/writing.csv"]
    assert sorted(p.name for p in pending_files(settings)["survey_responses"]) == ["share.csv", "writing.csv"]
    # Without the setting (a run a person started, the sensor's), they load.
    assert sorted(by_file(ingest(settings))) == ["share.csv", "writing.csv"]
