"""Tests of analysis.tables: each analysis table from small hand-made mart frames."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint

from analysis import tables
from analysis.errors import InsufficientDataError
from analysis.nps import compare_count_arrays, compare_counts, nps_from_counts

CATEGORY_OF_SCORE = {s: "promoter" if s >= 9 else "passive" if s >= 7 else "detractor" for s in range(11)}


def _responses(contacts: list[float], scores: list[int], repeat: list[float | None] | None = None) -> pd.DataFrame:
    """A fct_survey_responses-like frame with categories derived from the scores by the DESIGN rule."""
    return pd.DataFrame(
        {
            "contacts_per_month": contacts,
            "nps_score": scores,
            "nps_category": [CATEGORY_OF_SCORE[s] for s in scores],
            "repeat_after": pd.array(repeat if repeat is not None else [None] * len(scores), dtype="Int64"),
        }
    )


# ---- dose_response --------------------------------------------------------------------------------


def test_dose_response_edge_values_fall_in_bin_that_starts_there() -> None:
    contacts = [0.0, 0.49, 0.5, 0.99, 1.0, 1.99, 2.0, 3.0, 4.0, 5.99, 6.0, 40.0]
    table = tables.dose_response(_responses(contacts, [8] * len(contacts)))
    assert table["bin_label"].tolist() == ["[0, 0.5)", "[0.5, 1)", "[1, 2)", "[2, 3)", "[3, 4)", "[4, 6)", "[6, inf)"]
    assert table["n"].tolist() == [2, 2, 2, 1, 1, 2, 2]


def test_dose_response_bins_ordered_and_open_ended_bin_has_null_high() -> None:
    table = tables.dose_response(_responses([0.2, 7.0], [9, 3]))
    assert table["bin_low"].is_monotonic_increasing
    assert table["bin_high"].iloc[:-1].tolist() == [0.5, 1.0, 2.0, 3.0, 4.0, 6.0]
    assert math.isnan(table["bin_high"].iloc[-1])
    assert list(table.columns) == tables.DOSE_RESPONSE_COLUMNS


def test_dose_response_nps_comes_from_categories_not_scores() -> None:
    # GIVEN a bin whose SQL categories are 3 promoters, 1 passive, 1 detractor, with scores that would
    # bucket differently (the categories are the contract, Python never re-buckets).
    frame = pd.DataFrame(
        {
            "contacts_per_month": [0.1] * 5,
            "nps_score": [0, 0, 0, 10, 10],
            "nps_category": ["promoter", "promoter", "promoter", "passive", "detractor"],
            "repeat_after": pd.array([None] * 5, dtype="Int64"),
        }
    )
    row = tables.dose_response(frame).iloc[0]
    expected = nps_from_counts(promoters=3, passives=1, detractors=1)
    assert row["nps"] == pytest.approx(40.0)
    assert row["nps_ci_low"] == pytest.approx(expected.ci_low)
    assert row["nps_ci_high"] == pytest.approx(expected.ci_high)
    assert row["mean_nps_score"] == pytest.approx(4.0)


def test_dose_response_mean_ci_matches_scipy_t_interval() -> None:
    scores = [2, 5, 6, 7, 9, 10]
    row = tables.dose_response(_responses([1.5] * 6, scores)).iloc[2]
    low, high = stats.t.interval(0.95, df=5, loc=np.mean(scores), scale=stats.sem(scores))
    assert (row["mean_ci_low"], row["mean_ci_high"]) == pytest.approx((low, high))


def test_dose_response_repeat_ci_matches_statsmodels_wilson_and_skips_censored() -> None:
    repeat = [1, 1, 0, None, 1, 0, 0, None, 1, 1]
    row = tables.dose_response(_responses([2.5] * 10, [8] * 10, repeat)).iloc[3]
    assert row["repeat_n"] == 8
    assert row["repeat_rate"] == pytest.approx(5 / 8)
    low, high = proportion_confint(5, 8, alpha=0.05, method="wilson")
    assert (row["repeat_ci_low"], row["repeat_ci_high"]) == pytest.approx((low, high))


def test_dose_response_all_repeats_wilson_upper_end_is_one() -> None:
    row = tables.dose_response(_responses([0.0] * 4, [9] * 4, [1, 1, 1, 1])).iloc[0]
    low, high = proportion_confint(4, 4, alpha=0.05, method="wilson")
    assert row["repeat_ci_high"] == pytest.approx(high) == pytest.approx(1.0)
    assert row["repeat_ci_low"] == pytest.approx(low)


def test_dose_response_small_and_empty_bins_kept_flagged_with_nan() -> None:
    contacts = [0.1] * 30 + [1.5] * 29
    table = tables.dose_response(_responses(contacts, [9] * 59)).set_index("bin_label")
    assert bool(table.at["[0, 0.5)", "small_n"]) is False
    assert bool(table.at["[1, 2)", "small_n"]) is True
    empty = table.loc["[3, 4)"]
    assert empty["n"] == 0 and empty["repeat_n"] == 0 and bool(empty["small_n"])
    assert all(math.isnan(empty[c]) for c in ("mean_nps_score", "mean_ci_low", "nps", "nps_ci_low", "repeat_rate"))


def test_dose_response_single_response_bin_has_estimate_without_interval() -> None:
    row = tables.dose_response(_responses([0.2], [10], [1])).iloc[0]
    assert row["nps"] == 100.0 and row["mean_nps_score"] == 10.0
    assert math.isnan(row["nps_ci_low"]) and math.isnan(row["mean_ci_low"])


def test_dose_response_no_usable_exposure_raises_insufficient_data() -> None:
    with pytest.raises(InsufficientDataError, match="contacts_per_month"):
        tables.dose_response(_responses([float("nan"), float("nan")], [9, 2]))


def test_dose_response_unknown_category_raises() -> None:
    frame = _responses([0.2, 0.3], [9, 2]).assign(nps_category=["promoter", "Detractor"])
    with pytest.raises(ValueError, match="Detractor"):
        tables.dose_response(frame)


def test_dose_response_non_increasing_bins_raise() -> None:
    with pytest.raises(ValueError, match="strictly increasing"):
        tables.dose_response(_responses([0.2], [9]), bins=(0, 2, 1))


def test_dose_response_missing_column_raises_naming_it() -> None:
    with pytest.raises(ValueError, match="repeat_after"):
        tables.dose_response(_responses([0.2], [9]).drop(columns="repeat_after"))


# ---- key_drivers ----------------------------------------------------------------------------------


def _driver_frames(n: int = 200, seed: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Responses whose score is driven mostly by 'responsiveness', less by 'expertise', not by 'billing'."""
    rng = np.random.default_rng(seed)
    items = {name: rng.integers(0, 11, n).astype(float) for name in ("responsiveness", "expertise", "billing")}
    score = np.clip(np.round(0.7 * items["responsiveness"] + 0.3 * items["expertise"] + rng.normal(0, 1, n)), 0, 10)
    ids = [f"r{i}" for i in range(n)]
    long = pd.DataFrame(
        [(rid, name, values[i]) for name, values in items.items() for i, rid in enumerate(ids)],
        columns=["response_id", "driver", "score"],
    )
    return long, pd.DataFrame({"response_id": ids, "nps_score": score})


