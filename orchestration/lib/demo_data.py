"""Realistic demo sources for nps-link with a planted, documented causal structure.

A Japanese B2B company (business units staffing, media, finance; segments enterprise, mid_market,
smb) with two years of CRM, survey and billing history ending the day before `end_date`. The
generator writes the five contract sources into `<data_dir>/landing/` and the planted truth into
`<data_dir>/demo_truth.json`, so the pipeline's findings can be checked against what is really there.

Planted structure (parameters: `orchestration.lib.demo.model.PlantedModel`, copied into the JSON):

* Confounding. Segment drives both the outbound contact rate (enterprise ~3/month, smb ~1/month) and
  the NPS baseline and repeat baseline (enterprise highest), so a fit without covariates overstates
  what a contact is worth.
* Exposure, exactly as DESIGN.md measures it, from the generated events: contacts_per_month =
  outbound activities in the 90 days before responded_at (instant excluded) / (exposure_days / 30),
  exposure_days = max(1, min(90, fractional days from created_at to responded_at)). Outbound rates
  vary by customer and by 90-day block, so exposure varies within customers too.
  Surveys come at least 45 days after an account opens and contact rates are only moderately
  heterogeneous, so a linear fit with the covariates in demo_truth.json["link"] lands within ~10%
  of the true a_path at 20k customers (clipping at 10 and the knee make a variance-weighted OLS
  slope a little lower than the per-response average effect the truth reports).
* NPS: latent = intercept + segment + business_unit + survey_type + 0.5 * cpm (diminishing returns:
  0.25 per contact/month above 10) + sum_d w_d * (driver_d - 6.5) + 0.25 * first-week
  outbound contacts - 0.02 * hand-off days + N(0, 1.3); nps_score = clip(round(latent), 0, 10).
  Driver items are drawn first from a customer mood, a response mood and item noise, with weights
  that differ a lot (responsiveness 0.35 ... billing_accuracy 0.03); each survey asks only some.
* Contact timing: outbound contacts in the 7 days after the first order raise NPS; hand-off days
  (first order -> first account-management contact) lower it. Before the hand-off only new-sales
  and support reps touch an account, so the measured first AM contact is the planted one.
* Repeat: P(repeat_after = 1) = logistic(c0(segment) + 0.24 * score + 0.2 * cpm + 0.12 * tenure
  years + 0.15 * ln(1 + prior-year revenue / 1e6 JPY)). Orders are then placed so that the measured
  repeat of DESIGN.md (a completed order in (responded_at, responded_at + 90 d]) equals every draw,
  overlapping windows included (see `demo.simulate._draw_repeat_and_orders`).
* True effects (a_path, b_path, direct, indirect, total, proportion_mediated) are computed by
  simulation from the model over the delivered, non-censored responses (`demo.truth`).
* Faults, each counted in demo_truth.json["faults"]: out-of-range scores, unparseable and future
  timestamps, negative durations, a re-delivered file, orphan customer ids, a CP932 survey file,
  a gzipped JSONL file, mixed naive/+09:00/Z timestamps, an invalid team value, accounts delivered
  twice with a later updated_at.

Time: every event is before `end_date` 00:00 Asia/Tokyo. A further 30 days are simulated and kept in
`<data_dir>/demo_state/`; `append_day` delivers them one day at a time. Output is a pure function of
(customers, seed, end_date, fmt): byte-identical files, no wall-clock time anywhere.
"""

from __future__ import annotations

import json
import shutil
import zlib
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from orchestration.lib.demo import tables, truth
from orchestration.lib.demo.model import DAY, DRIVERS, FX_TO_JPY, MODEL, SEGMENTS, TEAMS
from orchestration.lib.demo.simulate import Reps, Window, make_reps, simulate_chunk
from orchestration.lib.demo.write import JST_OFFSET, Sink, csv_bytes, to_text, utc, write_cp932_csv

DEFAULT_END_DATE = date(2026, 9, 30)
HISTORY_DAYS = 730
APPEND_HORIZON_DAYS = 30
# Below this the planted faults (a fixed few per kind, so that every rule is exercised) would be over
# the 5% quarantine threshold of the few files they go to, and the demo's run would be refused.
MIN_CUSTOMERS = 100
MIN_CUSTOMERS_WHY = "the demo plants a few faulty rows of every kind, which smaller files cannot absorb"
TEXT_MAX_CUSTOMERS = 50_000  # fmt="auto": CSV/JSONL up to this many customers, Parquet facts above
CHUNK_CUSTOMERS = 100_000  # customers simulated at once: bounds memory at ~1.5 GB
TRUTH_FILE = "demo_truth.json"
STATE_DIR = "demo_state"
SOURCES: tuple[str, ...] = ("crm_accounts", "crm_reps", "crm_activities", "survey_responses", "orders")
FORMATS: tuple[str, ...] = ("auto", "text", "parquet")

