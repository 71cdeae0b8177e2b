"""PII helpers: the key file, keyed hashing, and the e-mail scanners."""

from __future__ import annotations

import hashlib
import hmac
import stat

import duckdb
import pyarrow as pa
import pytest

from quality.pii import (
    KEY_ENV,
    find_email_addresses,
    keyed_hash,
    load_or_create_pii_key,
    scan_duckdb_for_emails,
    scan_file_for_emails,
)


def test_pii_key_created_with_0600_and_reused(tmp_path):
    data_dir = tmp_path / "data"
    key = load_or_create_pii_key(data_dir, {})
    path = data_dir / ".pii_key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(key) == 32
    assert load_or_create_pii_key(data_dir, {}) == key
    assert not [p for p in data_dir.iterdir() if p.name != ".pii_key"]  # no temporary file left


def test_pii_key_env_wins_over_file(tmp_path):
    file_key = load_or_create_pii_key(tmp_path, {})
    env_key = load_or_create_pii_key(tmp_path, {KEY_ENV: "correct horse battery staple"})
    assert env_key == b"correct horse battery staple" != file_key


def test_pii_key_env_not_consulted_when_absent_and_file_not_created_when_env_set(tmp_path):
    load_or_create_pii_key(tmp_path, {KEY_ENV: "a" * 16})
    assert not (tmp_path / ".pii_key").exists()


def test_pii_key_short_env_key_raises(tmp_path):
    with pytest.raises(ValueError, match="at least 16 bytes"):
        load_or_create_pii_key(tmp_path, {KEY_ENV: "short"})


def test_pii_key_corrupt_file_raises(tmp_path):
    (tmp_path / ".pii_key").write_text("not hex at all\n")
    with pytest.raises(ValueError, match="hex key"):
        load_or_create_pii_key(tmp_path, {})


def test_keyed_hash_matches_hmac_sha256_and_keeps_nulls():
    key = b"k" * 32
    hashed = keyed_hash(["alice@example.com", None, "alice@example.com", "bob"], key)
    expected = hmac.new(key, b"alice@example.com", hashlib.sha256).hexdigest()
    assert hashed.type == pa.string()
    assert hashed.to_pylist() == [expected, None, expected, hmac.new(key, b"bob", hashlib.sha256).hexdigest()]


def test_keyed_hash_deterministic_and_key_dependent():
    values = pa.chunked_array([["a", "b"], ["c"]])
    assert keyed_hash(values, b"1" * 16).equals(keyed_hash(values, b"1" * 16))
    assert keyed_hash(values, b"1" * 16).to_pylist() != keyed_hash(values, b"2" * 16).to_pylist()


def test_keyed_hash_long_key_follows_rfc2104():
    key = b"x" * 100  # longer than SHA-256's block: hashed first
    assert keyed_hash(["v"], key).to_pylist() == [hmac.new(key, b"v", hashlib.sha256).hexdigest()]


def test_keyed_hash_empty_input_returns_empty_array():
    assert len(keyed_hash([], b"k" * 16)) == 0


def test_find_email_addresses_finds_distinct_addresses_in_order():
    text = "write to a.b+c@x-y.example.co.jp or <b@c.io>; again a.b+c@x-y.example.co.jp. @media x{}"
    assert find_email_addresses(text) == ["a.b+c@x-y.example.co.jp", "b@c.io"]
    assert find_email_addresses("NPS rose 12 points @ 95% confidence") == []


def test_scan_file_for_emails_decodes_html_entities(tmp_path):
    report = tmp_path / "report.html"
    report.write_text("<p>owner: jo&#64;example.com</p><style>@media print {}</style>", encoding="utf-8")
    assert scan_file_for_emails(report) == ["jo@example.com"]
    clean = tmp_path / "clean.html"
    clean.write_text("<p>NPS +32</p>", encoding="utf-8")
    assert scan_file_for_emails(clean) == []


def test_scan_duckdb_for_emails_finds_planted_address_and_ignores_clean_and_other_schemas(tmp_path):
    db = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute("create schema marts; create schema staging; create schema ops")
        con.execute("create table marts.detractor_followups (response_id varchar, comment varchar, nps_score int)")
        con.execute(
            "insert into marts.detractor_followups values ('S1', 'fine', 3), ('S2', 'call me: jo.doe@example.com', 2)"
        )
        con.execute("create table staging.stg_reps (rep_id varchar, team varchar)")
        con.execute("insert into staging.stg_reps values ('R1', 'support')")
        con.execute("create table ops.mail_ledger (recipient varchar)")
        con.execute("insert into ops.mail_ledger values ('rep@example.com')")
    findings = scan_duckdb_for_emails(db)
    assert findings == [("marts", "detractor_followups", "comment", "jo.doe@example.com")]
    assert scan_duckdb_for_emails(db, schemas=("ops",)) == [("ops", "mail_ledger", "recipient", "rep@example.com")]


def test_scan_duckdb_for_emails_opens_read_only_next_to_a_reader(tmp_path):
    db = tmp_path / "w.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute("create schema analysis; create table analysis.t (x varchar); insert into analysis.t values ('ok')")
    with duckdb.connect(str(db), read_only=True):
        assert scan_duckdb_for_emails(db) == []
