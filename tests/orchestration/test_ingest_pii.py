"""Personal data at ingestion: every `pii: true` column gets a keyed hash beside it (HMAC, NPS_LINK_PII_KEY)."""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
from datetime import datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from orchestration.lib.ingest import ingest_source
from orchestration.lib.lake import raw_dir
from orchestration.lib.settings import Settings

NOW = datetime(2025, 6, 1)


def _accounts(data_dir: Path) -> None:
    landing = data_dir / "landing" / "crm_accounts"
    landing.mkdir(parents=True)
    (landing / "accounts.csv").write_text(
        "customer_id,created_at,contact_email\n"
        "c1,2025-01-01T00:00:00Z,Taro.Yamada@Example.co.jp\n"
        "c2,2025-01-01T00:00:00Z,  taro.yamada@example.co.jp \n"
        "c3,2025-01-01T00:00:00Z,\n",
        encoding="utf-8",
    )


def _keys(data_dir: Path) -> dict[str, str | None]:
    files = [p for p in raw_dir(data_dir / "lake", "crm_accounts").glob("*.parquet") if p.name != "_schema.parquet"]
    table = pq.read_table(files[0])
    return dict(zip(table["customer_id"].to_pylist(), table["contact_email_key"].to_pylist(), strict=True))


def test_ingest_pii_column_gets_hmac_of_trimmed_lowercased_value_with_env_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NPS_LINK_PII_KEY", "a-test-key-of-enough-length")
    _accounts(tmp_path)
    ingest_source("crm_accounts", Settings.from_env({}, data_dir=tmp_path), now=NOW)
    keys = _keys(tmp_path)
    expected = hmac.new(b"a-test-key-of-enough-length", b"taro.yamada@example.co.jp", hashlib.sha256).hexdigest()
    # One person, however the CRM spelled the address, has one key; no address, no key.
    assert keys == {"c1": expected, "c2": expected, "c3": None}
    assert not (tmp_path / ".pii_key").exists()


def test_ingest_without_env_key_generates_a_private_key_file_and_reuses_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NPS_LINK_PII_KEY", raising=False)
    _accounts(tmp_path)
    ingest_source("crm_accounts", Settings.from_env({}, data_dir=tmp_path), now=NOW)
    key_file = tmp_path / ".pii_key"
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    key = bytes.fromhex(key_file.read_text().strip())
    expected = hmac.new(key, b"taro.yamada@example.co.jp", hashlib.sha256).hexdigest()
    assert _keys(tmp_path)["c1"] == expected
    # A second delivery hashes with the same key, so keys join across files and runs.
    (tmp_path / "landing" / "crm_accounts" / "more.csv").write_text(
        "customer_id,created_at,contact_email\nc9,2025-02-01T00:00:00Z,TARO.YAMADA@EXAMPLE.CO.JP\n", encoding="utf-8"
    )
    ingest_source("crm_accounts", Settings.from_env({}, data_dir=tmp_path), now=NOW)
    tables = [pq.read_table(p) for p in raw_dir(tmp_path / "lake", "crm_accounts").glob("*.parquet")]
    keys = {c: k for t in tables for c, k in zip(t["customer_id"].to_pylist(), t["contact_email_key"].to_pylist(),
                                                 strict=True)}
    assert keys["c9"] == expected