def test_key_drivers_importance_sums_to_100_and_ranks_planted_order() -> None:
    scores, responses = _driver_frames()
    table = tables.key_drivers(scores, responses)
    assert list(table.columns) == tables.KEY_DRIVERS_COLUMNS
    assert table["driver"].tolist() == ["responsiveness", "expertise", "billing"]
    assert table["rank"].tolist() == [1, 2, 3]
    assert table["importance"].sum() == pytest.approx(100.0)
    # raw weights sum to the R-squared of the OLS fit of the score on the three items.
    wide = scores.pivot(index="response_id", columns="driver", values="score").loc[responses["response_id"]]
    design = np.column_stack([np.ones(len(wide)), wide[["responsiveness", "expertise", "billing"]]])
    fitted = design @ np.linalg.lstsq(design, responses["nps_score"].to_numpy(), rcond=None)[0]
    r_squared = 1 - np.var(responses["nps_score"] - fitted) / np.var(responses["nps_score"])
    assert table["raw_weight"].sum() == pytest.approx(r_squared, rel=1e-6)
    assert table["n"].tolist() == [200, 200, 200]
    assert table["n_fit"].tolist() == [200, 200, 200]
    assert table["excluded_reason"].isna().all()


def test_key_drivers_mean_score_and_n_count_every_rating_response() -> None:
    scores, responses = _driver_frames()
    table = tables.key_drivers(scores, responses).set_index("driver")
    expected = scores.groupby("driver")["score"].mean()
    assert table["mean_score"].to_dict() == pytest.approx(expected.to_dict())


def test_key_drivers_partially_rated_driver_fits_on_complete_cases() -> None:
    # GIVEN 'billing' is rated on only the first 120 of 200 responses (e.g. a shorter survey form)
    scores, responses = _driver_frames()
    rated_rows = scores["response_id"].str[1:].astype(int) < 120
    scores = scores.loc[(scores["driver"] != "billing") | rated_rows]
    table = tables.key_drivers(scores, responses).set_index("driver")
    assert table.at["billing", "n"] == 120
    assert table["n_fit"].tolist() == [120, 120, 120]
    assert table["importance"].sum() == pytest.approx(100.0)


def test_key_drivers_rarely_rated_driver_excluded_with_reason() -> None:
    scores, responses = _driver_frames()
    few = pd.DataFrame({"response_id": [f"r{i}" for i in range(10)], "driver": "onboarding", "score": range(10)})
    table = tables.key_drivers(pd.concat([scores, few]), responses, min_n=50).set_index("driver")
    assert table.index[-1] == "onboarding"
    assert table.at["onboarding", "n"] == 10
    assert "min_n=50" in table.at["onboarding", "excluded_reason"]
    assert pd.isna(table.at["onboarding", "importance"]) and pd.isna(table.at["onboarding", "rank"])
    assert table["n_fit"].dropna().tolist() == [200, 200, 200]


def test_key_drivers_constant_driver_excluded_with_reason() -> None:
    scores, responses = _driver_frames()
    constant = pd.DataFrame({"response_id": responses["response_id"], "driver": "website", "score": 7.0})
    table = tables.key_drivers(pd.concat([scores, constant]), responses).set_index("driver")
    assert "constant" in table.at["website", "excluded_reason"]
    assert table.at["website", "mean_score"] == 7.0
    assert pd.isna(table.at["website", "improve_priority"])
    assert table["importance"].sum() == pytest.approx(100.0)


def test_key_drivers_duplicated_item_excluded_as_collinear() -> None:
    # GIVEN the same question delivered under a second name: the two items are perfectly collinear.
    scores, responses = _driver_frames()
    copy = scores.loc[scores["driver"] == "expertise"].assign(driver="expertise_v2")
    table = tables.key_drivers(pd.concat([scores, copy]), responses).set_index("driver")
    assert "collinear" in table.at["expertise_v2", "excluded_reason"]
    assert table["importance"].sum() == pytest.approx(100.0)
    assert table["rank"].dropna().tolist() == [1, 2, 3]


def test_key_drivers_item_on_a_few_responses_does_not_shrink_the_fit_of_the_others() -> None:
    # GIVEN 2,000 responses rate three items, and a pilot question was asked on only 60 of them
    scores, responses = _driver_frames(n=2000)
    pilot = pd.DataFrame({"response_id": [f"r{i}" for i in range(60)], "driver": "pilot_item",
                          "score": np.arange(60) % 11})
    # WHEN key drivers are fitted with the default min_n=50 (the pilot item has 60 ratings, enough alone)
    table = tables.key_drivers(pd.concat([scores, pilot]), responses).set_index("driver")
    # THEN the three items stay fitted on all 2,000 responses, and the pilot item is left out, saying why
    assert table["n_fit"].dropna().tolist() == [2000, 2000, 2000]
    assert table.loc[["responsiveness", "expertise", "billing"], "rank"].tolist() == [1, 2, 3]
    assert table.at["pilot_item", "excluded_rule"] == "shrinks_fit"
    assert table.at["pilot_item", "excluded_reason"] == (
        "only 60 responses rate it together with the drivers already fitted (billing, expertise, responsiveness), "
        "fewer than min_fit_share=0.25 of the 2000 responses that rate billing; fitting it would rest every weight "
        "on those 60")
    assert table.at["pilot_item", "n"] == 60 and pd.isna(table.at["pilot_item", "importance"])
    # AND with min_fit_share=0 the pilot item joins, and every weight then rests on its 60 responses
    shrunk = tables.key_drivers(pd.concat([scores, pilot]), responses, min_fit_share=0.0)
    assert shrunk["n_fit"].dropna().tolist() == [60, 60, 60, 60]


