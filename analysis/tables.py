"""Pure functions that turn mart frames into the ``analysis.*`` tables of docs/architecture.md.

Each function takes the pandas frames a Dagster asset queried from ``marts`` and returns one tidy
frame whose columns are the table's columns (the asset prepends ``run_id`` and ``as_of``). Nothing
here reads or writes storage, cuts months or re-buckets NPS scores: months come from SQL (cut in
the reporting time zone) and NPS is always computed from the ``nps_category`` counts with
:mod:`analysis.nps`, so SQL and Python report the same figure for the same responses.

Thin data is never hidden. A table that cannot be computed at all raises
:class:`~analysis.errors.InsufficientDataError`; a row that cannot be estimated (an empty bin, a
driver rated too rarely, a correlation over too few cells) is kept with NaN figures and either a
flag (``small_n``) or a reason column (``excluded_reason``, ``note``). Malformed input (missing
columns, unknown categories, duplicate keys) raises ValueError: that is a bug upstream, not thin data.

The tables serve the chain "more contacts -> higher NPS -> higher repeat rate": ``dose_response``
shows the contact -> NPS -> repeat gradient bin by bin (including where extra contact stops
helping), ``contact_timing`` and ``handoff`` the two moments CX teams name as levers,
``key_drivers`` and ``nps_revenue`` what drives NPS and what NPS is worth, ``nps_changes`` which
monthly movements are more than noise, and ``link_effects_table`` the fitted chain itself.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import special  # not scipy.stats (see analysis/nps.py): the quantiles are ndtri and stdtrit

from analysis.drivers import RatingMoments, relative_weights_from_moments
from analysis.errors import InsufficientDataError
from analysis.nps import compare_count_arrays, nps_from_count_arrays

PROMOTER, PASSIVE, DETRACTOR = "promoter", "passive", "detractor"
CATEGORIES: tuple[str, str, str] = (PROMOTER, PASSIVE, DETRACTOR)

# Contacts per month. Narrow bins at the low end where most customers are, wide ones above 4 where
# over-contact (a flat or falling NPS) would show; the last bin is open-ended.
DEFAULT_DOSE_BINS: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0, math.inf)
# Below 30 responses a bin's NPS has a margin of error of about +-30 points or more.
SMALL_N = 30

CORRELATION_CATEGORY = "correlation_segment_month"
CONTACT_TIMING_LABELS: tuple[str, ...] = ("0", "1", "2", "3+")
HANDOFF_LABELS: tuple[str, ...] = ("<=7 d", "8-14 d", "15-30 d", "31-60 d", ">60 d", "never")
# A customer not handed off is 'never' only once its first order is this many days before as_of (the
# last bin's edge): before that it may still be handed off in time, and is left out, not counted.
HANDOFF_NEVER_AFTER_DAYS = 60
# Upper edges (inclusive, in days) of the timed hand-off bins; anything later is ">60 d".
_HANDOFF_UPPER_DAYS: tuple[float, ...] = (7.0, 14.0, 30.0, 60.0)

DOSE_RESPONSE_COLUMNS = [
    "bin_label",
    "bin_low",
    "bin_high",
    "n",
    "mean_nps_score",
    "mean_ci_low",
    "mean_ci_high",
    "nps",
    "nps_ci_low",
    "nps_ci_high",
    "repeat_n",
    "repeat_rate",
    "repeat_ci_low",
    "repeat_ci_high",
    "small_n",
]
KEY_DRIVERS_COLUMNS = [
    "driver",
    "importance",
    "raw_weight",
    "rank",
    "mean_score",
    "n",
    "improve_priority",
    "n_fit",
    "excluded_reason",
    "excluded_rule",
]
NPS_REVENUE_COLUMNS = [
    "category",
    "customers",
    "responses",
    "revenue_after",
    "revenue_after_mean",
    "corr",
    "corr_ci_low",
    "corr_ci_high",
    "n_cells",
    "revenue_responses",
    "note",
    "revenue_after_mean_ci_low",
    "revenue_after_mean_ci_high",
    "corr_within_segment",
    "corr_within_segment_ci_low",
    "corr_within_segment_ci_high",
    "n_segments",
]
NPS_CHANGES_COLUMNS = [
    "period_month",
    "survey_type",
    "dimension",
    "dimension_value",
    "nps",
    "prev_nps",
    "diff",
    "p_value",
    "p_value_bh",
    "is_significant",
]
BIN_OUTCOME_COLUMNS = [
    "bin_label", "customers", "responses", "nps", "nps_moe95", "repeat_rate", "repeat_ci_low", "repeat_ci_high",
    "repeat_n",
]
LINK_EFFECTS_COLUMNS = [
    "effect",
    "estimate",
    "ci_low",
    "ci_high",
    "p_value",
    "n_responses",
    "n_customers",
    "exposure",
    "mediator",
    "outcome",
    "n_left_out",
    "n_window_open",
]


# ---- shared helpers -------------------------------------------------------------------------------


def _require_columns(frame: pd.DataFrame, columns: Iterable[str], name: str) -> None:
    """Raise ValueError naming every expected column that `frame` lacks."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{name} is missing column(s) {missing}; it has {list(frame.columns)}")


def _require_unique(frame: pd.DataFrame, keys: list[str], name: str) -> None:
    """Raise ValueError when `keys` do not identify the rows of `frame` (the grain is broken)."""
    duplicated = frame.duplicated(subset=keys, keep=False)
    if duplicated.any():
        example = frame.loc[duplicated, keys].head(3).to_dict("records")
        raise ValueError(f"{name} has {int(duplicated.sum())} rows with a duplicate {keys}, e.g. {example}")


def _as_float(values: pd.Series) -> npt.NDArray[np.float64]:
    """A numeric column (nullable or not) as float64 with NaN for NULL."""
    return pd.to_numeric(values).to_numpy(dtype="float64", na_value=np.nan)


def _check_categories(categories: pd.Series, name: str) -> None:
    """Refuse NPS categories other than promoter/passive/detractor, including NULL."""
    unknown = categories[~categories.isin(CATEGORIES)]
    if len(unknown):
        values = sorted({str(v) for v in unknown.unique()})
        raise ValueError(f"{name}.nps_category has values outside {list(CATEGORIES)}: {values}")


def _repeat_values(values: pd.Series, name: str) -> npt.NDArray[np.float64]:
    """repeat_after as 0.0/1.0/NaN (NULL = censored), refusing anything else."""
    repeat = _as_float(values)
    known = repeat[~np.isnan(repeat)]
    if not np.isin(known, (0.0, 1.0)).all():
        raise ValueError(f"{name}.repeat_after must be 0, 1 or NULL")
    return repeat


def _category_flags(categories: pd.Series) -> dict[str, npt.NDArray[np.int64]]:
    """Per row, 1 in the column of its category (promoters, passives, detractors), else 0; NULL is none."""
    return {f"{category}s": (categories == category).to_numpy(dtype="int64", na_value=0) for category in CATEGORIES}


def _category_counts(categories: pd.Series, codes: npt.NDArray[np.int64], size: int) -> pd.DataFrame:
    """Counts of promoters, passives and detractors per integer group code 0..size-1."""
    return pd.DataFrame(
        {
            f"{category}s": np.bincount(codes[(categories == category).to_numpy()], minlength=size)
            for category in CATEGORIES
        }
    ).astype("int64")


