"""Detractor follow-ups: one e-mail per detractor response to its owner rep, Cc the rep's manager.

Every detractor in `marts.detractor_followups` whose response falls in the follow-up window is sent
once, over SMTP or, when no SMTP host is configured, as an `.eml` file in `<data_dir>/outbox/`.
No Dagster imports: an asset wraps `send_followups`.

Delivery guarantee (what "exactly once" means here, precisely):

* The ledger `ops.followup_ledger` in the build warehouse holds one row per response already
  delivered. Nothing is recorded before it was delivered, so refused, failed or unattempted
  messages are left out of the ledger and are retried on the next run; and nothing recorded is
  sent again.
* SMTP: a row is written, and committed on its own, immediately after the server answered `250`
  to the message's DATA, before the next message is attempted. A crash between two messages
  therefore loses nothing that was accepted and resends nothing that was recorded. What remains is
  the one gap SMTP itself cannot close: the server accepted a message but the process died (or the
  connection dropped) before the `250` was read or the ledger row committed. That message is sent
  again on the next run. It carries the same deterministic Message-ID
  (`<followup-{sha256(response_id)[:32]}@nps-link>`), so the receiving mail system can drop the
  duplicate, and the window is a single message wide.
* Outbox: each message is written to a dot-named temporary file and renamed to
  `followup-{sha256(response_id)[:32]}.eml`, so a file appears whole or not at all. The files are
  written by a small writer process (`orchestration.lib.outbox_writer`, which says why) that gets
  one batch of `OUTBOX_BATCH_SIZE` messages at a time. Once the batch's files are in place, one
  sync(2) puts their data and renames on disk, the writer answers, and one statement records the
  whole batch; the next batch is rendered meanwhile. Batching is
  safe because delivery into the outbox is idempotent: the file name depends only on the response,
  so a message written but not yet recorded when the process dies is written again on the next run
  under the same name, replacing the earlier file instead of adding a copy. After a crash the outbox
  holds one file per response, and the ledger catches up on the next run. The sync comes before the
  ledger commit so that a power cut cannot leave a recorded message without its file; there is no
  fsync per file, because a file that is written but not yet recorded is rewritten anyway.
  If the writer dies, its unanswered batch is reported as not sent and retried next run; if the
  mailer dies, the writer finishes the batch it holds and exits. A stale temporary file (a crash
  between write and rename) is removed on the next run. The one
  way to see a message twice: an agent that takes files out of the outbox picked one up between its
  rename and the batch commit, and the process then died; the rewritten file has the same
  Message-ID, as in the SMTP gap, and the window is one batch wide.
* One sender at a time per warehouse: DuckDB's file lock keeps a second process out, and within a
  process the follow-up asset is the only caller.

Cost: messages are routed up front but rendered a batch at a time as they are delivered (at most
two batches, some 20 MB, are held however large the backlog). The common message (plain ASCII
headers, a quoted-printable body) is written by `_render_fast` byte for byte as `EmailMessage` with
`policy.SMTP` would write it, without the email package's per-header parsing; anything else goes
through `EmailMessage`.

SMTP error policy (one connection per batch):

* 5xx on RCPT for every recipient, or 5xx on DATA: that message is refused on its own merits
  (bad address, content rejected). It is reported, not recorded, and the batch goes on. When the
  RCPT refusal is of the owner's address and a fallback mailbox is set, the message goes to the
  fallback at once instead (a detractor must reach someone; an address the server rejects today
  will be rejected tomorrow): recorded as sent to the fallback, with a warning that fails the
  run's `all_detractors_reached` check, since the owner's address is still to correct.
* 4xx on MAIL, RCPT or DATA, 421, a dropped connection or a timeout: the server is telling us to
  come back later, or we cannot know whether the message in flight was accepted. The batch stops;
  the message in flight and every later one are reported, not recorded, and retried next run.
* A failure to open the session (connect, STARTTLS, login) sends nothing and reports every message.
* One recipient refused while another accepted the message (smtplib says so only in its return
  value): 4xx for the To (the owner, or the fallback address) is the 4xx above: not recorded,
  retried next run, the batch stops; the Cc may then see the message twice, with the same
  Message-ID, which is better than an owner never told. 5xx for the To, or any refusal of the Cc, is
  recorded (sending again would only repeat it to whoever took it) and reported as a warning, which
  fails the run's `all_detractors_reached` check: an address to correct in the CRM.

Personal data: recipient addresses are read from `lake/raw/crm_reps` (the one reader of rep e-mail
addresses, `rep_emails_from_lake`) and go only into the messages. The ledger records rep ids and
the word `fallback`, never an address, because the build warehouse is published to analysts.
"""

from __future__ import annotations

import binascii
import contextlib
import functools
import hashlib
import os
import re
import smtplib
import ssl
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email import policy, quoprimime
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds

from analysis.report.i18n import label_for
from orchestration.lib import outbox_writer
from orchestration.lib.ingest.readers import quote_literal
from orchestration.lib.lake import lake_schema, raw_dir
from orchestration.lib.warehouse import has_column

LEDGER_TABLE = "ops.followup_ledger"
FOLLOWUPS_TABLE = "marts.detractor_followups"
DEFAULT_FROM_ADDRESS = "nps-link@localhost"
DETRACTOR_MAX_SCORE = 6  # DESIGN.md: detractor 0-6
FALLBACK_RECIPIENT = "fallback"  # ledger value of `recipient` when the fallback mailbox was used
# Outbox messages per ledger commit (and per sync): a crash rewrites at most this many files, under
# the same names (see the module docstring); larger batches save little once a sync is ~0.1 s.
OUTBOX_BATCH_SIZE = 2000

# Columns the mailer uses; the last three are optional (NULL when the mart does not carry them).
_REQUIRED_COLUMNS = (
    "response_id",
    "customer_id",
    "responded_at",
    "nps_score",
    "comment",
    "owner_rep_id",
    "manager_rep_id",
    "touchpoint",
)
_OPTIONAL_COLUMNS = ("survey_type", "segment", "business_unit")
# The ledger's columns, in table order, as Arrow types (for one INSERT per outbox batch).
_LEDGER_ARROW = (
    ("response_id", pa.string()),
    ("message_id", pa.string()),
    ("sent_at", pa.timestamp("us")),
    ("recipient", pa.string()),
    ("cc", pa.string()),
    ("transport", pa.string()),
    ("run_id", pa.string()),
    ("is_fallback", pa.bool_()),
)

_URL_SCHEME = re.compile(r"\b([a-z][a-z0-9+.-]{1,15})://", re.IGNORECASE)
_ADDRESS_IN_TEXT = re.compile(r"[^\s<>@\"']+@[^\s<>@\"']+")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


# ---- settings ----


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ValueError(f"{name} must be true or false, got {raw!r}")


