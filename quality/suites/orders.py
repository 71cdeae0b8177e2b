"""Great Expectations suite for one delivered file of lake/raw/orders (one row per order or invoice)."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from quality._gx import gx
from quality.suites._derive import build_contract_suite

TABLE = "orders"

# No null-rate limits: currency and status have contract defaults for missing values, and
# product_line is optional descriptive detail that many billing systems do not fill.
MIN_NON_NULL_SHARE: dict[str, float] = {}


def orders_suite(*, now: datetime, absent_columns: Collection[str] = ()) -> gx.ExpectationSuite:
    """GX suite for the lake rows of one orders file, loaded at `now` (naive UTC).

    `absent_columns`: optional columns the file did not deliver (accepted for a uniform call; orders
    have no null-rate limits to skip).
    """
    return build_contract_suite(TABLE, now=now, absent_columns=absent_columns, min_non_null_share=MIN_NON_NULL_SHARE)