def wilson_interval(
    successes: npt.ArrayLike, n: npt.ArrayLike, *, alpha: float = 0.05
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Wilson score interval of a proportion for arrays of success counts and trials (NaN where n = 0).

    Chosen over the Wald interval because repeat rates sit near 0 or 1 in small bins, where the Wald
    interval collapses to zero width or leaves 0..1; Wilson stays inside and keeps its coverage.
    """
    k = np.asarray(successes, dtype="float64")
    trials = np.asarray(n, dtype="float64")
    z = -special.ndtri(alpha / 2)  # stats.norm.isf(alpha / 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / trials
        denominator = 1 + z**2 / trials
        centre = (p + z**2 / (2 * trials)) / denominator
        half = z * np.sqrt(p * (1 - p) / trials + z**2 / (4 * trials**2)) / denominator
    empty = trials <= 0
    return np.where(empty, np.nan, centre - half), np.where(empty, np.nan, centre + half)


def benjamini_hochberg(p_values: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Benjamini-Hochberg adjusted p-values (false discovery rate); NaN inputs stay NaN and do not count.

    Adjusted p_(i) = min over j >= i of p_(j) * m / j (p sorted ascending, m = number of non-NaN
    p-values), capped at 1: a test is significant at FDR q when its adjusted p is below q.
    """
    p = np.asarray(p_values, dtype="float64")
    adjusted = np.full(p.shape, np.nan)
    present = ~np.isnan(p)
    m = int(present.sum())
    if m == 0:
        return adjusted
    order = np.argsort(p[present], kind="stable")
    scaled = p[present][order] * m / np.arange(1, m + 1)
    monotone = np.minimum.accumulate(scaled[::-1])[::-1]
    values = np.empty(m)
    values[order] = np.minimum(monotone, 1.0)
    adjusted[present] = values
    return adjusted


def _repeat_summary(repeat: npt.NDArray[np.float64], groups: npt.NDArray[np.int64], size: int) -> pd.DataFrame:
    """repeat_n (non-NULL rows) and repeat_rate per integer group code 0..size-1."""
    known = ~np.isnan(repeat)
    repeat_n = np.bincount(groups[known], minlength=size)
    repeats = np.bincount(groups[known], weights=repeat[known], minlength=size)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(repeat_n > 0, repeats / np.maximum(repeat_n, 1), np.nan)
    return pd.DataFrame({"repeat_n": repeat_n.astype("int64"), "repeats": repeats, "repeat_rate": rate})


def _bin_label(low: float, high: float) -> str:
    """Half-open interval label, e.g. '[0.5, 1)' or '[6, inf)'."""
    return f"[{low:g}, {high:g})"


# ---- dose_response --------------------------------------------------------------------------------


def dose_response(
    responses: pd.DataFrame, *, bins: Sequence[float] = DEFAULT_DOSE_BINS, small_n: int = SMALL_N
) -> pd.DataFrame:
    """NPS and repeat rate by bin of contacts per month: the dose-response view of the chain.

    Expects one row per response with ``contacts_per_month`` (>= 0), ``nps_score`` (0..10),
    ``nps_category`` ('promoter'/'passive'/'detractor', from SQL) and ``repeat_after`` (0/1, NULL
    when censored), as in ``marts.fct_survey_responses``. Bins are half-open ``[low, high)`` on the
    edges in `bins`, so exactly 1 contact a month falls in ``[1, 2)``; rows with a NULL exposure or
    outside the edges are left out. An infinite last edge makes the last bin open-ended: its label
    says ``inf`` and its ``bin_high`` is NULL.

    Returns one row per bin in increasing order of ``bin_low`` (empty bins included, so the
    gradient and any over-contact dip stay visible): ``bin_label, bin_low, bin_high, n,
    mean_nps_score, mean_ci_low, mean_ci_high`` (t interval, clipped to 0..10), ``nps, nps_ci_low, nps_ci_high``
    (Wald, from the category counts), ``repeat_n`` (non-NULL repeat rows), ``repeat_rate,
    repeat_ci_low, repeat_ci_high`` (Wilson) and ``small_n`` (True when n < `small_n`; such bins
    are kept but should not be read on their own). All intervals are 95%.

    Raises InsufficientDataError when no response has a usable exposure.
    """
    _require_columns(responses, ["contacts_per_month", "nps_score", "nps_category", "repeat_after"], "responses")
    edges = np.asarray(bins, dtype="float64")
    if edges.ndim != 1 or len(edges) < 2 or np.isnan(edges).any() or not (np.diff(edges) > 0).all():
        raise ValueError(f"bins must be at least two strictly increasing edges, got {tuple(bins)}")

    exposure = _as_float(responses["contacts_per_month"])
    if (exposure < 0).any():
        raise ValueError("responses.contacts_per_month has negative values")
    # searchsorted(side='right') - 1 puts a value equal to an edge in the bin that starts there.
    codes = np.searchsorted(edges, exposure, side="right") - 1
    inside = ~np.isnan(exposure) & (codes >= 0) & (codes < len(edges) - 1)
    frame = responses.loc[inside]
    codes = codes[inside]
    if frame.empty:
        raise InsufficientDataError(
            f"dose_response: none of {len(responses)} responses has a contacts_per_month within {tuple(bins)}"
        )
    _check_categories(frame["nps_category"], "responses")
    score = _as_float(frame["nps_score"])
    if np.isnan(score).any():
        raise ValueError("responses.nps_score has NULL values; every response has a score")

    size = len(edges) - 1
    n = np.bincount(codes, minlength=size)
    sums = np.bincount(codes, weights=score, minlength=size)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, sums / np.maximum(n, 1), np.nan)
        squares = np.bincount(codes, weights=(score - mean[codes]) ** 2, minlength=size)
        sd = np.where(n >= 2, np.sqrt(squares / np.maximum(n - 1, 1)), np.nan)
        half = special.stdtrit(np.maximum(n - 1, 1), 0.975) * sd / np.sqrt(n)  # stats.t.ppf(0.975, n - 1)

    counts = _category_counts(frame["nps_category"], codes, size)
    nps = nps_from_count_arrays(counts["promoters"], counts["passives"], counts["detractors"])
    repeat = _repeat_summary(_repeat_values(frame["repeat_after"], "responses"), codes, size)
    repeat_low, repeat_high = wilson_interval(repeat["repeats"], repeat["repeat_n"])

    return pd.DataFrame(
        {
            "bin_label": [_bin_label(lo, hi) for lo, hi in pairwise(edges)],
            "bin_low": edges[:-1],
            # An open-ended last bin has no upper edge: NULL, not inf (inf is not a value analysts can use).
            "bin_high": np.where(np.isinf(edges[1:]), np.nan, edges[1:]),
            "n": n.astype("int64"),
            "mean_nps_score": mean,
            # The score scale is 0..10; a t interval near its end would otherwise leave the scale.
            "mean_ci_low": np.clip(mean - half, 0.0, 10.0),
            "mean_ci_high": np.clip(mean + half, 0.0, 10.0),
            "nps": nps["nps"].to_numpy(),
            "nps_ci_low": nps["ci_low"].to_numpy(),
            "nps_ci_high": nps["ci_high"].to_numpy(),
            "repeat_n": repeat["repeat_n"].to_numpy(),
            "repeat_rate": repeat["repeat_rate"].to_numpy(),
            "repeat_ci_low": repeat_low,
            "repeat_ci_high": repeat_high,
            "small_n": n < small_n,
        },
        columns=DOSE_RESPONSE_COLUMNS,
    )