def test_key_drivers_items_joining_one_after_another_cannot_shrink_the_fit_again_and_again() -> None:
    # GIVEN 1,000 responses: three items rated on all, 'c' on 400 of them, 'd' on 200 of those 400
    scores, responses = _driver_frames(n=1000)
    rng = np.random.default_rng(5)
    extra = pd.concat([
        pd.DataFrame({"response_id": [f"r{i}" for i in range(400)], "driver": "c", "score": rng.integers(0, 11, 400)}),
        pd.DataFrame({"response_id": [f"r{i}" for i in range(200)], "driver": "d", "score": rng.integers(0, 11, 200)}),
    ])
    table = tables.key_drivers(pd.concat([scores, extra]), responses).set_index("driver")
    # THEN 'c' joins (400 >= a quarter of 1,000) and 'd' does not (200 < 250), though 200 is half of 400
    assert table["n_fit"].dropna().unique().tolist() == [400]
    assert pd.notna(table.at["c", "rank"]) and table.at["d", "excluded_rule"] == "shrinks_fit"


def test_key_drivers_items_one_survey_form_asks_are_ranked_on_its_responses() -> None:
    # GIVEN 6,000 responses rate three items and 2,000 of them (a relational form) also rate 'value'
    # THEN 'value' joins though the fit falls to a third of the responses (the demo's survey design)
    scores, responses = _driver_frames(n=6000)
    rng = np.random.default_rng(9)
    value = pd.DataFrame({"response_id": [f"r{i}" for i in range(2000)], "driver": "value",
                          "score": rng.integers(0, 11, 2000)})
    table = tables.key_drivers(pd.concat([scores, value]), responses).set_index("driver")
    assert table["n_fit"].dropna().unique().tolist() == [2000] and pd.notna(table.at["value", "rank"])


def test_key_drivers_item_never_asked_with_the_fitted_ones_says_no_response_rates_them_together() -> None:
    # GIVEN a transactional survey asks 'billing_accuracy' alone, on responses that rate nothing else
    scores, responses = _driver_frames()
    billing_ids = [f"b{i}" for i in range(80)]
    billing = pd.DataFrame({"response_id": billing_ids, "driver": "billing_accuracy", "score": np.arange(80) % 11})
    more = pd.DataFrame({"response_id": billing_ids, "nps_score": np.arange(80) % 11})
    table = tables.key_drivers(pd.concat([scores, billing]), pd.concat([responses, more])).set_index("driver")
    assert table.at["billing_accuracy", "excluded_rule"] == "not_rated_together"
    assert table.at["billing_accuracy", "excluded_reason"].startswith("no responses rate it together with")
    assert table.at["billing_accuracy", "n"] == 80


def test_key_drivers_every_excluded_item_names_its_rule_and_a_fitted_one_none() -> None:
    scores, responses = _driver_frames()
    few = pd.DataFrame({"response_id": [f"r{i}" for i in range(10)], "driver": "onboarding", "score": range(10)})
    constant = pd.DataFrame({"response_id": responses["response_id"], "driver": "website", "score": 7.0})
    copy = scores.loc[scores["driver"] == "expertise"].assign(driver="expertise_v2")
    table = tables.key_drivers(pd.concat([scores, few, constant, copy]), responses).set_index("driver")
    assert table.loc[["responsiveness", "expertise", "billing"], "excluded_rule"].isna().all()
    assert table["excluded_rule"].dropna().to_dict() == {
        "expertise_v2": "collinear", "onboarding": "too_few_ratings", "website": "constant",
    }
    assert set(table["excluded_rule"].dropna()) <= set(tables.KEY_DRIVER_EXCLUSIONS)


@pytest.mark.parametrize("share", [-0.1, 1.5])
def test_key_drivers_min_fit_share_outside_0_1_raises(share: float) -> None:
    scores, responses = _driver_frames()
    with pytest.raises(ValueError, match="min_fit_share"):
        tables.key_drivers(scores, responses, min_fit_share=share)


def test_key_drivers_constant_outcome_raises_insufficient_data() -> None:
    scores, responses = _driver_frames()
    with pytest.raises(InsufficientDataError, match="nps_score"):
        tables.key_drivers(scores, responses.assign(nps_score=8))