# Share of delivered fact rows that arrive through the side channels (late gzip file, paper surveys
# keyed in from a CP932 spreadsheet, manual order corrections) instead of the monthly exports. Large
# enough that the few planted faults stay under the default 5% quarantine threshold of a file at the
# demo sizes (the demo must publish; a test plants a file over the threshold on purpose).
_LATE_ACTIVITY_SHARE = 0.005
_PAPER_SURVEY_SHARE = 0.05
_ORDER_CORRECTION_SHARE = 0.02
# Fewest rows a side file gets, whatever the demo's size: the planted faults have a floor (at least
# 5 activities, 6 responses and 3 orders), so at a few hundred customers the shares above left them
# at 7-10% of their files, over the threshold, and the demo's first run failed. These keep the floor's
# faults at 2.5% of a file; from about 3,000 customers up the shares give more rows anyway.
_SIDE_MIN_ROWS = {"crm_activities": 200, "survey_responses": 240, "orders": 120}
_FUTURE_TS = "2099-12-31T09:00:00+09:00"  # a placeholder date some exports use for "unknown"
_BAD_TS = ("2026-02-30T10:00:00", "不明", "2026/13/45 25:61:00", "yesterday")
_TIME_COLUMN = {"crm_activities": "occurred_at", "survey_responses": "responded_at", "orders": "ordered_at"}


class DemoDataError(ValueError):
    """A request the generator cannot serve (too few customers, a date in the future, no demo to extend)."""


@dataclass(frozen=True)
class DemoSummary:
    """What one call wrote: files, data rows per source, rows ingestion must quarantine, and the truth."""

    data_dir: Path
    files: tuple[Path, ...]  # landing files written by this call, absolute
    rows: dict[str, int]  # data rows per source in those files (a re-delivered copy not counted)
    expected_quarantined: dict[str, int]  # rows per source that break a contract rule on purpose
    truth: dict  # the content of demo_truth.json


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(k) for k in key]))


def _epoch(d: date) -> int:
    """00:00 Asia/Tokyo of a date, as UTC epoch seconds (Japan has no daylight saving time)."""
    return int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp()) - JST_OFFSET


def _iso_utc(t: int) -> str:
    """Naive UTC ISO string, the warehouse's timestamp convention."""
    return datetime.fromtimestamp(int(t), UTC).replace(tzinfo=None).isoformat()


def _months(t: np.ndarray) -> np.ndarray:
    """The Asia/Tokyo month (YYYY-MM) of each epoch second: monthly exports are cut in local time."""
    return ((t + JST_OFFSET).astype("datetime64[s]").astype("datetime64[M]")).astype(str)


class _Landing:
    """The landing zone being written: sinks by relative path, rows per source, files in write order."""

    def __init__(self, data_dir: Path, key: tuple[int, ...]) -> None:
        self.root = data_dir / "landing"
        self.key = key
        self.sinks: dict[str, Sink] = {}
        self.rows = dict.fromkeys(SOURCES, 0)
        self.extra_files: list[str] = []

    def sink(self, source: str, name: str, kind: str) -> Sink:
        rel = f"{source}/{name}"
        if rel not in self.sinks:
            self.sinks[rel] = Sink(self.root / rel, kind, _rng(*self.key, zlib.crc32(rel.encode())))
        return self.sinks[rel]

    def write(self, source: str, name: str, kind: str, table: pa.Table) -> None:
        self.sink(source, name, kind).write(table)
        self.rows[source] += table.num_rows

    def write_text(self, source: str, name: str, kind: str, table: pa.Table) -> None:
        self.sink(source, name, kind).write_text(table)
        self.rows[source] += table.num_rows

    def monthly(self, source: str, stem: str, kind: str, table: pa.Table, t: np.ndarray) -> None:
        ext = {"parquet": "parquet", "jsonl": "jsonl", "csv": "csv"}[kind]
        months = _months(t)
        for month in np.unique(months):
            self.write(source, f"{stem}_{month}.{ext}", kind, table.filter(pa.array(months == month)))

    def add_file(self, source: str, name: str, data: bytes, rows: int, *, counted: bool = True) -> None:
        path = self.root / source / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        self.extra_files.append(f"{source}/{name}")
        if counted:
            self.rows[source] += rows

    def close(self) -> list[Path]:
        for s in self.sinks.values():
            s.close()
        return sorted(self.root / rel for rel in [*self.sinks, *self.extra_files])


def _validate(customers: int, end_date: date, fmt: str) -> None:
    if customers < MIN_CUSTOMERS:
        raise DemoDataError(f"customers must be at least {MIN_CUSTOMERS:,}, got {customers:,}: {MIN_CUSTOMERS_WHY}")
    if customers >= 80_000_000:
        raise DemoDataError("customers must stay below 80,000,000 (8-digit ids, orphan ids above them)")
    if fmt not in FORMATS:
        raise DemoDataError(f"fmt must be one of {FORMATS}, got {fmt!r}")
    today = datetime.now(UTC).date()
    if end_date > today:
        raise DemoDataError(f"end_date {end_date} is in the future (today is {today}): events would be too")