@dataclass(frozen=True)
class SmtpSettings:
    """Where and how to submit follow-up mail: host, port, STARTTLS, optional login, envelope sender."""

    host: str
    port: int
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    starttls: bool = True
    from_address: str = DEFAULT_FROM_ADDRESS
    timeout_seconds: float = 30.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SmtpSettings | None:
        """SMTP settings from `NPS_LINK_SMTP_*` variables; None when no host is set (write to the outbox).

        STARTTLS is on unless `NPS_LINK_SMTP_STARTTLS` says false; the port defaults to 587 with
        STARTTLS and 25 without.
        """
        host = env.get("NPS_LINK_SMTP_HOST", "").strip()
        if not host:
            return None
        starttls = _bool(env, "NPS_LINK_SMTP_STARTTLS", True)
        port_raw = env.get("NPS_LINK_SMTP_PORT", "").strip()
        timeout_raw = env.get("NPS_LINK_SMTP_TIMEOUT_SECONDS", "").strip()
        from_address = env.get("NPS_LINK_SMTP_FROM", "").strip() or DEFAULT_FROM_ADDRESS
        if _clean_address(from_address) is None:
            raise ValueError(f"NPS_LINK_SMTP_FROM is not an e-mail address: {from_address!r}")
        return cls(
            host=host,
            port=int(port_raw) if port_raw else (587 if starttls else 25),
            user=env.get("NPS_LINK_SMTP_USER", "").strip() or None,
            # A password may legitimately start or end with spaces: keep it as given.
            password=env.get("NPS_LINK_SMTP_PASSWORD") or None,
            starttls=starttls,
            from_address=from_address,
            timeout_seconds=float(timeout_raw) if timeout_raw else 30.0,
        )


def fallback_address_from_env(env: Mapping[str, str]) -> str | None:
    """The fallback mailbox (`NPS_LINK_FOLLOWUP_FALLBACK`) for responses without a reachable owner rep."""
    raw = env.get("NPS_LINK_FOLLOWUP_FALLBACK", "").strip()
    if not raw:
        return None
    address = _clean_address(raw)
    if address is None:
        raise ValueError(f"NPS_LINK_FOLLOWUP_FALLBACK is not an e-mail address: {raw!r}")
    return address


# ---- results ----


@dataclass(frozen=True)
class FollowupFailure:
    """A response that was not delivered in this run (and so is retried in the next one).

    `reason` is one of `no_address` (no owner address and no fallback), `refused` (the server
    refused this message permanently), `server_error` (transient error or unknown outcome; the
    batch stopped here) or `not_attempted` (the batch stopped before reaching it).
    """

    response_id: str
    reason: str
    detail: str


@dataclass
class FollowupResult:
    """What one `send_followups` call did; every in-window detractor is in exactly one bucket."""

    transport: str  # 'smtp' | 'outbox'
    sent: int = 0
    skipped_already_sent: int = 0
    fallback_count: int = 0  # of `sent`, how many went to the fallback address
    failed: list[FollowupFailure] = field(default_factory=list)
    deferred: int = 0  # left for the next run by `max_batch`
    stopped_reason: str | None = None  # why the batch ended early, if it did
    warnings: list[str] = field(default_factory=list)  # e.g. a Cc refused while the To was accepted
    # Of the messages this run addressed (delivered or not), how many were for an owner whose manager
    # cannot be reached by e-mail (the fallback copied instead, when set); one warning per such manager.
    manager_unreachable: int = 0
    manager_warnings: list[str] = field(default_factory=list)
    # Detractors first delivered (or corrected into detractors) since the last publish whose response
    # is older than the window: never mailed, by the window's rule, but counted so none goes unseen.
    arrived_after_window: int = 0
    arrived_after_window_ids: list[str] = field(default_factory=list)  # the newest few, as examples
    # Seconds per phase of an outbox delivery, for the run log: a slow mailing shows whether the
    # messages, the file system or the ledger took the time. Render and record are this process's;
    # write and sync the writer process's, which works on one batch while the next is rendered.
    outbox_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def all_reached(self) -> bool:
        """Every in-window detractor reached its rep and the manager (or was reached before)."""
        return not self.failed and not self.warnings and not self.manager_warnings

    @property
    def no_address_count(self) -> int:
        """How many responses had no address at all (no owner address, no fallback)."""
        return sum(1 for f in self.failed if f.reason == "no_address")


# ---- reading rep addresses (PII: only from the lake, never the warehouse) ----


def _clean_address(raw: str | None) -> str | None:
    """A bare `local@domain` address, or None when `raw` is empty or not one address."""
    if raw is None:
        return None
    text = raw.strip()
    # parseaddr accepts almost anything; reject what would break an SMTP command or a header.
    if not text or any(ch in text for ch in "\r\n\t ,;"):
        return None
    _, address = parseaddr(text)
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain or "@" in local:
        return None
    return address


def rep_emails_from_lake(lake_dir: Path) -> dict[str, str]:
    """Rep id -> e-mail address from `lake/raw/crm_reps`, taking each rep's latest delivered row.

    The latest row wins even when its address is empty (the rep's address was removed). Reps whose
    latest row is marked inactive (`active = false`: the rep has left) and rows whose address is not
    a single valid address are left out, so mail for those reps goes to the fallback.
    """
    folder = raw_dir(lake_dir, "crm_reps")
    files = sorted(folder.glob("*.parquet"))
    if not files:
        return {}
    schema = lake_schema("crm_reps")
    table = ds.dataset(files, schema=schema, format="parquet").to_table(
        columns=["rep_id", "email", "active", "_delivery_seq", "_row_number"]
    )
    latest: dict[str, tuple[tuple[int, int], str | None]] = {}
    for row in table.to_pylist():
        rep_id = row["rep_id"]
        if rep_id is None:
            continue
        order = (row["_delivery_seq"] or 0, row["_row_number"] or 0)
        if rep_id not in latest or order > latest[rep_id][0]:
            # sources.yaml: active defaults to true; only an explicit false means the rep has left.
            latest[rep_id] = (order, None if row["active"] is False else row["email"])
    emails: dict[str, str] = {}
    for rep_id, (_, raw) in latest.items():
        address = _clean_address(raw)
        if address is not None:
            emails[rep_id] = address
    return emails


# ---- the ledger ----


def message_id_for(response_id: str) -> str:
    """The deterministic Message-ID of a response's follow-up, the same on every (re)send."""
    return f"<followup-{_response_hash(response_id)}@nps-link>"


def _response_hash(response_id: str) -> str:
    return hashlib.sha256(response_id.encode("utf-8")).hexdigest()[:32]


def ensure_ledger(con: duckdb.DuckDBPyConnection) -> None:
    """Create `ops.followup_ledger` if it does not exist yet.

    Runs in an explicit transaction on purpose: if the caller left a transaction open, this fails
    before any mail goes out, instead of our per-message commits silently joining that transaction.
    """
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute("CREATE SCHEMA IF NOT EXISTS ops")
        con.execute(
            f"""
            CREATE TABLE IF NOT EXISTS {LEDGER_TABLE} (
                response_id VARCHAR PRIMARY KEY,
                message_id VARCHAR NOT NULL,
                sent_at TIMESTAMP NOT NULL,      -- naive UTC: when the server accepted / the file was written
                recipient VARCHAR NOT NULL,      -- owner rep id, or 'fallback'; never an address
                cc VARCHAR,                      -- manager rep id when copied; 'fallback' in an unreachable one's stead
                transport VARCHAR NOT NULL CHECK (transport IN ('smtp', 'outbox')),
                run_id VARCHAR NOT NULL,
                is_fallback BOOLEAN NOT NULL
            )
            """
        )
        con.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(duckdb.Error):
            con.execute("ROLLBACK")
        raise


