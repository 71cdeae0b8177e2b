"""Key drivers: Johnson's relative weights, the share of the score's explained variance each item carries.

Survey driver items (responsiveness, product quality, billing clarity, ...) are correlated with each
other, so regression coefficients split their shared credit arbitrarily and can even flip sign.
Johnson's (2000) relative weights (Multivariate Behavioral Research 35(1), "A heuristic method for
estimating the relative weight of predictor variables in multiple regression"; the method behind
Qualtrics' default relative importance and R's `rwa`) instead:

1. take the drivers' correlation matrix R = V diag(lambda) V' and build its symmetric square root
   Lambda = V diag(sqrt(lambda)) V': the orthogonal variables Z = X R^(-1/2) closest to the drivers
   (least squares), with corr(X_j, Z_k) = Lambda_jk;
2. regress the outcome on Z: beta = Lambda^(-1) r_xy, where r_xy are the outcome's correlations with the
   drivers; R^2 = sum_k beta_k^2 (Z is orthogonal, so R^2 splits without ambiguity);
3. give driver j the part of each Z_k it makes up: raw_weight_j = sum_k Lambda_jk^2 beta_k^2.

The raw weights are non-negative and sum to the R^2 of the OLS regression of the outcome on all
drivers; `rescaled` = 100 x raw_weight / R^2 (percent of the explained variance, summing to 100).
Weights carry no sign: a driver that lowers the score can be as important as one that raises it.

Rows with a missing value in the outcome or any driver are left out (listwise); R's `rwa` uses
pairwise-complete correlations instead, which agrees whenever nothing is missing. Degenerate input
raises `analysis.errors.InsufficientDataError` with the reason: fewer than MIN_ROWS complete rows (or no
more rows than drivers + 1), a constant driver or outcome, or perfectly collinear drivers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from analysis.errors import InsufficientDataError

__all__ = ["MIN_ROWS", "RatingMoments", "relative_weights", "relative_weights_from_moments"]

# Correlations from fewer rows are too noisy to rank drivers by; 10 also admits small published
# fixtures (mtcars has 32 rows).
MIN_ROWS = 10
# A correlation-matrix eigenvalue this small (relative to the largest) means a driver is a linear
# combination of others: the split of their shared variance is then arbitrary.
_COLLINEAR_TOL = 1e-10


def relative_weights(frame: pd.DataFrame, *, outcome: str, drivers: Sequence[str]) -> pd.DataFrame:
    """Johnson's relative weights of `drivers` for `outcome`: a DataFrame indexed by driver.

    Columns `raw_weight` (sums to the R^2 of the regression of the outcome on all drivers) and
    `rescaled` (percent of that R^2, sums to 100), in the order the drivers were given. The frame's
    `attrs` carry `r_squared` and `n_used` (complete rows) and `n_dropped` (rows with a missing value).
    """
    drivers = [drivers] if isinstance(drivers, str) else list(drivers)
    if not drivers:
        raise ValueError("relative_weights needs at least one driver")
    if len(set(drivers)) != len(drivers):
        raise ValueError(f"drivers are listed twice: {drivers}")
    if outcome in drivers:
        raise ValueError(f"the outcome {outcome!r} is also listed as a driver")
    absent = [c for c in [outcome, *drivers] if c not in frame.columns]
    if absent:
        raise ValueError(f"column(s) not in the frame: {absent}")
    not_numeric = [c for c in [outcome, *drivers] if not pd.api.types.is_numeric_dtype(frame[c])]
    if not_numeric:
        raise ValueError(f"outcome and drivers must be numeric; not numeric: {not_numeric}")

    values = frame[[outcome, *drivers]].to_numpy(dtype=float, na_value=np.nan)
    complete = np.isfinite(values).all(axis=1)
    data = values[complete]
    n = len(data)
    if n < max(MIN_ROWS, len(drivers) + 2):
        raise InsufficientDataError(
            f"{n} complete rows for {len(drivers)} drivers ({len(values) - n} rows with a missing value); "
            f"need at least {max(MIN_ROWS, len(drivers) + 2)}",
            rule="too_few_rows",
        )
    # The range, not the standard deviation: the std of a constant 0.1 is about 1e-17, not 0.
    spread = np.ptp(data, axis=0)
    if spread[0] == 0:
        raise InsufficientDataError(f"the outcome {outcome!r} is constant among the {n} complete rows", rule="constant")
    constant = [d for d, s in zip(drivers, spread[1:], strict=True) if s == 0]
    if constant:
        raise InsufficientDataError(f"driver(s) {constant} are constant among the {n} complete rows; "
                                    "a constant item explains nothing and has no correlation", rule="constant")

    out = _weights_from_correlation(np.corrcoef(data, rowvar=False), drivers)
    out.attrs.update(n_used=n, n_dropped=int(len(values) - n))
    return out


def _weights_from_correlation(corr: npt.NDArray[np.float64], drivers: list[str]) -> pd.DataFrame:
    """Steps 1-3 of the module docstring on the correlation matrix of (outcome, *drivers)."""
    r_xx, r_xy = corr[1:, 1:], corr[1:, 0]
    eigval, eigvec = np.linalg.eigh(r_xx)
    if eigval[0] < _COLLINEAR_TOL * eigval[-1]:
        involved = [drivers[i] for i in np.flatnonzero(np.abs(eigvec[:, 0]) > 0.1)]
        raise InsufficientDataError(f"drivers {involved} are perfectly collinear; their weights are not identified",
                                    rule="collinear")
    lam = eigvec @ np.diag(np.sqrt(eigval)) @ eigvec.T
    beta = np.linalg.solve(lam, r_xy)
    raw = (lam**2) @ (beta**2)
    r_squared = float(np.sum(beta**2))
    out = pd.DataFrame(
        {"raw_weight": raw, "rescaled": 100.0 * raw / r_squared},
        index=pd.Index(drivers, name="driver"),
    )
    out.attrs.update(r_squared=r_squared)
    return out


@dataclass(frozen=True)
class RatingMoments:
    """What Johnson's weights need of rated responses, summed per rating pattern instead of row by row.

    A response's pattern is the set of drivers it rates (bit i = ``drivers[i]``). Per pattern (arrays
    of one row per pattern): ``n`` responses and, over v = (outcome, rating of drivers[0], ...) with
    an unrated item as 0, ``sums`` (P, k+1) of v, ``cross`` (P, k+1, k+1) of v v', and ``low``/``high``
    (P, k+1) the smallest and largest value (NaN where unrated). The complete cases of any set of
    drivers are the patterns that contain it, so every correlation the greedy fit of
    `analysis.tables.key_drivers` tries comes from these sums, computed once, instead of from a copy
    of the complete rows for every candidate set.
    """

    drivers: tuple[str, ...]
    pattern: npt.NDArray[np.int64]
    n: npt.NDArray[np.int64]
    sums: npt.NDArray[np.float64]
    cross: npt.NDArray[np.float64]
    low: npt.NDArray[np.float64]
    high: npt.NDArray[np.float64]

    @classmethod
    def from_rows(cls, outcome: npt.ArrayLike, ratings: npt.ArrayLike, drivers: Sequence[str]) -> RatingMoments:
        """The moments of rows: `outcome` (N,), `ratings` (N, k) with NaN = not rated, one column per driver.

        Rows are grouped by sorting on the pattern; for integer ratings every sum is exact, so the
        row order does not change a single bit of the result.
        """
        y = np.asarray(outcome, dtype="float64")
        if np.isnan(y).any():
            raise ValueError("the outcome has missing values; pass only the rows that have one")
        width = len(drivers) + 1
        x = np.asarray(ratings, dtype="float64").reshape(len(y), width - 1)
        codes = (~np.isnan(x)).astype("int64") @ (1 << np.arange(width - 1, dtype="int64"))
        order = np.argsort(codes, kind="stable")
        codes = codes[order]
        shown = np.column_stack([y, x])[order]
        values = np.where(np.isnan(shown), 0.0, shown)
        starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]]) if len(codes) else np.zeros(0, dtype="int64")
        ends = np.r_[starts[1:], len(codes)].astype("int64")
        if not len(starts):
            return cls(tuple(drivers), starts, starts, np.zeros((0, width)), np.zeros((0, width, width)),
                       np.zeros((0, width)), np.zeros((0, width)))
        return cls(
            drivers=tuple(drivers),
            pattern=codes[starts],
            n=(ends - starts).astype("int64"),
            sums=np.add.reduceat(values, starts, axis=0),
            cross=np.array([values[a:b].T @ values[a:b] for a, b in zip(starts, ends, strict=True)]),
            # Within a pattern an unrated column is all NaN, so its extremes are NaN.
            low=np.minimum.reduceat(shown, starts, axis=0),
            high=np.maximum.reduceat(shown, starts, axis=0),
        )

    def patterns_rating(self, drivers: Sequence[str]) -> npt.NDArray[np.bool_]:
        """Which patterns rate every one of `drivers` (their rows are the drivers' complete cases)."""
        mask = sum(1 << self.drivers.index(d) for d in drivers)
        return (self.pattern & mask) == mask

    def rows_rating(self, drivers: Sequence[str]) -> int:
        """How many responses rate every one of `drivers`."""
        return int(self.n[self.patterns_rating(drivers)].sum())

    def rated(self) -> pd.DataFrame:
        """Per driver: ``n`` (responses rating it) and ``mean_score`` (their mean rating; NaN if none)."""
        n, totals = [], []
        for i, driver in enumerate(self.drivers):
            rating = self.patterns_rating([driver])
            n.append(int(self.n[rating].sum()))
            totals.append(float(self.sums[rating, 1 + i].sum()))
        count = np.asarray(n, dtype="int64")
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(count > 0, np.asarray(totals) / np.maximum(count, 1), np.nan)
        return pd.DataFrame({"n": count, "mean_score": mean}, index=pd.Index(self.drivers, name="driver"))

    def value_range(self) -> tuple[float, float]:
        """The smallest and largest rating of any driver (NaN when nothing is rated)."""
        with np.errstate(invalid="ignore"):
            ratings_low, ratings_high = self.low[:, 1:], self.high[:, 1:]
            if np.isnan(ratings_low).all():
                return np.nan, np.nan
            return float(np.nanmin(ratings_low)), float(np.nanmax(ratings_high))


def relative_weights_from_moments(moments: RatingMoments, drivers: Sequence[str], *,
                                  outcome: str = "the outcome") -> pd.DataFrame:
    """`relative_weights` on the responses that rate every one of `drivers`, from their moments.

    The same table and `attrs` (``n_dropped`` is 0: only complete rows are summed) and the same
    refusals; the correlations come from the sums rather than from the rows, which agree to about
    1e-12 (exactly the same sums whatever the row order, for integer ratings).
    """
    drivers = list(drivers)
    if not drivers or len(set(drivers)) != len(drivers):
        raise ValueError(f"drivers must be listed once each, at least one: {drivers}")
    complete = moments.patterns_rating(drivers)
    n = int(moments.n[complete].sum())
    if n < max(MIN_ROWS, len(drivers) + 2):
        raise InsufficientDataError(
            f"{n} complete rows for {len(drivers)} drivers; need at least {max(MIN_ROWS, len(drivers) + 2)}",
            rule="too_few_rows",
        )
    cols = [0, *(1 + moments.drivers.index(d) for d in drivers)]
    # Constant means every value equal: judged on the extremes, exactly, not on a variance near 0.
    constant = np.nanmin(moments.low[complete][:, cols], axis=0) == np.nanmax(moments.high[complete][:, cols], axis=0)
    if constant[0]:
        raise InsufficientDataError(f"the outcome {outcome!r} is constant among the {n} complete rows", rule="constant")
    if constant[1:].any():
        raise InsufficientDataError(f"driver(s) {[d for d, c in zip(drivers, constant[1:], strict=True) if c]} are "
                                    f"constant among the {n} complete rows; a constant item explains nothing and "
                                    "has no correlation", rule="constant")
    mean = moments.sums[complete][:, cols].sum(axis=0) / n
    cov = moments.cross[complete][:, cols][:, :, cols].sum(axis=0) / n - np.outer(mean, mean)
    sd = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    corr = cov / np.outer(sd, sd)
    np.fill_diagonal(corr, 1.0)
    out = _weights_from_correlation(np.clip(corr, -1.0, 1.0), drivers)
    out.attrs.update(n_used=n, n_dropped=0)
    return out