def _clear_previous(data_dir: Path) -> None:
    """Remove what an earlier generate_demo_data wrote here; refuse to mix with anyone else's files."""
    truth_path = data_dir / TRUTH_FILE
    previous: set[str] = set()
    if truth_path.exists():
        doc = json.loads(truth_path.read_text(encoding="utf-8"))
        previous = set(doc.get("files", []))
        for day in doc.get("state", {}).get("appended_days", []):
            previous.update(day.get("files", []))
    landing = data_dir / "landing"
    for source in SOURCES:
        folder = landing / source
        if not folder.exists():
            continue
        foreign = [p for p in folder.rglob("*") if p.is_file() and f"{source}/{p.name}" not in previous]
        if foreign:
            raise FileExistsError(f"{folder} holds files this generator did not write, e.g. {foreign[0]}")
        for rel in previous:
            if rel.startswith(f"{source}/"):
                (landing / rel).unlink(missing_ok=True)
    shutil.rmtree(data_dir / STATE_DIR, ignore_errors=True)
    truth_path.unlink(missing_ok=True)


def _text_schema(table: pa.Table) -> pa.Schema:
    return pa.schema(
        [pa.field(f.name, pa.string() if pa.types.is_timestamp(f.type) else f.type) for f in table.schema]
    )


def _rows_like(schema: pa.Schema, rows: list[dict]) -> pa.Table:
    """Hand-made rows (fault rows) as a table of the given text schema; missing columns are null."""
    return pa.table({f.name: pa.array([r.get(f.name) for r in rows], f.type) for f in schema})


def generate_demo_data(
    data_dir: Path,
    *,
    customers: int = 3000,
    seed: int = 7,
    end_date: date = DEFAULT_END_DATE,
    fmt: str = "auto",
) -> DemoSummary:
    """Write the five landing sources and demo_truth.json for `customers` accounts; return a summary.

    fmt: "text" (CSV and JSONL), "parquet" (Parquet monthly facts, CSV dimensions and side files) or
    "auto" (text up to TEXT_MAX_CUSTOMERS customers, Parquet above). Re-running into the same
    data_dir replaces what an earlier run wrote there.
    """
    data_dir = Path(data_dir)
    _validate(customers, end_date, fmt)
    _clear_previous(data_dir)
    text = fmt == "text" or (fmt == "auto" and customers <= TEXT_MAX_CUSTOMERS)
    key = (seed, customers, end_date.toordinal(), int(text))
    end = _epoch(end_date)
    window = Window(start=end - HISTORY_DAYS * DAY, end=end, horizon_end=end + APPEND_HORIZON_DAYS * DAY)
    export = (end_date - timedelta(days=1)).strftime("%Y%m%d")
    reps = make_reps(_rng(*key, 1), customers)
    landing = _Landing(data_dir, key)
    fact_kind = {
        "crm_activities": "jsonl" if text else "parquet",
        "survey_responses": "csv" if text else "parquet",
        "orders": "csv" if text else "parquet",
    }
    pending: dict[str, list[pa.Table]] = {s: [] for s in ("crm_accounts", *_TIME_COLUMN)}
    accounts_state: list[pa.Table] = []
    truth_parts: list[dict[str, np.ndarray]] = []
    paper: list[pa.Table] = []
    next_id = {"act": 0, "resp": 0, "ord": 0, "cn": 0}
    as_of = window.start

    for chunk_no, first in enumerate(range(0, customers, CHUNK_CUSTOMERS)):
        n = min(CHUNK_CUSTOMERS, customers - first)
        chunk = simulate_chunk(_rng(*key, 2, chunk_no), MODEL, window, reps, first, n)
        split = _rng(*key, 3, chunk_no)
        acc = tables.accounts_table(chunk, reps)
        cust_ids = acc.column("customer_id").combine_chunks()
        accounts_state.append(acc)
        delivered = chunk.accounts["created_at"] < end
        landing.write(
            "crm_accounts", f"accounts_full_{export}.csv", "csv_bom", acc.filter(pa.array(delivered))
        )
        pending["crm_accounts"].append(acc.filter(pa.array(~delivered)))

        act = tables.activities_table(chunk, reps, next_id["act"], cust_ids)
        next_id["act"] += act.num_rows
        res = tables.responses_table(
            chunk, next_id["resp"], cust_ids, acc.column("contact_email").combine_chunks()
        )
        next_id["resp"] += res.num_rows
        orders, n_ord, n_cn = tables.orders_table(chunk, next_id["ord"], next_id["cn"], cust_ids)
        next_id["ord"] += n_ord
        next_id["cn"] += n_cn
        for source, table, t, side_share in (
            ("crm_activities", act, chunk.activities["occurred_at"], _LATE_ACTIVITY_SHARE),
            ("survey_responses", res, chunk.responses["responded_at"], _PAPER_SURVEY_SHARE),
            ("orders", orders, chunk.orders["ordered_at"], _ORDER_CORRECTION_SHARE),
        ):
            now = t < end
            # The chunk's rows per customer, times every customer: the whole demo's rows of this source.
            expected_rows = max(1.0, now.sum() / n * customers)
            side_share = min(1.0, max(side_share, _SIDE_MIN_ROWS[source] / expected_rows))
            side = now & (split.random(len(t)) < side_share)
            bulk = now & ~side
            if now.any():
                as_of = max(as_of, int(t[now].max()))
            stem = {"crm_activities": "activities", "survey_responses": "responses", "orders": "orders"}[
                source
            ]
            landing.monthly(source, stem, fact_kind[source], table.filter(pa.array(bulk)), t[bulk])
            pending[source].append(table.filter(pa.array(~now)))
            side_rows = table.filter(pa.array(side))
            if source == "crm_activities":
                landing.write(source, f"activities_late_{export}.jsonl.gz", "jsonl_gz", side_rows)
            elif source == "orders":
                landing.write(source, f"orders_corrections_{export}.csv", "csv", side_rows)
            else:
                paper.append(side_rows)
        truth_parts.append(_response_truth(chunk, res))

    faults = _write_faults_and_dimensions(landing, reps, accounts_state, paper, customers, key, end, export)
    as_of = max(as_of, faults.pop("_max_event_at"))
    files = landing.close()
    expected = faults["expected_quarantined_rows"]

    responses_truth = pa.concat_tables([pa.table(p) for p in truth_parts])
    doc = _truth_document(
        responses_truth,
        customers=customers,
        seed=seed,
        end_date=end_date,
        text=text,
        window=window,
        as_of=as_of,
    )
    doc["faults"] = faults
    doc["counts"] = {"rows": landing.rows, "files": len(files)}
    doc["files"] = [p.relative_to(landing.root).as_posix() for p in files]
    doc["state"] = {
        "dir": STATE_DIR,
        "format": "text" if text else "parquet",
        "next_day": end_date.isoformat(),
        "horizon_end_date": (end_date + timedelta(days=APPEND_HORIZON_DAYS)).isoformat(),
        "appended_days": [],
    }
    _write_state(data_dir, pending, accounts_state, reps, responses_truth)
    _write_truth(data_dir, doc)
    return DemoSummary(data_dir, tuple(files), dict(landing.rows), dict(expected), doc)


