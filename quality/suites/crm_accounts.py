"""Great Expectations suite for one delivered file of lake/raw/crm_accounts (one row per customer account)."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from quality._gx import gx
from quality.suites._derive import build_contract_suite

TABLE = "crm_accounts"

# Minimum filled share of optional columns, judged only when the file delivered the column.
# segment and business_unit are dimensions of marts.nps_by_period, and owner_rep_id routes detractor
# follow-ups: an export where most rows lost them has a broken field mapping. Half is far below what
# a working CRM export delivers and far above what a broken one does. industry and region are
# enrichment fields that are legitimately sparse, and PII columns are not our concern here.
MIN_NON_NULL_SHARE: dict[str, float] = {"segment": 0.5, "business_unit": 0.5, "owner_rep_id": 0.5}


def crm_accounts_suite(*, now: datetime, absent_columns: Collection[str] = ()) -> gx.ExpectationSuite:
    """GX suite for the lake rows of one crm_accounts file, loaded at `now` (naive UTC).

    `absent_columns`: optional columns the file did not deliver (the manifest's
    missing_optional_columns); their null-rate limits are skipped.
    """
    return build_contract_suite(TABLE, now=now, absent_columns=absent_columns, min_non_null_share=MIN_NON_NULL_SHARE)