def test_key_drivers_improve_priority_puts_important_low_rated_first(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN fixed importances (the rule under test is the importance x performance ordering)
    importance = {"a": 40.0, "b": 30.0, "c": 20.0, "d": 6.0, "e": 2.0, "f": 1.0, "g": 1.0}
    mean_scores = {"a": 9.5, "b": 4.0, "c": 3.0, "d": 2.0, "e": 1.0, "f": 5.0, "g": 5.0}

    def fake_weights(moments: object, drivers: list[str], *, outcome: str) -> pd.DataFrame:
        rescaled = pd.Series({d: importance[d] for d in drivers})
        return pd.DataFrame({"raw_weight": rescaled / 200, "rescaled": rescaled})

    monkeypatch.setattr(tables, "relative_weights_from_moments", fake_weights)
    ids = [f"r{i}" for i in range(60)]
    # Scores alternate mean - 0.5 / mean + 0.5, so each driver's mean is exact and it is not constant.
    scores = pd.DataFrame(
        [(rid, d, m + (0.5 if i % 2 else -0.5)) for d, m in mean_scores.items() for i, rid in enumerate(ids)],
        columns=["response_id", "driver", "score"],
    )
    responses = pd.DataFrame({"response_id": ids, "nps_score": [i % 11 for i in range(60)]})
    table = tables.key_drivers(scores, responses).set_index("driver")
    # opportunity = importance x (10 - mean) / 10: a 2.0, b 18, c 14, d 4.8, e 1.8, f 0.5, g 0.5,
    # so the most important driver, already rated 9.5, comes after three weaker but poorly rated ones.
    assert table["improve_priority"].dropna().to_dict() == {"a": 4, "b": 1, "c": 2, "d": 3, "e": 5}
    assert table.loc[["f", "g"], "improve_priority"].isna().all()
    assert table.loc[["a", "b", "c"], "rank"].tolist() == [1, 2, 3]


def test_key_drivers_no_driver_with_enough_ratings_raises_insufficient_data() -> None:
    scores, responses = _driver_frames(n=30)
    with pytest.raises(InsufficientDataError, match="min_n=50"):
        tables.key_drivers(scores, responses, min_n=50)


def test_key_drivers_duplicate_rating_raises() -> None:
    scores, responses = _driver_frames()
    with pytest.raises(ValueError, match="duplicate"):
        tables.key_drivers(pd.concat([scores, scores.head(1)]), responses)


def test_key_drivers_score_outside_scale_raises() -> None:
    scores, responses = _driver_frames()
    scores.loc[0, "score"] = 11
    with pytest.raises(ValueError, match=r"within 0\.\.10"):
        tables.key_drivers(scores, responses)


# ---- nps_revenue ----------------------------------------------------------------------------------


def _revenue_responses() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": ["c1", "c1", "c2", "c3", "c4", "c5"],
            "responded_at": pd.to_datetime(
                ["2025-01-03", "2025-02-03", "2025-01-10", "2025-01-11", "2025-01-12", "2025-01-13"]
            ),
            "month": pd.to_datetime(
                ["2025-01-01", "2025-02-01", "2025-01-01", "2025-01-01", "2025-01-01", "2025-01-01"]
            ),
            "nps_category": ["promoter", "promoter", "promoter", "passive", "detractor", "detractor"],
            "nps_score": [10, 9, 9, 8, 3, 5],
            "segment": ["smb"] * 6,
            "revenue_next_365d": [100.0, 300.0, 50.0, None, 0.0, 40.0],
        }
    )


def _empty_months() -> pd.DataFrame:
    return pd.DataFrame({"customer_id": [], "month": pd.to_datetime([]), "revenue": [], "segment": []})


def test_nps_revenue_category_rows_hand_computed() -> None:
    table = tables.nps_revenue(_revenue_responses(), _empty_months()).set_index("category")
    assert list(table.reset_index().columns) == tables.NPS_REVENUE_COLUMNS
    assert table.loc["promoter", ["customers", "responses", "revenue_responses"]].tolist() == [2, 3, 3]
    assert table.at["promoter", "revenue_after"] == 450.0
    assert table.at["promoter", "revenue_after_mean"] == 150.0
    # The passive's revenue is unknown: counted as a response, left out of the revenue figures.
    assert table.loc["passive", ["customers", "responses", "revenue_responses"]].tolist() == [1, 1, 0]
    assert math.isnan(table.at["passive", "revenue_after"]) and math.isnan(table.at["passive", "revenue_after_mean"])
    assert table.at["detractor", "revenue_after_mean"] == 20.0


def test_nps_revenue_mean_interval_is_statsmodels_cluster_robust_by_customer() -> None:
    """Before, the means had no interval: a promoter-detractor gap within noise read as a finding."""
    import statsmodels.api as sm

    rng = np.random.default_rng(5)
    customers = np.repeat([f"c{i}" for i in range(60)], rng.integers(1, 5, 60))
    level = dict(zip(np.unique(customers), rng.gamma(2.0, 5000.0, 60), strict=True))
    revenue = np.array([level[c] for c in customers]) * rng.gamma(4.0, 0.25, len(customers))
    responses = pd.DataFrame({
        "customer_id": customers, "nps_category": "promoter", "segment": "smb",
        "month": pd.Timestamp("2025-01-01"), "revenue_next_365d": revenue,
    })
    responses.loc[3, "revenue_next_365d"] = np.nan  # an open window: out of the mean and of its interval
    table = tables.nps_revenue(responses, _empty_months()).set_index("category")
    known = responses.dropna(subset=["revenue_next_365d"])
    fit = sm.OLS(known["revenue_next_365d"].to_numpy(), np.ones(len(known))).fit(
        cov_type="cluster", cov_kwds={"groups": pd.factorize(known["customer_id"])[0]}, use_t=True)
    assert table.at["promoter", "revenue_after_mean"] == pytest.approx(fit.params[0], rel=1e-12)
    low, high = fit.conf_int()[0]
    assert table.at["promoter", "revenue_after_mean_ci_low"] == pytest.approx(low, rel=1e-9)
    assert table.at["promoter", "revenue_after_mean_ci_high"] == pytest.approx(high, rel=1e-9)
    # Wider than the plain interval that takes every response as an independent draw.
    plain = sm.OLS(known["revenue_next_365d"].to_numpy(), np.ones(len(known))).fit().conf_int()[0]
    assert high - low > plain[1] - plain[0]


def test_nps_revenue_mean_interval_needs_two_customers_with_a_known_revenue() -> None:
    table = tables.nps_revenue(_revenue_responses(), _empty_months()).set_index("category")
    # Promoters: c1 (100, 300) and c2 (50); detractors c4 and c5; the passive's revenue is unknown.
    low, high = table.loc["promoter", ["revenue_after_mean_ci_low", "revenue_after_mean_ci_high"]]
    assert low < 150.0 < high
    assert math.isnan(table.at["passive", "revenue_after_mean_ci_low"])
    one = _revenue_responses().query("customer_id == 'c1'")
    alone = tables.nps_revenue(one, _empty_months()).set_index("category")
    assert alone.at["promoter", "revenue_after_mean"] == 200.0
    assert math.isnan(alone.at["promoter", "revenue_after_mean_ci_low"])


def test_nps_revenue_too_few_cells_gives_null_correlation_with_note() -> None:
    table = tables.nps_revenue(_revenue_responses(), _empty_months(), min_cell_responses=1).set_index("category")
    row = table.loc[tables.CORRELATION_CATEGORY]
    assert row["n_cells"] == 0
    assert math.isnan(row["corr"]) and math.isnan(row["corr_ci_low"])
    assert "at least 4" in row["note"]
    assert table["note"].drop(tables.CORRELATION_CATEGORY).isna().all()