# ---- key_drivers ----------------------------------------------------------------------------------


# The least share of the most rated item's responses that the items fitted together may rest on. A
# quarter admits a relational survey that asks every item on a third of the responses (transactional
# forms asking a few each: the demo's design, and a common one) and keeps out an item asked on a few
# (a pilot question, a rarely answered optional one), which would rest every weight on those few.
MIN_FIT_SHARE = 0.25

# Why a driver item gets no importance (analysis.key_drivers.excluded_rule); the report words each.
KEY_DRIVER_EXCLUSIONS = (
    "too_few_ratings",  # rated on fewer than min_n responses at all
    "not_rated_together",  # fewer than min_n responses rate it and every item already fitted
    "shrinks_fit",  # fitting it would leave fewer than min_fit_share of the responses the first item is rated on
    "constant",  # every rating the same (or the score constant) on the responses it would be fitted on
    "collinear",  # a linear combination of fitted items, e.g. the same question under a second name
    "too_few_rows",  # fewer complete rows than the relative weights need for that many items
)


@dataclass(frozen=True)
class _DriverSelection:
    """The greedy fit's outcome: drivers fitted together, on how many responses, and why the others were not."""

    drivers: list[str]
    n_fit: int
    weights: pd.DataFrame | None
    excluded: dict[str, tuple[str, str]]  # driver -> (rule, reason)


def _select_drivers(moments: RatingMoments, coverage: pd.Series, min_n: int, min_fit_share: float) -> _DriverSelection:
    """Greedy choice of the drivers to fit together, their weights, and why each other driver was left out.

    Surveys rate some items on only some responses (a transactional survey asks fewer items), so
    the complete cases of all items can be tiny. Drivers enter in decreasing coverage; a driver
    joins only if
    - the responses that rate it and every driver already in still number at least `min_n`,
    - they are at least `min_fit_share` (MIN_FIT_SHARE, a quarter) of the responses that rate the
      first (most rated) driver: an item asked on a few responses (a pilot question) would
      otherwise shrink every weight's fit to those few and reorder the ranking by chance. The share
      is of the first driver's responses, not of the fit so far, so that items joining one after
      another cannot shrink the fit again and again,
    - and the relative-weights fit on them succeeds (it refuses a constant item or outcome and
      perfectly collinear items, e.g. the same question delivered under two names).
    """
    selected: list[str] = []
    n_fit = 0
    weights: pd.DataFrame | None = None
    excluded: dict[str, tuple[str, str]] = {}
    base = int(coverage.iloc[0]) if len(coverage) else 0  # the first driver's responses: the largest fit there can be
    for driver in coverage.index:
        candidate = [*selected, driver]
        n_rows = moments.rows_rating(candidate)
        fitted = ", ".join(selected)
        if n_rows < min_n:
            excluded[driver] = ("not_rated_together", (
                f"{'no' if n_rows == 0 else f'only {n_rows}'} responses rate it together with the drivers already "
                f"fitted ({fitted}); min_n={min_n}"
            ))
            continue
        if selected and n_rows < min_fit_share * base:
            excluded[driver] = ("shrinks_fit", (
                f"only {n_rows} responses rate it together with the drivers already fitted ({fitted}), fewer than "
                f"min_fit_share={min_fit_share:g} of the {base} responses that rate {selected[0]}; fitting it "
                f"would rest every weight on those {n_rows}"
            ))
            continue
        try:
            candidate_weights = relative_weights_from_moments(moments, candidate, outcome="nps_score")
        except InsufficientDataError as exc:
            excluded[driver] = (exc.rule or "too_few_rows", f"not fitted with the other drivers: {exc}")
            continue
        selected, n_fit, weights = candidate, n_rows, candidate_weights
    return _DriverSelection(selected, n_fit, weights, excluded)


def key_drivers(
    driver_scores: pd.DataFrame,
    responses: pd.DataFrame,
    *,
    min_n: int = 50,
    top: int = 5,
    scale_max: float = 10.0,
    min_fit_share: float = MIN_FIT_SHARE,
) -> pd.DataFrame:
    """Relative importance of each CX driver item for NPS, with the items to improve first.

    Expects `driver_scores` long (``response_id, driver, score``; 0..`scale_max`, NULL = not rated,
    as ``marts.fct_survey_driver_scores``) and `responses` (``response_id, nps_score``). A driver
    needs at least `min_n` rating responses. The drivers are fitted together on the responses that
    rate all of them (chosen greedily by coverage, see ``_select_drivers``: an item joins only while
    they stay at least `min_fit_share` of the responses rating the most rated item) with Johnson's relative
    weights (:func:`analysis.drivers.relative_weights`) of ``nps_score`` on the items.

    Returns one row per driver: fitted drivers first by ``rank`` (1 = most important), then the
    excluded ones by name. Columns: ``driver, importance`` (percent of R-squared, sums to 100 over
    the fitted drivers), ``raw_weight`` (sums to R-squared), ``rank, mean_score`` and ``n`` (mean
    score and count over every response that rated the item, the "performance" axis),
    ``improve_priority``, ``n_fit`` (responses in the fit), ``excluded_reason`` (NULL when fitted;
    else why importance is NULL, with the counts) and ``excluded_rule`` (which of
    ``KEY_DRIVER_EXCLUSIONS``; NULL when fitted).

    ``improve_priority`` ranks the importance x performance view: opportunity = importance x
    (scale_max - mean_score) / scale_max, i.e. the share of explained NPS variance times the room
    left on the item's scale. The `top` drivers with the largest positive opportunity get 1..top
    (ties: more important first), others NULL; an item that is important but already rated near
    the top of the scale ranks below an equally important item rated poorly.

    Raises InsufficientDataError when no driver can be fitted.
    """
    _require_columns(driver_scores, ["response_id", "driver", "score"], "driver_scores")
    _require_columns(responses, ["response_id", "nps_score"], "responses")
    _check_key_driver_options(min_n, top, min_fit_share)
    _require_unique(responses, ["response_id"], "responses")
    scores = driver_scores.loc[driver_scores["score"].notna(), ["response_id", "driver", "score"]]
    _require_unique(scores, ["response_id", "driver"], "driver_scores")
    scores = scores.assign(score=_as_float(scores["score"]))
    if ((scores["score"] < 0) | (scores["score"] > scale_max)).any():
        raise ValueError(f"driver_scores.score must lie within 0..{scale_max:g}")

    rated_responses = responses.loc[responses["nps_score"].notna(), ["response_id", "nps_score"]]
    rated = scores.merge(rated_responses, on="response_id", how="inner")
    if rated.empty:
        raise InsufficientDataError("key_drivers: no driver score belongs to a response with an nps_score")
    wide = rated.pivot(index="response_id", columns="driver", values="score")
    outcome = rated.drop_duplicates("response_id").set_index("response_id")["nps_score"].reindex(wide.index)
    return key_drivers_wide(wide, _as_float(outcome), min_n=min_n, top=top, scale_max=scale_max,
                            min_fit_share=min_fit_share)


