"""NPS and its uncertainty from category counts, one formula for scalars and whole tables.

DESIGN.md fixes the metric: NPS = 100 x (promoters - detractors) / responses, and its 95% margin of
error is the Wald one, ``moe95 = 1.96 x 100 x sqrt((p + d - (p - d)^2) / n)`` with p and d the
promoter and detractor shares. ``p + d - (p - d)^2`` is the variance of one response scored +1
(promoter), 0 (passive) or -1 (detractor), so the NPS is a sample mean and its standard error is
the usual ``sd / sqrt(n)``. The dbt models compute the same figures in SQL; the functions here
are the Python side of that contract and always start from counts, never from a re-bucketing of
scores.

Everything is vectorised in :func:`nps_from_count_arrays` and :func:`compare_count_arrays`; the
scalar functions call them with one-element arrays so the formula lives in exactly one place.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import special  # not scipy.stats: see below

# scipy.special rather than scipy.stats: the same functions (scipy.stats' normal is built on them),
# without scipy.stats' import, 0.6-0.7 s that every run's start paid because the analysis assets
# import this module.

# DESIGN.md writes 1.96, not the exact normal quantile, so SQL and Python agree to the last digit.
Z95 = 1.96

NPS_COLUMNS = ["n", "nps", "se", "moe95", "ci_low", "ci_high"]
COMPARE_COLUMNS = ["diff", "se", "z", "p_value"]

CountsLike = npt.ArrayLike | pd.Series


@dataclass(frozen=True)
class NpsEstimate:
    """The NPS of one group of responses with its Wald standard error and 95% interval (points).

    ``nps`` is NaN when ``n == 0``; ``se``, ``moe95``, ``ci_low`` and ``ci_high`` are NaN when
    ``n < 2`` (one response says nothing about spread). The interval is clipped to -100..100.
    """

    nps: float
    se: float
    moe95: float
    ci_low: float
    ci_high: float
    n: int


@dataclass(frozen=True)
class NpsComparison:
    """The difference between the NPS of two independent samples (a minus b) and its z test.

    ``se`` is the square root of the sum of the two Wald variances; ``p_value`` is two-sided.
    ``z`` and ``p_value`` are NaN when either sample has fewer than 2 responses or the combined
    standard error is 0 (both samples unanimous), because the Wald test is undefined there.
    """

    diff: float
    se: float
    z: float
    p_value: float


def _as_counts(values: CountsLike, name: str) -> npt.NDArray[np.float64]:
    """Counts as a float array, refusing negative, missing or fractional values."""
    array = np.asarray(pd.Series(values).to_numpy(dtype="float64", na_value=np.nan), dtype="float64")
    if np.isnan(array).any():
        raise ValueError(f"{name} has missing counts; a count of responses is never NULL")
    if (array < 0).any():
        raise ValueError(f"{name} has negative counts")
    if not np.array_equal(array, np.round(array)):
        raise ValueError(f"{name} has non-integer counts")
    return array


def nps_from_count_arrays(promoters: CountsLike, passives: CountsLike, detractors: CountsLike) -> pd.DataFrame:
    """NPS, standard error, 95% margin of error and Wald interval for many groups at once.

    Each argument is a 1-d array or Series of counts, one element per group. Returns a DataFrame
    with columns ``n, nps, se, moe95, ci_low, ci_high`` (NPS points), one row per group, indexed
    like ``promoters`` when it is a Series. Groups with no responses get NaN everywhere but ``n``;
    groups with one response get an NPS but NaN uncertainty. The interval is ``nps +- moe95``
    clipped to -100..100 (a Wald interval can overshoot the scale for small n; ``moe95`` itself is
    left unclipped so it matches the SQL figure).
    """
    p_count = _as_counts(promoters, "promoters")
    m_count = _as_counts(passives, "passives")
    d_count = _as_counts(detractors, "detractors")
    if not (p_count.shape == m_count.shape == d_count.shape) or p_count.ndim != 1:
        raise ValueError("promoters, passives and detractors must be 1-d and of the same length")

    n = p_count + m_count + d_count
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(n > 0, p_count / n, np.nan)
        d = np.where(n > 0, d_count / n, np.nan)
        # Variance of one response scored +1/0/-1; clip float noise below 0 for unanimous groups.
        unit_variance = np.clip(p + d - (p - d) ** 2, 0.0, None)
        se = np.where(n >= 2, 100.0 * np.sqrt(unit_variance / n), np.nan)
    nps = 100.0 * (p - d)
    moe95 = Z95 * se
    index = promoters.index if isinstance(promoters, pd.Series) else None
    return pd.DataFrame(
        {
            "n": n.astype("int64"),
            "nps": nps,
            "se": se,
            "moe95": moe95,
            "ci_low": np.clip(nps - moe95, -100.0, 100.0),
            "ci_high": np.clip(nps + moe95, -100.0, 100.0),
        },
        index=index,
    )


def nps_from_counts(*, promoters: int, passives: int, detractors: int) -> NpsEstimate:
    """NPS of one group from its category counts, with its Wald standard error and 95% interval."""
    row = nps_from_count_arrays([promoters], [passives], [detractors]).iloc[0]
    return NpsEstimate(
        nps=float(row["nps"]),
        se=float(row["se"]),
        moe95=float(row["moe95"]),
        ci_low=float(row["ci_low"]),
        ci_high=float(row["ci_high"]),
        n=int(row["n"]),
    )


def compare_count_arrays(
    a_promoters: CountsLike,
    a_passives: CountsLike,
    a_detractors: CountsLike,
    b_promoters: CountsLike,
    b_passives: CountsLike,
    b_detractors: CountsLike,
    *,
    pooled: bool = False,
) -> pd.DataFrame:
    """Two-sample z tests of NPS a minus NPS b for many pairs of independent groups at once.

    Returns a DataFrame with columns ``diff, se, z, p_value`` (points; two-sided normal p-value),
    one row per pair, indexed like ``a_promoters`` when it is a Series. ``diff`` is NaN when either
    group is empty; ``z`` and ``p_value`` are NaN where the standard error is missing or 0.

    By default ``se`` is the Wald one, sqrt(se_a^2 + se_b^2) (DESIGN.md, `compare_counts`). With
    ``pooled`` it is the one under "no change": the unit variance of both groups' shares pooled,
    times (1/n_a + 1/n_b), each group needing 2 responses. That is the test to screen many cells
    with: the Wald one gives a small unanimous group a standard error of 0, and the comparison then
    the other group's alone (3 promoters against 200 mixed responses: p < 0.05 a quarter of the
    time with nothing changed; pooled, about the 5% it should), and a swing from all promoters to
    all detractors no test at all.
    """
    a = nps_from_count_arrays(a_promoters, a_passives, a_detractors)
    b = nps_from_count_arrays(b_promoters, b_passives, b_detractors)
    if len(a) != len(b):
        raise ValueError("the a and b count arrays must have the same length")
    diff = a["nps"].to_numpy() - b["nps"].to_numpy()
    if pooled:
        n_a, n_b = a["n"].to_numpy(dtype="float64"), b["n"].to_numpy(dtype="float64")
        with np.errstate(invalid="ignore", divide="ignore"):
            total = n_a + n_b
            p = (np.asarray(a_promoters, dtype="float64") + np.asarray(b_promoters, dtype="float64")) / total
            d = (np.asarray(a_detractors, dtype="float64") + np.asarray(b_detractors, dtype="float64")) / total
            unit_variance = np.clip(p + d - (p - d) ** 2, 0.0, None)
            se = np.where((n_a >= 2) & (n_b >= 2), 100.0 * np.sqrt(unit_variance * (1 / n_a + 1 / n_b)), np.nan)
    else:
        se = np.sqrt(a["se"].to_numpy() ** 2 + b["se"].to_numpy() ** 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.where(se > 0, diff / se, np.nan)
    p_value = 2.0 * special.ndtr(-np.abs(z))  # the normal's upper tail, stats.norm.sf(|z|)
    return pd.DataFrame({"diff": diff, "se": se, "z": z, "p_value": p_value}, index=a.index)


def compare_counts(a: Sequence[int], b: Sequence[int]) -> NpsComparison:
    """Difference in NPS between two independent samples, each given as (promoters, passives, detractors)."""
    if len(a) != 3 or len(b) != 3:
        raise ValueError("a and b must each be (promoters, passives, detractors)")
    row = compare_count_arrays([a[0]], [a[1]], [a[2]], [b[0]], [b[1]], [b[2]]).iloc[0]
    return NpsComparison(diff=float(row["diff"]), se=float(row["se"]), z=float(row["z"]), p_value=float(row["p_value"]))