def _cell_frames(cell_nps_mix: list[tuple[int, int, int]], revenue_per_customer: list[float],
                 segment: str = "smb") -> tuple:
    """One segment, month i: responses with the given (promoters, passives, detractors) mix, and two
    customers whose revenue averages revenue_per_customer[i]."""
    responses, months = [], []
    for i, ((p, m, d), revenue) in enumerate(zip(cell_nps_mix, revenue_per_customer, strict=True)):
        month = pd.Timestamp(2024, 11, 1) + pd.DateOffset(months=i)  # crosses the year boundary
        for k, category in enumerate(["promoter"] * p + ["passive"] * m + ["detractor"] * d):
            responses.append((f"{segment}-c{k}", month, category, 8, segment, 0.0))
        months += [(f"{segment}-m1", month, revenue * 0.5, segment), (f"{segment}-m2", month, revenue * 1.5, segment)]
    response_frame = pd.DataFrame(
        responses, columns=["customer_id", "month", "nps_category", "nps_score", "segment", "revenue_next_365d"]
    )
    return response_frame, pd.DataFrame(months, columns=["customer_id", "month", "revenue", "segment"])


def test_nps_revenue_correlation_matches_scipy_with_fisher_interval() -> None:
    mixes = [(5, 3, 2), (2, 3, 5), (6, 2, 2), (4, 4, 2), (3, 3, 4), (7, 1, 2)]
    revenue = [120.0, 80.0, 150.0, 100.0, 95.0, 140.0]
    responses, months = _cell_frames(mixes, revenue)
    row = (
        tables.nps_revenue(responses, months, min_cell_responses=10)
        .set_index("category")
        .loc[tables.CORRELATION_CATEGORY]
    )
    cell_nps = [100 * (p - d) / (p + m + d) for p, m, d in mixes]
    r = stats.pearsonr(cell_nps, revenue).statistic
    z, half = math.atanh(r), 1.959963984540054 / math.sqrt(6 - 3)
    assert row["n_cells"] == 6
    assert row["corr"] == pytest.approx(r)
    assert (row["corr_ci_low"], row["corr_ci_high"]) == pytest.approx((math.tanh(z - half), math.tanh(z + half)))
    assert pd.isna(row["note"])


def test_nps_revenue_within_segment_correlation_separates_segments_from_months() -> None:
    """Enterprise out-scores and out-spends small business, yet within each, a better month sells less."""
    import statsmodels.api as sm
    # GIVEN two segments far apart on both axes, and inside each NPS and revenue moving against each other
    smb = _cell_frames([(3, 3, 4), (4, 3, 3), (5, 3, 2), (6, 2, 2)], [110.0, 100.0, 90.0, 85.0], "smb")
    ent = _cell_frames([(6, 2, 2), (7, 2, 1), (8, 1, 1), (9, 1, 0)], [420.0, 400.0, 395.0, 370.0], "ent")
    responses, months = (pd.concat([a, b], ignore_index=True) for a, b in zip(smb, ent, strict=True))
    # WHEN the table is built
    row = tables.nps_revenue(responses, months, min_cell_responses=10).set_index("category").loc[
        tables.CORRELATION_CATEGORY]
    # THEN the pooled correlation is strongly positive, the within-segment one negative
    assert row["corr"] > 0.7
    # AND the within one is the partial correlation given segment dummies (from the OLS t statistic)
    nps = np.array([100 * (p - d) / 10 for p, _, d in
                    [(3, 3, 4), (4, 3, 3), (5, 3, 2), (6, 2, 2), (6, 2, 2), (7, 2, 1), (8, 1, 1), (9, 1, 0)]])
    revenue = np.array([110.0, 100.0, 90.0, 85.0, 420.0, 400.0, 395.0, 370.0])
    design = np.column_stack([nps, np.ones(8), np.repeat([0.0, 1.0], 4)])
    fit = sm.OLS(revenue, design).fit()
    partial = fit.tvalues[0] / math.sqrt(fit.tvalues[0] ** 2 + fit.df_resid)
    assert row["corr_within_segment"] == pytest.approx(partial, rel=1e-9) and partial < -0.8
    z, half = math.atanh(partial), 1.959963984540054 / math.sqrt(8 - 3 - 1)
    assert (row["corr_within_segment_ci_low"], row["corr_within_segment_ci_high"]) == pytest.approx(
        (math.tanh(z - half), math.tanh(z + half)))
    assert (row["n_cells"], row["n_segments"]) == (8, 2)


def test_nps_revenue_within_segment_correlation_null_when_no_segment_has_two_months() -> None:
    frames = [_cell_frames([mix], [revenue], segment) for mix, revenue, segment in
              [((5, 3, 2), 120.0, "a"), ((2, 3, 5), 80.0, "b"), ((6, 2, 2), 150.0, "c"), ((4, 4, 2), 100.0, "d")]]
    responses = pd.concat([f[0] for f in frames], ignore_index=True)
    months = pd.concat([f[1] for f in frames], ignore_index=True)
    row = tables.nps_revenue(responses, months, min_cell_responses=10).set_index("category").loc[
        tables.CORRELATION_CATEGORY]
    assert not math.isnan(row["corr"]) and math.isnan(row["corr_within_segment"]) and row["n_segments"] == 4


def test_nps_revenue_cells_below_min_responses_left_out() -> None:
    mixes = [(5, 3, 2), (2, 3, 5), (6, 2, 2), (4, 4, 2), (1, 0, 1)]
    responses, months = _cell_frames(mixes, [120.0, 80.0, 150.0, 100.0, 10.0])
    row = (
        tables.nps_revenue(responses, months, min_cell_responses=10)
        .set_index("category")
        .loc[tables.CORRELATION_CATEGORY]
    )
    assert row["n_cells"] == 4
    assert row["corr"] == pytest.approx(stats.pearsonr([30, -30, 40, 20], [120, 80, 150, 100]).statistic)


def test_nps_revenue_no_responses_raises_insufficient_data() -> None:
    with pytest.raises(InsufficientDataError):
        tables.nps_revenue(_revenue_responses().head(0), _empty_months())


# ---- nps_changes ----------------------------------------------------------------------------------


