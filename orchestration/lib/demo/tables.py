"""Arrow tables of the five contract sources built from a simulated chunk (typed, timestamps in UTC)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from orchestration.lib.demo import pools
from orchestration.lib.demo.model import (
    ACTIVITY_TYPES,
    BUSINESS_UNITS,
    DRIVERS,
    SEGMENTS,
    SURVEY_TYPES,
    TEAMS,
    TOUCHPOINTS,
)
from orchestration.lib.demo.simulate import Chunk, Reps
from orchestration.lib.demo.write import ids, take, utc

CUSTOMER_ID_WIDTH = 8
_COMMENT_POOLS = (pools.COMMENTS_PROMOTER, pools.COMMENTS_PASSIVE, pools.COMMENTS_DETRACTOR)
_COMMENTS = pa.array([c for pool in _COMMENT_POOLS for c in pool])
_COMMENT_OFFSET = np.cumsum([0, *[len(p) for p in _COMMENT_POOLS]])[:-1]
_COMMENT_LEN = np.array([len(p) for p in _COMMENT_POOLS])
_PRODUCT_LINES = pa.array([line for bu in BUSINESS_UNITS for line in pools.PRODUCT_LINES[bu]])


def customer_ids(first: int, n: int) -> pa.Array:
    """Ids of accounts with global 0-based indices first..first+n-1."""
    return ids("C", np.arange(first + 1, first + n + 1), CUSTOMER_ID_WIDTH)


def decimal_amounts(values: np.ndarray) -> pa.Array:
    """Amounts with two decimals as decimal128(18, 2), built from integer cents (exact, vectorised)."""
    cents = np.rint(np.asarray(values, np.float64) * 100).astype(np.int64)
    words = np.empty((len(cents), 2), np.int64)
    words[:, 0] = cents
    words[:, 1] = np.where(cents < 0, -1, 0)  # two's-complement sign extension into the high word
    return pa.Array.from_buffers(pa.decimal128(18, 2), len(cents), [None, pa.py_buffer(words.tobytes())])


def reps_table(reps: Reps) -> pa.Table:
    """crm_reps rows for the whole roster."""
    manager = np.where(reps.manager >= 0, reps.manager, -1)
    rep_ids = pa.array(reps.rep_id.tolist(), pa.string())
    return pa.table(
        {
            "rep_id": rep_ids,
            "rep_name": pa.array(reps.name.tolist(), pa.string()),
            "team": take(pa.array(TEAMS), reps.team),
            "manager_rep_id": take(rep_ids, manager),
            "email": pa.array(reps.email.tolist(), pa.string()),
            "active": pa.array(reps.active),
        }
    )


def accounts_table(chunk: Chunk, reps: Reps) -> pa.Table:
    """crm_accounts rows of a chunk, one per account (created_at may lie in the append horizon)."""
    acc = chunk.accounts
    n = len(acc["created_at"])
    stem = take(pa.array(pools.COMPANY_STEMS), acc["stem"])
    word = take(pa.array(pools.COMPANY_WORDS), acc["word"])
    form = take(pa.array(pools.LEGAL_FORMS), acc["legal_form"])
    name = pc.if_else(
        pa.array(acc["legal_form_first"]),
        pc.binary_join_element_wise(form, stem, word, ""),
        pc.binary_join_element_wise(stem, word, form, ""),
    )
    number = pc.utf8_lpad(
        pa.array(np.arange(chunk.first_customer + 1, chunk.first_customer + n + 1)).cast(pa.string()),
        width=CUSTOMER_ID_WIDTH,
        padding="0",
    )
    email = pc.binary_join_element_wise(
        take(pa.array([g[1] for g in pools.GIVEN_NAMES]), acc["contact_given"]),
        ".",
        take(pa.array([f[1] for f in pools.FAMILY_NAMES]), acc["contact_family"]),
        ".",
        number,
        "@example.co.jp",
        "",
    )
    return pa.table(
        {
            "customer_id": customer_ids(chunk.first_customer, n),
            "customer_name": name,
            "segment": take(pa.array(SEGMENTS), acc["segment"]),
            "business_unit": take(pa.array(BUSINESS_UNITS), acc["business_unit"]),
            "industry": take(pa.array(pools.INDUSTRIES), acc["industry"]),
            "region": take(pa.array([p for p, _ in pools.PREFECTURES]), acc["region"]),
            "created_at": utc(acc["created_at"]),
            "owner_rep_id": take(pa.array(reps.rep_id.tolist(), pa.string()), acc["owner_rep"]),
            "contact_email": email,
            "updated_at": utc(acc["updated_at"]),
        }
    )


def activities_table(chunk: Chunk, reps: Reps, first_id: int, cust_ids: pa.Array) -> pa.Table:
    """crm_activities rows of a chunk; ids first_id+1.. in (customer, time) order."""
    act = chunk.activities
    n = len(act["occurred_at"])
    return pa.table(
        {
            "activity_id": ids("ACT", np.arange(first_id + 1, first_id + n + 1), 10),
            "customer_id": take(cust_ids, act["cust"]),
            "rep_id": take(pa.array(reps.rep_id.tolist(), pa.string()), act["rep"]),
            "activity_type": take(pa.array(ACTIVITY_TYPES), act["activity_type"]),
            "direction": pc.if_else(pa.array(act["inbound"]), "inbound", "outbound"),
            "occurred_at": utc(act["occurred_at"]),
            "duration_minutes": pa.array(act["duration_minutes"], pa.float64(), from_pandas=True),
        }
    )


def responses_table(chunk: Chunk, first_id: int, cust_ids: pa.Array, contact_emails: pa.Array) -> pa.Table:
    """survey_responses rows of a chunk with one driver_* column per item (null where not asked)."""
    res = chunk.responses
    n = len(res["responded_at"])
    cat = res["category"]
    comment_idx = np.where(res["comment"] >= 0, _COMMENT_OFFSET[cat] + res["comment"] % _COMMENT_LEN[cat], -1)
    email = take(contact_emails, res["cust"])
    cols = {
        "response_id": ids("SR", np.arange(first_id + 1, first_id + n + 1), 10),
        "survey_type": take(pa.array(SURVEY_TYPES), res["survey_type"]),
        "customer_id": take(cust_ids, res["cust"]),
        "touchpoint": take(pa.array(TOUCHPOINTS), res["touchpoint"]),
        "responded_at": utc(res["responded_at"]),
        "nps_score": pa.array(res["nps_score"], pa.int64()),
        "comment": take(_COMMENTS, comment_idx),
        "respondent_email": pc.if_else(
            pa.array(res["respondent_is_contact"]), email, pa.nulls(n, pa.string())
        ),
    }
    for j, d in enumerate(DRIVERS):
        cols[f"driver_{d}"] = pa.array(res["drivers"][:, j], pa.int64(), mask=~res["drivers_asked"][:, j])
    return pa.table(cols)


def orders_table(
    chunk: Chunk, first_id: int, first_credit_id: int, cust_ids: pa.Array
) -> tuple[pa.Table, int, int]:
    """orders rows of a chunk (orders ORD.., credit notes CN.. with negative amounts), and both id counts."""
    o = chunk.orders
    n = len(o["ordered_at"])
    credit = o["is_credit_note"]
    order_no = np.cumsum(~credit) + first_id
    credit_no = np.cumsum(credit) + first_credit_id
    order_id = pc.if_else(pa.array(credit), ids("CN", credit_no, 10), ids("ORD", order_no, 10))
    return (
        pa.table(
            {
                "order_id": order_id,
                "customer_id": take(cust_ids, o["cust"]),
                "ordered_at": utc(o["ordered_at"]),
                "amount": decimal_amounts(o["amount"]),
                "currency": pc.if_else(pa.array(o["is_usd"]), "USD", "JPY"),
                "status": take(pa.array(["completed", "cancelled", "refunded"]), o["status"]),
                "product_line": take(_PRODUCT_LINES, o["product_line"]),
            }
        ),
        int(n - credit.sum()),
        int(credit.sum()),
    )
