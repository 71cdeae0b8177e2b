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

import numpy as np
import pandas as pd

from analysis.errors import InsufficientDataError

__all__ = ["MIN_ROWS", "relative_weights"]

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
            f"need at least {max(MIN_ROWS, len(drivers) + 2)}"
        )
    sd = data.std(axis=0)
    if sd[0] == 0:
        raise InsufficientDataError(f"the outcome {outcome!r} is constant among the {n} complete rows")
    constant = [d for d, s in zip(drivers, sd[1:], strict=True) if s == 0]
    if constant:
        raise InsufficientDataError(f"driver(s) {constant} are constant among the {n} complete rows; "
                                    "a constant item explains nothing and has no correlation")

    corr = np.corrcoef(data, rowvar=False)
    r_xx, r_xy = corr[1:, 1:], corr[1:, 0]
    eigval, eigvec = np.linalg.eigh(r_xx)
    if eigval[0] < _COLLINEAR_TOL * eigval[-1]:
        involved = [drivers[i] for i in np.flatnonzero(np.abs(eigvec[:, 0]) > 0.1)]
        raise InsufficientDataError(f"drivers {involved} are perfectly collinear; their weights are not identified")
    lam = eigvec @ np.diag(np.sqrt(eigval)) @ eigvec.T
    beta = np.linalg.solve(lam, r_xy)
    raw = (lam**2) @ (beta**2)
    r_squared = float(np.sum(beta**2))
    out = pd.DataFrame(
        {"raw_weight": raw, "rescaled": 100.0 * raw / r_squared},
        index=pd.Index(drivers, name="driver"),
    )
    out.attrs.update(r_squared=r_squared, n_used=n, n_dropped=int(len(values) - n))
    return out