def _period_rows(rows: list[tuple[str, str, str | None, tuple[int, int, int]]]) -> pd.DataFrame:
    """nps_by_period rows from (period_month, dimension, dimension_value, (promoters, passives, detractors))."""
    records = []
    for month, dimension, value, (p, m, d) in rows:
        estimate = nps_from_counts(promoters=p, passives=m, detractors=d)
        records.append(
            {
                "period_month": pd.Timestamp(month).date(),
                "survey_type": "relational",
                "dimension": dimension,
                "dimension_value": value,
                "responses": p + m + d,
                "promoters": p,
                "passives": m,
                "detractors": d,
                "nps": estimate.nps,
                "nps_moe95": estimate.moe95,
            }
        )
    return pd.DataFrame(records)


def test_nps_changes_january_compared_with_previous_december() -> None:
    frame = _period_rows(
        [("2024-12-01", "segment", "smb", (40, 30, 30)), ("2025-01-01", "segment", "smb", (50, 30, 20))]
    )
    table = tables.nps_changes(frame)
    assert list(table.columns) == tables.NPS_CHANGES_COLUMNS
    january = table.iloc[1]
    expected = compare_counts((50, 30, 20), (40, 30, 30))
    assert (january["nps"], january["prev_nps"]) == pytest.approx((30.0, 10.0))
    assert january["diff"] == pytest.approx(expected.diff)
    # The test pools the two months' shares (no change): promoters 90/200, detractors 50/200.
    p, d = 90 / 200, 50 / 200
    z = 20.0 / (100 * math.sqrt((p + d - (p - d) ** 2) * (1 / 100 + 1 / 100)))
    assert january["p_value"] == pytest.approx(math.erfc(z / math.sqrt(2)))
    assert january["period_month"] == pd.Timestamp("2025-01-01").date()


def test_nps_changes_a_tiny_unanimous_month_is_no_discovery_and_a_full_swing_is() -> None:
    frame = _period_rows(
        [
            ("2025-01-01", "segment", "tiny", (2, 0, 0)),
            ("2025-02-01", "segment", "tiny", (90, 10, 0)),  # Wald: p 0.0009 from two promoters
            ("2025-01-01", "segment", "swing", (30, 0, 0)),
            ("2025-02-01", "segment", "swing", (0, 0, 30)),  # Wald: no test at all (both s.e. 0)
        ]
    )
    table = tables.nps_changes(frame)
    february = table[table["period_month"] == pd.Timestamp("2025-02-01").date()].set_index("dimension_value")
    assert february.loc["tiny", "p_value"] > 0.5 and not february.loc["tiny", "is_significant"]
    assert february.loc["swing", "p_value"] < 1e-10 and february.loc["swing", "is_significant"]


def test_nps_changes_test_keeps_its_level_when_one_month_is_tiny() -> None:
    # Nothing changed: both months drawn from one mix. A level-0.05 test rejects about 5% of the time.
    rng = np.random.default_rng(0)
    mix = [0.5, 0.3, 0.2]
    small, large = rng.multinomial(3, mix, size=4000), rng.multinomial(200, mix, size=4000)
    test = compare_count_arrays(*large.T, *small.T, pooled=True)
    assert (test["p_value"] < 0.05).mean() < 0.07
    wald = compare_count_arrays(*large.T, *small.T)
    assert (wald["p_value"] < 0.05).mean() > 0.2  # what the cells of nps_changes had before


def test_nps_changes_missing_previous_month_gives_null_and_not_significant() -> None:
    # November is missing, so December has no previous month; a gap of two months is not "previous".
    frame = _period_rows([("2024-10-01", "segment", "smb", (90, 5, 5)), ("2024-12-01", "segment", "smb", (5, 5, 90))])
    december = tables.nps_changes(frame).iloc[1]
    assert all(pd.isna(december[c]) for c in ("prev_nps", "diff", "p_value", "p_value_bh"))
    assert not december["is_significant"]


def test_nps_changes_matches_only_the_same_cell() -> None:
    frame = _period_rows(
        [
            ("2025-01-01", "segment", "smb", (10, 10, 10)),
            ("2025-02-01", "segment", "enterprise", (20, 5, 5)),
            ("2025-02-01", "segment", "smb", (12, 10, 8)),
        ]
    )
    table = tables.nps_changes(frame)
    assert pd.isna(table.iloc[1]["prev_nps"])
    assert table.iloc[2]["diff"] == pytest.approx(compare_counts((12, 10, 8), (10, 10, 10)).diff)


def test_nps_changes_null_dimension_value_matched_across_months() -> None:
    frame = _period_rows([("2025-01-01", "overall", None, (10, 10, 10)), ("2025-02-01", "overall", None, (20, 5, 5))])
    february = tables.nps_changes(frame).iloc[1]
    assert february["prev_nps"] == pytest.approx(0.0)
    assert pd.isna(february["dimension_value"])


def test_nps_changes_bh_adjustment_matches_statsmodels_and_drives_significance() -> None:
    mixes = [
        ((60, 20, 20), (40, 20, 40)),
        ((55, 24, 21), (40, 30, 30)),
        ((40, 30, 30), (39, 30, 31)),
        ((47, 29, 24), (40, 30, 30)),
    ]
    rows = []
    for i, (current, previous) in enumerate(mixes):
        rows += [("2025-03-01", "touchpoint", f"t{i}", previous), ("2025-04-01", "touchpoint", f"t{i}", current)]
    table = tables.nps_changes(_period_rows(rows))
    april = table.loc[table["period_month"] == pd.Timestamp("2025-04-01").date()]
    reject, adjusted, _, _ = multipletests(april["p_value"], alpha=0.05, method="fdr_bh")
    assert april["p_value_bh"].to_numpy() == pytest.approx(adjusted)
    assert april["is_significant"].tolist() == reject.tolist()
    # The case the adjustment exists for: a raw p below alpha that is not a discovery after BH.
    assert ((april["p_value"] < 0.05) & ~april["is_significant"]).any()