def _ledger_row(item: _Outgoing, *, transport: str, run_id: str) -> tuple[object, ...]:
    return (
        item.response_id,
        item.message_id,
        datetime.now(UTC).replace(tzinfo=None),
        item.recipient_ref,
        item.cc_ref,
        transport,
        run_id,
        item.is_fallback,
    )


def _record(con: duckdb.DuckDBPyConnection, rows: Sequence[tuple[object, ...]]) -> None:
    """Write ledger rows in one autocommitted statement: all of them are durable, or none.

    ON CONFLICT keeps a row written by an earlier delivery of the same response as the record.
    """
    if not rows:
        return
    if len(rows) == 1:
        con.execute(
            f"INSERT INTO {LEDGER_TABLE} VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (response_id) DO NOTHING",
            list(rows[0]),
        )
        return
    # Many rows (an outbox batch): one Arrow table in one INSERT, instead of a statement per row.
    columns = list(zip(*rows, strict=True))
    batch = pa.table(
        {name: pa.array(values, type=kind) for (name, kind), values in zip(_LEDGER_ARROW, columns, strict=True)}
    )
    view = f"_followup_ledger_batch_{os.getpid()}"
    con.register(view, batch)
    try:
        con.execute(f"INSERT INTO {LEDGER_TABLE} SELECT * FROM {view} ON CONFLICT (response_id) DO NOTHING")
    finally:
        con.unregister(view)


# ---- selecting and composing ----


@dataclass(frozen=True)
class _Detractor:
    response_id: str
    customer_id: str
    responded_at: datetime
    nps_score: int
    comment: str | None
    owner_rep_id: str | None
    manager_rep_id: str | None
    touchpoint: str | None
    survey_type: str | None
    segment: str | None
    business_unit: str | None


@dataclass(frozen=True)
class _Outgoing:
    """A detractor with its routing decided; the message itself is rendered only when it is delivered.

    Rendering late keeps one message in memory at a time instead of the whole batch (a first run at
    1M customers has about 55k of them).
    """

    detractor: _Detractor
    to_address: str
    cc_address: str | None
    recipient_ref: str
    is_fallback: bool
    # The owner has a manager in the CRM who cannot be reached by e-mail (no address, or inactive):
    # the fallback mailbox, when set, is copied in the manager's stead.
    manager_unreachable: bool = False
    lang: str = "en"  # the language the message is written in (FOLLOWUP_LANGUAGES)
    # The server refused the owner's address for good (5xx, and no Cc took the message): this is the
    # copy re-routed to the fallback mailbox, and its text (the SMTP reply) for the run's warning.
    owner_refused: str | None = None

    @property
    def response_id(self) -> str:
        return self.detractor.response_id

    @property
    def message_id(self) -> str:
        return message_id_for(self.detractor.response_id)

    @property
    def cc_ref(self) -> str | None:
        if not self.cc_address:
            return None
        return FALLBACK_RECIPIENT if self.manager_unreachable else str(self.detractor.manager_rep_id)

    @property
    def recipients(self) -> tuple[str, ...]:
        return (self.to_address, self.cc_address) if self.cc_address else (self.to_address,)

    @property
    def file_name(self) -> str:
        return f"followup-{_response_hash(self.detractor.response_id)}.eml"


def _naive_utc(moment: datetime) -> datetime:
    # Warehouse timestamps are naive UTC; an aware as_of is converted, a naive one is taken as UTC.
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)


_PREVIOUS = "_previous_publish"  # the alias the last published warehouse is attached under


def _count_arrived_after_window(con: duckdb.DuckDBPyConnection, result: FollowupResult, *, as_of: datetime,
                                window_days: int, delivered_since_seq: int | None, previous_db: Path | None) -> None:
    """Fill `result.arrived_after_window`: detractors new since the last publish whose window had closed.

    A survey vendor's late file, or a response corrected into a detractor, can bring a detractor whose
    window has already closed. Candidates are the detractors delivered after `delivered_since_seq`
    (the last publish's watermark) that responded before the window and were never mailed; those the
    last published warehouse `previous_db` already held as detractors are not new (an overlapping
    re-export, a corrected comment, or one that could not be routed while in its window, reported
    then). Without a watermark (a first run, whose whole history is new) nothing is counted: the
    history before the window is not mailed by design.
    """
    if delivered_since_seq is None or not has_column(con, FOLLOWUPS_TABLE, "_delivery_seq"):
        return
    attached = False
    if previous_db is not None and previous_db.exists():
        try:
            con.execute(f"ATTACH {quote_literal(str(previous_db))} AS {_PREVIOUS} (READ_ONLY)")
            attached = True
        except duckdb.Error:
            # Held read-write by someone, or from another DuckDB: an informational count must never stop
            # the mail-out; it then counts re-deliveries of known detractors too.
            pass
    try:
        known = attached and has_column(con, "marts.fct_survey_responses", "nps_score", catalog=_PREVIOUS)
        not_known = (
            f"AND NOT EXISTS (SELECT 1 FROM {_PREVIOUS}.marts.fct_survey_responses AS p "
            f"WHERE p.response_id = f.response_id AND p.nps_score <= {DETRACTOR_MAX_SCORE})"
        ) if known else ""
        count, newest = con.execute(
            f"""
            SELECT count(*), coalesce(list(f.response_id ORDER BY f.responded_at DESC, f.response_id)[1:5], [])
            FROM {FOLLOWUPS_TABLE} AS f
            LEFT JOIN {LEDGER_TABLE} AS l ON l.response_id = f.response_id
            WHERE f._delivery_seq > ? AND f.responded_at <= ? AND f.nps_score <= ? AND l.response_id IS NULL
                {not_known}
            """,
            [delivered_since_seq, as_of - timedelta(days=window_days), DETRACTOR_MAX_SCORE],
        ).fetchall()[0]
    finally:
        if attached:
            con.execute(f"DETACH {_PREVIOUS}")
    result.arrived_after_window, result.arrived_after_window_ids = int(count), list(newest)


