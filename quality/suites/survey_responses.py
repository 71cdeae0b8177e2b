"""Great Expectations suite for one delivered file of lake/raw/survey_responses (one row per NPS response)."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from quality._gx import gx
from quality.suites._derive import E, build_contract_suite, plan

TABLE = "survey_responses"

# No plain null-rate limits: touchpoint is empty for relational surveys by design and comment is
# free text most respondents skip.
MIN_NON_NULL_SHARE: dict[str, float] = {}

# The contract notes touchpoint is "expected for transactional": a transactional survey is sent
# because of a service event, so a file whose transactional responses mostly lack it has lost the
# field. 90% leaves room for survey tools that send a few manual invitations without an event.
TRANSACTIONAL_TOUCHPOINT = plan(
    E.ExpectColumnValuesToNotBeNull,
    column="touchpoint",
    row_condition='survey_type == "transactional"',
    condition_parser="pandas",
    mostly=0.9,
    severity="warning",
    notes="contract: touchpoint expected for transactional surveys",
    skip_if_absent="touchpoint",
)


def survey_responses_suite(*, now: datetime, absent_columns: Collection[str] = ()) -> gx.ExpectationSuite:
    """GX suite for the lake rows of one survey_responses file, loaded at `now` (naive UTC).

    The driver_* columns are not part of this table: ingestion moves them to
    survey_driver_scores (see `quality.suites.survey_driver_scores`).
    `absent_columns`: optional columns the file did not deliver; their null-rate limits are skipped.
    """
    return build_contract_suite(
        TABLE,
        now=now,
        absent_columns=absent_columns,
        min_non_null_share=MIN_NON_NULL_SHARE,
        extra=(TRANSACTIONAL_TOUCHPOINT,),
    )
