"""Great Expectations suite for one delivered file's rows of lake/raw/survey_driver_scores.

The table is long (response_id, driver, score): ingestion derives one row per rated item from the
driver_* columns of a survey_responses file. Its rules come from the contract's `driver_*` column
pattern (type, range) and from survey_responses' key.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace
from datetime import datetime
from functools import cache

from quality._gx import ExpectColumnArrowTypeToBe, gx
from quality.contract import DRIVER_SCORES_SCHEMA, DRIVER_SCORES_TABLE, load_contract, pattern_regex
from quality.suites._derive import (
    E,
    PlannedExpectation,
    build_suite,
    load_metadata_expectations,
    plan,
    rule_expectations,
)

TABLE = DRIVER_SCORES_TABLE
RESPONSES = "survey_responses"
PATTERN = "driver_*"


@cache
def driver_scores_plan() -> tuple[PlannedExpectation, ...]:
    """The plan of the driver scores suite, derived from the contract's driver_* pattern."""
    responses = load_contract().sources[RESPONSES]
    pattern = responses.column_patterns[PATTERN]
    key = responses.columns[responses.key]
    # The item name is what the `*` of the pattern matched (contract.SourceSpec.pattern_for).
    driver_regex = "^" + pattern_regex(PATTERN.removeprefix("driver_")) + "$"
    planned = [plan(E.ExpectTableColumnsToMatchSet, column_set=DRIVER_SCORES_SCHEMA.names, exact_match=True)]
    planned += [
        plan(ExpectColumnArrowTypeToBe, column="response_id", type_=str(key.arrow_type)),
        plan(ExpectColumnArrowTypeToBe, column="driver", type_="string"),
        plan(ExpectColumnArrowTypeToBe, column="score", type_=str(pattern.arrow_type)),
    ]
    # A row exists only for an item that was rated, so none of the three may be empty.
    planned += [
        plan(E.ExpectColumnValuesToNotBeNull, column=c, notes="one row per rated item")
        for c in ("response_id", "driver", "score")
    ]
    planned.append(plan(E.ExpectColumnValuesToMatchRegex, column="driver", regex=driver_regex))
    planned += rule_expectations(replace(pattern, name="score"))
    planned.append(
        plan(
            E.ExpectCompoundColumnsToBeUnique,
            column_list=["response_id", "driver"],
            notes="one score per response and item",
        )
    )
    # Several driver rows share the response's file row, so _row_number is not unique here.
    planned += load_metadata_expectations(row_number_unique=False)
    return tuple(planned)


def survey_driver_scores_suite(*, now: datetime, absent_columns: Collection[str] = ()) -> gx.ExpectationSuite:
    """GX suite for the driver score rows derived from one survey_responses file, loaded at `now`.

    `absent_columns` is accepted for a uniform call signature; this table has no optional columns.
    """
    return build_suite(TABLE, driver_scores_plan(), now=now, absent_columns=absent_columns)