def _select_window(
    con: duckdb.DuckDBPyConnection, *, as_of: datetime, window_days: int
) -> tuple[list[_Detractor], int]:
    """In-window detractors not yet in the ledger (oldest first), and how many in-window ones already are."""
    schema, table = FOLLOWUPS_TABLE.split(".")
    present = {
        name
        for (name,) in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND table_name = ?",
            [schema, table],
        ).fetchall()
    }
    missing = [c for c in _REQUIRED_COLUMNS if c not in present]
    if missing:
        raise ValueError(f"{FOLLOWUPS_TABLE} lacks required columns {missing} (has {sorted(present)})")
    columns = [f"f.{c}" for c in _REQUIRED_COLUMNS]
    columns += [f"f.{c}" if c in present else f"NULL AS {c}" for c in _OPTIONAL_COLUMNS]
    # One read of the window into a temporary table; pending rows and the already-sent count both come
    # from it, so only the pending rows (a day's worth on a new day) are turned into Python objects.
    con.execute(
        f"""
        CREATE OR REPLACE TEMPORARY TABLE _followup_window AS
        WITH in_window AS (
            SELECT {", ".join(columns)}
            FROM {FOLLOWUPS_TABLE} AS f
            WHERE f.responded_at > ? AND f.responded_at <= ? AND f.nps_score <= ?
            -- the mart's grain is one row per response; this guards the one-message-per-response promise
            QUALIFY row_number() OVER (PARTITION BY f.response_id ORDER BY f.responded_at DESC) = 1
        )
        SELECT w.*, l.response_id IS NOT NULL AS already_sent
        FROM in_window AS w
        LEFT JOIN {LEDGER_TABLE} AS l ON l.response_id = w.response_id
        """,
        [as_of - timedelta(days=window_days), as_of, DETRACTOR_MAX_SCORE],
    )
    try:
        (already_sent,) = con.execute("SELECT count(*) FROM _followup_window WHERE already_sent").fetchall()[0]
        names = ", ".join((*_REQUIRED_COLUMNS, *_OPTIONAL_COLUMNS))
        rows = con.execute(
            f"SELECT {names} FROM _followup_window WHERE NOT already_sent ORDER BY responded_at, response_id"
        ).fetchall()
    finally:
        con.execute("DROP TABLE IF EXISTS _followup_window")
    return [_Detractor(*row) for row in rows], already_sent


def _one_line(value: object) -> str:
    # Header values come from source data: fold any line breaks so they cannot inject headers.
    return " ".join(str(value).split())


def _defang(text: str) -> str:
    # The mail is link-free: a URL typed by a customer is shown, but mail clients will not link it.
    return _URL_SCHEME.sub(r"\1[:]//", text)


def _redact(text: str) -> str:
    # Server replies often echo the address; results and logs must not carry it.
    return _ADDRESS_IN_TEXT.sub("<address>", text)


# The follow-up's words in each language it is written in (NPS_LINK_REPORT_LANG: the report's language;
# a test keeps the two lists the same). Survey types are worded by the report's catalogue.
# The subject stays ASCII in every language: the fast renderer writes plain headers only, and a
# first run's backlog (tens of thousands of messages) must not take the email package's slow path.
_TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "strong": "Strong detractor (0-3)",
        "detractor": "Detractor (4-6)",
        "after": " after {touchpoint}",
        "commented": "and left the comment below",
        "no_comment_said": "without a comment",
        "summary": "Summary: {severity}. Customer {customer} scored {score}/10 in the {survey} survey{after} on "
                   "{date} {commented}.",
        "fields": "Score:         {score} / 10\nSurvey type:   {survey}\nTouchpoint:    {touchpoint}\n"
                  "Responded:     {responded}\nCustomer:      {customer}\nSegment:       {segment}\n"
                  "Business unit: {business_unit}\nOwner rep:     {owner}\nManager:       {manager}",
        "none": "(none)",
        "comment": "Comment:",
        "no_comment": "(no comment)",
        "todo": "What to do:\n"
                "  1. Contact the customer within 2 business days: listen, acknowledge, and ask what went wrong.\n"
                "  2. Agree on a concrete fix and a date with the customer; bring in the team that owns the cause.\n"
                "  3. Log the contact and its outcome in the CRM, quoting response {response_id}.",
        "manager_copied": "  The manager is copied so that an escalation does not wait for a hand-off.",
        "owner_unreachable": "the owner rep {owner} cannot be reached by e-mail (no address in the CRM, or marked "
                             "inactive)",
        "owner_refused": "the mail server refused the address of the owner rep {owner} (please correct it in the "
                         "CRM)",
        "no_owner": "the customer has no owner rep in the CRM",
        "fallback": "You receive this as the follow-up fallback because {reason}.\n"
                    "Please assign an owner in the CRM and pass this case on.",
        "fallback_told": "the follow-up fallback mailbox receives this in the manager's stead",
        "manager_not_told": "the manager is not told",
        "manager_unreachable": "The manager {manager} cannot be reached by e-mail (no address in the CRM, or marked "
                               "inactive), so {told}. Please correct the manager's record in the CRM.",
        "footer": "Response ID: {response_id}\nSent automatically by nps-link.",
    },
    "ja": {
        "strong": "強い批判者（0〜3）",
        "detractor": "批判者（4〜6）",
        "after": "（タッチポイント：{touchpoint}）",
        "commented": "以下のコメントを残しました",
        "no_comment_said": "コメントは残していません",
        "summary": "概要：{severity}。顧客 {customer} が {date} の{survey}調査{after}で {score}/10 と回答し、"
                   "{commented}。",
        "fields": "スコア：         {score} / 10\n調査の種類：     {survey}\nタッチポイント： {touchpoint}\n"
                  "回答日時：       {responded}\n顧客：           {customer}\nセグメント：     {segment}\n"
                  "事業部：         {business_unit}\n担当者：         {owner}\nマネージャー：   {manager}",
        "none": "（なし）",
        "comment": "コメント：",
        "no_comment": "（コメントなし）",
        "todo": "対応のお願い：\n"
                "  1. 2営業日以内にお客様へ連絡し、お話を伺って受け止め、何が問題だったかをお尋ねください。\n"
                "  2. 具体的な改善策と期日をお客様と合意し、原因を担当するチームを巻き込んでください。\n"
                "  3. 連絡内容と結果を CRM に記録し、回答 {response_id} を記載してください。",
        "manager_copied": "  エスカレーションが引き継ぎを待たずに進むよう、マネージャーにも写しを送っています。",
        "owner_unreachable": "担当者 {owner} にメールで連絡できない（CRM にアドレスがない、または無効になっている）",
        "owner_refused": "担当者 {owner} のアドレスがメールサーバーに拒否された（CRM で修正してください）",
        "no_owner": "顧客に CRM 上の担当者がいない",
        "fallback": "{reason}ため、フォローアップの代替宛先としてこのメールをお送りしています。\n"
                    "CRM で担当者を割り当て、この件を引き継いでください。",
        "fallback_told": "マネージャーの代わりにフォローアップの代替宛先へ送っています",
        "manager_not_told": "マネージャーには届いていません",
        "manager_unreachable": "マネージャー {manager} にメールで連絡できない（CRM にアドレスがない、または無効に"
                               "なっている）ため、{told}。CRM のマネージャー情報を修正してください。",
        "footer": "回答 ID：{response_id}\nnps-link による自動送信です。",
    },
}


FOLLOWUP_LANGUAGES = tuple(_TEXTS)