def _response_truth(chunk, res: pa.Table) -> dict[str, np.ndarray]:
    """Per-response generator values kept in demo_state/responses_truth.parquet (and for the truth)."""
    r, acc = chunk.responses, chunk.accounts
    c = r["cust"]
    return {
        "response_id": res.column("response_id").combine_chunks(),
        "customer_id": res.column("customer_id").combine_chunks(),
        "responded_at": utc(r["responded_at"]),
        "segment": pa.array(np.asarray(SEGMENTS)[acc["segment"][c]]),
        "survey_type": res.column("survey_type").combine_chunks(),
        "contacts_before": r["contacts_before"],
        "exposure_days": r["exposure_days"],
        "contacts_per_month": r["contacts_per_month"],
        "first_week_contacts": acc["first_week_contacts"][c],
        "handoff_days": acc["handoff_days"][c],
        "tenure_days": r["tenure_days"],
        "revenue_prior_365d": r["revenue_prior_365d"],
        "mean_latent": r["mean_latent"],
        "noise": r["noise"],
        "nps_score": r["nps_score"],
        "repeat_covariate_term": r["repeat_covariate_term"],
        "p_repeat": r["p_repeat"],
        "repeat_draw": r["repeat"].astype(np.int64),
    }


def _write_faults_and_dimensions(
    landing: _Landing,
    reps: Reps,
    accounts: list[pa.Table],
    paper: list[pa.Table],
    customers: int,
    key: tuple[int, ...],
    end: int,
    export: str,
) -> dict:
    """Write reps, the account delta, the side files with their fault rows; return the fault counts."""
    rng = _rng(*key, 4)
    real = accounts[0].filter(pc.less(accounts[0].column("created_at"), utc(np.array([end]))[0]))
    real_ids = real.column("customer_id").to_numpy(zero_copy_only=False)
    hist_lo = end - 300 * DAY

    def times(k: int) -> np.ndarray:
        return _even_times(rng, hist_lo, end - DAY, k)

    def pick(k: int) -> list[str]:
        return [str(x) for x in rng.choice(real_ids, size=k)]

    # Orphans: facts of customers the CRM export does not (yet) contain; loaded and flagged, not quarantined.
    n_orphans = max(3, customers // 1000)
    orphan_ids = [f"C{customers + 1 + j:08d}" for j in range(n_orphans)]
    n_resp_total = landing.rows["survey_responses"] + sum(t.num_rows for t in paper)
    n_act_total = landing.rows["crm_activities"]
    n_ord_total = landing.rows["orders"]
    n = {
        "nps_score_out_of_range": max(3, n_resp_total // 4000),
        "survey_bad_ts": max(2, n_resp_total // 10_000),
        "activity_bad_ts": max(2, n_act_total // 100_000),
        "activity_negative_duration": max(2, n_act_total // 200_000),
        "order_bad_ts": max(2, n_ord_total // 50_000),
    }
    max_event = 0

    # ---- crm_activities: late gzip JSONL with orphans and faults (all inbound: never the exposure) ----
    late = landing.sink("crm_activities", f"activities_late_{export}.jsonl.gz", "jsonl_gz")
    act_schema = pa.schema(
        [
            ("activity_id", pa.string()),
            ("customer_id", pa.string()),
            ("rep_id", pa.string()),
            ("activity_type", pa.string()),
            ("direction", pa.string()),
            ("occurred_at", pa.string()),
            ("duration_minutes", pa.float64()),
        ]
    )
    fault_no = iter(range(9_000_000_001, 9_999_999_999))
    orphan_rows, act_faults = [], []
    orphan_acts = np.repeat(orphan_ids, 3)
    orphan_t = times(len(orphan_acts))
    max_event = max(max_event, int(orphan_t.max()))
    for cid, t in zip(orphan_acts, orphan_t, strict=True):
        orphan_rows.append(
            {
                "activity_id": f"ACT{next(fault_no)}",
                "customer_id": str(cid),
                "activity_type": "call",
                "direction": "outbound",
                "occurred_at": _jst(t),
                "duration_minutes": 5.0,
            }
        )
    for i, cid in enumerate(pick(n["activity_bad_ts"])):
        act_faults.append(
            {
                "activity_id": f"ACT{next(fault_no)}",
                "customer_id": cid,
                "activity_type": "chat",
                "direction": "inbound",
                "occurred_at": _BAD_TS[i % len(_BAD_TS)],
                "duration_minutes": 4.0,
            }
        )
    act_faults.append(
        {
            "activity_id": f"ACT{next(fault_no)}",
            "customer_id": pick(1)[0],
            "activity_type": "call",
            "direction": "inbound",
            "occurred_at": _FUTURE_TS,
            "duration_minutes": 3.0,
        }
    )
    for cid, t in zip(
        pick(n["activity_negative_duration"]), times(n["activity_negative_duration"]), strict=True
    ):
        act_faults.append(
            {
                "activity_id": f"ACT{next(fault_no)}",
                "customer_id": cid,
                "activity_type": "call",
                "direction": "inbound",
                "occurred_at": _jst(t),
                "duration_minutes": -15.0,
            }
        )
    landing.write_text(
        "crm_activities", late.path.name, "jsonl_gz", _rows_like(act_schema, orphan_rows + act_faults)
    )

    # ---- survey_responses: paper surveys keyed in from a CP932 spreadsheet, with faults ----
    paper_table = pa.concat_tables(paper) if paper else None
    paper_text = to_text(paper_table, _rng(*key, 5))
    schema = paper_text.schema
    resp_no = iter(range(9_000_000_001, 9_999_999_999))
    base = {"survey_type": "relational", "comment": "担当者の対応に満足しています。"}
    resp_orphans, resp_faults = [], []
    orphan_resp_t = times(n_orphans)
    max_event = max(max_event, int(orphan_resp_t.max()))
    for cid, t in zip(orphan_ids, orphan_resp_t, strict=True):
        resp_orphans.append(
            {
                **base,
                "response_id": f"SR{next(resp_no)}",
                "customer_id": cid,
                "responded_at": _jst(t),
                "nps_score": 8,
            }
        )
    bad_scores = [11, -1, 12, 99]
    for i, (cid, t) in enumerate(
        zip(pick(n["nps_score_out_of_range"]), times(n["nps_score_out_of_range"]), strict=True)
    ):
        resp_faults.append(
            {
                **base,
                "response_id": f"SR{next(resp_no)}",
                "customer_id": cid,
                "responded_at": _jst(t),
                "nps_score": bad_scores[i % len(bad_scores)],
                "comment": "記入ミスの可能性あり",
            }
        )
    for i, cid in enumerate(pick(n["survey_bad_ts"])):
        resp_faults.append(
            {
                **base,
                "response_id": f"SR{next(resp_no)}",
                "customer_id": cid,
                "responded_at": _BAD_TS[i % len(_BAD_TS)],
                "nps_score": 7,
            }
        )
    resp_faults.append(
        {
            **base,
            "response_id": f"SR{next(resp_no)}",
            "customer_id": pick(1)[0],
            "responded_at": _FUTURE_TS,
            "nps_score": 9,
        }
    )
    paper_all = pa.concat_tables([paper_text, _rows_like(schema, resp_orphans + resp_faults)])
    paper_name = f"paper_survey_{export}.csv"
    paper_path = landing.root / "survey_responses" / paper_name
    write_cp932_csv(paper_path, paper_all)
    landing.extra_files.append(f"survey_responses/{paper_name}")
    landing.rows["survey_responses"] += paper_all.num_rows

    # ---- orders: manual corrections CSV with faults ----
    corrections = landing.sink("orders", f"orders_corrections_{export}.csv", "csv")
    ord_schema = pa.schema(
        [
            ("order_id", pa.string()),
            ("customer_id", pa.string()),
            ("ordered_at", pa.string()),
            ("amount", pa.decimal128(18, 2)),
            ("currency", pa.string()),
            ("status", pa.string()),
            ("product_line", pa.string()),
        ]
    )
    ord_no = iter(range(9_000_000_001, 9_999_999_999))
    ord_faults = [
        {
            "order_id": f"ORD{next(ord_no)}",
            "customer_id": cid,
            "ordered_at": _BAD_TS[i % len(_BAD_TS)],
            "amount": Decimal("50000.00"),
            "currency": "JPY",
            "status": "completed",
        }
        for i, cid in enumerate(pick(n["order_bad_ts"]))
    ]
    ord_faults.append(
        {
            "order_id": f"ORD{next(ord_no)}",
            "customer_id": pick(1)[0],
            "ordered_at": _FUTURE_TS,
            "amount": Decimal("120000.00"),
            "currency": "JPY",
            "status": "completed",
        }
    )
    landing.write_text("orders", corrections.path.name, "csv", _rows_like(ord_schema, ord_faults))

    # ---- crm_reps: the roster, one row with an invalid team, and the same file delivered again ----
    reps_t = tables.reps_table(reps)
    reps_text = reps_t
    bad_rep = _rows_like(
        reps_text.schema,
        [
            {
                "rep_id": f"REP{len(reps.rep_id) + 90001:05d}",
                "rep_name": "山田 太郎",
                "team": "営業部",
                "email": "t.yamada.temp@example.co.jp",
                "active": True,
            }
        ],
    )
    reps_bytes = csv_bytes(pa.concat_tables([reps_text, bad_rep]))
    reps_name = f"reps_{export}.csv"
    landing.add_file("crm_reps", reps_name, reps_bytes, reps_t.num_rows + 1)
    resend_name = f"reps_{export}_resend.csv"
    landing.add_file("crm_reps", resend_name, reps_bytes, reps_t.num_rows + 1, counted=False)

    # ---- crm_accounts: two unusable rows in the full export, and a later delta with new owners ----
    full = landing.sink("crm_accounts", f"accounts_full_{export}.csv", "csv_bom")
    acc_text_schema = _text_schema(accounts[0])
    junk = [f"C{customers + n_orphans + 1 + j:08d}" for j in range(2)]
    landing.write_text(
        "crm_accounts",
        full.path.name,
        "csv_bom",
        _rows_like(
            acc_text_schema,
            [
                {
                    "customer_id": junk[0],
                    "customer_name": "テスト株式会社",
                    "segment": "smb",
                    "created_at": _FUTURE_TS,
                },
                {
                    "customer_id": junk[1],
                    "customer_name": "仮登録",
                    "segment": "smb",
                    "created_at": _BAD_TS[0],
                },
            ],
        ),
    )
    n_delta = max(3, customers // 500)
    chosen = np.sort(rng.choice(real.num_rows, size=min(n_delta, real.num_rows), replace=False))
    delta = real.take(pa.array(chosen))
    old_owner = delta.column("owner_rep_id").to_numpy(zero_copy_only=False)
    am = reps.rep_id[reps.account_management]
    new_owner = np.array(
        [
            am[(np.searchsorted(am, o) + 1 + rng.integers(len(am) - 1)) % len(am)] if len(am) > 1 else o
            for o in old_owner
        ],
        dtype=object,
    )
    upd = pc.cast(delta.column("updated_at"), pa.int64()).to_numpy() // 1_000_000
    new_upd = upd + (end - upd) // 2
    delta = delta.set_column(
        delta.schema.get_field_index("owner_rep_id"),
        "owner_rep_id",
        pa.array(new_owner.tolist(), pa.string()),
    )
    delta = delta.set_column(delta.schema.get_field_index("updated_at"), "updated_at", utc(new_upd))
    landing.write("crm_accounts", f"accounts_delta_{export}.csv", "csv_bom", delta)

    q = {
        "crm_accounts": 2,
        "crm_reps": 1,
        "crm_activities": n["activity_bad_ts"] + 1 + n["activity_negative_duration"],
        "survey_responses": n["nps_score_out_of_range"] + n["survey_bad_ts"] + 1,
        "orders": n["order_bad_ts"] + 1,
    }
    return {
        "_max_event_at": max_event,
        "expected_quarantined_rows": q,
        "nps_score_out_of_range": {
            "source": "survey_responses",
            "file": f"survey_responses/{paper_name}",
            "rows": n["nps_score_out_of_range"],
            "values": bad_scores,
        },
        "unparseable_timestamps": {
            "crm_activities": n["activity_bad_ts"],
            "survey_responses": n["survey_bad_ts"],
            "orders": n["order_bad_ts"],
            "crm_accounts": 1,
            "examples": list(_BAD_TS),
        },
        "future_timestamps": {
            "crm_activities": 1,
            "survey_responses": 1,
            "orders": 1,
            "crm_accounts": 1,
            "value": _FUTURE_TS,
        },
        "negative_durations": {"crm_activities": n["activity_negative_duration"]},
        "invalid_enum_values": {"crm_reps": {"column": "team", "value": "営業部", "rows": 1}},
        "redelivered_files": [
            {
                "source": "crm_reps",
                "file": f"crm_reps/{resend_name}",
                "same_bytes_as": f"crm_reps/{reps_name}",
                "rows": reps_t.num_rows + 1,
            }
        ],
        "orphans": {
            "customer_ids": len(orphan_ids),
            "crm_activities": len(orphan_acts),
            "survey_responses": len(orphan_ids),
            "first_orphan_id": orphan_ids[0],
            "note": "loaded and flagged is_orphan, never quarantined",
        },
        "encodings": {
            "cp932": [f"survey_responses/{paper_name}"],
            "utf8_bom": [
                f"crm_accounts/accounts_full_{export}.csv",
                f"crm_accounts/accounts_delta_{export}.csv",
            ],
        },
        "gzip_files": [f"crm_activities/activities_late_{export}.jsonl.gz"],
        "timestamp_styles": {
            "text_files": dict(
                zip(("naive_asia_tokyo", "offset_+09:00", "utc_z"), (0.60, 0.25, 0.15), strict=True)
            ),
            "parquet_files": "timestamp[us, tz=UTC]",
        },
        "accounts_redelivered": {
            "file": f"crm_accounts/accounts_delta_{export}.csv",
            "customers": delta.num_rows,
            "changed": ["owner_rep_id", "updated_at"],
            "rule": "latest updated_at wins",
            "owner_after": dict(
                zip(delta.column("customer_id").to_pylist()[:20], new_owner.tolist()[:20], strict=True)
            ),
        },
    }


def _even_times(rng: np.random.Generator, lo: int, hi: int, k: int) -> np.ndarray:
    return (rng.integers(lo, hi, size=k) // 2) * 2


def _jst(t: int) -> str:
    return datetime.fromtimestamp(int(t) + JST_OFFSET, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _truth_document(
    responses: pa.Table, *, customers: int, seed: int, end_date: date, text: bool, window: Window, as_of: int
) -> dict:
    """demo_truth.json: the generator's settings, the planted model and the true effects."""
    r_at = pc.cast(responses.column("responded_at"), pa.int64()).to_numpy() // 1_000_000
    window_s = MODEL.repeat_window_days * DAY
    delivered = r_at < window.end
    usable = delivered & (r_at + window_s <= as_of)  # not censored at the data's as_of
    col = {
        name: responses.column(name).to_numpy(zero_copy_only=False)
        for name in (
            "mean_latent",
            "noise",
            "contacts_per_month",
            "repeat_covariate_term",
            "nps_score",
            "segment",
            "customer_id",
        )
    }
    pick = {k: v[usable] for k, v in col.items()}
    effects = truth.link_effects(
        MODEL,
        mean_latent=pick["mean_latent"],
        noise=pick["noise"],
        cpm=pick["contacts_per_month"],
        covariate_term=pick["repeat_covariate_term"],
    )
    cpm_all, score_all = col["contacts_per_month"][delivered], col["nps_score"][delivered].astype(float)
    return {
        "generator": {
            "module": "orchestration.lib.demo_data",
            "version": 1,
            "customers": customers,
            "seed": seed,
            "end_date": end_date.isoformat(),
            "format": "text" if text else "parquet",
            "history_start_utc": _iso_utc(window.start),
            "history_end_utc_exclusive": _iso_utc(window.end),
            "as_of_utc": _iso_utc(as_of),
            "source_time_zone": "Asia/Tokyo",
            "fx_rates_to_jpy": FX_TO_JPY,
            "state_dir": STATE_DIR,
            "responses_truth": f"{STATE_DIR}/responses_truth.parquet",
        },
        "planted": MODEL.to_json(),
        "link": {
            "exposure": "contacts_per_month",
            "mediator": "nps_score",
            "outcome": "repeat_after",
            "outcome_kind": "binary",
            "covariates": [
                "segment",
                "business_unit",
                "survey_type",
                "tenure_days",
                "log_revenue_prior",
                "outbound_contacts_first_7d",
                "handoff_days",
            ],
            "covariate_definitions": {
                "tenure_days": "fractional days from created_at to responded_at",
                "log_revenue_prior": "ln(1 + max(revenue_prior_365d, 0) / 1e6); revenue_prior_365d = "
                "completed order amounts in JPY (USD at fx_rates_to_jpy) in [responded_at - 365 d, "
                "responded_at)",
                "outbound_contacts_first_7d": "outbound activities in (first_order_at, first_order_at + 7 d]",
                "handoff_days": "fractional days from first_order_at to the first account_management contact",
            },
            "effects": effects,
            "n_responses": int(usable.sum()),
            "n_customers": len(np.unique(pick["customer_id"])),
            "method": "simulation from the planted model over delivered responses with responded_at + 90 d"
            " <= as_of; score noise integrated exactly; *_same_draws reuse the drawn noise",
            "units": "a_path: score points per +1 contact/month; b_path, direct, indirect, total: "
            "probability of repeat_after (b_path per score point, the others per +1 contact/month)",
        },
        "confounding": {
            "naive_slope_score_on_cpm": truth.naive_slope(cpm_all, score_all),
            "segment_adjusted_slope_score_on_cpm": truth.adjusted_slope(
                cpm_all, score_all, col["segment"][delivered]
            ),
            "note": "the naive slope exceeds the true a_path because enterprise gets more contacts and "
            "scores higher at baseline",
        },
        "contact_timing": {
            "first_week_per_contact": MODEL.first_week_per_contact,
            "definition": "NPS latent points per outbound contact in (first_order_at, first_order_at + 7 d]",
        },
        "handoff": {
            "per_day": MODEL.handoff_per_day,
            "max_days": MODEL.handoff_max_days,
            "definition": "NPS latent points per day from first order to first account_management contact",
        },
        "key_drivers": {
            "weights": MODEL.driver_weights,
            "rank": sorted(MODEL.driver_weights, key=MODEL.driver_weights.get, reverse=True),
            "drivers": [f"driver_{d}" for d in DRIVERS],
        },
        "repeat": {
            "delivered_responses": int(delivered.sum()),
            "non_censored_responses": int(usable.sum()),
            "repeat_rate_non_censored": float(responses.column("repeat_draw").to_numpy()[usable].mean())
            if usable.any()
            else None,
        },
    }


def _write_state(
    data_dir: Path,
    pending: dict[str, list[pa.Table]],
    accounts: list[pa.Table],
    reps: Reps,
    responses_truth: pa.Table,
) -> None:
    """demo_state/: rows of the append horizon, the account list, the roster and per-response draws."""
    state = data_dir / STATE_DIR
    state.mkdir(parents=True, exist_ok=True)
    for source, parts in pending.items():
        pq.write_table(pa.concat_tables(parts), state / f"pending_{source}.parquet")
    pq.write_table(pa.concat_tables(accounts), state / "accounts.parquet")
    pq.write_table(tables.reps_table(reps), state / "reps.parquet")
    pq.write_table(responses_truth, state / "responses_truth.parquet")


def _write_truth(data_dir: Path, doc: dict) -> None:
    path = data_dir / TRUTH_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, ensure_ascii=False, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    tmp.replace(path)


def read_truth(data_dir: Path) -> dict:
    """The demo_truth.json of a generated data dir."""
    return json.loads((Path(data_dir) / TRUTH_FILE).read_text(encoding="utf-8"))


def append_day(data_dir: Path, *, seed: int = 7) -> DemoSummary:
    """Deliver the next day after the generated history as new landing files; advance the stored state.

    The day's activities, responses and orders come from the same simulation as the history (kept in
    demo_state/), so exposure, scores and repeat stay consistent; accounts created that day arrive in
    an account delta together with a few owner reassignments chosen with `seed`.
    """
    data_dir = Path(data_dir)
    if not (data_dir / TRUTH_FILE).exists():
        raise DemoDataError(f"{data_dir} holds no generated demo ({TRUTH_FILE}): generate one first, then append days")
    doc = read_truth(data_dir)
    state = doc["state"]
    day = date.fromisoformat(state["next_day"])
    if day >= date.fromisoformat(state["horizon_end_date"]):
        raise DemoDataError(
            f"the simulated horizon ends at {state['horizon_end_date']}; generate again to go further"
        )
    lo, hi = _epoch(day), _epoch(day + timedelta(days=1))
    if hi > datetime.now(UTC).timestamp():
        raise DemoDataError(f"{day} has not ended yet in Asia/Tokyo: its events would be in the future")
    text = state["format"] == "text"
    gen = doc["generator"]
    key = (seed, gen["customers"], day.toordinal(), int(text))
    landing = _Landing(data_dir, key)
    state_dir = data_dir / STATE_DIR
    stamp = day.strftime("%Y-%m-%d")
    names = {
        "crm_activities": ("activities", "jsonl"),
        "survey_responses": ("responses", "csv"),
        "orders": ("orders", "csv"),
    }
    for source, column in _TIME_COLUMN.items():
        table = pq.read_table(state_dir / f"pending_{source}.parquet")
        t = pc.cast(table.column(column), pa.int64()).to_numpy() // 1_000_000
        day_rows = table.filter(pa.array((t >= lo) & (t < hi)))
        stem, kind = names[source]
        kind = kind if text else "parquet"
        landing.write(source, f"{stem}_{stamp}.{kind}", kind, day_rows)

    accounts = pq.read_table(state_dir / "accounts.parquet")
    created = pc.cast(accounts.column("created_at"), pa.int64()).to_numpy() // 1_000_000
    new_accounts = accounts.filter(pa.array((created >= lo) & (created < hi)))
    rng = _rng(*key, 6)
    existing = np.flatnonzero(created < lo)
    n_upd = min(len(existing), max(1, gen["customers"] // 2000))
    chosen = np.sort(rng.choice(existing, size=n_upd, replace=False))
    updates = accounts.take(pa.array(chosen))
    reps = pq.read_table(state_dir / "reps.parquet")
    am = np.array(
        reps.filter(pc.equal(reps.column("team"), TEAMS[1])).column("rep_id").to_pylist(), dtype=object
    )
    updates = updates.set_column(
        updates.schema.get_field_index("owner_rep_id"),
        "owner_rep_id",
        pa.array(rng.choice(am, size=n_upd).tolist(), pa.string()),
    )
    updates = updates.set_column(
        updates.schema.get_field_index("updated_at"),
        "updated_at",
        utc(np.sort(rng.integers(lo, hi, size=n_upd))),
    )
    landing.write(
        "crm_accounts",
        f"accounts_delta_{day.strftime('%Y%m%d')}.csv",
        "csv_bom",
        pa.concat_tables([new_accounts, updates]),
    )
    files = landing.close()
    rel = [p.relative_to(landing.root).as_posix() for p in files]
    state["appended_days"].append(
        {
            "day": day.isoformat(),
            "files": rel,
            "rows": dict(landing.rows),
            "account_updates": n_upd,
            "new_accounts": new_accounts.num_rows,
        }
    )
    state["next_day"] = (day + timedelta(days=1)).isoformat()
    _write_truth(data_dir, doc)
    return DemoSummary(data_dir, tuple(files), dict(landing.rows), dict.fromkeys(SOURCES, 0), doc)
