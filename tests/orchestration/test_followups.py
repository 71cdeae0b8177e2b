"""Detractor follow-ups against a real SMTP server on loopback (aiosmtpd), a real DuckDB file and real files.

Nothing in smtplib is mocked: failures are produced by the server (451/550 replies, a dropped
connection, a reply that never comes) and by SIGKILL of a sending process.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import string
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from orchestration.lib import followups
from orchestration.lib.followups import (
    FollowupResult,
    SmtpSettings,
    fallback_address_from_env,
    message_id_for,
    rep_emails_from_lake,
    send_followups,
)
from orchestration.lib.lake import lake_schema

REPO_ROOT = Path(__file__).resolve().parents[2]
AS_OF = datetime(2025, 6, 30, 14, 59, 59)  # 2025-06-30 23:59:59 in Asia/Tokyo, as naive UTC
FALLBACK = "cx-team@example.co.jp"
REP_EMAILS = {"R1": "r1@example.co.jp", "M1": "m1@example.co.jp", "R3": "r3@example.co.jp"}
JAPANESE_COMMENT = "対応が遅く、担当者から連絡がありませんでした。\n改善をお願いします。"
URL_COMMENT = "詳しくは https://example.com/x を見て"

# response_id, customer_id, responded_at, score, comment, owner, manager, touchpoint, survey_type
DETRACTORS = [
    ("D1", "C001", datetime(2025, 6, 20, 1, 0), 2, JAPANESE_COMMENT, "R1", "M1", "support", "transactional"),
    ("D2", "C002", datetime(2025, 6, 22, 3, 0), 5, None, "R2", "M1", "billing", "transactional"),
    ("D3", "C003", datetime(2025, 6, 25, 5, 0), 6, "遅い", None, None, "onboarding", "transactional"),
    ("D4", "C004", datetime(2025, 6, 28, 7, 0), 0, URL_COMMENT, "R3", "M2", None, "relational"),
    ("D5", "C005", AS_OF, 4, "ok", "R1", "M1", "renewal", "transactional"),  # exactly as_of: inside
]
OUTSIDE = [
    ("X1", "C101", AS_OF - timedelta(days=14), 1, "edge", "R1", "M1", "support", "transactional"),  # excluded
    ("X2", "C102", AS_OF - timedelta(days=20), 3, "old", "R1", "M1", "support", "transactional"),
    ("X3", "C103", AS_OF + timedelta(minutes=1), 2, "future", "R1", "M1", "support", "transactional"),
]
IN_WINDOW_IDS = [row[0] for row in DETRACTORS]


# ---- a real SMTP server ----


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage


class RecordingHandler:
    """aiosmtpd handler that stores accepted messages and fails on the n-th DATA when told to."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.received: list[Received] = []
        self.data_calls = 0
        self.reply_on: dict[int, str] = {}  # n-th DATA (1-based) -> reply instead of accepting
        self.drop_on: set[int] = set()  # n-th DATA: close the connection without a reply
        self.block_on: int | None = None  # n-th DATA: store the message, then withhold the 250
        self.blocked = threading.Event()
        self.release = threading.Event()
        self.rcpt_reply: dict[str, str] = {}  # recipient address -> reply to its RCPT instead of accepting it

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options) -> str:
        if address in self.rcpt_reply:
            return self.rcpt_reply[address]
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope) -> str:
        with self.lock:
            self.data_calls += 1
            call = self.data_calls
        if call in self.drop_on:
            server.transport.close()
            return "421 4.3.0 gone"  # never reaches the client: the transport is closed
        if call in self.reply_on:
            return self.reply_on[call]
        parsed = message_from_bytes(envelope.content, policy=policy.default)
        with self.lock:
            self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), parsed))
        if call == self.block_on:
            # The server now holds the message, but the client never hears 250: the SMTP gap.
            self.blocked.set()
            deadline = time.monotonic() + 30
            while not self.release.is_set() and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
        return "250 2.0.0 queued"

    def by_response(self) -> dict[str, Received]:
        with self.lock:
            return {r.message["X-NPS-Link-Response-Id"]: r for r in self.received}

    def message_id_counts(self) -> Counter[str]:
        with self.lock:
            return Counter(r.message["Message-ID"] for r in self.received)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class SmtpServer:
    handler: RecordingHandler
    settings: SmtpSettings


def _start_server(**smtp_kwargs: object) -> tuple[Controller, SmtpServer]:
    handler = RecordingHandler()
    port = _free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, ready_timeout=10, **smtp_kwargs)
    controller.start()
    settings = SmtpSettings(host="127.0.0.1", port=port, starttls=False, timeout_seconds=10)
    return controller, SmtpServer(handler, settings)


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    controller, server = _start_server()
    try:
        yield server
    finally:
        server.handler.release.set()
        controller.stop()


# ---- a warehouse with the mart ----


def _create_mart(con: duckdb.DuckDBPyConnection, rows: list[tuple], *, optional_columns: bool = True) -> None:
    con.execute("CREATE SCHEMA marts")
    extra = ", survey_type VARCHAR, segment VARCHAR, business_unit VARCHAR" if optional_columns else ""
    con.execute(
        "CREATE TABLE marts.detractor_followups (response_id VARCHAR, customer_id VARCHAR, "
        "responded_at TIMESTAMP, nps_score INTEGER, comment VARCHAR, owner_rep_id VARCHAR, "
        f"manager_rep_id VARCHAR, touchpoint VARCHAR{extra})"
    )
    for row in rows:
        if optional_columns:
            con.execute(
                "INSERT INTO marts.detractor_followups VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [*row, "enterprise", "staffing"],
            )
        else:
            con.execute(
                "INSERT INTO marts.detractor_followups VALUES (?, ?, ?, ?, ?, ?, ?, ?)", list(row[:8])
            )


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    path = tmp_path / "build.duckdb"
    con = duckdb.connect(str(path))
    try:
        _create_mart(con, DETRACTORS + OUTSIDE)
    finally:
        con.close()
    return path