def _compose_body(item: _Outgoing, *, reporting_tz: str) -> str:
    d, is_fallback = item.detractor, item.is_fallback
    text = _TEXTS[item.lang]
    manager_copied = bool(item.cc_address) and not item.manager_unreachable
    tz = ZoneInfo(reporting_tz)
    local = d.responded_at.replace(tzinfo=UTC).astimezone(tz)
    # English keeps the source's own word (it reads as plain English in the sentence); other languages
    # take the report's label of a known survey type.
    survey = d.survey_type or "NPS"
    if item.lang != "en" and d.survey_type:
        survey = label_for(item.lang, "survey", d.survey_type)
    has_comment = bool(d.comment and d.comment.strip())
    comment = _defang(d.comment.replace("\r\n", "\n").replace("\r", "\n")).strip() if d.comment else ""
    lines = [
        text["summary"].format(
            severity=text["strong" if d.nps_score <= 3 else "detractor"], customer=d.customer_id,
            score=d.nps_score, survey=survey, after=text["after"].format(touchpoint=d.touchpoint) if d.touchpoint
            else "", date=f"{local:%Y-%m-%d}", commented=text["commented" if has_comment else "no_comment_said"],
        ),
        "",
        *text["fields"].format(
            score=d.nps_score, survey=survey, touchpoint=d.touchpoint or "-",
            responded=f"{local:%Y-%m-%d %H:%M} {local.tzname()} ({reporting_tz})", customer=d.customer_id,
            segment=d.segment or "-", business_unit=d.business_unit or "-", owner=d.owner_rep_id or text["none"],
            manager=d.manager_rep_id or text["none"],
        ).split("\n"),
        "",
        text["comment"],
        *([f"  {line}" for line in comment.split("\n")] if comment else [f"  {text['no_comment']}"]),
        "",
        *text["todo"].format(response_id=d.response_id).split("\n"),
    ]
    if manager_copied:
        lines.append(text["manager_copied"])
    if is_fallback:
        reason = (text["owner_refused" if item.owner_refused else "owner_unreachable"].format(owner=d.owner_rep_id)
                  if d.owner_rep_id else text["no_owner"])
        lines += ["", *text["fallback"].format(reason=reason).split("\n")]
    if item.manager_unreachable:
        told = text["fallback_told" if item.cc_address or is_fallback else "manager_not_told"]
        lines += ["", text["manager_unreachable"].format(manager=d.manager_rep_id, told=told)]
    lines += ["", *text["footer"].format(response_id=d.response_id).split("\n")]
    return "\n".join(lines) + "\n"


def _clean_addresses(rep_emails: Mapping[str, str]) -> dict[str, str]:
    # Each rep's address checked once, not once per message (reps are few, messages many).
    cleaned = {rep_id: _clean_address(raw) for rep_id, raw in rep_emails.items()}
    return {rep_id: address for rep_id, address in cleaned.items() if address is not None}


def _route(
    d: _Detractor, *, addresses: Mapping[str, str], fallback_address: str | None, lang: str = "en"
) -> _Outgoing | FollowupFailure:
    """Who gets the follow-up: the owner rep (else the fallback), Cc the manager; or why nobody can.

    `addresses` maps rep ids to addresses already passed through `_clean_address`.
    """
    owner_address = addresses.get(d.owner_rep_id) if d.owner_rep_id else None
    manager_address = addresses.get(d.manager_rep_id) if d.manager_rep_id else None
    if owner_address is not None:
        to_address, recipient_ref, is_fallback = owner_address, str(d.owner_rep_id), False
    elif fallback_address is not None:
        to_address, recipient_ref, is_fallback = fallback_address, FALLBACK_RECIPIENT, True
    else:
        who = (
            f"owner rep {d.owner_rep_id} has no e-mail address"
            if d.owner_rep_id
            else "customer has no owner rep"
        )
        return FollowupFailure(
            d.response_id, "no_address", f"{who} and no fallback address is set (NPS_LINK_FOLLOWUP_FALLBACK)"
        )
    # A manager in the CRM without a reachable address is meant to hear of the detractor too: the
    # fallback mailbox is copied instead (and the run warns), unless the mail already goes there.
    manager_unreachable = bool(d.manager_rep_id) and manager_address is None and d.manager_rep_id != d.owner_rep_id
    cc_address = fallback_address if manager_unreachable else manager_address
    if cc_address is not None and cc_address.lower() == to_address.lower():
        cc_address = None
    return _Outgoing(
        detractor=d,
        to_address=to_address,
        cc_address=cc_address,
        recipient_ref=recipient_ref,
        is_fallback=is_fallback,
        manager_unreachable=manager_unreachable,
        lang=lang,
    )


def _subject(d: _Detractor) -> str:
    topic = d.touchpoint or d.survey_type or "survey"
    return _one_line(f"NPS detractor {d.nps_score}/10 - {topic} - customer {d.customer_id}")


def _build_message(item: _Outgoing, *, from_address: str, reporting_tz: str, date: str) -> EmailMessage:
    """The follow-up as an `EmailMessage` (policy SMTP): the reference form of every message.

    `_render_fast` yields the same bytes for the common case without the email package's header
    parsing; this is the path for everything else and the yardstick of the tests.
    """
    d = item.detractor
    message = EmailMessage(policy=policy.SMTP)
    message["Subject"] = _subject(d)
    message["From"] = from_address
    message["To"] = item.to_address
    if item.cc_address:
        message["Cc"] = item.cc_address
    message["Date"] = date
    message["Message-ID"] = item.message_id
    # RFC 3834: an automatic notice; out-of-office replies should not answer it.
    message["Auto-Submitted"] = "auto-generated"
    message["X-NPS-Link-Response-Id"] = _one_line(d.response_id)
    body = _compose_body(item, reporting_tz=reporting_tz)
    message.set_content(body, charset="utf-8")
    return message


# What the fast renderer writes verbatim: printable ASCII words with single spaces, no RFC 2047
# encoded-word opener, and addresses in plain dot-atom form. Anything else (non-ASCII, exotic address
# syntax, a header that would need folding) goes through EmailMessage, which knows how to encode it.
_PLAIN_HEADER_TEXT = re.compile(r"[\x21-\x7e]+(?: [\x21-\x7e]+)*")
_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*")
_MAX_LINE = policy.SMTP.max_line_length  # 78: longer header lines would be folded
_QP_SAFE = re.compile(rb"[\t\x20-\x3c\x3e-\x7e]*")  # octets quoted-printable leaves alone (not "=")


def _plain_header(name: str, value: str, *, address: bool = False) -> str | None:
    # `name: value` CRLF as EmailMessage writes it, or None when the value needs the email package.
    pattern = _PLAIN_ADDRESS if address else _PLAIN_HEADER_TEXT
    if "=?" in value or pattern.fullmatch(value) is None or len(name) + 2 + len(value) > _MAX_LINE:
        return None
    return f"{name}: {value}\r\n"


@functools.lru_cache(maxsize=1024)
def _qp_line(line: bytes) -> str:
    # One body line as quoprimime.body_encode encodes it: lines are encoded independently, and most
    # of a follow-up's lines are short, safe ASCII, which that function leaves as they are. Cached:
    # most lines (the instructions) are the same in every message.
    if len(line) <= _MAX_LINE and _QP_SAFE.fullmatch(line) and not line.endswith((b" ", b"\t")):
        return line.decode("ascii")
    return quoprimime.body_encode(line.decode("latin-1"), _MAX_LINE)


