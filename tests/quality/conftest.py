"""Small, valid lake batches per table, and a helper to plant violations in them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal

import pandas as pd
import pyarrow as pa
import pytest

from orchestration.lib.lake import lake_schema
from quality.validate import lake_frame

LOADED_AT = datetime(2025, 6, 1, 3, 0, 0)
SHA = "ab" * 32


def _good_rows(table: str, n: int) -> list[dict]:
    past = [LOADED_AT - timedelta(days=n - i) for i in range(n)]
    if table == "crm_accounts":
        return [
            {
                "customer_id": f"C{i}",
                "customer_name": f"Company {i}",
                "segment": ["enterprise", "smb"][i % 2],
                "business_unit": "staffing",
                "industry": None,
                "region": "kanto",
                "created_at": past[i],
                "owner_rep_id": f"R{i % 2}",
                "contact_email": None,
                "updated_at": past[i],
            }
            for i in range(n)
        ]
    if table == "crm_reps":
        teams = ["new_sales", "account_management", "support", "other"]
        return [
            {
                "rep_id": f"R{i}",
                "rep_name": None,
                "team": teams[i % 4],
                "manager_rep_id": None if i == 0 else "R0",
                "email": None,
                "active": True,
            }
            for i in range(n)
        ]
    if table == "crm_activities":
        return [
            {
                "activity_id": f"A{i}",
                "customer_id": f"C{i % 3}",
                "rep_id": f"R{i % 2}",
                "activity_type": ["call", "email", "meeting"][i % 3],
                "direction": ["outbound", "inbound"][i % 2],
                "occurred_at": past[i],
                "duration_minutes": None if i % 3 == 1 else 12.5,
            }
            for i in range(n)
        ]
    if table == "survey_responses":
        return [
            {
                "response_id": f"S{i}",
                "survey_type": ["relational", "transactional"][i % 2],
                "customer_id": f"C{i}",
                "touchpoint": None if i % 2 == 0 else "support",
                "responded_at": past[i],
                "nps_score": i % 11,
                "comment": None,
                "respondent_email": None,
            }
            for i in range(n)
        ]
    if table == "survey_driver_scores":
        return [{"response_id": f"S{i // 2}", "driver": ["speed", "care"][i % 2], "score": i % 11} for i in range(n)]
    if table == "orders":
        return [
            {
                "order_id": f"O{i}",
                "customer_id": f"C{i % 3}",
                "ordered_at": past[i],
                "amount": Decimal("1200.50") if i % 4 else Decimal("-30"),
                "currency": "JPY",
                "status": ["completed", "cancelled", "refunded"][i % 3],
                "product_line": None,
            }
            for i in range(n)
        ]
    raise KeyError(table)


def make_batch(table: str, rows: list[dict]) -> pd.DataFrame:
    """An Arrow-backed lake frame of `rows` with the load metadata of one delivered file."""
    full = []
    for number, row in enumerate(rows, start=1):
        meta = {
            "_source_file": f"{table}/delivery.csv",
            "_file_sha256": SHA,
            "_row_number": number if table != "survey_driver_scores" else (number + 1) // 2,
            "_delivery_seq": 3,
            "_loaded_at": LOADED_AT,
        }
        full.append({**meta, **row})
    return lake_frame(pa.Table.from_pylist(full, schema=lake_schema(table)))


@pytest.fixture
def good_batch() -> Callable[..., pd.DataFrame]:
    """Factory: a valid batch of table `table` with `n` rows, optionally with `changes` {row: {col: value}}."""

    def build(table: str, n: int = 6, changes: dict[int, dict] | None = None) -> pd.DataFrame:
        rows = _good_rows(table, n)
        for index, update in (changes or {}).items():
            rows[index].update(update)
        return make_batch(table, rows)

    return build