def key_drivers_wide(
    ratings: pd.DataFrame,
    nps_score: npt.ArrayLike,
    *,
    min_n: int = 50,
    top: int = 5,
    scale_max: float = 10.0,
    min_fit_share: float = MIN_FIT_SHARE,
) -> pd.DataFrame:
    """:func:`key_drivers` on ratings already one row per response.

    `ratings` has one column per driver (named by the driver; float, NaN = not rated) and one row
    per response that rated at least one driver; `nps_score` is that response's score (rows with a
    missing score are left out). The rows are summed per rating pattern
    (`analysis.drivers.RatingMoments`) and every fit comes from those sums.
    """
    _check_key_driver_options(min_n, top, min_fit_share)
    outcome_values = np.asarray(nps_score, dtype="float64")
    if outcome_values.shape != (len(ratings),):
        raise ValueError(f"nps_score has shape {outcome_values.shape}; ratings has {len(ratings)} rows")
    drivers = sorted(str(c) for c in ratings.columns)
    if len(set(drivers)) != len(drivers):
        raise ValueError(f"ratings has a driver column twice: {drivers}")
    scored = ~np.isnan(outcome_values)
    values = np.column_stack([ratings[d].to_numpy(dtype="float64", na_value=np.nan)[scored] for d in drivers])
    moments = RatingMoments.from_rows(outcome_values[scored], values.reshape(int(scored.sum()), len(drivers)), drivers)
    return _key_drivers_from_moments(moments, min_n=min_n, top=top, scale_max=scale_max, min_fit_share=min_fit_share)


def _check_key_driver_options(min_n: int, top: int, min_fit_share: float) -> None:
    """Refuse options that make no fit: the same rules for the long and the wide entry point."""
    if min_n < 2 or top < 1:
        raise ValueError("min_n must be at least 2 and top at least 1")
    if not 0.0 <= min_fit_share <= 1.0:
        raise ValueError(f"min_fit_share must lie within 0..1, not {min_fit_share}")


def _key_drivers_from_moments(moments: RatingMoments, *, min_n: int, top: int, scale_max: float,
                              min_fit_share: float) -> pd.DataFrame:
    """The key_drivers table from the ratings' moments per rating pattern (see `RatingMoments`)."""
    low, high = moments.value_range()
    if low < 0 or high > scale_max:
        raise ValueError(f"driver_scores.score must lie within 0..{scale_max:g}")
    per_driver = moments.rated()
    if int(per_driver["n"].sum()) == 0:
        raise InsufficientDataError("key_drivers: no driver score belongs to a response with an nps_score")
    per_driver = per_driver.loc[per_driver["n"] > 0].sort_values("n", ascending=False, kind="stable")

    covered = per_driver.index[per_driver["n"] >= min_n]
    excluded = {
        str(d): ("too_few_ratings", f"rated on {int(per_driver.at[d, 'n'])} responses; min_n={min_n}")
        for d in per_driver.index
        if d not in covered
    }
    selection = _select_drivers(moments, per_driver.loc[covered, "n"], min_n, min_fit_share)
    excluded.update(selection.excluded)
    selected, n_fit, weights = selection.drivers, selection.n_fit, selection.weights
    if weights is None:
        raise InsufficientDataError(
            "key_drivers: no driver can be fitted: " + "; ".join(f"{d}: {r}" for d, (_, r) in excluded.items())
        )

    fitted = pd.DataFrame(
        {
            "driver": selected,
            "importance": weights.loc[selected, "rescaled"].to_numpy(dtype="float64"),
            "raw_weight": weights.loc[selected, "raw_weight"].to_numpy(dtype="float64"),
            "mean_score": per_driver.loc[selected, "mean_score"].to_numpy(),
            "n": per_driver.loc[selected, "n"].to_numpy(),
        }
    )
    fitted = fitted.sort_values(["importance", "driver"], ascending=[False, True], kind="stable")
    fitted["rank"] = np.arange(1, len(fitted) + 1)
    opportunity = fitted["importance"] * (scale_max - fitted["mean_score"]) / scale_max
    by_opportunity = (
        fitted.assign(_opportunity=opportunity)
        .loc[opportunity > 0]
        .sort_values(["_opportunity", "importance", "driver"], ascending=[False, False, True], kind="stable")
        .head(top)
    )
    fitted["improve_priority"] = pd.Series(np.arange(1, len(by_opportunity) + 1), index=by_opportunity.index).reindex(
        fitted.index
    )
    fitted["n_fit"] = n_fit
    fitted["excluded_reason"] = None
    fitted["excluded_rule"] = None

    left_out = sorted(excluded)
    rest = pd.DataFrame(
        {
            "driver": left_out,
            "importance": np.nan,
            "raw_weight": np.nan,
            "rank": None,
            "mean_score": per_driver.loc[left_out, "mean_score"].to_numpy() if left_out else [],
            "n": per_driver.loc[left_out, "n"].to_numpy() if left_out else [],
            "improve_priority": None,
            "n_fit": None,
            "excluded_reason": [excluded[d][1] for d in left_out],
            "excluded_rule": [excluded[d][0] for d in left_out],
        }
    )
    parts = [fitted[KEY_DRIVERS_COLUMNS], rest[KEY_DRIVERS_COLUMNS]] if left_out else [fitted[KEY_DRIVERS_COLUMNS]]
    table = pd.concat(parts, ignore_index=True)
    return table.astype(
        {
            "rank": "Int64",
            "improve_priority": "Int64",
            "n_fit": "Int64",
            "n": "int64",
            "driver": "str",
            "excluded_reason": "str",
            "excluded_rule": "str",
        }
    )


# ---- nps_revenue ----------------------------------------------------------------------------------


def segment_month_revenue(customer_months: pd.DataFrame) -> pd.DataFrame:
    """Revenue and customers per segment x month, from customer-month rows or as already aggregated.

    `customer_months` is either one row per customer and month (``customer_id, month, revenue,
    segment``, as ``marts.fct_customer_months`` with the customer's segment) or already one row per
    segment and month (``segment, month, revenue, customers``: the revenue sum, NULL revenue counting
    as none, and the number of distinct customers), which is how the asset reads it: aggregated in
    SQL instead of moving ten million customer-months into Python. Rows with a NULL segment or month
    are left out. Returns ``segment, month, revenue, customers``.
    """
    if "customer_id" not in customer_months.columns and "customers" in customer_months.columns:
        _require_columns(customer_months, ["segment", "month", "revenue", "customers"], "customer_months")
        aggregated = customer_months.loc[customer_months["segment"].notna() & customer_months["month"].notna()]
        _require_unique(aggregated, ["segment", "month"], "customer_months")
        return aggregated[["segment", "month", "revenue", "customers"]].reset_index(drop=True)
    _require_columns(customer_months, ["customer_id", "month", "revenue", "segment"], "customer_months")
    months = customer_months.loc[customer_months["segment"].notna() & customer_months["month"].notna()]
    months = months.assign(
        segment=months["segment"].astype("str"),
        month=pd.to_datetime(months["month"]),
        revenue=_as_float(months["revenue"]),
    )
    return months.groupby(["segment", "month"], as_index=False).agg(
        revenue=("revenue", "sum"), customers=("customer_id", "nunique")
    )


def _fisher_interval(corr: float, effective_n: float) -> tuple[float, float]:
    """95% Fisher-z interval of a correlation whose z has standard error 1 / sqrt(effective_n)."""
    # A perfect correlation has an infinite Fisher z; nudging it inside keeps the interval at [1, 1].
    z = math.atanh(min(max(corr, -1 + 1e-15), 1 - 1e-15))
    half = -special.ndtri(0.025) / math.sqrt(effective_n)  # stats.norm.isf(0.025)
    return math.tanh(z - half), math.tanh(z + half)


