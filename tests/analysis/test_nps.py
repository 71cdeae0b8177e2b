"""Tests of analysis.nps: the NPS, its Wald margin of error and the two-sample comparison."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analysis.nps import (
    NpsComparison,
    NpsEstimate,
    compare_count_arrays,
    compare_counts,
    nps_from_count_arrays,
    nps_from_counts,
)


def test_nps_from_counts_hand_computed_group_matches_formula() -> None:
    # 50 promoters, 30 passives, 20 detractors: p = .5, d = .2, NPS = 30,
    # unit variance = .5 + .2 - .3^2 = .61, se = 100 * sqrt(.61 / 100) = 7.8102...
    estimate = nps_from_counts(promoters=50, passives=30, detractors=20)
    assert isinstance(estimate, NpsEstimate)
    assert estimate.n == 100
    assert estimate.nps == pytest.approx(30.0)
    assert estimate.se == pytest.approx(7.810249675906654)
    assert estimate.moe95 == pytest.approx(1.96 * 7.810249675906654)
    assert estimate.ci_low == pytest.approx(30.0 - 15.308089364777042)
    assert estimate.ci_high == pytest.approx(30.0 + 15.308089364777042)


def test_nps_from_counts_cybaea_worked_example_matches_published_width() -> None:
    """Published example: A. Engelhardt, "Net Promoter Score confidence intervals 2: maths and stats",
    CYBAEA, 2016-01-14 (http://www.cybaea.net/Journal/2016/01/14/NPS-confidence-intervals-stats/,
    reposted on R-bloggers). With Var(NPS) = 100^2 (p(1-p) + d(1-d) + 2pd) / n (algebraically
    p + d - (p - d)^2) and p = d = 1/3, the full width of the 95% interval is about 320 / sqrt(n),
    so a width of 10 points needs about 1024 responses. 1023 = 3 x 341 keeps p = d = 1/3 exact.
    """
    estimate = nps_from_counts(promoters=341, passives=341, detractors=341)
    assert estimate.nps == pytest.approx(0.0, abs=1e-12)
    # The post rounds 1.96 * 100 * 2 * sqrt(2/3) = 320.06 to 320.
    assert estimate.ci_high - estimate.ci_low == pytest.approx(320 / math.sqrt(1023), rel=1e-3)
    assert estimate.ci_high - estimate.ci_low == pytest.approx(10.0, abs=0.01)


def test_nps_from_counts_stackexchange_worked_example_matches_published_variance() -> None:
    """Published example: whuber's answer to "How can I calculate margin of error in a NPS result?",
    Cross Validated, https://stats.stackexchange.com/a/18609. With 1/2 promoters, 1/3 passives and
    1/6 detractors the true NPS is 1/3 and the variance of one +1/0/-1 ticket is 5/9, so the
    standard error of the NPS (as a fraction) is sqrt(5/9 / n).
    """
    estimate = nps_from_counts(promoters=300, passives=200, detractors=100)
    assert estimate.nps == pytest.approx(100 / 3)
    assert estimate.se == pytest.approx(100 * math.sqrt(5 / 9 / 600))


def test_nps_from_counts_no_responses_all_nan() -> None:
    estimate = nps_from_counts(promoters=0, passives=0, detractors=0)
    assert estimate.n == 0
    assert all(math.isnan(v) for v in (estimate.nps, estimate.se, estimate.moe95, estimate.ci_low))


def test_nps_from_counts_one_response_has_nps_but_no_uncertainty() -> None:
    estimate = nps_from_counts(promoters=0, passives=0, detractors=1)
    assert estimate.nps == -100.0
    assert math.isnan(estimate.se) and math.isnan(estimate.moe95)
    assert math.isnan(estimate.ci_low) and math.isnan(estimate.ci_high)


def test_nps_from_counts_all_promoters_zero_width_interval_at_100() -> None:
    estimate = nps_from_counts(promoters=12, passives=0, detractors=0)
    assert estimate.nps == 100.0
    assert estimate.se == 0.0
    assert (estimate.ci_low, estimate.ci_high) == (100.0, 100.0)


def test_nps_from_counts_small_sample_interval_clipped_to_scale() -> None:
    # 1 promoter, 1 passive: NPS 50, moe = 1.96 * 100 * sqrt(.25 / 2) = 69.3 > 50 -> upper end clipped.
    estimate = nps_from_counts(promoters=1, passives=1, detractors=0)
    assert estimate.moe95 == pytest.approx(196 * math.sqrt(0.125))
    assert estimate.ci_high == 100.0
    assert estimate.ci_low == pytest.approx(50 - 196 * math.sqrt(0.125))


@pytest.mark.parametrize(
    ("counts", "message"),
    [((-1, 2, 3), "negative"), ((1.5, 2, 3), "non-integer"), ((float("nan"), 2, 3), "missing")],
)
def test_nps_from_count_arrays_invalid_counts_raise(counts: tuple[float, float, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        nps_from_count_arrays([counts[0]], [counts[1]], [counts[2]])


def test_nps_from_count_arrays_mismatched_lengths_raise() -> None:
    with pytest.raises(ValueError, match="same length"):
        nps_from_count_arrays([1, 2], [1, 2], [1])


def test_nps_from_count_arrays_rows_match_scalar_function_and_keep_index() -> None:
    frame = pd.DataFrame(
        {"promoters": [50, 0, 1, 7], "passives": [30, 0, 0, 2], "detractors": [20, 0, 0, 9]},
        index=["a", "b", "c", "d"],
    )
    table = nps_from_count_arrays(frame["promoters"], frame["passives"], frame["detractors"])
    assert list(table.columns) == ["n", "nps", "se", "moe95", "ci_low", "ci_high"]
    assert list(table.index) == ["a", "b", "c", "d"]
    for label, row in frame.iterrows():
        scalar = nps_from_counts(promoters=row["promoters"], passives=row["passives"], detractors=row["detractors"])
        expected = [scalar.n, scalar.nps, scalar.se, scalar.moe95, scalar.ci_low, scalar.ci_high]
        np.testing.assert_allclose(table.loc[label].to_numpy(dtype=float), expected, equal_nan=True)


def test_nps_from_count_arrays_nullable_integer_columns_accepted() -> None:
    table = nps_from_count_arrays(
        pd.array([3, 1], dtype="Int64"), pd.array([0, 1], dtype="Int64"), pd.array([1, 1], dtype="Int64")
    )
    assert table["nps"].tolist() == pytest.approx([50.0, 0.0])


def test_compare_counts_hand_computed_difference_and_p_value() -> None:
    # a: NPS 30, var .61/100; b: p=.4, d=.3 -> NPS 10, var (.7 - .01)/100 = .69/100.
    # se = 100 * sqrt(.0061 + .0069) = sqrt(130) = 11.4018; z = 20 / 11.4018 = 1.7541.
    result = compare_counts((50, 30, 20), (40, 30, 30))
    assert isinstance(result, NpsComparison)
    assert result.diff == pytest.approx(20.0)
    assert result.se == pytest.approx(math.sqrt(130))
    assert result.z == pytest.approx(20 / math.sqrt(130))
    # Two-sided normal tail: 2 * (1 - Phi(1.7541)) = 0.0794.
    assert result.p_value == pytest.approx(0.079410626, rel=1e-6)


def test_compare_counts_order_flips_sign_not_p_value() -> None:
    forward = compare_counts((50, 30, 20), (40, 30, 30))
    backward = compare_counts((40, 30, 30), (50, 30, 20))
    assert backward.diff == pytest.approx(-forward.diff)
    assert backward.p_value == pytest.approx(forward.p_value)


def test_compare_counts_unanimous_samples_test_undefined() -> None:
    result = compare_counts((5, 0, 0), (5, 0, 0))
    assert result.diff == 0.0
    assert result.se == 0.0
    assert math.isnan(result.z) and math.isnan(result.p_value)


def test_compare_counts_single_response_sample_test_undefined() -> None:
    result = compare_counts((1, 0, 0), (40, 30, 30))
    assert result.diff == pytest.approx(90.0)
    assert math.isnan(result.se) and math.isnan(result.p_value)


def test_compare_counts_wrong_tuple_length_raises() -> None:
    with pytest.raises(ValueError, match="promoters, passives, detractors"):
        compare_counts((1, 2), (1, 2, 3))


def test_compare_count_arrays_rows_match_scalar_comparisons() -> None:
    pairs = [((50, 30, 20), (40, 30, 30)), ((10, 5, 5), (3, 3, 14)), ((0, 0, 0), (3, 3, 3))]
    table = compare_count_arrays(*([pair[side][k] for pair in pairs] for side in (0, 1) for k in range(3)))
    assert list(table.columns) == ["diff", "se", "z", "p_value"]
    for i, (a, b) in enumerate(pairs):
        scalar = compare_counts(a, b)
        np.testing.assert_allclose(
            table.iloc[i].to_numpy(dtype=float),
            [scalar.diff, scalar.se, scalar.z, scalar.p_value],
            equal_nan=True,
        )
