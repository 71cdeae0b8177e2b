"""Mart-level outcomes: planted anomalies are flagged with specific messages, normal data is not."""

from __future__ import annotations

import math
from datetime import date

import duckdb
import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.proportion import proportions_ztest

from quality.marts import (
    ERROR,
    WARN,
    contact_explosion_from_aggregate,
    contact_explosion_outcome,
    contact_explosion_sql,
    daily_volume_outcome,
    nps_jump_outcome,
    pooled_two_proportion_p_value,
    repeat_rate_jump_outcome,
)


def daily_series(last_value: float | None = None, days: int = 60, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    counts = rng.poisson(100, size=days).astype(float)
    if last_value is not None:
        counts[-1] = last_value
    return pd.DataFrame({"day": pd.date_range("2025-03-01", periods=days, freq="D"), "responses": counts})


def test_daily_volume_normal_series_passes():
    outcome = daily_volume_outcome(daily_series())
    assert outcome.success and outcome.severity == WARN
    assert "2025-04-29" in outcome.message


def test_daily_volume_planted_spike_is_flagged_naming_day():
    outcome = daily_volume_outcome(daily_series(last_value=1200))
    assert not outcome.success
    assert outcome.severity == WARN
    assert "2025-04-29: 1,200 responses" in outcome.message and "spike" in outcome.message


def test_daily_volume_drop_to_zero_is_flagged_including_missing_day():
    frame = daily_series()
    frame = frame[frame["day"] != frame["day"].max()]  # 2025-04-29 has no rows at all
    frame = pd.concat([frame, pd.DataFrame({"day": [pd.Timestamp("2025-04-30")], "responses": [100.0]})])
    outcome = daily_volume_outcome(frame, through=date(2025, 4, 29))
    assert not outcome.success
    assert "2025-04-29: 0 responses" in outcome.message and "drop" in outcome.message


def test_daily_volume_feed_that_stopped_while_others_went_on_is_a_drop():
    # No survey rows after 2025-04-26, but as_of (set by the other sources) moved on to 2025-04-30.
    frame = daily_series()
    frame = frame[frame["day"] <= pd.Timestamp("2025-04-26")]
    outcome = daily_volume_outcome(frame, through=date(2025, 4, 29))
    assert not outcome.success
    assert "2025-04-29: 0 responses" in outcome.message and "drop" in outcome.message
    # Still a drop a month later, when the zeros would fill the whole trailing window.
    later = daily_volume_outcome(frame, through=date(2025, 5, 29))
    assert not later.success
    assert "2025-05-29: 0 responses vs the 28-day median before the last responses on 2025-04-26" in later.message


def test_daily_volume_sparse_series_with_quiet_days_passes():
    # A small programme: a response every few days. The days after the last one are not a stopped feed.
    frame = pd.DataFrame({"day": pd.date_range("2025-03-01", periods=20, freq="3D"), "responses": 1.0})
    assert daily_volume_outcome(frame, through=date(2025, 5, 1)).success


def test_daily_volume_rows_of_one_day_are_summed():
    frame = daily_series()
    halves = pd.concat([frame.assign(responses=frame["responses"] / 2)] * 2)
    assert daily_volume_outcome(halves).success


def test_daily_volume_short_history_is_not_judged():
    outcome = daily_volume_outcome(daily_series(last_value=5000, days=10))
    assert outcome.success
    assert "not judged" in outcome.message


def nps_rows(counts: dict[str, tuple[int, int, int]], survey_type: str = "relational") -> pd.DataFrame:
    rows = []
    for month, (promoters, passives, detractors) in counts.items():
        responses = promoters + passives + detractors
        rows.append(
            {
                "period_month": pd.Timestamp(month).date(),
                "survey_type": survey_type,
                "dimension": "overall",
                "dimension_value": "all",
                "responses": responses,
                "promoters": promoters,
                "passives": passives,
                "detractors": detractors,
                "nps": 100 * (promoters - detractors) / responses,
            }
        )
    return pd.DataFrame(rows)


def test_nps_jump_within_sampling_error_passes():
    # 10-point drop on 50 responses a month: a standard error of about 16 points explains it.
    outcome = nps_jump_outcome(nps_rows({"2025-04-01": (25, 15, 10), "2025-05-01": (22, 15, 13)}))
    assert outcome.success
    assert "within sampling error" in outcome.message
    assert "relational NPS 2025-05" in outcome.message


def test_nps_jump_beyond_sampling_error_is_flagged_with_months_and_values():
    # 20-point drop on 2,000 responses a month: z is about 8.
    outcome = nps_jump_outcome(nps_rows({"2025-04-01": (1000, 600, 400), "2025-05-01": (800, 600, 600)}))
    assert not outcome.success and outcome.severity == WARN
    assert "relational NPS 2025-05: +10.0 (n=2,000) vs 2025-04: +30.0 (n=2,000)" in outcome.message
    assert "diff -20.0 points" in outcome.message
    assert outcome.details["relational"]["p_value"] < 1e-6


def test_nps_jump_judges_each_survey_type_and_ignores_other_dimensions():
    steady = nps_rows({"2025-04-01": (1000, 600, 400), "2025-05-01": (1000, 600, 400)}, "transactional")
    jump = nps_rows({"2025-04-01": (1000, 600, 400), "2025-05-01": (800, 600, 600)})
    segment = jump.assign(dimension="segment", dimension_value="smb", promoters=[0, 2000])
    outcome = nps_jump_outcome(pd.concat([steady, jump, segment]))
    assert not outcome.success
    assert "relational NPS" in outcome.message and "beyond sampling error" in outcome.message
    assert "transactional NPS 2025-05: +30.0" in outcome.message


def test_nps_jump_first_few_responses_of_a_new_month_are_not_judged():
    # Three promoters on the 1st against a month of 1,000: unanimous, but no evidence of anything.
    outcome = nps_jump_outcome(nps_rows({"2025-04-01": (500, 300, 200), "2025-05-01": (3, 0, 0)}))
    assert outcome.success
    assert "relational: too few responses to judge (3 in 2025-05, 1000 in 2025-04; 30 needed in each)" in (
        outcome.message
    )
    assert nps_jump_outcome(nps_rows({"2025-04-01": (0, 0, 2), "2025-05-01": (2, 0, 0)})).success


def test_nps_jump_survey_type_that_stopped_is_not_judged_again():
    stopped = nps_rows({"2025-01-01": (1000, 600, 400), "2025-02-01": (600, 600, 800)}, "onboarding")
    running = nps_rows({"2025-05-01": (1000, 600, 400), "2025-06-01": (1000, 600, 400)})
    outcome = nps_jump_outcome(pd.concat([stopped, running]))
    assert outcome.success
    assert "onboarding: no responses in 2025-06 (the last in 2025-02, judged then)" in outcome.message
    assert not nps_jump_outcome(stopped).success  # in February, it was judged and flagged


def test_nps_jump_without_previous_month_is_not_judged():
    outcome = nps_jump_outcome(nps_rows({"2025-02-01": (10, 0, 0), "2025-05-01": (0, 0, 10)}))
    assert outcome.success
    assert "no 2025-04 data" in outcome.message


def test_repeat_rate_jump_flagged_beyond_sampling_error_and_not_within():
    frame = pd.DataFrame(
        {
            "period_month": pd.to_datetime(["2025-01-01", "2025-02-01", "2025-03-01", "2025-04-01"]),
            "repeat_n": [1500, 1500, 1500, 12],
            "repeats": [600, 600, 390, 12],
        }
    )
    outcome = repeat_rate_jump_outcome(frame)
    assert not outcome.success
    # April has too few known outcomes (censored), so March is compared with February.
    assert "repeat rate 2025-03: 26.0% (n=1,500) vs 2025-02: 40.0% (n=1,500)" in outcome.message
    small = frame.assign(repeat_n=[40, 40, 40, 12], repeats=[16, 16, 13, 12])
    within = repeat_rate_jump_outcome(small)
    assert within.success and "within sampling error" in within.message


@pytest.mark.parametrize(
    ("x_a", "n_a", "x_b", "n_b"),
    [(390, 1500, 600, 1500), (13, 40, 16, 40), (1, 30, 29, 30), (5, 7, 5, 7), (0, 50, 3, 80),
     (48_211, 101_377, 47_003, 99_812), (2, 1_000_000, 40, 1_000_000)],
)
def test_pooled_two_proportion_p_value_is_statsmodels_proportions_ztest(x_a, n_a, x_b, n_b):
    """The written-out test gives statsmodels' p-value (default arguments) to the last digits, tails included."""
    _, expected = proportions_ztest(np.array([x_a, x_b]), np.array([n_a, n_b]))
    assert pooled_two_proportion_p_value(x_a, n_a, x_b, n_b) == pytest.approx(float(expected), rel=1e-9, abs=1e-300)


def test_pooled_two_proportion_p_value_is_nan_without_variation():
    assert math.isnan(pooled_two_proportion_p_value(0, 10, 0, 20))
    assert math.isnan(pooled_two_proportion_p_value(10, 10, 20, 20))


def customer_months(latest_contacts: dict[str, int], months: int = 8) -> pd.DataFrame:
    rows = []
    for customer, latest in latest_contacts.items():
        for i, month in enumerate(pd.date_range("2024-10-01", periods=months, freq="MS")):
            contacts = latest if i == months - 1 else 4 + (i % 3)
            rows.append({"customer_id": customer, "month": month.date(), "contacts": contacts})
    return pd.DataFrame(rows)


def test_contact_explosion_planted_customer_is_flagged_with_counts():
    frame = customer_months({"C1": 5, "C2": 6, "C3": 400, **{f"N{i}": 5 for i in range(40)}})
    outcome = contact_explosion_outcome(frame)
    assert not outcome.success
    assert "C3: 400 contacts in 2025-05 vs trailing median 5.0" in outcome.message
    assert outcome.severity == ERROR  # 400 of ~620 contacts: the month's exposure is distorted
    assert [f["customer_id"] for f in outcome.details["flagged"]] == ["C3"]


def test_contact_explosion_small_share_is_a_warning():
    frame = customer_months({"C3": 120, **{f"N{i}": 30 for i in range(40)}})
    outcome = contact_explosion_outcome(
        frame.assign(contacts=frame["contacts"].where(frame["customer_id"] == "C3", 30))
    )
    assert not outcome.success and outcome.severity == WARN


def test_contact_explosion_busy_but_small_month_and_steady_key_account_pass():
    frame = customer_months({"C1": 40, "C2": 5})  # 8x but below 50 contacts
    steady = pd.DataFrame(
        {"customer_id": "K1", "month": pd.date_range("2024-10-01", periods=8, freq="MS").date, "contacts": 300}
    )
    outcome = contact_explosion_outcome(pd.concat([frame, steady]))
    assert outcome.success
    assert "3 customers judged" in outcome.message


def test_contact_explosion_new_customer_without_history_is_not_judged():
    frame = customer_months({"C1": 5})
    newcomer = pd.DataFrame({"customer_id": ["NEW"], "month": [date(2025, 5, 1)], "contacts": [500]})
    assert contact_explosion_outcome(pd.concat([frame, newcomer])).success


def _explosion_in_duckdb(frame: pd.DataFrame) -> object:
    con = duckdb.connect()
    con.register("panel", frame)
    totals_sql, flagged_sql = contact_explosion_sql("panel")
    latest = con.execute("select cast(date_trunc('month', max(cast(month as date))) as date) from panel").fetchone()[0]
    _, judged, total = con.execute(totals_sql, [latest]).fetchone()
    flagged = con.execute(flagged_sql, [latest]).df()
    con.close()
    return contact_explosion_from_aggregate(latest, judged, float(total), flagged)


def test_contact_explosion_sql_aggregate_gives_the_pandas_verdict():
    rng = np.random.default_rng(3)
    # Random panels with planted bursts, ties between flagged customers, even-length histories (the
    # median is then a mean of two), customers missing months, and dates inside the month.
    for seed in range(4):
        frame = customer_months({f"C{i}": int(v) for i, v in enumerate(rng.integers(0, 300, 60))})
        frame = frame.sample(frac=0.9, random_state=seed)
        frame["contacts"] = frame["contacts"] + rng.integers(0, 3, len(frame))
        frame.loc[frame.index[:5], "month"] = frame["month"].iloc[:5].map(lambda d: d.replace(day=17))
        pandas_outcome, sql_outcome = contact_explosion_outcome(frame), _explosion_in_duckdb(frame)
        assert not pandas_outcome.success  # bursts were planted: the comparison covers the message
        assert sql_outcome == pandas_outcome
    steady = customer_months({"C1": 5, "C2": 6})
    assert _explosion_in_duckdb(steady) == contact_explosion_outcome(steady)
    assert _explosion_in_duckdb(steady).success
    empty = steady.iloc[0:0]
    assert _explosion_in_duckdb(empty) == contact_explosion_outcome(empty)
    # A burst without the history to judge it: the SQL takes medians only for customers with enough
    # contacts in the latest month, and must still leave this one unjudged.
    newcomer = pd.DataFrame({"customer_id": ["NEW"], "month": [date(2025, 5, 1)], "contacts": [500]})
    with_newcomer = pd.concat([steady, newcomer])
    assert _explosion_in_duckdb(with_newcomer) == contact_explosion_outcome(with_newcomer)
    assert _explosion_in_duckdb(with_newcomer).details["customers_judged"] == 2


def test_months_outcome_blocks_on_any_months_error_and_names_every_failing_month() -> None:
    from quality.marts import ERROR, WARN, MartOutcome, accepted_outcome, months_outcome

    september = MartOutcome("contact_explosion", False, ERROR, "C1: 900 contacts in 2026-09", {"month": "2026-09"})
    october = MartOutcome("contact_explosion", True, WARN, "2026-10: no customer above 5x", {"month": "2026-10"})
    both = months_outcome([september, october])
    assert (both.success, both.severity, both.message) == (False, ERROR, "C1: 900 contacts in 2026-09")
    quiet_september = MartOutcome("contact_explosion", True, WARN, "2026-09: none", {"month": "2026-09"})
    passed = months_outcome([quiet_september, october])
    assert passed.success
    assert passed.message == ("2026-10: no customer above 5x (also judged, with deliveries since the last "
                              "publish: 2026-09)")
    accepted = months_outcome([accepted_outcome(september, "by aiko: a campaign"), october])
    assert (accepted.success, accepted.severity) == (False, WARN)
    assert accepted.message == "accepted (by aiko: a campaign): C1: 900 contacts in 2026-09"
    assert accepted_outcome(october, "by aiko") is october  # nothing to accept
