"""Great Expectations suite for one delivered file of lake/raw/crm_reps (one row per CRM user)."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from quality._gx import gx
from quality.suites._derive import build_contract_suite

TABLE = "crm_reps"

# No null-rate limits: manager_rep_id is empty for the top of every hierarchy, which in a small
# team's file is a large share, and `active` has a contract default for missing values.
MIN_NON_NULL_SHARE: dict[str, float] = {}


def crm_reps_suite(*, now: datetime, absent_columns: Collection[str] = ()) -> gx.ExpectationSuite:
    """GX suite for the lake rows of one crm_reps file, loaded at `now` (naive UTC).

    `absent_columns`: optional columns the file did not deliver (accepted for a uniform call; reps
    have no null-rate limits to skip).
    """
    return build_contract_suite(TABLE, now=now, absent_columns=absent_columns, min_non_null_share=MIN_NON_NULL_SHARE)
