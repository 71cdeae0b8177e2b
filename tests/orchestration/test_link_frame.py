"""The link model's frame (LINK_FRAME_SQL): every covariate is as known at the response, never after it."""

from __future__ import annotations

import duckdb
import pytest

from orchestration.defs.analysis.assets import LINK_COVARIATES, link_frame

WINDOW = 90


@pytest.fixture()
def con() -> duckdb.DuckDBPyConnection:
    """Marts with one customer per case; the first order on 1 March, a hand-off to account management on 10 April."""
    con = duckdb.connect()
    con.execute("create schema marts; create schema intermediate")
    con.execute(f"create table intermediate.int_run_parameters as select {WINDOW} as contact_window_days")
    con.execute("""
        create table marts.dim_customers as
        select * from (values
            ('C1', timestamp '2026-03-01 00:00', 4, timestamp '2026-04-10 00:00', 40.0),
            ('C2', timestamp '2026-03-01 00:00', 4, timestamp '2026-04-10 00:00', 40.0),
            ('C3', timestamp '2026-03-01 00:00', 4, timestamp '2026-04-10 00:00', 40.0),
            ('C4', null, null, null, null),
            ('C5', timestamp '2026-03-01 00:00', 2, null, null)
        ) as t(customer_id, first_order_at, outbound_contacts_first_7d, first_account_management_contact_at,
               handoff_days)
    """)
    con.execute("""
        create table marts.fct_survey_responses as
        select *, 'enterprise' as segment, 'staffing' as business_unit, 'relational' as survey_type,
               365.25 as tenure_days, 0 as revenue_prior_365d, 2.0 as contacts_per_month, 9 as nps_score,
               1 as repeat_after
        from (values
            ('R1', 'C1', timestamp '2026-03-05 00:00'),  -- in the first week, before the hand-off
            ('R2', 'C2', timestamp '2026-03-20 00:00'),  -- after the first week, before the hand-off
            ('R3', 'C3', timestamp '2026-05-01 00:00'),  -- after both
            ('R4', 'C4', timestamp '2026-05-01 00:00'),  -- no order yet
            ('R5', 'C5', timestamp '2026-05-01 00:00')   -- after the first week, never handed off
        ) as t(response_id, customer_id, responded_at)
    """)
    return con


def test_link_frame_covariates_are_as_known_at_the_response(con: duckdb.DuckDBPyConnection) -> None:
    frame = link_frame(con).set_index("customer_id")
    got = {cid: (row.onboarding_stage, int(row.first_week_contacts), float(row.handoff_days_filled),
                 int(row.not_handed_off_yet)) for cid, row in frame.iterrows()}
    assert got == {
        # A score on day 4 cannot depend on the rest of its first week or on a hand-off on day 40.
        "C1": ("first_week", 0, WINDOW, 1),
        "C2": ("after_first_week", 4, WINDOW, 1),
        "C3": ("after_first_week", 4, 40.0, 0),
        "C4": ("before_first_order", 0, WINDOW, 1),
        "C5": ("after_first_week", 2, WINDOW, 1),
    }
    assert set(LINK_COVARIATES) <= set(frame.columns) | {"customer_id"}