def _encoded_body(body: str) -> tuple[str, str] | None:
    """The body as `set_content(body, charset="utf-8")` writes it: (Content-Transfer-Encoding, text).

    Mirrors email.contentmanager's choice: 7bit/8bit only when every line fits in 78 octets (a
    follow-up always has longer lines), then quoted-printable unless base64 is shorter on the first
    ten lines (a body mostly in Japanese). Returns None in the cases we leave to the email package
    (short lines, ten lines or fewer). Quoted-printable is encoded line by line
    (quoprimime.body_encode never carries state across a line break), skipping the lines it would
    not change; base64 as contentmanager does it, over the CRLF-joined lines, 57 octets a line. The
    text has CRLF line ends, as the generator writes them.
    """
    lines = body.encode("utf-8").splitlines()
    if len(lines) <= 10 or max(len(line) for line in lines) <= _MAX_LINE:
        return None
    # contentmanager sniffs the first ten lines joined by CRLF: its quoted-printable form has them
    # joined (and ended) by LF, so it is as long as the encoded lines plus one octet per line.
    sniff_qp = sum(len(_qp_line(line)) for line in lines[:10]) + 10
    if sniff_qp > len(binascii.b2a_base64(b"\r\n".join(lines[:10]) + b"\r\n")):
        data = b"\r\n".join(lines) + b"\r\n"
        step = _MAX_LINE // 4 * 3
        encoded = "".join(binascii.b2a_base64(data[i:i + step]).decode("ascii") for i in range(0, len(data), step))
        return "base64", encoded.replace("\n", "\r\n")
    # Soft line breaks inside an encoded line are LF too; the generator writes every line end as CRLF.
    return "quoted-printable", ("\n".join(_qp_line(line) for line in lines) + "\n").replace("\n", "\r\n")


def _render_fast(item: _Outgoing, *, from_address: str, reporting_tz: str, date: str) -> bytes | None:
    """The bytes of `_build_message(...).as_bytes(policy=policy.SMTP)`, or None outside the plain case.

    Building an EmailMessage parses every header back into objects (about 10 ms a message, most of
    the old mailer's CPU); here the headers that need no encoding are written as they are.
    """
    d = item.detractor
    headers = [
        _plain_header("Subject", _subject(d)),
        _plain_header("From", from_address, address=True),
        _plain_header("To", item.to_address, address=True),
    ]
    if item.cc_address:
        headers.append(_plain_header("Cc", item.cc_address, address=True))
    headers.append(_plain_header("Date", date))
    headers.append(_plain_header("Message-ID", item.message_id))
    headers.append("Auto-Submitted: auto-generated\r\n")
    headers.append(_plain_header("X-NPS-Link-Response-Id", _one_line(d.response_id)))
    if None in headers:
        return None
    encoded = _encoded_body(_compose_body(item, reporting_tz=reporting_tz))
    if encoded is None:
        return None
    transfer_encoding, body = encoded
    return "".join(
        [
            *headers,  # type: ignore[list-item]  # None was ruled out above
            'Content-Type: text/plain; charset="utf-8"\r\n',
            f"Content-Transfer-Encoding: {transfer_encoding}\r\n",
            "MIME-Version: 1.0\r\n",
            "\r\n",
            body,
        ]
    ).encode("ascii")


def _message_bytes(item: _Outgoing, *, from_address: str, reporting_tz: str, date: str) -> bytes:
    """The message as written to the outbox: the fast rendering, or EmailMessage's where it is needed."""
    fast = _render_fast(item, from_address=from_address, reporting_tz=reporting_tz, date=date)
    if fast is not None:
        return fast
    message = _build_message(item, from_address=from_address, reporting_tz=reporting_tz, date=date)
    return message.as_bytes(policy=policy.SMTP)


@functools.lru_cache(maxsize=1)
def _date_for_second(epoch_second: int) -> str:
    return format_datetime(datetime.fromtimestamp(epoch_second, UTC))


def _date_header() -> str:
    # The Date header has one-second resolution: format it once per second, not once per message.
    return _date_for_second(int(time.time()))


# ---- delivery ----


def _to_fallback(item: _Outgoing, refused: Mapping[str, tuple[int, bytes]], fallback_address: str | None,
                 detail: str) -> _Outgoing | None:
    """The copy of a message for the fallback mailbox when the server refused the owner's address for good.

    None when there is no fallback, the message already went there (or the fallback itself was among
    the refused), or the owner's address was not refused (the Cc alone cannot have been: the whole
    message was refused, so both were). No Cc: every recipient of the original was refused.
    """
    if (fallback_address is None or item.is_fallback or item.to_address not in refused
            or fallback_address.lower() in {address.lower() for address in refused}):
        return None
    return replace(item, to_address=fallback_address, cc_address=None, recipient_ref=FALLBACK_RECIPIENT,
                   is_fallback=True, manager_unreachable=False, owner_refused=detail)


def _stop(result: FollowupResult, rest: Sequence[_Outgoing], reason: str) -> None:
    result.stopped_reason = reason
    for item in rest:
        result.failed.append(FollowupFailure(item.response_id, "not_attempted", f"batch stopped: {reason}"))


def _open_smtp(settings: SmtpSettings) -> smtplib.SMTP:
    client = smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout_seconds)
    try:
        client.ehlo()
        if settings.starttls:
            client.starttls(context=ssl.create_default_context())
            client.ehlo()
        if settings.user:
            client.login(settings.user, settings.password or "")
    except BaseException:
        client.close()
        raise
    return client