def _within_segment_correlation(joined: pd.DataFrame, x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """The correlation of cell NPS and revenue per customer after each segment's own means are taken out.

    The pooled correlation mixes two things: segments that both score and spend higher (enterprise
    against small business), and a segment's months moving together. Only the second says that a
    segment's revenue rises when its NPS does. Demeaning within segment is the partial correlation
    given segment dummies, so its Fisher z has standard error 1 / sqrt(n - 3 - (segments - 1)).
    """
    segments = pd.factorize(joined["segment"])[0]
    n_segments = int(segments.max()) + 1
    effective_n = len(x) - 3 - (n_segments - 1)
    row: dict[str, Any] = {"n_segments": n_segments}
    if effective_n < 1:
        return row
    counts = np.bincount(segments)
    x_within = x - (np.bincount(segments, weights=x) / counts)[segments]
    y_within = y - (np.bincount(segments, weights=y) / counts)[segments]
    # Rounding leaves ~1e-13 where a segment's cells do not vary: treat that as no variation.
    if np.ptp(x_within) <= 1e-9 * max(np.ptp(x), 1.0) or np.ptp(y_within) <= 1e-9 * max(np.ptp(y), 1.0):
        return row
    corr = float(np.corrcoef(x_within, y_within)[0, 1])
    low, high = _fisher_interval(corr, effective_n)
    row.update(corr_within_segment=corr, corr_within_segment_ci_low=low, corr_within_segment_ci_high=high)
    return row


def _correlation_row(cells: pd.DataFrame, customer_months: pd.DataFrame, min_cell_responses: int) -> dict[str, Any]:
    """Pearson correlation of cell NPS and revenue per customer over segment x month cells.

    `cells` has one row per segment and month (``segment, month, promoters, passives, detractors``).
    Besides the pooled correlation (``corr``), ``corr_within_segment`` correlates the cells' departures
    from their segment's means (`_within_segment_correlation`), with ``n_segments``; NULL when the
    segments leave no months to compare. Both intervals treat the cells as independent.
    """
    cell_keys = ["segment", "month"]
    cells = cells.loc[cells["segment"].notna() & cells["month"].notna()]
    _require_unique(cells, cell_keys, "cells")
    nps = nps_from_count_arrays(*(cells[c].to_numpy(dtype="int64") for c in ("promoters", "passives", "detractors")))
    cell_nps = pd.DataFrame(
        {
            # Months arrive as DATE from SQL on both sides; only the dtypes are normalised for the join.
            "segment": cells["segment"].astype("str").to_numpy(),
            "month": pd.to_datetime(cells["month"]).to_numpy(),
            "cell_responses": nps["n"].to_numpy(),
            "cell_nps": nps["nps"].to_numpy(),
        }
    )
    cell_nps = cell_nps.loc[cell_nps["cell_responses"] >= min_cell_responses]

    revenue = segment_month_revenue(customer_months)
    revenue = revenue.loc[revenue["segment"].notna() & revenue["month"].notna()]
    revenue = revenue.assign(segment=revenue["segment"].astype("str"), month=pd.to_datetime(revenue["month"]))
    revenue["revenue_per_customer"] = _as_float(revenue["revenue"]) / _as_float(revenue["customers"])
    # In cell order, so the correlation sums its terms in the same order whichever form gave the cells.
    joined = cell_nps.merge(revenue, on=cell_keys, how="inner").sort_values(cell_keys, kind="stable")
    n_cells = len(joined)

    row: dict[str, Any] = {"category": CORRELATION_CATEGORY, "n_cells": n_cells}
    if n_cells < 4:
        # The Fisher-z standard error is 1 / sqrt(n - 3): below 4 cells there is no interval.
        row["note"] = (
            f"only {n_cells} segment x month cells with >= {min_cell_responses} responses and "
            "customer revenue; at least 4 are needed"
        )
        return row
    x = joined["cell_nps"].to_numpy(dtype="float64")
    y = joined["revenue_per_customer"].to_numpy(dtype="float64")
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        row["note"] = "cell NPS or revenue per customer does not vary across cells; correlation undefined"
        return row
    corr = float(np.corrcoef(x, y)[0, 1])
    low, high = _fisher_interval(corr, n_cells - 3)
    row.update(corr=corr, corr_ci_low=low, corr_ci_high=high)
    row.update(_within_segment_correlation(joined, x, y))
    return row


def nps_revenue_counts(responses: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The two aggregates `nps_revenue_from_counts` takes, from rows as `nps_revenue` takes them.

    Per category (``nps_category``, NULL and unknown ones included): ``customers`` (distinct),
    ``responses``, ``revenue_responses`` (a known revenue) and ``revenue_after`` (their sum), and what
    the mean's customer-clustered interval needs (REVENUE_CLUSTER_COLUMNS): the customers with a known
    revenue (``revenue_customers``) and, with S a customer's revenue sum, k its responses with a known
    revenue and m the category's mean, the sum of (S - k m)^2 (``revenue_customer_spread``). Per segment
    and month with both known: ``promoters, passives, detractors``.
    """
    _require_columns(responses, ["customer_id", "nps_category", "segment", "month", "revenue_next_365d"], "responses")
    revenue = _as_float(responses["revenue_next_365d"])
    rows = pd.DataFrame(
        {
            "nps_category": responses["nps_category"].astype("object").to_numpy(),
            "customer_id": responses["customer_id"].to_numpy(),
            "revenue": revenue,
        }
    )
    by_category = rows.groupby("nps_category", dropna=False, sort=False)
    by_customer = rows.groupby(["nps_category", "customer_id"], dropna=False, sort=False)["revenue"]
    customers = pd.DataFrame({"sum": by_customer.sum(min_count=1), "known": by_customer.count().astype("float64")})
    # The category's mean first, then each customer's deviation from it: two passes, no cancellation.
    by_level = customers.groupby(level="nps_category", dropna=False, sort=False)
    mean = by_level["sum"].transform("sum") / by_level["known"].transform("sum")
    customers = customers.assign(spread=(customers["sum"] - customers["known"] * mean) ** 2,
                                 with_revenue=customers["known"] > 0)
    clustered = customers.groupby(level="nps_category", dropna=False, sort=False)
    totals = pd.DataFrame(
        {
            "customers": by_category["customer_id"].nunique(),
            "responses": by_category.size(),
            "revenue_responses": by_category["revenue"].count(),
            "revenue_after": by_category["revenue"].sum(min_count=1),
            "revenue_customers": clustered["with_revenue"].sum(),
            "revenue_customer_spread": clustered["spread"].sum(),
        }
    ).rename_axis("nps_category").reset_index()
    scored = responses.loc[responses["segment"].notna() & responses["month"].notna()]
    flags = pd.DataFrame(
        {
            "segment": scored["segment"].astype("str").to_numpy(),
            "month": pd.to_datetime(scored["month"]).to_numpy(),
            **_category_flags(scored["nps_category"]),
        }
    )
    cells = flags.groupby(["segment", "month"], as_index=False, sort=False).sum()
    return totals, cells


# The per-category sums behind a revenue mean's interval (see nps_revenue_counts).
REVENUE_CLUSTER_COLUMNS = ["revenue_customers", "revenue_customer_spread"]


def clustered_mean_interval(
    total: float, n: int, clusters: int, spread: float, *, level: float = 0.95
) -> tuple[float, float]:
    """Interval of a mean over `n` observations that come in `clusters` groups (a customer's responses).

    From the groups' sums alone: with S_g and k_g a group's sum and count and m = total / n, `spread`
    is sum_g (S_g - k_g m)^2, and the cluster-robust (sandwich) variance of m is G / (G - 1) * spread / n^2, as
    statsmodels' OLS on a constant with ``cov_type="cluster"`` gives it; the quantile is Student's t
    with G - 1 degrees of freedom. A customer who answers often has revenues that move together, so
    the responses are not independent draws: the plain standard error would be too narrow.
    NaN bounds when there are fewer than two groups.
    """
    if n <= 0 or clusters < 2:
        return math.nan, math.nan
    mean = total / n
    half = float(special.stdtrit(clusters - 1, 0.5 + level / 2)) * math.sqrt(clusters / (clusters - 1) * spread) / n
    return mean - half, mean + half


def nps_revenue(
    responses: pd.DataFrame, customer_months: pd.DataFrame, *, min_cell_responses: int = 10
) -> pd.DataFrame:
    """Revenue after a response by NPS category, and the NPS-revenue correlation across segment-months.

    Expects `responses` with ``customer_id, nps_category, segment, month`` (DATE, first day of the
    response's month in the reporting time zone, computed in SQL) and ``revenue_next_365d``
    (revenue of completed orders in the 365 days after the response; NULL when not known), and
    `customer_months` as ``marts.fct_customer_months`` (``customer_id, month, revenue``) plus the
    customer's ``segment``, or that table already summed per segment and month (see
    :func:`segment_month_revenue`). The figures are those of `nps_revenue_from_counts` on the rows'
    aggregates (`nps_revenue_counts`), which is how the asset has SQL hand them over.

    Returns one row per category ('promoter', 'passive', 'detractor'): ``customers`` (distinct),
    ``responses``, ``revenue_responses`` (responses with a known revenue), ``revenue_after`` (sum)
    and ``revenue_after_mean`` (per response with a known revenue; NULL when none) with its 95%
    interval ``revenue_after_mean_ci_low/_high``, clustered by customer (`clustered_mean_interval`;
    NULL with fewer than two such customers). Then one row
    with ``category = 'correlation_segment_month'``: ``corr``, the Pearson correlation between a
    cell's NPS (from its category counts) and its revenue per customer (revenue of the segment's
    customers in that month / their number), over segment x month cells with at least
    `min_cell_responses` responses (an NPS from fewer has a margin of error near +-50 points and
    would only add noise), ``corr_ci_low/corr_ci_high`` (95%, Fisher z) and ``n_cells``; and
    ``corr_within_segment`` (+ ``_ci_low/_ci_high``) over the same cells with each segment's means
    taken out, with ``n_segments``: the pooled figure also counts segments that differ in both NPS
    and revenue, the within one only months of a segment that move together. When the
    correlation cannot be estimated its figures are NULL and ``note`` says why. Rows with a NULL
    segment are left out of the correlation only.

    Raises InsufficientDataError when there are no responses.
    """
    _require_columns(responses, ["customer_id", "nps_category", "segment", "month", "revenue_next_365d"], "responses")
    if responses.empty:
        raise InsufficientDataError("nps_revenue: no responses")
    _check_categories(responses["nps_category"], "responses")
    totals, cells = nps_revenue_counts(responses)
    return nps_revenue_from_counts(totals, cells, customer_months, min_cell_responses=min_cell_responses)


def nps_revenue_from_counts(
    category_totals: pd.DataFrame,
    cells: pd.DataFrame,
    customer_months: pd.DataFrame,
    *,
    min_cell_responses: int = 10,
) -> pd.DataFrame:
    """:func:`nps_revenue` from the responses' aggregates (see `nps_revenue_counts` for their columns).

    A category outside promoter/passive/detractor (NULL included) in `category_totals` is refused
    as in the row form; a NULL ``revenue_after`` (no known revenue) gives NULL revenue figures.
    """
    _require_columns(category_totals, ["nps_category", "customers", "responses", "revenue_responses",
                                       "revenue_after", *REVENUE_CLUSTER_COLUMNS], "category_totals")
    _require_columns(cells, ["segment", "month", "promoters", "passives", "detractors"], "cells")
    _check_categories(category_totals["nps_category"], "responses")
    _require_unique(category_totals, ["nps_category"], "category_totals")
    if int(category_totals["responses"].sum()) == 0:
        raise InsufficientDataError("nps_revenue: no responses")
    totals = category_totals.set_index("nps_category")
    rows: list[dict[str, Any]] = []
    for category in CATEGORIES:
        interval = (np.nan, np.nan)
        if category in totals.index:
            known = int(totals.at[category, "revenue_responses"])
            revenue_after = float(totals.at[category, "revenue_after"]) if known else np.nan
            counts = (int(totals.at[category, "customers"]), int(totals.at[category, "responses"]), known)
            if known:
                interval = clustered_mean_interval(
                    revenue_after, known, int(totals.at[category, "revenue_customers"]),
                    float(totals.at[category, "revenue_customer_spread"]))
        else:
            revenue_after, counts = np.nan, (0, 0, 0)
        rows.append(
            {
                "category": category,
                "customers": counts[0],
                "responses": counts[1],
                "revenue_after": revenue_after,
                "revenue_after_mean": revenue_after / counts[2] if counts[2] else np.nan,
                "revenue_after_mean_ci_low": interval[0],
                "revenue_after_mean_ci_high": interval[1],
                "revenue_responses": counts[2],
            }
        )
    rows.append(_correlation_row(cells, customer_months, min_cell_responses))
    table = pd.DataFrame(rows).reindex(columns=NPS_REVENUE_COLUMNS)
    return table.astype(
        {
            "customers": "Int64",
            "responses": "Int64",
            "revenue_responses": "Int64",
            "n_cells": "Int64",
            "n_segments": "Int64",
            "corr_within_segment": "float64",
            "corr_within_segment_ci_low": "float64",
            "corr_within_segment_ci_high": "float64",
            "revenue_after": "float64",
            "revenue_after_mean": "float64",
            "revenue_after_mean_ci_low": "float64",
            "revenue_after_mean_ci_high": "float64",
            "corr": "float64",
            "corr_ci_low": "float64",
            "corr_ci_high": "float64",
            "note": "str",
        }
    )


# ---- nps_changes ----------------------------------------------------------------------------------


def nps_changes(nps_by_period: pd.DataFrame, *, alpha: float = 0.05) -> pd.DataFrame:
    """Month-over-month NPS change of every cell of ``marts.nps_by_period``, with an FDR-controlled test.

    Expects the mart's columns (``period_month`` DATE first of month, ``survey_type, dimension,
    dimension_value, responses, promoters, passives, detractors``; ``nps`` and ``nps_moe95`` are
    not used: NPS is recomputed from the counts so ``nps``, ``prev_nps`` and ``diff`` agree exactly).
    Each cell is compared with the same (survey_type, dimension, dimension_value) in the previous
    calendar month (December against November, January against the previous December). A cell
    without a previous month gets NULL ``prev_nps``, ``diff`` and p-values and is not significant.

    Returns the input rows in order with ``period_month, survey_type, dimension, dimension_value,
    nps, prev_nps, diff`` (points), ``p_value`` (two-sided z test of two independent samples with
    the variance pooled under "no change", :func:`analysis.nps.compare_count_arrays`: the Wald one
    calls a change in a tiny unanimous cell significant far too often), ``p_value_bh`` and
    ``is_significant``.

    One table is hundreds of tests, so by chance alone about alpha of them would look significant.
    ``p_value_bh`` is the Benjamini-Hochberg adjusted p-value over all comparisons of the same
    ``period_month`` (one month's report is one family; adding history does not change last
    month's verdict), and ``is_significant`` is ``p_value_bh < alpha``: a false discovery rate
    of `alpha` among the changes flagged in a month.

    Raises InsufficientDataError when the frame is empty.
    """
    keys = ["survey_type", "dimension", "dimension_value"]
    count_columns = ["responses", "promoters", "passives", "detractors"]
    _require_columns(nps_by_period, ["period_month", *keys, *count_columns], "nps_by_period")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if nps_by_period.empty:
        raise InsufficientDataError("nps_changes: nps_by_period has no rows")

    month = pd.to_datetime(nps_by_period["period_month"])
    if not (month.notna() & (month.dt.day == 1) & (month == month.dt.normalize())).all():
        raise ValueError("nps_by_period.period_month must be the first day of a month, never NULL")
    # NULL dimension values (if any) must still match their previous month: compare on a filled copy.
    frame = pd.DataFrame(
        {
            "_month": month.to_numpy(),
            **{k: nps_by_period[k].astype("object").where(nps_by_period[k].notna(), "\x00") for k in keys},
            **{c: _as_float(nps_by_period[c]) for c in count_columns},
        },
        index=nps_by_period.index,
    )
    _require_unique(frame, ["_month", *keys], "nps_by_period")
    if (frame["responses"] != frame[["promoters", "passives", "detractors"]].sum(axis=1)).any():
        raise ValueError("nps_by_period: promoters + passives + detractors differs from responses")

    current = nps_from_count_arrays(frame["promoters"], frame["passives"], frame["detractors"])
    previous = frame.assign(_month=frame["_month"] + pd.DateOffset(months=1)).rename(
        columns={c: f"prev_{c}" for c in count_columns}
    )
    matched = frame.assign(_row=np.arange(len(frame))).merge(previous, on=["_month", *keys], how="inner")

    prev_nps = np.full(len(frame), np.nan)
    diff = np.full(len(frame), np.nan)
    p_value = np.full(len(frame), np.nan)
    if len(matched):
        positions = matched["_row"].to_numpy()
        test = compare_count_arrays(
            matched["promoters"],
            matched["passives"],
            matched["detractors"],
            matched["prev_promoters"],
            matched["prev_passives"],
            matched["prev_detractors"],
            pooled=True,
        )
        prev_nps[positions] = nps_from_count_arrays(
            matched["prev_promoters"], matched["prev_passives"], matched["prev_detractors"]
        )["nps"].to_numpy()
        diff[positions] = test["diff"].to_numpy()
        p_value[positions] = test["p_value"].to_numpy()

    p_value_bh = np.full(len(frame), np.nan)
    for _, rows in frame.groupby("_month").indices.items():
        p_value_bh[rows] = benjamini_hochberg(p_value[rows])

    return pd.DataFrame(
        {
            # Dates, as the mart's DATE column (DESIGN.md: months are DATEs), not the timestamps a
            # DataFrame read from the mart holds; analysis.nps_changes then stores a DATE too.
            "period_month": pd.to_datetime(nps_by_period["period_month"]).dt.date.to_numpy(),
            **{k: nps_by_period[k].to_numpy() for k in keys},
            "nps": current["nps"].to_numpy(),
            "prev_nps": prev_nps,
            "diff": diff,
            "p_value": p_value,
            "p_value_bh": p_value_bh,
            "is_significant": np.nan_to_num(p_value_bh, nan=1.0) < alpha,
        },
        columns=NPS_CHANGES_COLUMNS,
    )


# ---- contact_timing and handoff -------------------------------------------------------------------


# A customer's responses as counts: the form the bin tables are summed from. SQL hands them over one
# row per customer (orchestration/defs/analysis/assets.py), so a million customers' two million
# responses do not travel to pandas; the row form is counted by `customer_response_counts`.
CUSTOMER_RESPONSE_COUNTS = (
    "promoters", "passives", "detractors", "other_categories", "repeat_n", "repeats", "other_repeats",
)


def customer_response_counts(responses: pd.DataFrame) -> pd.DataFrame:
    """Per ``customer_id``: promoters, passives, detractors, responses with another category
    (``other_categories``, NULL included), ``repeat_n`` (non-NULL repeat_after), ``repeats`` (its sum)
    and ``other_repeats`` (repeat_after other than 0/1), from rows ``customer_id, nps_category, repeat_after``.
    """
    _require_columns(responses, ["customer_id", "nps_category", "repeat_after"], "responses")
    category = responses["nps_category"]
    repeat = _as_float(responses["repeat_after"])
    known = ~np.isnan(repeat)
    flags = pd.DataFrame(
        {
            "customer_id": responses["customer_id"].to_numpy(),
            **_category_flags(category),
            "other_categories": (~category.isin(CATEGORIES)).to_numpy(dtype="int64", na_value=1),
            "repeat_n": known.astype("int64"),
            "repeats": np.where(known, repeat, 0.0),
            "other_repeats": (known & ~np.isin(repeat, (0.0, 1.0))).astype("int64"),
        }
    )
    return flags.groupby("customer_id", as_index=False, sort=False).sum()


def _with_response_counts(customers: pd.DataFrame, responses: pd.DataFrame | None, column: str) -> pd.DataFrame:
    """`customers` (customer_id, `column`) with each one's response counts: summed here from the row
    form `responses`, or, when `responses` is None, already on `customers` (the form SQL hands over)."""
    _require_columns(customers, ["customer_id", column], "customers")
    _require_unique(customers, ["customer_id"], "customers")
    if responses is None:
        _require_columns(customers, CUSTOMER_RESPONSE_COUNTS, "customers")
        return customers
    counts = customer_response_counts(responses)
    joined = customers[["customer_id", column]].merge(counts, on="customer_id", how="left")
    return joined.fillna({c: 0 for c in CUSTOMER_RESPONSE_COUNTS})


def _bin_outcomes(
    customers: pd.DataFrame, codes: npt.NDArray[np.int64], labels: Sequence[str], table: str
) -> pd.DataFrame:
    """customers, responses, NPS (+ moe95) and repeat rate per bin, one row per label.

    `customers` carries CUSTOMER_RESPONSE_COUNTS per customer; `codes` is each customer's bin
    (an index into `labels`, or -1 for a customer in no bin, whose responses count nowhere).
    """
    in_bin = codes >= 0
    if not in_bin.any():
        raise InsufficientDataError(f"{table}: no customer falls in any bin")
    codes = codes[in_bin]
    size = len(labels)

    def summed(column: str) -> npt.NDArray[np.float64]:
        values = customers[column].to_numpy(dtype="float64", na_value=0.0)[in_bin]
        return np.bincount(codes, weights=values, minlength=size)

    other_categories, other_repeats = int(summed("other_categories").sum()), int(summed("other_repeats").sum())
    if other_categories:
        raise ValueError(f"responses.nps_category has {other_categories} values outside {list(CATEGORIES)} "
                         "(NULL included)")
    if other_repeats:
        raise ValueError(f"responses.repeat_after must be 0, 1 or NULL; {other_repeats} values are not")
    nps = nps_from_count_arrays(*(summed(c).astype("int64") for c in ("promoters", "passives", "detractors")))
    repeat_n, repeats = summed("repeat_n").astype("int64"), summed("repeats")
    with np.errstate(invalid="ignore", divide="ignore"):
        repeat_rate = np.where(repeat_n > 0, repeats / np.maximum(repeat_n, 1), np.nan)
    # The repeat rate rests on repeat_n (closed windows), often far fewer than the responses: its own
    # interval, so a bin of 40 responses but 6 known outcomes does not read as a firm rate.
    repeat_low, repeat_high = wilson_interval(repeats, repeat_n)
    return pd.DataFrame(
        {
            "bin_label": list(labels),
            "customers": np.bincount(codes, minlength=size).astype("int64"),
            "responses": nps["n"].to_numpy(),
            "nps": nps["nps"].to_numpy(),
            "nps_moe95": nps["moe95"].to_numpy(),
            "repeat_rate": repeat_rate,
            "repeat_ci_low": repeat_low,
            "repeat_ci_high": repeat_high,
            "repeat_n": repeat_n,
        },
        columns=BIN_OUTCOME_COLUMNS,
    )


def contact_timing(customers: pd.DataFrame, responses: pd.DataFrame | None = None) -> pd.DataFrame:
    """NPS and repeat rate by the number of outbound contacts in the first week after the first order.

    Expects `customers` (``customer_id, outbound_contacts_first_7d``; NULL when the customer has no
    first order, and such customers are left out: they have no first week) and `responses`
    (``customer_id, nps_category, repeat_after``). Every response passed counts in its customer's
    bin; the caller passes only responses given after the first week (the pipeline's asset does:
    an earlier score cannot reflect the week's contacts). Instead
    of `responses`, `customers` may carry each customer's CUSTOMER_RESPONSE_COUNTS (zeros for a
    customer without responses), as `customer_response_counts` sums them from the rows.

    Returns one row per bin '0', '1', '2', '3+' in that order: ``bin_label, customers, responses,
    nps, nps_moe95, repeat_rate, repeat_ci_low, repeat_ci_high, repeat_n`` (the repeat interval is
    Wilson's on repeat_n; NULL figures for bins without responses).

    Raises InsufficientDataError when no customer has a first order.
    """
    customers = _with_response_counts(customers, responses, "outbound_contacts_first_7d")
    contacts = _as_float(customers["outbound_contacts_first_7d"])
    known = ~np.isnan(contacts)
    if (contacts[known] < 0).any() or not np.array_equal(contacts[known], np.round(contacts[known])):
        raise ValueError("customers.outbound_contacts_first_7d must be a non-negative whole number or NULL")
    codes = np.full(len(contacts), -1, dtype="int64")
    codes[known] = np.minimum(contacts[known], len(CONTACT_TIMING_LABELS) - 1)
    return _bin_outcomes(customers, codes, CONTACT_TIMING_LABELS, "contact_timing")


def handoff(customers: pd.DataFrame, responses: pd.DataFrame | None = None) -> pd.DataFrame:
    """NPS and repeat rate by how many days after the first order account management took over.

    Expects `customers` (``customer_id, handoff_days``: fractional days from the first order to the
    first account-management contact; NULL = never handed off) and `responses` (``customer_id,
    nps_category, repeat_after``), or, instead of `responses`, each customer's
    CUSTOMER_RESPONSE_COUNTS on `customers` (see `contact_timing`); the caller passes only responses
    given after the hand-off (or after HANDOFF_NEVER_AFTER_DAYS for a customer never handed off), as
    the pipeline's asset does: a score given before it cannot tell how the hand-off went. Bins are by upper edge,
    inclusive: '<=7 d' (also a hand-off before the first order, i.e. negative days), '8-14 d'
    (> 7 and <= 14), '15-30 d', '31-60 d', '>60 d', then 'never'. `customers` holds only customers
    whose hand-off is known: handed off, or a first order at least HANDOFF_NEVER_AFTER_DAYS before
    as_of (the caller leaves out customers without an order and those still within that time, as
    `build_handoff` does: counted as 'never', they made it the best bin of the demo's report).

    Returns one row per bin in that order: ``bin_label, customers, responses, nps, nps_moe95,
    repeat_rate, repeat_ci_low, repeat_ci_high, repeat_n`` (as `contact_timing`; NULL figures for bins
    without responses).

    Raises InsufficientDataError when `customers` is empty.
    """
    customers = _with_response_counts(customers, responses, "handoff_days")
    days = _as_float(customers["handoff_days"])
    # searchsorted(side='left') sends a value equal to an upper edge (7.0) into that edge's bin.
    codes = np.searchsorted(np.asarray(_HANDOFF_UPPER_DAYS), days, side="left")
    codes = np.where(np.isnan(days), len(HANDOFF_LABELS) - 1, codes).astype("int64")
    return _bin_outcomes(customers, codes, HANDOFF_LABELS, "handoff")


# ---- link_effects ---------------------------------------------------------------------------------


def link_effects_table(
    result: Any, *, exposure: str, mediator: str, outcome: str, n_window_open: int | None = None
) -> pd.DataFrame:
    """The fitted contacts -> NPS -> repeat chain as rows of ``analysis.link_effects``.

    `result` is what :func:`analysis.link.fit_link` returns: ``.effects`` indexed by effect
    ('a_path', 'b_path', 'direct', 'indirect', 'total', 'proportion_mediated') with ``estimate,
    ci_low, ci_high, p_value``, plus ``n_used`` (rows in the models) and ``n_clusters`` (customers
    when the bootstrap was clustered by customer, else None). `exposure`, `mediator` and `outcome`
    name the columns the chain was fitted on and must match the result's own.

    Returns one row per effect, in the result's order: ``effect, estimate, ci_low, ci_high,
    p_value, n_responses`` (= n_used), ``n_customers`` (= n_clusters; NULL when not clustered),
    ``exposure, mediator, outcome``, ``n_left_out`` (= the result's n_dropped: rows the fit left out
    for a missing value) and ``n_window_open`` (responses not in the frame because their outcome
    window was still open, as the caller counted them; NULL when not given). The last two let the
    report say what the estimate does not rest on.
    """
    for role, given in (("exposure", exposure), ("mediator", mediator), ("outcome", outcome)):
        fitted_on = getattr(result, role, given)
        if fitted_on != given:
            raise ValueError(f"the result was fitted with {role}={fitted_on!r}, not {given!r}")
    effects = result.effects
    _require_columns(effects, ["estimate", "ci_low", "ci_high", "p_value"], "result.effects")
    if effects.empty:
        raise InsufficientDataError("link_effects_table: the result has no effects")
    n_clusters = result.n_clusters
    table = pd.DataFrame(
        {
            "effect": effects.index.astype("str").to_numpy(),
            **{
                c: effects[c].to_numpy(dtype="float64", na_value=np.nan)
                for c in ("estimate", "ci_low", "ci_high", "p_value")
            },
            "n_responses": int(result.n_used),
            "n_customers": pd.NA if n_clusters is None else int(n_clusters),
            "exposure": exposure,
            "mediator": mediator,
            "outcome": outcome,
            "n_left_out": int(getattr(result, "n_dropped", 0)),
            "n_window_open": pd.NA if n_window_open is None else int(n_window_open),
        },
        columns=LINK_EFFECTS_COLUMNS,
    )
    return table.astype({"n_responses": "int64", "n_customers": "Int64", "effect": "str", "n_left_out": "int64",
                         "n_window_open": "Int64"})