def test_nps_changes_bh_family_is_one_month() -> None:
    base = [("2025-03-01", "segment", "smb", (40, 30, 30)), ("2025-04-01", "segment", "smb", (52, 24, 24))]
    alone = tables.nps_changes(_period_rows(base))
    extra = [("2025-04-01", "segment", "ent", (40, 30, 30)), ("2025-05-01", "segment", "ent", (41, 30, 29))]
    with_other_month = tables.nps_changes(_period_rows(base + extra))
    assert with_other_month.iloc[1]["p_value_bh"] == pytest.approx(alone.iloc[1]["p_value_bh"])
    assert alone.iloc[1]["p_value_bh"] == pytest.approx(alone.iloc[1]["p_value"])


def test_nps_changes_counts_not_adding_up_raise() -> None:
    frame = _period_rows([("2025-01-01", "segment", "smb", (10, 10, 10))]).assign(responses=31)
    with pytest.raises(ValueError, match="differs from responses"):
        tables.nps_changes(frame)


def test_nps_changes_duplicate_cell_raises() -> None:
    row = ("2025-01-01", "segment", "smb", (10, 10, 10))
    with pytest.raises(ValueError, match="duplicate"):
        tables.nps_changes(_period_rows([row, row]))


def test_nps_changes_mid_month_period_raises() -> None:
    with pytest.raises(ValueError, match="first day of a month"):
        tables.nps_changes(_period_rows([("2025-01-15", "segment", "smb", (10, 10, 10))]))


def test_nps_changes_empty_frame_raises_insufficient_data() -> None:
    with pytest.raises(InsufficientDataError):
        tables.nps_changes(
            _period_rows([]).reindex(
                columns=[
                    "period_month",
                    "survey_type",
                    "dimension",
                    "dimension_value",
                    "responses",
                    "promoters",
                    "passives",
                    "detractors",
                ]
            )
        )


def test_benjamini_hochberg_ignores_nan_and_matches_statsmodels() -> None:
    p = np.array([0.01, np.nan, 0.04, 0.03, 0.5, 0.002])
    adjusted = tables.benjamini_hochberg(p)
    assert np.isnan(adjusted[1])
    expected = multipletests(p[~np.isnan(p)], method="fdr_bh")[1]
    assert adjusted[~np.isnan(p)] == pytest.approx(expected)


# ---- contact_timing and handoff -------------------------------------------------------------------


def _bin_responses(customer_ids: list[str], categories: list[str], repeat: list[float | None]) -> pd.DataFrame:
    return pd.DataFrame(
        {"customer_id": customer_ids, "nps_category": categories, "repeat_after": pd.array(repeat, dtype="Int64")}
    )


def test_contact_timing_bins_counts_and_outcomes_hand_computed() -> None:
    customers = pd.DataFrame(
        {
            "customer_id": ["a", "b", "c", "d", "e", "f"],
            "outbound_contacts_first_7d": pd.array([0, 0, 1, 3, 7, None], dtype="Int64"),
        }
    )
    responses = _bin_responses(
        ["a", "a", "b", "c", "d", "e", "e", "f", "zz"],
        ["promoter", "detractor", "passive", "promoter", "promoter", "promoter", "passive", "promoter", "promoter"],
        [1, 0, None, 1, 1, 0, 1, 1, 1],
    )
    table = tables.contact_timing(customers, responses)
    assert list(table.columns) == tables.BIN_OUTCOME_COLUMNS
    assert table["bin_label"].tolist() == ["0", "1", "2", "3+"]
    assert table["customers"].tolist() == [2, 1, 0, 2]
    # 'f' has no first order and 'zz' is not a known customer: neither counts anywhere.
    assert table["responses"].tolist() == [3, 1, 0, 3]
    zero = table.iloc[0]
    assert zero["nps"] == pytest.approx(0.0)
    assert zero["nps_moe95"] == pytest.approx(nps_from_counts(promoters=1, passives=1, detractors=1).moe95)
    assert (zero["repeat_n"], zero["repeat_rate"]) == (2, 0.5)
    # Wilson on the 2 known outcomes, 1 repeat: 0.5 +- 1.96 sqrt(0.25/2 + 1.96^2/16) / (1 + 1.96^2/2)
    z = 1.959963984540054
    half = z * math.sqrt(0.25 / 2 + z**2 / 16) / (1 + z**2 / 2)
    assert (zero["repeat_ci_low"], zero["repeat_ci_high"]) == (pytest.approx(0.5 - half), pytest.approx(0.5 + half))
    assert math.isnan(table.iloc[2]["repeat_ci_low"]) and math.isnan(table.iloc[2]["repeat_ci_high"])
    assert table.iloc[3]["nps"] == pytest.approx(200 / 3)
    assert table.iloc[3]["repeat_rate"] == pytest.approx(2 / 3)
    assert math.isnan(table.iloc[2]["nps"]) and math.isnan(table.iloc[2]["repeat_rate"])
    assert math.isnan(table.iloc[1]["nps_moe95"])


def test_contact_timing_no_first_orders_raises_insufficient_data() -> None:
    customers = pd.DataFrame({"customer_id": ["a"], "outbound_contacts_first_7d": pd.array([None], dtype="Int64")})
    with pytest.raises(InsufficientDataError):
        tables.contact_timing(customers, _bin_responses(["a"], ["promoter"], [1]))


def test_contact_timing_negative_contacts_raise() -> None:
    customers = pd.DataFrame({"customer_id": ["a"], "outbound_contacts_first_7d": [-1]})
    with pytest.raises(ValueError, match="non-negative"):
        tables.contact_timing(customers, _bin_responses(["a"], ["promoter"], [1]))


def test_handoff_bin_edges_are_inclusive_upper_days() -> None:
    days = [-0.5, 7.0, 7.01, 14.0, 14.5, 30.0, 60.0, 60.01, None]
    customers = pd.DataFrame({"customer_id": [f"c{i}" for i in range(len(days))], "handoff_days": days})
    responses = _bin_responses(list(customers["customer_id"]), ["promoter"] * len(days), [1] * len(days))
    table = tables.handoff(customers, responses)
    assert table["bin_label"].tolist() == ["<=7 d", "8-14 d", "15-30 d", "31-60 d", ">60 d", "never"]
    assert table["customers"].tolist() == [2, 2, 2, 1, 1, 1]
    assert table["responses"].tolist() == [2, 2, 2, 1, 1, 1]