def _deliver_smtp(
    con: duckdb.DuckDBPyConnection,
    outgoing: Sequence[_Outgoing],
    settings: SmtpSettings,
    result: FollowupResult,
    run_id: str,
    *,
    reporting_tz: str,
    fallback_address: str | None = None,
) -> None:
    try:
        client = _open_smtp(settings)
    except (OSError, smtplib.SMTPException) as exc:  # SMTPException is an OSError; both named for clarity
        _stop(result, outgoing, _redact(f"could not open an SMTP session with {settings.host}: {exc}"))
        return
    # A list the loop can grow: a message whose owner's address is refused for good is followed by
    # its copy to the fallback mailbox. `index` is always the position after the item in hand.
    queue = list(outgoing)
    index = 0
    try:
        while index < len(queue):
            item = queue[index]
            index += 1
            try:
                date = _date_header()
                data = _render_fast(item, from_address=settings.from_address, reporting_tz=reporting_tz, date=date)
                if data is not None:
                    # The same bytes send_message would produce (ASCII addresses: no SMTPUTF8 either).
                    refused = client.sendmail(settings.from_address, list(item.recipients), data)
                else:
                    message = _build_message(
                        item, from_address=settings.from_address, reporting_tz=reporting_tz, date=date
                    )
                    refused = client.send_message(
                        message, from_addr=settings.from_address, to_addrs=list(item.recipients)
                    )
            except smtplib.SMTPRecipientsRefused as exc:
                codes = {code for code, _ in exc.recipients.values()}
                detail = _redact(
                    "; ".join(f"{c} {m.decode(errors='replace')}" for c, m in exc.recipients.values())
                )
                if all(500 <= code < 600 for code in codes):
                    rerouted = _to_fallback(item, exc.recipients, fallback_address, detail)
                    if rerouted is not None:
                        queue.insert(index, rerouted)
                        continue
                    result.failed.append(
                        FollowupFailure(item.response_id, "refused", f"RCPT refused: {detail}")
                    )
                    continue
                result.failed.append(FollowupFailure(item.response_id, "server_error", f"RCPT: {detail}"))
                _stop(result, queue[index:], f"server deferred recipients ({detail})")
                return
            except smtplib.SMTPDataError as exc:
                detail = _redact(f"{exc.smtp_code} {exc.smtp_error.decode(errors='replace')}")
                if 500 <= exc.smtp_code < 600:
                    result.failed.append(
                        FollowupFailure(item.response_id, "refused", f"DATA refused: {detail}")
                    )
                    continue
                result.failed.append(FollowupFailure(item.response_id, "server_error", f"DATA: {detail}"))
                _stop(result, queue[index:], f"server deferred a message ({detail})")
                return
            except smtplib.SMTPSenderRefused as exc:
                # The envelope sender is the same for every message: no point trying the others.
                detail = _redact(f"{exc.smtp_code} {exc.smtp_error.decode(errors='replace')}")
                result.failed.append(
                    FollowupFailure(item.response_id, "server_error", f"MAIL FROM: {detail}")
                )
                _stop(result, queue[index:], f"sender refused ({detail})")
                return
            except smtplib.SMTPNotSupportedError as exc:
                # e.g. a non-ASCII address on a server without SMTPUTF8: this message only.
                result.failed.append(FollowupFailure(item.response_id, "refused", _redact(str(exc))))
                continue
            except OSError as exc:  # dropped connection, timeout, other protocol errors
                detail = _redact(f"{type(exc).__name__}: {exc}")
                result.failed.append(
                    FollowupFailure(
                        item.response_id,
                        "server_error",
                        f"outcome unknown ({detail}); resent next run with the same Message-ID",
                    )
                )
                _stop(result, queue[index:], f"connection lost ({detail})")
                return
            deferred_owner = refused.get(item.to_address) if refused else None
            if deferred_owner is not None and not 500 <= deferred_owner[0] < 600:
                # Only the Cc took it: the owner's copy is deferred (the policy in the module docstring).
                detail = _redact(f"{deferred_owner[0]} {deferred_owner[1].decode(errors='replace')}")
                result.failed.append(FollowupFailure(
                    item.response_id, "server_error",
                    f"RCPT of the To deferred ({detail}), the Cc accepted; resent next run with the same Message-ID",
                ))
                _stop(result, queue[index:], f"server deferred a recipient ({detail})")
                return
            # Accepted by the server: record it (its own commit) before the next message is attempted.
            _record(con, [_ledger_row(item, transport=result.transport, run_id=run_id)])
            result.sent += 1
            result.fallback_count += int(item.is_fallback)
            if item.owner_refused:
                result.warnings.append(
                    f"{item.response_id}: the owner's address was refused ({item.owner_refused}); sent to the "
                    "fallback mailbox instead"
                )
            if refused:
                result.warnings.append(
                    f"{item.response_id}: sent, but {len(refused)} recipient(s) refused: "
                    + _redact("; ".join(f"{c} {m.decode(errors='replace')}" for c, m in refused.values()))
                )
    finally:
        # Everything accepted is recorded by now; a failing QUIT changes nothing.
        try:
            client.quit()
        except (OSError, smtplib.SMTPException):
            client.close()


# The outbox writer's command (the output directory is appended): its file run as a script, since it
# imports only the standard library, so it starts wherever this module was imported from (a notebook
# that put the repository on sys.path included); -P keeps the script's folder off the child's path.
# A module constant so that a test can start a writer that fails or dies at a chosen file.
OUTBOX_WRITER_COMMAND: tuple[str, ...] = (sys.executable, "-P", outbox_writer.__file__)


