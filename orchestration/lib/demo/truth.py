"""The true effects of the planted model, computed by simulation over the generated responses.

Not an estimator: every effect is the average, over the generated non-censored responses, of the
difference the model itself produces when contacts per month go up by one. The score noise is
integrated out exactly (the score is clip(round(latent + N(0, sd)))), and the same-draw version the
brief asks for is reported beside it as a cross-check.
"""

from __future__ import annotations

import numpy as np

from orchestration.lib.demo.model import (
    PlantedModel,
    contacts_term,
    repeat_probability,
    score_distribution,
    score_from_latent,
)

_BATCH = 250_000  # (rows, 11) float arrays: keep each batch near 20 MB


def link_effects(
    model: PlantedModel,
    *,
    mean_latent: np.ndarray,
    noise: np.ndarray,
    cpm: np.ndarray,
    covariate_term: np.ndarray,
) -> dict[str, float]:
    """True a_path, b_path, direct, indirect, total and proportion mediated of one more contact/month.

    mean_latent: the NPS latent without its noise; noise: the drawn noise; cpm: measured contacts per
    month; covariate_term: the part of the repeat logit not moved by score or contacts.
    """
    n = len(cpm)
    k = np.arange(11, dtype=np.float64)
    sums = dict.fromkeys(
        (
            "a_path",
            "a_path_same_draws",
            "b_path",
            "b_path_discrete",
            "indirect",
            "direct",
            "total_joint",
            "indirect_same_draws",
            "direct_same_draws",
        ),
        0.0,
    )
    for lo in range(0, n, _BATCH):
        sl = slice(lo, lo + _BATCH)
        c0, l0, eps, term = cpm[sl], mean_latent[sl], noise[sl], covariate_term[sl]
        l1 = l0 - contacts_term(model, c0) + contacts_term(model, c0 + 1.0)
        p0 = score_distribution(l0, model.nps_noise_sd)
        p1 = score_distribution(l1, model.nps_noise_sd)
        q0 = repeat_probability(model, term[:, None], k[None, :], c0[:, None])
        q1 = repeat_probability(model, term[:, None], k[None, :], c0[:, None] + 1.0)
        q0_next = repeat_probability(model, term[:, None], k[None, :] + 1.0, c0[:, None])
        m0 = score_from_latent(l0 + eps)
        m1 = score_from_latent(l1 + eps)
        sums["a_path"] += float(((p1 - p0) @ k).sum())
        sums["a_path_same_draws"] += float((m1 - m0).sum())
        sums["b_path"] += float((p0 * model.b_score * q0 * (1.0 - q0)).sum())
        sums["b_path_discrete"] += float((p0 * (q0_next - q0)).sum())
        sums["indirect"] += float(((p1 - p0) * q0).sum())
        sums["direct"] += float((p0 * (q1 - q0)).sum())
        sums["total_joint"] += float((p1 * q1 - p0 * q0).sum())
        sums["indirect_same_draws"] += float(
            (repeat_probability(model, term, m1, c0) - repeat_probability(model, term, m0, c0)).sum()
        )
        sums["direct_same_draws"] += float(
            (repeat_probability(model, term, m0, c0 + 1.0) - repeat_probability(model, term, m0, c0)).sum()
        )
    out = {name: value / max(n, 1) for name, value in sums.items()}
    out["total"] = out["indirect"] + out["direct"]
    out["proportion_mediated"] = out["indirect"] / out["total"] if out["total"] else float("nan")
    return out


def naive_slope(x: np.ndarray, y: np.ndarray) -> float:
    """OLS slope of y on x with an intercept and nothing else: the confounded association."""
    xc = x - x.mean()
    return float((xc * (y - y.mean())).sum() / (xc * xc).sum())


def adjusted_slope(x: np.ndarray, y: np.ndarray, groups: np.ndarray) -> float:
    """OLS slope of y on x with one intercept per group (e.g. segment): the within-group association."""
    xd = x.astype(np.float64).copy()
    yd = y.astype(np.float64).copy()
    for g in np.unique(groups):
        m = groups == g
        xd[m] -= xd[m].mean()
        yd[m] -= yd[m].mean()
    return float((xd * yd).sum() / (xd * xd).sum())
