"""Great Expectations suite for one delivered file of lake/raw/crm_activities (one row per logged contact)."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from quality._gx import gx
from quality.suites._derive import build_contract_suite

TABLE = "crm_activities"

# rep_id attributes a contact to a rep (hand-off and team analyses). Automated e-mails and chat bots
# log contacts without a rep, but when most rows lack one the CRM export lost the owner field.
# duration_minutes is empty for e-mails by nature, so it has no limit.
MIN_NON_NULL_SHARE: dict[str, float] = {"rep_id": 0.5}


def crm_activities_suite(*, now: datetime, absent_columns: Collection[str] = ()) -> gx.ExpectationSuite:
    """GX suite for the lake rows of one crm_activities file, loaded at `now` (naive UTC).

    `absent_columns`: optional columns the file did not deliver (the manifest's
    missing_optional_columns); their null-rate limits are skipped.
    """
    return build_contract_suite(TABLE, now=now, absent_columns=absent_columns, min_non_null_share=MIN_NON_NULL_SHARE)
