"""Great Expectations suites of the lake/raw tables, one module per table, all derived from the contract.

Every suite validates the typed lake rows of one delivered file as a pandas frame whose columns are
Arrow-backed (`quality.validate.lake_frame`), so the type expectations compare the lake schema's
Arrow types exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import datetime

from quality._gx import gx
from quality.suites.crm_accounts import crm_accounts_suite
from quality.suites.crm_activities import crm_activities_suite
from quality.suites.crm_reps import crm_reps_suite
from quality.suites.orders import orders_suite
from quality.suites.survey_driver_scores import survey_driver_scores_suite
from quality.suites.survey_responses import survey_responses_suite

SuiteBuilder = Callable[..., gx.ExpectationSuite]

# lake table -> its suite builder (same keys as orchestration.lib.lake.LAKE_TABLES).
SUITE_BUILDERS: dict[str, SuiteBuilder] = {
    "crm_accounts": crm_accounts_suite,
    "crm_reps": crm_reps_suite,
    "crm_activities": crm_activities_suite,
    "survey_responses": survey_responses_suite,
    "survey_driver_scores": survey_driver_scores_suite,
    "orders": orders_suite,
}

__all__ = [
    "SUITE_BUILDERS",
    "crm_accounts_suite",
    "crm_activities_suite",
    "crm_reps_suite",
    "orders_suite",
    "suite_for",
    "survey_driver_scores_suite",
    "survey_responses_suite",
]


def suite_for(table: str, *, now: datetime, absent_columns: Collection[str] = ()) -> gx.ExpectationSuite:
    """The GX suite of lake table `table` for a batch loaded at `now`; KeyError names the known tables."""
    try:
        builder = SUITE_BUILDERS[table]
    except KeyError:
        raise KeyError(f"no suite for lake table {table!r}; known: {sorted(SUITE_BUILDERS)}") from None
    return builder(now=now, absent_columns=absent_columns)