def test_handoff_duplicate_customer_raises() -> None:
    customers = pd.DataFrame({"customer_id": ["a", "a"], "handoff_days": [1.0, 2.0]})
    with pytest.raises(ValueError, match="duplicate"):
        tables.handoff(customers, _bin_responses(["a"], ["promoter"], [1]))


def test_bin_tables_refuse_unknown_categories_and_repeat_values_of_binned_customers_only() -> None:
    customers = pd.DataFrame({"customer_id": ["a", "b"],
                              "outbound_contacts_first_7d": pd.array([1, None], dtype="Int64")})
    with pytest.raises(ValueError, match="outside"):
        tables.contact_timing(customers, _bin_responses(["a", "a"], ["promoter", "bogus"], [1, 0]))
    with pytest.raises(ValueError, match="outside"):
        tables.contact_timing(customers, _bin_responses(["a"], [None], [1]))
    with pytest.raises(ValueError, match="must be 0, 1 or NULL"):
        tables.contact_timing(customers, _bin_responses(["a"], ["promoter"], [2]))
    # 'b' has no first week, so its responses are in no bin and not judged.
    table = tables.contact_timing(customers, _bin_responses(["a", "b"], ["promoter", "bogus"], [1, 2]))
    assert table["responses"].tolist() == [0, 1, 0, 0]


def test_bin_tables_take_response_counts_per_customer_as_the_rows_give_them() -> None:
    customers = pd.DataFrame({"customer_id": ["a", "b", "c", "d"], "handoff_days": [3.0, 20.0, None, 9.0]})
    responses = _bin_responses(["a", "a", "b", "c", "c", "zz"],
                               ["promoter", "detractor", "passive", "promoter", "promoter", "detractor"],
                               [1, None, 0, 1, 1, 0])
    counts = tables.customer_response_counts(responses)
    assert counts.set_index("customer_id").loc["a"].to_dict() == {
        "promoters": 1, "passives": 0, "detractors": 1, "other_categories": 0,
        "repeat_n": 1, "repeats": 1.0, "other_repeats": 0,
    }
    with_counts = customers.merge(counts, on="customer_id", how="left").fillna(
        {c: 0 for c in tables.CUSTOMER_RESPONSE_COUNTS})
    pd.testing.assert_frame_equal(tables.handoff(with_counts), tables.handoff(customers, responses))
    with pytest.raises(ValueError, match="promoters"):
        tables.handoff(customers)


# ---- link_effects_table ---------------------------------------------------------------------------


def _fake_link_result(n_clusters: int | None) -> SimpleNamespace:
    effects = pd.DataFrame(
        {
            "estimate": [0.8, 0.02, 0.01, 0.016, 0.026, 0.6],
            "ci_low": [0.5, 0.01, -0.01, 0.01, 0.01, 0.3],
            "ci_high": [1.1, 0.03, 0.03, 0.022, 0.04, 1.2],
            "p_value": [0.001, 0.002, 0.3, 0.001, 0.004, np.nan],
        },
        index=pd.Index(["a_path", "b_path", "direct", "indirect", "total", "proportion_mediated"], name="effect"),
    )
    return SimpleNamespace(
        effects=effects,
        n_used=812,
        n_dropped=17,
        n_clusters=n_clusters,
        exposure="contacts_per_month",
        mediator="nps_score",
        outcome="repeat_after",
    )


def test_link_effects_table_one_row_per_effect_with_counts_and_names() -> None:
    result = _fake_link_result(n_clusters=301)
    table = tables.link_effects_table(
        result, exposure="contacts_per_month", mediator="nps_score", outcome="repeat_after"
    )
    assert list(table.columns) == tables.LINK_EFFECTS_COLUMNS
    assert table["effect"].tolist() == list(result.effects.index)
    assert table["estimate"].tolist() == result.effects["estimate"].tolist()
    assert table["n_responses"].unique().tolist() == [812]
    assert table["n_customers"].unique().tolist() == [301]
    assert table["n_left_out"].unique().tolist() == [17] and table["n_window_open"].isna().all()
    assert table.iloc[0][["exposure", "mediator", "outcome"]].tolist() == [
        "contacts_per_month",
        "nps_score",
        "repeat_after",
    ]


def test_link_effects_table_counts_the_open_windows_it_is_given() -> None:
    table = tables.link_effects_table(_fake_link_result(301), exposure="contacts_per_month", mediator="nps_score",
                                      outcome="repeat_after", n_window_open=1230)
    assert table["n_window_open"].unique().tolist() == [1230]


def test_link_effects_table_unclustered_fit_has_null_customers() -> None:
    table = tables.link_effects_table(
        _fake_link_result(None), exposure="contacts_per_month", mediator="nps_score", outcome="repeat_after"
    )
    assert table["n_customers"].isna().all()


def test_link_effects_table_names_differing_from_fit_raise() -> None:
    with pytest.raises(ValueError, match="mediator"):
        tables.link_effects_table(
            _fake_link_result(5), exposure="contacts_per_month", mediator="avg_score", outcome="repeat_after"
        )


def test_link_effects_table_real_fit_link_result_converts() -> None:
    from analysis.link import fit_link

    rng = np.random.default_rng(3)
    n = 400
    contacts = rng.gamma(2.0, 1.0, n)
    score = np.clip(5 + 0.8 * contacts + rng.normal(0, 2, n), 0, 10)
    repeat = (rng.random(n) < 1 / (1 + np.exp(-(-2 + 0.3 * score)))).astype(int)
    frame = pd.DataFrame(
        {
            "contacts_per_month": contacts,
            "nps_score": score,
            "repeat_after": repeat,
            "customer_id": [f"c{i % 80}" for i in range(n)],
        }
    )
    result = fit_link(
        frame,
        exposure="contacts_per_month",
        mediator="nps_score",
        outcome="repeat_after",
        n_boot=100,
        seed=0,
        cluster="customer_id",
    )
    table = tables.link_effects_table(
        result, exposure="contacts_per_month", mediator="nps_score", outcome="repeat_after"
    )
    assert table["effect"].tolist() == ["a_path", "b_path", "direct", "indirect", "total", "proportion_mediated"]
    assert table["n_responses"].unique().tolist() == [400]
    assert table["n_customers"].unique().tolist() == [80]
    assert np.isfinite(table["estimate"]).all()