class _OutboxWriter:
    """The mailer's end of an `orchestration.lib.outbox_writer` process: send a batch, later read its reply.

    The files are written there, not in this thread: see that module for why (the GIL). A batch goes
    in one pipe write and its reply comes back in one read, so this side waits on the GIL twice per
    batch, not four times per message.
    """

    def __init__(self, outbox_dir: Path) -> None:
        self._process = subprocess.Popen(
            [*OUTBOX_WRITER_COMMAND, str(outbox_dir)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )

    def send(self, messages: list[tuple[str, bytes]]) -> None:
        """Hand one batch to the writer (raises OSError, e.g. BrokenPipeError, when it is gone)."""
        assert self._process.stdin is not None
        self._process.stdin.write(outbox_writer.encode_batch(messages))
        self._process.stdin.flush()

    def reply(self) -> tuple[int, float, float, str]:
        """Wait for the oldest batch's reply: (files written, write s, sync s, error text)."""
        assert self._process.stdout is not None
        header = self._process.stdout.read(outbox_writer.REPLY_HEADER.size)
        if len(header) < outbox_writer.REPLY_HEADER.size:
            raise OSError(f"the outbox writer exited (status {self._process.wait()}) before it answered")
        error_length = outbox_writer.REPLY_HEADER.unpack(header)[-1]
        return outbox_writer.decode_reply(header + self._process.stdout.read(error_length))

    def close(self) -> None:
        """End the writer: it finishes the batch it holds and exits at the end of its input."""
        with contextlib.suppress(OSError):
            if self._process.stdin is not None:
                self._process.stdin.close()
        try:
            self._process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        if self._process.stdout is not None:
            self._process.stdout.close()


def _remove_stale_temporaries(outbox_dir: Path) -> None:
    # A sender killed between writing and renaming leaves its dot-named temporary file behind. Only one
    # sender runs per warehouse (see the module docstring), so any such file at the start is stale.
    for path in outbox_dir.glob(".followup-*.tmp"):
        with contextlib.suppress(OSError):
            path.unlink()


def _render_now(item: _Outgoing, *, reporting_tz: str) -> bytes:
    return _message_bytes(item, from_address=DEFAULT_FROM_ADDRESS, reporting_tz=reporting_tz, date=_date_header())


def _deliver_outbox(
    con: duckdb.DuckDBPyConnection,
    outgoing: Sequence[_Outgoing],
    outbox_dir: Path,
    result: FollowupResult,
    run_id: str,
    *,
    reporting_tz: str,
    batch_size: int,
) -> None:
    """Write the messages into the outbox batch by batch, recording each batch once it is on disk.

    Batch i is rendered here while the writer process writes and syncs batch i-1; then batch i-1's
    reply is read and its written files recorded, and batch i is sent. A batch is recorded only after
    the writer synced it (see the module docstring). A failed file stops the delivery: the files before
    it are recorded, it fails, and every later message is left for the next run.
    """
    outbox_dir.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(outbox_dir)
    seconds = result.outbox_seconds
    for phase in ("render", "write", "sync", "record"):
        seconds.setdefault(phase, 0.0)
    clock = time.perf_counter
    render = functools.partial(_render_now, reporting_tz=reporting_tz)
    writer = _OutboxWriter(outbox_dir)
    in_flight: Sequence[_Outgoing] = ()  # sent to the writer, reply not read yet
    in_flight_start = 0  # its position in `outgoing`

    def fail_and_stop(position: int, error: str) -> None:
        result.failed.append(
            FollowupFailure(outgoing[position].response_id, "server_error", f"outbox write failed: {error}")
        )
        _stop(result, outgoing[position + 1 :], f"outbox write failed ({error})")

    def settle() -> bool:
        # Read the in-flight batch's reply and record what it wrote; False when the delivery stops.
        nonlocal in_flight
        batch, in_flight = in_flight, ()
        if not batch:
            return True
        try:
            written, write_seconds, sync_seconds, error = writer.reply()
        except OSError as exc:
            written, write_seconds, sync_seconds, error = 0, 0.0, 0.0, str(exc)
        seconds["write"] += write_seconds
        seconds["sync"] += sync_seconds
        if written:
            started = clock()
            _record(con, [_ledger_row(item, transport=result.transport, run_id=run_id) for item in batch[:written]])
            seconds["record"] += clock() - started
            result.sent += written
            result.fallback_count += sum(item.is_fallback for item in batch[:written])
        if written == len(batch) and not error:
            return True
        failed_at = in_flight_start + written
        fail_and_stop(failed_at, error or "the outbox writer did not write it")
        return False

    try:
        for start in range(0, len(outgoing), batch_size):
            batch = outgoing[start : start + batch_size]
            started = clock()
            messages = [(item.file_name, render(item)) for item in batch]
            seconds["render"] += clock() - started
            if not settle():
                return
            try:
                writer.send(messages)
            except OSError as exc:
                fail_and_stop(start, f"the outbox writer is gone ({exc})")
                return
            in_flight, in_flight_start = batch, start
        settle()
    finally:
        # Also on the way out of an error: what the writer put into the outbox gets recorded.
        try:
            if in_flight:
                settle()
        finally:
            writer.close()


def _warn_unreachable_managers(outgoing: Sequence[_Outgoing], result: FollowupResult, *, fallback_set: bool) -> None:
    """One warning per manager the CRM names who cannot be reached by e-mail, with the messages it concerns.

    DESIGN.md's follow-up tells the rep and the manager; a manager without a usable address (none, not
    one address, or the rep marked inactive) would otherwise silently miss every detractor of the team.
    """
    per_manager: dict[str, int] = {}
    for item in outgoing:
        if item.manager_unreachable:
            manager = str(item.detractor.manager_rep_id)
            per_manager[manager] = per_manager.get(manager, 0) + 1
    result.manager_unreachable = sum(per_manager.values())
    told = ("the fallback mailbox is copied in the manager's stead" if fallback_set
            else "they go without the manager (NPS_LINK_FOLLOWUP_FALLBACK is not set)")
    for manager, count in sorted(per_manager.items()):
        result.manager_warnings.append(
            f"manager {manager} cannot be reached by e-mail (no address in the CRM, or marked inactive): "
            f"{count} follow-up{'s' if count != 1 else ''} of the manager's team; {told}"
        )


def send_followups(
    con: duckdb.DuckDBPyConnection,
    *,
    rep_emails: Mapping[str, str],
    as_of: datetime,
    window_days: int = 14,
    smtp: SmtpSettings | None,
    outbox_dir: Path,
    fallback_address: str | None,
    run_id: str,
    reporting_tz: str = "Asia/Tokyo",
    lang: str = "en",
    delivered_since_seq: int | None = None,
    previous_db: Path | None = None,
    max_batch: int | None = None,
    outbox_batch_size: int = OUTBOX_BATCH_SIZE,
) -> FollowupResult:
    """Send one follow-up per in-window detractor response the ledger has not seen; report what happened.

    The window is `as_of - window_days < responded_at <= as_of` (naive UTC; an aware `as_of` is
    converted). Each message goes To the owner rep's address (else `fallback_address`), Cc the
    manager's (else, for a manager the CRM names but who cannot be reached, `fallback_address`, with a
    warning), over `smtp`, or into `outbox_dir` as `.eml` files when `smtp` is None.
    Over SMTP each accepted message is committed to `ops.followup_ledger` before the next one is
    attempted; in the outbox every `outbox_batch_size` files are synced to disk and then recorded in
    one commit. See the module docstring for the exact guarantee and the SMTP error policy.
    The body is written in `lang` (FOLLOWUP_LANGUAGES, the report's language); the subject is ASCII.
    Detractors delivered after `delivered_since_seq` (the last publish's watermark) that responded
    before the window, and were no detractors in `previous_db` (the last published warehouse), are
    counted in `arrived_after_window`, not sent.
    `max_batch` caps the messages attempted in this call; the rest are counted as `deferred` and go
    next run.
    """
    if window_days < 0:
        raise ValueError(f"window_days must be >= 0, got {window_days}")
    if max_batch is not None and max_batch < 0:
        raise ValueError(f"max_batch must be >= 0, got {max_batch}")
    if outbox_batch_size < 1:
        raise ValueError(f"outbox_batch_size must be >= 1, got {outbox_batch_size}")
    ZoneInfo(reporting_tz)  # fail on a bad zone before anything is sent
    if lang not in FOLLOWUP_LANGUAGES:
        raise ValueError(f"follow-up language {lang!r} is not one of {', '.join(FOLLOWUP_LANGUAGES)}")
    fallback = _clean_address(fallback_address) if fallback_address else None
    if fallback_address and fallback is None:
        raise ValueError(f"fallback_address is not an e-mail address: {fallback_address!r}")
    ensure_ledger(con)
    pending, already_sent = _select_window(con, as_of=_naive_utc(as_of), window_days=window_days)
    result = FollowupResult(transport="smtp" if smtp else "outbox", skipped_already_sent=already_sent)
    _count_arrived_after_window(con, result, as_of=_naive_utc(as_of), window_days=window_days,
                                delivered_since_seq=delivered_since_seq, previous_db=previous_db)
    addresses = _clean_addresses(rep_emails)
    outgoing: list[_Outgoing] = []
    for detractor in pending:
        routed = _route(detractor, addresses=addresses, fallback_address=fallback, lang=lang)
        if isinstance(routed, FollowupFailure):
            result.failed.append(routed)
        else:
            outgoing.append(routed)
    if max_batch is not None and len(outgoing) > max_batch:
        result.deferred = len(outgoing) - max_batch
        outgoing = outgoing[:max_batch]
    _warn_unreachable_managers(outgoing, result, fallback_set=fallback is not None)
    if not outgoing:
        return result
    if smtp is None:
        _deliver_outbox(
            con, outgoing, outbox_dir, result, run_id, reporting_tz=reporting_tz, batch_size=outbox_batch_size
        )
    else:
        _deliver_smtp(con, outgoing, smtp, result, run_id, reporting_tz=reporting_tz, fallback_address=fallback)
    return result