@pytest.fixture
def con(db_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = duckdb.connect(str(db_path))
    try:
        yield connection
    finally:
        connection.close()


def _send(
    con: duckdb.DuckDBPyConnection,
    smtp: SmtpSettings | None,
    outbox: Path,
    *,
    fallback: str | None = FALLBACK,
    run_id: str = "run-1",
    max_batch: int | None = None,
    lang: str = "en",
) -> FollowupResult:
    return send_followups(
        con,
        rep_emails=REP_EMAILS,
        as_of=AS_OF,
        smtp=smtp,
        outbox_dir=outbox,
        fallback_address=fallback,
        run_id=run_id,
        max_batch=max_batch,
        lang=lang,
    )


def _ledger(con: duckdb.DuckDBPyConnection) -> dict[str, dict[str, object]]:
    cursor = con.execute("SELECT * FROM ops.followup_ledger")
    names = [column[0] for column in cursor.description]
    return {row[0]: dict(zip(names, row, strict=True)) for row in cursor.fetchall()}


# ---- settings ----


def test_smtp_settings_from_env_without_host_returns_none() -> None:
    assert SmtpSettings.from_env({}) is None
    assert SmtpSettings.from_env({"NPS_LINK_SMTP_HOST": "  ", "NPS_LINK_SMTP_PORT": "2525"}) is None


def test_smtp_settings_from_env_port_follows_starttls_and_values_are_read() -> None:
    secure = SmtpSettings.from_env({"NPS_LINK_SMTP_HOST": "mail.example.com"})
    assert secure is not None
    assert (secure.port, secure.starttls, secure.from_address, secure.user) == (
        587,
        True,
        "nps-link@localhost",
        None,
    )
    plain = SmtpSettings.from_env(
        {
            "NPS_LINK_SMTP_HOST": "relay",
            "NPS_LINK_SMTP_STARTTLS": "false",
            "NPS_LINK_SMTP_USER": "bot",
            "NPS_LINK_SMTP_PASSWORD": "s3cret",
            "NPS_LINK_SMTP_FROM": "nps@example.co.jp",
        }
    )
    assert plain is not None
    assert (plain.port, plain.starttls, plain.user, plain.password, plain.from_address) == (
        25,
        False,
        "bot",
        "s3cret",
        "nps@example.co.jp",
    )
    assert "s3cret" not in repr(plain)
    explicit = SmtpSettings.from_env({"NPS_LINK_SMTP_HOST": "relay", "NPS_LINK_SMTP_PORT": "2525"})
    assert explicit is not None and explicit.port == 2525


def test_smtp_settings_from_env_bad_boolean_or_sender_raises() -> None:
    with pytest.raises(ValueError, match="NPS_LINK_SMTP_STARTTLS"):
        SmtpSettings.from_env({"NPS_LINK_SMTP_HOST": "relay", "NPS_LINK_SMTP_STARTTLS": "maybe"})
    with pytest.raises(ValueError, match="NPS_LINK_SMTP_FROM"):
        SmtpSettings.from_env({"NPS_LINK_SMTP_HOST": "relay", "NPS_LINK_SMTP_FROM": "not an address"})


def test_fallback_address_from_env_reads_or_rejects_the_address() -> None:
    assert fallback_address_from_env({}) is None
    assert fallback_address_from_env({"NPS_LINK_FOLLOWUP_FALLBACK": f" {FALLBACK} "}) == FALLBACK
    with pytest.raises(ValueError, match="NPS_LINK_FOLLOWUP_FALLBACK"):
        fallback_address_from_env({"NPS_LINK_FOLLOWUP_FALLBACK": "cx-team"})


# ---- rep addresses from the lake ----


def _write_reps(folder: Path, name: str, rows: list[dict]) -> None:
    schema = lake_schema("crm_reps")
    base = {"rep_name": "x", "team": "account_management", "manager_rep_id": None, "active": True}
    meta = {"_source_file": name, "_file_sha256": name, "_loaded_at": datetime(2025, 6, 1)}
    full = [{**base, **meta, **row} for row in rows]
    pq.write_table(pa.Table.from_pylist(full, schema=schema), folder / f"{name}.parquet")


def test_rep_emails_from_lake_latest_delivery_wins_and_bad_addresses_are_left_out(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    folder = lake / "raw" / "crm_reps"
    folder.mkdir(parents=True)
    pq.write_table(lake_schema("crm_reps").empty_table(), folder / "_schema.parquet")
    _write_reps(
        folder,
        "a",
        [
            {"rep_id": "R1", "email": "old@example.co.jp", "_delivery_seq": 1, "_row_number": 1},
            {"rep_id": "R2", "email": "r2@example.co.jp", "_delivery_seq": 1, "_row_number": 2},
            {"rep_id": "R3", "email": " r3@example.co.jp ", "_delivery_seq": 1, "_row_number": 3},
        ],
    )
    _write_reps(
        folder,
        "b",
        [
            {"rep_id": "R1", "email": "new@example.co.jp", "_delivery_seq": 2, "_row_number": 1},
            {"rep_id": "R2", "email": "", "_delivery_seq": 2, "_row_number": 2},  # address removed
            {"rep_id": "R4", "email": "not an address", "_delivery_seq": 2, "_row_number": 3},
            {"rep_id": "R5", "email": "first@example.co.jp", "_delivery_seq": 2, "_row_number": 4},
            {"rep_id": "R5", "email": "second@example.co.jp", "_delivery_seq": 2, "_row_number": 5},
        ],
    )

    assert rep_emails_from_lake(lake) == {
        "R1": "new@example.co.jp",
        "R3": "r3@example.co.jp",
        "R5": "second@example.co.jp",
    }


def test_rep_emails_from_lake_leaves_out_a_rep_whose_latest_row_is_inactive(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    folder = lake / "raw" / "crm_reps"
    folder.mkdir(parents=True)
    _write_reps(folder, "a", [
        {"rep_id": "R1", "email": "r1@example.co.jp", "_delivery_seq": 1, "_row_number": 1},
        {"rep_id": "R2", "email": "r2@example.co.jp", "_delivery_seq": 1, "_row_number": 2, "active": False},
    ])
    _write_reps(folder, "b", [
        # R1 has left the company: mail for R1's customers must go to the fallback, not to a dead desk.
        {"rep_id": "R1", "email": "r1@example.co.jp", "_delivery_seq": 2, "_row_number": 1, "active": False},
        # R2 came back; R3's flag is not delivered (the contract's default: active).
        {"rep_id": "R2", "email": "r2@example.co.jp", "_delivery_seq": 2, "_row_number": 2, "active": True},
        {"rep_id": "R3", "email": "r3@example.co.jp", "_delivery_seq": 2, "_row_number": 3, "active": None},
    ])
    assert rep_emails_from_lake(lake) == {"R2": "r2@example.co.jp", "R3": "r3@example.co.jp"}


def test_rep_emails_from_lake_without_deliveries_returns_empty(tmp_path: Path) -> None:
    assert rep_emails_from_lake(tmp_path / "lake") == {}


# ---- SMTP delivery ----


def test_send_followups_smtp_sends_each_window_detractor_once_with_headers_and_body(
    con: duckdb.DuckDBPyConnection, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    result = _send(con, smtp_server.settings, tmp_path / "outbox")

    assert (result.transport, result.sent, result.skipped_already_sent, result.failed) == ("smtp", 5, 0, [])
    received = smtp_server.handler.by_response()
    assert sorted(received) == IN_WINDOW_IDS  # X1 (window start), X2 (older), X3 (after as_of) not sent
    assert len(smtp_server.handler.received) == 5

    d1 = received["D1"]
    assert d1.mail_from == "nps-link@localhost"
    assert d1.rcpt_tos == ["r1@example.co.jp", "m1@example.co.jp"]
    assert d1.message["To"] == "r1@example.co.jp"
    assert d1.message["Cc"] == "m1@example.co.jp"
    assert d1.message["Subject"] == "NPS detractor 2/10 - support - customer C001"
    assert d1.message["Message-ID"] == message_id_for("D1")
    body = d1.message.get_content()
    assert "対応が遅く、担当者から連絡がありませんでした。" in body
    assert "改善をお願いします。" in body
    assert "Responded:     2025-06-20 10:00 JST (Asia/Tokyo)" in body
    assert "Score:         2 / 10" in body
    assert "Survey type:   transactional" in body
    assert "Summary: Strong detractor (0-3)." in body
    assert "What to do:" in body

    # D4: manager M2 has no address, so the fallback is copied in the manager's stead, and the run
    # warns about M2; the customer's URL is shown but not as a link.
    d4 = received["D4"]
    assert d4.rcpt_tos == ["r3@example.co.jp", FALLBACK] and d4.message["Cc"] == FALLBACK
    assert d4.message["Subject"] == "NPS detractor 0/10 - relational - customer C004"
    assert "https[:]//example.com/x" in d4.message.get_content()
    assert "The manager M2 cannot be reached by e-mail" in d4.message.get_content()
    assert "The manager is copied" not in d4.message.get_content()
    assert _ledger(con)["D4"]["cc"] == "fallback"
    assert result.manager_unreachable == 1 and not result.all_reached
    assert result.manager_warnings == [
        "manager M2 cannot be reached by e-mail (no address in the CRM, or marked inactive): "
        "1 follow-up of the manager's team; the fallback mailbox is copied in the manager's stead"]
    for item in received.values():
        content = item.message.get_content()
        assert "://" not in content and "http" not in content.replace("https[:]//", "")


def test_send_followups_manager_without_address_and_no_fallback_warns_and_the_rep_is_still_told(
    con: duckdb.DuckDBPyConnection, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    # GIVEN no fallback mailbox, and D4's owner R3 has a manager (M2) the CRM gives no address
    result = _send(con, smtp_server.settings, tmp_path / "outbox", fallback=None)

    # THEN R3 is told, without a Cc, and the run names M2 and fails its check (a CRM record to fix)
    d4 = smtp_server.handler.by_response()["D4"]
    assert d4.rcpt_tos == ["r3@example.co.jp"] and d4.message["Cc"] is None
    assert "cannot be reached by e-mail (no address in the CRM, or marked inactive), so the manager is not told" in (
        d4.message.get_content())
    assert _ledger(con)["D4"]["cc"] is None
    assert result.manager_unreachable == 1 and not result.all_reached
    assert result.manager_warnings == [
        "manager M2 cannot be reached by e-mail (no address in the CRM, or marked inactive): "
        "1 follow-up of the manager's team; they go without the manager (NPS_LINK_FOLLOWUP_FALLBACK is not set)"]


def test_send_followups_owner_without_a_manager_in_the_crm_is_not_a_warning(
    con: duckdb.DuckDBPyConnection, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    # GIVEN M2 gets an address: every manager the CRM names can be reached; D3's customer has no owner
    # (so no manager) and goes to the fallback
    result = send_followups(con, rep_emails={**REP_EMAILS, "M2": "m2@example.co.jp"}, as_of=AS_OF,
                            smtp=smtp_server.settings, outbox_dir=tmp_path / "outbox", fallback_address=FALLBACK,
                            run_id="run-1")
    assert (result.sent, result.failed, result.warnings, result.manager_warnings) == (5, [], [], [])
    assert result.all_reached
    assert smtp_server.handler.by_response()["D3"].rcpt_tos == [FALLBACK]


def test_send_followups_in_japanese_writes_the_body_in_japanese_and_keeps_the_subject_plain(
    con: duckdb.DuckDBPyConnection, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    # GIVEN NPS_LINK_REPORT_LANG=ja (a Japanese company's reps read Japanese)
    result = _send(con, smtp_server.settings, tmp_path / "outbox", lang="ja")
    assert (result.sent, result.failed) == (5, [])
    received = smtp_server.handler.by_response()

    d1 = received["D1"].message
    body = d1.get_content()
    assert d1["Subject"] == "NPS detractor 2/10 - support - customer C001"  # ASCII: the fast path's headers
    assert body.startswith("概要：強い批判者（0〜3）。顧客 C001 が 2025-06-20 のトランザクショナル調査"
                           "（タッチポイント：support）で 2/10 と回答し、以下のコメントを残しました。")
    assert "調査の種類：     トランザクショナル" in body
    assert "回答日時：       2025-06-20 10:00 JST (Asia/Tokyo)" in body
    assert "対応が遅く、担当者から連絡がありませんでした。" in body
    assert "3. 連絡内容と結果を CRM に記録し、回答 D1 を記載してください。" in body
    assert "マネージャーにも写しを送っています" in body
    assert "What to do" not in body and "Summary" not in body
    # The fallback's and the unreachable manager's notes are in Japanese too.
    assert "担当者 R2 にメールで連絡できない" in received["D2"].message.get_content()
    assert "顧客に CRM 上の担当者がいない" in received["D3"].message.get_content()
    assert "マネージャー M2 にメールで連絡できない" in received["D4"].message.get_content()


def test_follow_ups_are_written_in_every_language_the_report_is() -> None:
    """README: NPS_LINK_REPORT_LANG sets the language of both; a report language without mail texts would fail runs."""
    from analysis.report.i18n import LANGUAGES

    assert set(followups.FOLLOWUP_LANGUAGES) == set(LANGUAGES)
    assert all(followups._TEXTS[lang].keys() == followups._TEXTS["en"].keys() for lang in followups.FOLLOWUP_LANGUAGES)


def test_send_followups_in_a_language_it_cannot_write_refuses_before_sending(
    con: duckdb.DuckDBPyConnection, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="follow-up language 'fr'"):
        _send(con, smtp_server.settings, tmp_path / "outbox", lang="fr")
    assert smtp_server.handler.received == []


def test_send_followups_counts_detractors_that_arrived_after_their_window_and_sends_them_nothing(
    con: duckdb.DuckDBPyConnection, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    # GIVEN the last publish took deliveries up to 3; delivery 4 brought X2 (responded 20 days before
    # as_of: its window closed) and D5; X1 (exactly at the window's start) came in delivery 5
    con.execute("ALTER TABLE marts.detractor_followups ADD COLUMN _delivery_seq BIGINT DEFAULT 1")
    con.execute("UPDATE marts.detractor_followups SET _delivery_seq = 4 WHERE response_id IN ('X2', 'D5')")
    con.execute("UPDATE marts.detractor_followups SET _delivery_seq = 5 WHERE response_id = 'X1'")
    result = send_followups(con, rep_emails=REP_EMAILS, as_of=AS_OF, smtp=smtp_server.settings,
                            outbox_dir=tmp_path / "outbox", fallback_address=FALLBACK, run_id="run-1",
                            delivered_since_seq=3)
    # THEN the window's five are sent as ever; X1 and X2 are counted, newest first, and not sent
    assert (result.sent, result.arrived_after_window, result.arrived_after_window_ids) == (5, 2, ["X1", "X2"])
    assert sorted(smtp_server.handler.by_response()) == IN_WINDOW_IDS
    # AND a first run (no watermark: all its history is new) counts nothing
    first = send_followups(con, rep_emails=REP_EMAILS, as_of=AS_OF, smtp=smtp_server.settings,
                           outbox_dir=tmp_path / "outbox", fallback_address=FALLBACK, run_id="run-2")
    assert (first.sent, first.arrived_after_window) == (0, 0)
    # AND what the last published warehouse already held as a detractor is no news: X1 was a detractor
    # there (delivery 5 re-exported it unchanged); X2 was a 9 then (delivery 4 corrected it to a 3)
    previous = tmp_path / "nps_link.duckdb"
    published = duckdb.connect(str(previous))
    published.execute("create schema marts")
    published.execute("create table marts.fct_survey_responses as "
                      "select * from (values ('X1', 1), ('X2', 9), ('D1', 2)) as t(response_id, nps_score)")
    published.close()
    again = send_followups(con, rep_emails=REP_EMAILS, as_of=AS_OF, smtp=smtp_server.settings,
                           outbox_dir=tmp_path / "outbox", fallback_address=FALLBACK, run_id="run-3",
                           delivered_since_seq=3, previous_db=previous)
    assert (again.arrived_after_window, again.arrived_after_window_ids) == (1, ["X2"])
    assert con.execute("select count(*) from duckdb_databases() where database_name = '_previous_publish'"
                       ).fetchall() == [(0,)]  # detached again
    # AND a published file it cannot open (not a DuckDB file here; held read-write elsewhere alike)
    # never stops the mail-out: the count then includes what it could not rule out
    unreadable = tmp_path / "garbled.duckdb"
    unreadable.write_bytes(b"not a database")
    blind = send_followups(con, rep_emails=REP_EMAILS, as_of=AS_OF, smtp=smtp_server.settings,
                           outbox_dir=tmp_path / "outbox", fallback_address=FALLBACK, run_id="run-4",
                           delivered_since_seq=3, previous_db=unreadable)
    assert (blind.arrived_after_window, blind.failed) == (2, [])


def test_send_followups_second_call_sends_nothing(
    con: duckdb.DuckDBPyConnection, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    _send(con, smtp_server.settings, tmp_path / "outbox", run_id="run-1")
    again = _send(con, smtp_server.settings, tmp_path / "outbox", run_id="run-2")

    assert (again.sent, again.skipped_already_sent, again.failed) == (0, 5, [])
    assert len(smtp_server.handler.received) == 5
    assert {row["run_id"] for row in _ledger(con).values()} == {"run-1"}


def test_send_followups_fallback_routing_is_counted_and_no_address_is_retried(
    con: duckdb.DuckDBPyConnection, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    without = _send(con, smtp_server.settings, tmp_path / "outbox", fallback=None)

    assert without.sent == 3 and without.fallback_count == 0 and without.no_address_count == 2
    reasons = {f.response_id: f.detail for f in without.failed}
    assert set(reasons) == {"D2", "D3"}
    assert "owner rep R2 has no e-mail address" in reasons["D2"]
    assert "customer has no owner rep" in reasons["D3"]
    assert set(_ledger(con)) == {"D1", "D4", "D5"}

    with_fallback = _send(con, smtp_server.settings, tmp_path / "outbox", fallback=FALLBACK)

    assert (with_fallback.sent, with_fallback.fallback_count, with_fallback.skipped_already_sent) == (2, 2, 3)
    received = smtp_server.handler.by_response()
    assert received["D2"].rcpt_tos == [FALLBACK, "m1@example.co.jp"]  # manager still copied
    assert received["D3"].rcpt_tos == [FALLBACK]
    assert "owner rep R2 cannot be reached by e-mail (no address in the CRM" in received["D2"].message.get_content()
    ledger = _ledger(con)
    assert (ledger["D2"]["recipient"], ledger["D2"]["cc"], ledger["D2"]["is_fallback"]) == (
        "fallback",
        "M1",
        True,
    )
    assert (ledger["D3"]["recipient"], ledger["D3"]["cc"], ledger["D3"]["is_fallback"]) == (
        "fallback",
        None,
        True,
    )
    assert (ledger["D1"]["recipient"], ledger["D1"]["cc"], ledger["D1"]["is_fallback"]) == ("R1", "M1", False)


def test_send_followups_ledger_holds_rep_ids_and_never_an_address(
    con: duckdb.DuckDBPyConnection, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    _send(con, smtp_server.settings, tmp_path / "outbox")

    ledger = _ledger(con)
    assert sorted(ledger) == IN_WINDOW_IDS
    assert {(row["recipient"], row["cc"]) for row in ledger.values()} == {
        ("R1", "M1"),
        ("fallback", "M1"),
        ("fallback", None),
        ("R3", "fallback"),  # manager M2 has no address: the fallback was copied in M2's stead
    }
    for row in ledger.values():
        outside_message_id = {k: v for k, v in row.items() if k != "message_id"}
        assert not any("@" in str(v) for v in outside_message_id.values())
    assert {row["transport"] for row in ledger.values()} == {"smtp"}
    assert ledger["D3"]["message_id"] == message_id_for("D3")


def test_send_followups_server_451_on_third_message_stops_then_resumes_next_call(
    con: duckdb.DuckDBPyConnection, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    smtp_server.handler.reply_on[3] = "451 4.3.0 try again later"

    first = _send(con, smtp_server.settings, tmp_path / "outbox")

    assert first.sent == 2 and first.stopped_reason is not None and "451" in first.stopped_reason
    assert [(f.response_id, f.reason) for f in first.failed] == [
        ("D3", "server_error"),
        ("D4", "not_attempted"),
        ("D5", "not_attempted"),
    ]
    assert set(_ledger(con)) == {"D1", "D2"}

    second = _send(con, smtp_server.settings, tmp_path / "outbox")  # the server recovered

    assert (second.sent, second.skipped_already_sent, second.failed) == (3, 2, [])
    assert smtp_server.handler.message_id_counts() == Counter({message_id_for(r): 1 for r in IN_WINDOW_IDS})


def test_send_followups_connection_dropped_mid_batch_resumes_without_resending(
    con: duckdb.DuckDBPyConnection, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    smtp_server.handler.drop_on.add(3)

    first = _send(con, smtp_server.settings, tmp_path / "outbox")

    assert first.sent == 2 and first.stopped_reason is not None
    assert first.failed[0].response_id == "D3" and "outcome unknown" in first.failed[0].detail
    assert set(_ledger(con)) == {"D1", "D2"}

    second = _send(con, smtp_server.settings, tmp_path / "outbox")

    assert (second.sent, second.skipped_already_sent) == (3, 2)
    assert smtp_server.handler.message_id_counts() == Counter({message_id_for(r): 1 for r in IN_WINDOW_IDS})


def test_send_followups_permanent_550_skips_that_message_and_continues(
    con: duckdb.DuckDBPyConnection, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    smtp_server.handler.reply_on[2] = "550 5.7.1 content rejected for <r2@example.co.jp>"

    result = _send(con, smtp_server.settings, tmp_path / "outbox")

    assert result.sent == 4 and result.stopped_reason is None
    assert [(f.response_id, f.reason) for f in result.failed] == [("D2", "refused")]
    assert "<address>" in result.failed[0].detail and "r2@" not in result.failed[0].detail
    assert set(_ledger(con)) == {"D1", "D3", "D4", "D5"}

    retry = _send(con, smtp_server.settings, tmp_path / "outbox")  # refused ones are retried

    assert (retry.sent, retry.skipped_already_sent) == (1, 4)


def test_send_followups_owner_deferred_while_the_cc_accepts_stops_and_reaches_the_owner_next_run(
    con: duckdb.DuckDBPyConnection, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    # Greylisting or a full mailbox: 4xx for the owner, while the manager in Cc takes the message.
    smtp_server.handler.rcpt_reply[REP_EMAILS["R1"]] = "452 4.2.2 mailbox full"

    first = _send(con, smtp_server.settings, tmp_path / "outbox")

    assert first.sent == 0 and not first.all_reached and "452" in (first.stopped_reason or "")
    assert [(f.response_id, f.reason) for f in first.failed] == [
        ("D1", "server_error"), *[(r, "not_attempted") for r in IN_WINDOW_IDS[1:]],
    ]
    assert "452" in first.failed[0].detail and "r1@" not in first.failed[0].detail
    assert _ledger(con) == {}
    assert [r.rcpt_tos for r in smtp_server.handler.received] == [[REP_EMAILS["M1"]]]

    smtp_server.handler.rcpt_reply.clear()  # the mailbox has room again
    second = _send(con, smtp_server.settings, tmp_path / "outbox")

    assert (second.sent, second.failed, second.warnings) == (5, [], [])
    reached_owner = [r for r in smtp_server.handler.received if REP_EMAILS["R1"] in r.rcpt_tos]
    assert {r.message["X-NPS-Link-Response-Id"] for r in reached_owner} == {"D1", "D5"}
    d1 = [r for r in smtp_server.handler.received if r.message["X-NPS-Link-Response-Id"] == "D1"]
    assert {r.message["Message-ID"] for r in d1} == {message_id_for("D1")}  # the Cc's second copy is the same mail


@pytest.mark.parametrize("refused", ["owner", "manager"])
def test_send_followups_one_recipient_refused_for_good_is_recorded_and_fails_the_check(
    con: duckdb.DuckDBPyConnection, smtp_server: SmtpServer, tmp_path: Path, refused: str
) -> None:
    address = REP_EMAILS["R1" if refused == "owner" else "M1"]
    smtp_server.handler.rcpt_reply[address] = f"550 5.1.1 <{address}> no such user"

    result = _send(con, smtp_server.settings, tmp_path / "outbox")

    # Sent, and recorded: sending again would only repeat it to whoever took it.
    assert (result.sent, result.failed, result.stopped_reason) == (5, [], None)
    assert not result.all_reached
    refused_ids = {"D1", "D5"} if refused == "owner" else {"D1", "D2", "D5"}
    assert {w.split(":", 1)[0] for w in result.warnings} == refused_ids
    assert all("550" in w and address not in w for w in result.warnings)
    assert set(_ledger(con)) == set(IN_WINDOW_IDS)
    assert _send(con, smtp_server.settings, tmp_path / "outbox").sent == 0


@pytest.mark.parametrize("fallback", [FALLBACK, None])
def test_send_followups_owner_refused_for_good_with_no_cc_taking_it_goes_to_the_fallback(
    con: duckdb.DuckDBPyConnection, smtp_server: SmtpServer, tmp_path: Path, fallback: str | None
) -> None:
    """A bounced owner address (and its manager's) must not leave a detractor with nobody told."""
    # GIVEN a server that rejects R1's and M1's addresses for good (D1 and D5: owner R1, manager M1)
    for rep in ("R1", "M1"):
        smtp_server.handler.rcpt_reply[REP_EMAILS[rep]] = f"550 5.1.1 <{REP_EMAILS[rep]}> no such user"

    # WHEN the follow-ups are sent
    result = _send(con, smtp_server.settings, tmp_path / "outbox", fallback=fallback)

    if fallback is None:
        # THEN without a fallback both are refused, reported and left for the next run
        assert {(f.response_id, f.reason) for f in result.failed} >= {("D1", "refused"), ("D5", "refused")}
        assert not {"D1", "D5"} & set(_ledger(con))
        return
    # THEN with one, each goes to the fallback alone, at once, saying why
    received = smtp_server.handler.by_response()
    for response_id in ("D1", "D5"):
        assert received[response_id].rcpt_tos == [FALLBACK]
        body = received[response_id].message.get_content()
        assert "the mail server refused the address of the owner rep R1" in body
        assert received[response_id].message["Message-ID"] == message_id_for(response_id)
    # AND it is recorded as sent to the fallback, and the run is not called all reached
    ledger = _ledger(con)
    assert {r: (ledger[r]["recipient"], ledger[r]["is_fallback"], ledger[r]["cc"]) for r in ("D1", "D5")} == {
        "D1": ("fallback", True, None), "D5": ("fallback", True, None)}
    assert result.sent == 5 and result.failed == [] and result.fallback_count == 4  # D2, D3 had no owner address
    refused_warnings = [w for w in result.warnings if "sent to the fallback mailbox instead" in w]
    assert [w.split(":", 1)[0] for w in refused_warnings] == ["D1", "D5"]
    assert all("550" in w and "r1@" not in w for w in refused_warnings)
    assert not result.all_reached
    assert _send(con, smtp_server.settings, tmp_path / "outbox", fallback=fallback).sent == 0


def test_send_followups_fallback_refused_too_reports_the_message_refused(
    con: duckdb.DuckDBPyConnection, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    for address in (REP_EMAILS["R1"], REP_EMAILS["M1"], FALLBACK):
        smtp_server.handler.rcpt_reply[address] = f"550 5.1.1 <{address}> no such user"

    result = _send(con, smtp_server.settings, tmp_path / "outbox")

    refused = {f.response_id for f in result.failed if f.reason == "refused"}
    assert {"D1", "D5"} <= refused and not {"D1", "D5"} & set(_ledger(con))
    assert all(FALLBACK not in f.detail for f in result.failed)


def test_send_followups_logs_in_when_user_is_set(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    logins: list[tuple[bytes, bytes]] = []

    def authenticator(server, session, envelope, mechanism, auth_data) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        logins.append((auth_data.login, auth_data.password))
        # handled=False: aiosmtpd writes the 235/535 reply itself.
        return AuthResult(success=auth_data.password == b"right", handled=False)

    controller, server = _start_server(authenticator=authenticator, auth_require_tls=False)
    try:
        base = server.settings
        wrong = SmtpSettings(host=base.host, port=base.port, user="bot", password="wrong", starttls=False)
        refused = _send(con, wrong, tmp_path / "outbox")

        assert refused.sent == 0 and "could not open an SMTP session" in (refused.stopped_reason or "")
        assert {f.reason for f in refused.failed} == {"not_attempted"} and len(refused.failed) == 5
        assert server.handler.received == [] and _ledger(con) == {}

        right = SmtpSettings(host=base.host, port=base.port, user="bot", password="right", starttls=False)
        accepted = _send(con, right, tmp_path / "outbox")

        assert accepted.sent == 5
        assert logins[-1] == (b"bot", b"right")
    finally:
        controller.stop()


def test_send_followups_max_batch_defers_the_rest_to_the_next_call(
    con: duckdb.DuckDBPyConnection, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    first = _send(con, smtp_server.settings, tmp_path / "outbox", max_batch=2)
    second = _send(con, smtp_server.settings, tmp_path / "outbox", max_batch=2)
    third = _send(con, smtp_server.settings, tmp_path / "outbox", max_batch=2)

    assert [(r.sent, r.deferred) for r in (first, second, third)] == [(2, 3), (2, 1), (1, 0)]
    assert sorted(smtp_server.handler.by_response()) == IN_WINDOW_IDS


def test_send_followups_open_caller_transaction_raises_before_sending(
    con: duckdb.DuckDBPyConnection, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    con.execute("BEGIN TRANSACTION")

    with pytest.raises(duckdb.Error):
        _send(con, smtp_server.settings, tmp_path / "outbox")

    assert smtp_server.handler.received == []


# ---- outbox delivery ----


def test_send_followups_without_smtp_writes_one_eml_per_message_exactly_once(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    outbox = tmp_path / "outbox"

    started = time.perf_counter()
    first = _send(con, None, outbox)
    elapsed = time.perf_counter() - started

    assert (first.transport, first.sent, first.fallback_count) == ("outbox", 5, 2)
    # The run log's breakdown of the delivery: every phase timed, together within the call's time.
    assert set(first.outbox_seconds) == {"render", "write", "sync", "record"}
    assert all(v > 0 for v in first.outbox_seconds.values()) and sum(first.outbox_seconds.values()) <= elapsed
    files = sorted(outbox.iterdir())
    assert len(files) == 5 and all(f.suffix == ".eml" and f.name.startswith("followup-") for f in files)
    messages = {}
    for path in files:
        parsed = message_from_bytes(path.read_bytes(), policy=policy.default)
        assert path.name == f"{parsed['Message-ID'][1:].split('@')[0]}.eml"  # named by the Message-ID hash
        messages[parsed["X-NPS-Link-Response-Id"]] = parsed
    assert sorted(messages) == IN_WINDOW_IDS
    assert messages["D1"]["To"] == "r1@example.co.jp" and messages["D1"]["Cc"] == "m1@example.co.jp"
    assert JAPANESE_COMMENT.split("\n")[0] in messages["D1"].get_content()
    assert {row["transport"] for row in _ledger(con).values()} == {"outbox"}
    stamps = {path.name: path.stat().st_mtime_ns for path in files}

    second = _send(con, None, outbox)

    assert (second.sent, second.skipped_already_sent) == (0, 5)
    assert {path.name: path.stat().st_mtime_ns for path in outbox.iterdir()} == stamps


def test_send_followups_mart_without_optional_columns_still_sends(tmp_path: Path) -> None:
    con = duckdb.connect(str(tmp_path / "minimal.duckdb"))
    try:
        _create_mart(con, DETRACTORS, optional_columns=False)

        result = _send(con, None, tmp_path / "outbox")

        assert result.sent == 5
        eml = next((tmp_path / "outbox").glob("*.eml"))
        assert (
            "Survey type:   NPS" in message_from_bytes(eml.read_bytes(), policy=policy.default).get_content()
        )
    finally:
        con.close()


# ---- a sender killed mid-batch ----

_KILLED_SENDER = """
import json, sys
from datetime import datetime
from pathlib import Path
import duckdb
from orchestration.lib.followups import SmtpSettings, send_followups

args = json.loads(sys.argv[1])
con = duckdb.connect(args["db"])
send_followups(
    con,
    rep_emails=args["rep_emails"],
    as_of=datetime.fromisoformat(args["as_of"]),
    smtp=SmtpSettings(host="127.0.0.1", port=args["port"], starttls=False, timeout_seconds=60),
    outbox_dir=Path(args["outbox"]),
    fallback_address=args["fallback"],
    run_id="run-killed",
)
"""


def test_send_followups_killed_mid_batch_next_run_resends_only_the_unacknowledged_message(
    db_path: Path, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    handler = smtp_server.handler
    handler.block_on = 3  # the server stores D3 but the sender never gets the 250, then is killed
    args = {
        "db": str(db_path),
        "rep_emails": REP_EMAILS,
        "as_of": AS_OF.isoformat(),
        "port": smtp_server.settings.port,
        "outbox": str(tmp_path / "outbox"),
        "fallback": FALLBACK,
    }
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_SENDER, json.dumps(args)],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while not handler.blocked.wait(0.05):
            assert proc.poll() is None, proc.communicate()[1].decode(errors="replace")
            assert time.monotonic() < deadline, "the sender never reached the third message"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        handler.release.set()
    assert proc.returncode == -signal.SIGKILL

    con = duckdb.connect(str(db_path))
    try:
        # Committed per message: the two acknowledged messages survived the kill.
        assert set(_ledger(con)) == {"D1", "D2"}

        resumed = _send(con, smtp_server.settings, tmp_path / "outbox", run_id="run-after-kill")

        assert (resumed.sent, resumed.skipped_already_sent, resumed.failed) == (3, 2, [])
        assert sorted(_ledger(con)) == IN_WINDOW_IDS
    finally:
        con.close()
    counts = handler.message_id_counts()
    # Deduplicated by Message-ID, the server holds every detractor exactly once ...
    assert set(counts) == {message_id_for(r) for r in IN_WINDOW_IDS}
    # ... and the only repeat is the one message in flight at the kill, with the same Message-ID.
    assert counts == Counter({**{message_id_for(r): 1 for r in IN_WINDOW_IDS}, message_id_for("D3"): 2})


# The outbox writer process, SIGKILLed at its n-th rename: before it when told to (a temporary file is
# then left behind), else right after it.
_DYING_OUTBOX_WRITER = """
import json, os, signal, sys
from orchestration.lib import outbox_writer

args = json.loads(os.environ["NPS_LINK_TEST_WRITER_ARGS"])
renames = 0
real_replace = os.replace

def replace_then_die(src, dst):
    global renames
    renames += 1
    if renames == args["kill_at"] and args["before_rename"]:
        os.kill(os.getpid(), signal.SIGKILL)
    real_replace(src, dst)
    if renames == args["kill_at"]:
        os.kill(os.getpid(), signal.SIGKILL)

os.replace = replace_then_die
sys.exit(outbox_writer.main())
"""

# A sender whose outbox writer is the dying one above, or which SIGKILLs itself when it starts rendering
# its n-th message ("kill_sender_at_render"). Prints what send_followups reported.
_OUTBOX_SENDER = """
import json, os, signal, sys
from datetime import datetime
from pathlib import Path
import duckdb
from orchestration.lib import followups

args = json.loads(sys.argv[1])
if args.get("kill_at"):
    os.environ["NPS_LINK_TEST_WRITER_ARGS"] = sys.argv[1]
    followups.OUTBOX_WRITER_COMMAND = (sys.executable, "-c", args["writer"])
if args.get("kill_sender_at_render"):
    real_render, renders = followups._render_now, []
    def die_at_render(item, **kwargs):
        renders.append(item)
        if len(renders) == args["kill_sender_at_render"]:
            os.kill(os.getpid(), signal.SIGKILL)
        return real_render(item, **kwargs)
    followups._render_now = die_at_render
con = duckdb.connect(args["db"])
result = followups.send_followups(
    con,
    rep_emails=args["rep_emails"],
    as_of=datetime.fromisoformat(args["as_of"]),
    smtp=None,
    outbox_dir=Path(args["outbox"]),
    fallback_address=args["fallback"],
    run_id="run-killed",
    outbox_batch_size=args["batch"],
)
print(json.dumps({"sent": result.sent, "failed": [[f.response_id, f.reason] for f in result.failed],
                  "stopped": result.stopped_reason}))
"""


def _run_outbox_sender(db_path: Path, outbox: Path, **faults: object) -> subprocess.CompletedProcess[bytes]:
    # Batches of 2 for the five in-window detractors; `faults` are the script's kill_* options.
    args = {
        "db": str(db_path),
        "rep_emails": REP_EMAILS,
        "as_of": AS_OF.isoformat(),
        "outbox": str(outbox),
        "fallback": FALLBACK,
        "batch": 2,
        **faults,
    }
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    command = [sys.executable, "-c", _OUTBOX_SENDER, json.dumps(args)]
    return subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, timeout=120)


def _resume_and_check_each_message_once(db_path: Path, outbox: Path, *, recorded: set[str]) -> None:
    con = duckdb.connect(str(db_path))
    try:
        # Only whole, synced batches were recorded: the files written after the last commit are not.
        assert set(_ledger(con)) == recorded

        resumed = _send(con, None, outbox, run_id="run-after-kill")

        assert (resumed.sent, resumed.skipped_already_sent, resumed.failed) == (5 - len(recorded), len(recorded), [])
        assert sorted(_ledger(con)) == IN_WINDOW_IDS
        assert _ledger(con)["D3"]["run_id"] == "run-after-kill"
    finally:
        con.close()
    # The rewritten D3 (and D4) replaced the earlier files: one file per response, no copies, no leftovers.
    assert {p.name for p in outbox.iterdir()} == {f"followup-{message_id_for(r)[10:42]}.eml" for r in IN_WINDOW_IDS}
    seen = Counter()
    for path in outbox.iterdir():
        parsed = message_from_bytes(path.read_bytes(), policy=policy.default)
        seen[parsed["X-NPS-Link-Response-Id"]] += 1
        assert path.name == f"{parsed['Message-ID'][1:].split('@')[0]}.eml"
    assert seen == Counter({r: 1 for r in IN_WINDOW_IDS})


@pytest.mark.parametrize("before_rename", [False, True], ids=["after-rename", "before-rename"])
def test_send_followups_outbox_writer_killed_mid_batch_rerun_leaves_each_message_once(
    db_path: Path, tmp_path: Path, before_rename: bool
) -> None:
    outbox = tmp_path / "outbox"
    # Batches of 2: D1 and D2 are written and recorded; D3 and D4 are written (or D4 half-written) when
    # the writer process is SIGKILLed.
    proc = _run_outbox_sender(
        db_path, outbox, kill_at=4, before_rename=before_rename, writer=_DYING_OUTBOX_WRITER
    )

    # The sender outlives its writer and reports the unanswered batch, and everything after it, as not sent.
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    reported = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    assert reported["sent"] == 2
    assert reported["failed"] == [["D3", "server_error"], ["D4", "not_attempted"], ["D5", "not_attempted"]]
    assert "outbox writer exited" in reported["stopped"]
    written_before = {"D1", "D2", "D3"} if before_rename else {"D1", "D2", "D3", "D4"}
    on_disk = {p.name for p in outbox.iterdir() if not p.name.startswith(".")}
    assert on_disk == {f"followup-{message_id_for(r)[10:42]}.eml" for r in written_before}
    assert any(p.name.endswith(".tmp") for p in outbox.iterdir()) == before_rename

    _resume_and_check_each_message_once(db_path, outbox, recorded={"D1", "D2"})


def test_send_followups_outbox_sender_killed_while_its_writer_writes_rerun_leaves_each_message_once(
    db_path: Path, tmp_path: Path
) -> None:
    outbox = tmp_path / "outbox"
    # Batches of 2: the sender dies as it renders D3, while the writer holds D1 and D2, not yet recorded.
    proc = _run_outbox_sender(db_path, outbox, kill_sender_at_render=3)

    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode(errors="replace")
    # The orphaned writer finishes the batch it holds and exits at the end of its input; give it time.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(list(outbox.glob("*.eml"))) < 2:
        time.sleep(0.05)
    assert {p.name for p in outbox.glob("*.eml")} == {f"followup-{message_id_for(r)[10:42]}.eml" for r in ("D1", "D2")}

    _resume_and_check_each_message_once(db_path, outbox, recorded=set())


def test_send_followups_outbox_write_failure_records_the_files_already_written(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    outbox = tmp_path / "outbox"
    # A directory where D3's file should go: the rename fails like a full or broken disk would.
    (outbox / f"followup-{message_id_for('D3')[10:42]}.eml").mkdir(parents=True)

    result = _send(con, None, outbox)

    assert result.sent == 2 and "outbox write failed" in (result.stopped_reason or "")
    assert [(f.response_id, f.reason) for f in result.failed] == [
        ("D3", "server_error"),
        ("D4", "not_attempted"),
        ("D5", "not_attempted"),
    ]
    # D1 and D2 were in the same, unfinished batch: recorded on the way out, not rewritten next time.
    assert set(_ledger(con)) == {"D1", "D2"}
    assert not any(p.name.endswith(".tmp") for p in outbox.iterdir())


# ---- rendering: the fast path writes exactly what EmailMessage would ----


def _random_text(rng: random.Random, alphabet: str, longest: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, longest)))


def _detractor_variants() -> Iterator[followups._Detractor]:
    rng = random.Random(7)
    ascii_text = string.ascii_letters + string.digits + string.punctuation + "  "
    mixed = ascii_text + "対応遅い改善\u3000é\t"
    for i in range(400):
        # Mostly printable ASCII (the fast path's ground), lengths on both sides of the 78-octet fold.
        alphabet = mixed if i % 4 == 0 else ascii_text if i % 4 == 1 else string.ascii_letters + "-_ ="
        yield followups._Detractor(
            response_id=_random_text(rng, alphabet, 40) or f"R{i}",
            customer_id=_random_text(rng, alphabet, 35),
            responded_at=datetime(2025, 6, 20, 1, 0) + timedelta(minutes=37 * i),
            nps_score=i % 7,
            comment=rng.choice([None, "", JAPANESE_COMMENT, URL_COMMENT, _random_text(rng, mixed + "\r\n", 300)]),
            owner_rep_id=rng.choice([None, "R1", _random_text(rng, alphabet, 12)]),
            manager_rep_id=rng.choice([None, "M1"]),
            touchpoint=rng.choice([None, "support", _random_text(rng, alphabet, 15)]),
            survey_type=rng.choice([None, "transactional", "relational"]),
            segment=rng.choice([None, "enterprise", _random_text(rng, mixed, 20)]),
            business_unit=rng.choice([None, "staffing"]),
        )


ADDRESS_VARIANTS = [
    "r1@example.co.jp",
    "first.last+tag@sub-domain.example.com",
    "o'brien@example.com",
    "a=?b@example.com",
    "tanaka@例え.jp",
    "x" * 70 + "@example.com",
]


def test_render_fast_is_byte_identical_to_email_message_or_declines() -> None:
    date = "Mon, 30 Jun 2025 15:00:00 +0000"
    fast_count = 0
    for i, detractor in enumerate(_detractor_variants()):
        to = ADDRESS_VARIANTS[(i // 3) % len(ADDRESS_VARIANTS)] if i % 3 == 0 else ADDRESS_VARIANTS[i % 2]
        cc = ADDRESS_VARIANTS[(i // 5) % len(ADDRESS_VARIANTS)] if i % 5 == 1 else "m1@example.co.jp"
        cc = None if i % 4 == 0 else cc
        item = followups._Outgoing(
            detractor=detractor, to_address=to, cc_address=cc, recipient_ref="R1", is_fallback=i % 5 == 0,
            manager_unreachable=i % 7 == 3, lang=followups.FOLLOWUP_LANGUAGES[(i // 2) % 2],
        )
        kwargs = {"from_address": "nps-link@localhost", "reporting_tz": "Asia/Tokyo", "date": date}
        reference = followups._build_message(item, **kwargs).as_bytes(policy=policy.SMTP)
        fast = followups._render_fast(item, **kwargs)
        if fast is not None:
            fast_count += 1
            assert fast == reference, (detractor, to, cc)
        assert followups._message_bytes(item, **kwargs) == reference
    assert fast_count >= 100  # the variants exercise the fast path, not only the fallback


def test_render_fast_covers_the_plain_message_and_declines_what_needs_encoding() -> None:
    date = "Mon, 30 Jun 2025 15:00:00 +0000"
    plain = followups._Detractor("D1", "C001", datetime(2025, 6, 20, 1, 0), 2, JAPANESE_COMMENT, "R1", "M1",
                                 "support", "transactional", "enterprise", "staffing")
    kwargs = {"from_address": "nps-link@localhost", "reporting_tz": "Asia/Tokyo", "date": date}

    def render(d: followups._Detractor, to: str = "r1@example.co.jp") -> bytes | None:
        item = followups._Outgoing(detractor=d, to_address=to, cc_address="m1@example.co.jp",
                                   recipient_ref="R1", is_fallback=False)
        return followups._render_fast(item, **kwargs)

    assert render(plain) is not None
    assert render(replace(plain, customer_id="顧客001")) is None  # the Subject needs RFC 2047
    assert render(replace(plain, customer_id="=?utf-8?q?x?=")) is None  # would be decoded on parse
    assert render(replace(plain, customer_id="C" * 60)) is None  # the Subject would be folded
    assert render(plain, to="tanaka@例え.jp") is None  # a non-ASCII address


def test_send_followups_smtp_transmits_the_email_message_bytes(
    con: duckdb.DuckDBPyConnection, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    raw: list[bytes] = []
    original = smtp_server.handler.handle_DATA

    async def keep_raw(server, session, envelope) -> str:
        raw.append(envelope.original_content)
        return await original(server, session, envelope)

    smtp_server.handler.handle_DATA = keep_raw  # type: ignore[method-assign]
    result = _send(con, smtp_server.settings, tmp_path / "outbox")

    assert result.sent == 5 and len(raw) == 5
    for content in raw:
        parsed = message_from_bytes(content, policy=policy.default)
        detractor = next(
            followups._Detractor(*row, "enterprise", "staffing")
            for row in (r[:9] for r in DETRACTORS)
            if row[0] == parsed["X-NPS-Link-Response-Id"]
        )
        item = followups._route(detractor, addresses=REP_EMAILS, fallback_address=FALLBACK)
        assert isinstance(item, followups._Outgoing)
        reference = followups._build_message(
            item, from_address="nps-link@localhost", reporting_tz="Asia/Tokyo", date=parsed["Date"]
        ).as_bytes(policy=policy.SMTP)
        assert content == reference


@pytest.mark.parametrize(("alphabet", "encoding"), [
    # Mostly ASCII, with the octets quoted-printable must escape or treat specially.
    (string.ascii_letters * 4 + "    \t\t==.,-対応é", "quoted-printable"),
    # Mostly Japanese (a follow-up in Japanese): base64 is shorter.
    ("対応が遅く担当者から連絡ありません。、 " * 3 + string.ascii_letters + "=\t", "base64"),
])
def test_encoded_body_matches_set_content_on_random_bodies(alphabet: str, encoding: str) -> None:
    rng = random.Random(11)
    checked = 0
    for _ in range(300):
        lines = [_random_text(rng, alphabet, rng.choice([10, 80, 200])) for _ in range(rng.randint(8, 30))]
        body = "\n".join(lines) + "\n"
        message = EmailMessage(policy=policy.SMTP)
        message.set_content(body, charset="utf-8")
        reference = message.as_bytes(policy=policy.SMTP).split(b"\r\n\r\n", 1)[1]
        fast = followups._encoded_body(body)
        chosen = message["Content-Transfer-Encoding"]
        # Declined exactly when the email package sees ten lines or fewer, or lines short enough for 7/8 bit.
        assert (fast is not None) == (chosen in ("quoted-printable", "base64") and len(body.encode().splitlines()) > 10)
        if fast is not None:
            assert fast[0] == chosen
            checked += fast[0] == encoding
            assert fast[1].encode("ascii") == reference
    assert checked >= 100
