"""fit_link against published R `mediation` output, an independent plain implementation, and a refit bootstrap.

Monte Carlo tolerances: a 2.5 % bootstrap quantile from B replicates has a standard error of about
sqrt(0.025 x 0.975 / B) / phi(1.96) = 0.134 sd at B = 400 (0.085 sd at B = 1000, 0.27 sd at B = 100);
the difference of two independent ones is sqrt(2) times that. Tolerances below are about three such
standard errors, in units of the bootstrap standard deviation of the effect.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from numpy.polynomial.hermite import hermgauss
from scipy import integrate, special, stats

from analysis import link as link_module
from analysis.errors import InsufficientDataError
from analysis.link import EFFECT_NAMES, LinkResult, SeparationError, fit_link

DATA = Path(__file__).with_name("data")
JOBS_SMALL = ("econ_hard", "sex", "age")
JOBS_FULL = ("econ_hard", "sex", "age", "occp", "marital", "nonwhite", "educ", "income")
FRAMING_COVS = ("age", "educ", "gender", "income")


@pytest.fixture(scope="module")
def jobs() -> pd.DataFrame:
    return pd.read_csv(DATA / "jobs_mediation_R_pkg.csv")


@pytest.fixture(scope="module")
def framing() -> pd.DataFrame:
    return pd.read_csv(DATA / "framing_mediation_R_pkg.csv")


def _planted(n: int, seed: int, *, clusters: int | None = None) -> pd.DataFrame:
    """Contacts (continuous) -> score -> repeat (logit), confounded by segment and tenure."""
    rng = np.random.default_rng(seed)
    segment = rng.choice(np.array(["smb", "mid", "ent"]), n)
    seg = pd.Series(segment).map({"smb": 0.0, "mid": 0.5, "ent": 1.0}).to_numpy()
    tenure = rng.gamma(2.0, 1.0, n)
    contacts = rng.gamma(2.0, 0.8, n) + 0.5 * seg
    score = 5.0 + 0.6 * contacts + 0.3 * tenure - 0.5 * seg + rng.normal(0, 1.5, n)
    eta = -3.0 + 0.35 * score + 0.15 * contacts + 0.3 * seg - 0.1 * tenure
    frame = pd.DataFrame({
        "contacts": contacts, "score": score, "repeat": (rng.random(n) < special.expit(eta)).astype(int),
        "segment": segment, "tenure": tenure,
    })
    if clusters:
        frame["customer"] = rng.integers(0, clusters, n)
    return frame


def _sd(result: LinkResult) -> pd.Series:
    return result.replicates.std()


# ---- published reference: JOBS II (continuous outcome) -------------------------------------------------

def test_fit_link_jobs_matches_published_mediation_bootstrap(jobs: pd.DataFrame) -> None:
    # Published: R mediation, mediate(b, c, boot = TRUE, sims = 1000, treat = "treat", mediator = "job_seek")
    # with b <- lm(job_seek ~ treat + econ_hard + sex + age, data = jobs) and
    # c <- lm(depress2 ~ treat + job_seek + econ_hard + sex + age, data = jobs) (the model of
    # ?mediation::mediate's JOBS example); "Nonparametric Bootstrap Confidence Intervals with the
    # Percentile Method", printed at inductivestep.github.io/Random-bits-and-pieces/mediator_effects.nb.html:
    #   ACME -0.0157 [-0.0400, 0.01], ADE -0.0403 [-0.1237, 0.04], Total -0.0560 [-0.1452, 0.03],
    #   Prop. Mediated 0.2811 [-2.0516, 2.53]. (The brief's "-0.0157 / -0.0403 / -0.0560" are these figures.)
    published = {
        "indirect": (-0.0157, -0.0400, 0.01), "direct": (-0.0403, -0.1237, 0.04),
        "total": (-0.0560, -0.1452, 0.03), "proportion_mediated": (0.2811, -2.0516, 2.53),
    }
    res = fit_link(jobs, exposure="treat", mediator="job_seek", outcome="depress2", covariates=JOBS_SMALL,
                   outcome_kind="continuous", n_boot=1000, seed=1)
    sd = _sd(res)
    for effect, (estimate, low, high) in published.items():
        row = res.effects.loc[effect]
        assert row["estimate"] == pytest.approx(estimate, abs=5e-5), effect  # deterministic: 4 decimals
        # Two independent 1000-replicate bootstraps (0.12 sd apart typically) + R's 2-decimal rounding.
        tol = 0.4 * sd[effect] + 0.005
        assert row["ci_low"] == pytest.approx(low, abs=tol), effect
        assert row["ci_high"] == pytest.approx(high, abs=tol), effect
    assert res.exposure_contrast == "0 -> 1 (binary exposure)"
    assert (res.n_used, res.n_dropped, res.n_clusters) == (899, 0, None)


def test_fit_link_jobs_full_covariates_equal_ols_products(jobs: pd.DataFrame) -> None:
    # The vignette's full specification (occp, marital, nonwhite, educ, income as factors). With linear
    # models ACME = a x b and ADE = the outcome's treat coefficient exactly; computed here with plain
    # statsmodels formulas (R-style factor coding) as the independent reference. No published figures
    # for exactly this specification were found; the brief's -0.0157/-0.0403 belong to the 3-covariate
    # model tested above (this one gives ACME -0.0195, ADE -0.0401).
    rhs = " + ".join(JOBS_FULL)
    med = sm.OLS.from_formula(f"job_seek ~ treat + {rhs}", jobs).fit()
    out = sm.OLS.from_formula(f"depress2 ~ treat + job_seek + {rhs}", jobs).fit()
    a, b, c = med.params["treat"], out.params["job_seek"], out.params["treat"]
    res = fit_link(jobs, exposure="treat", mediator="job_seek", outcome="depress2", covariates=JOBS_FULL,
                   outcome_kind="continuous", n_boot=200)
    expected = {"a_path": a, "b_path": b, "direct": c, "indirect": a * b, "total": a * b + c,
                "proportion_mediated": a * b / (a * b + c)}
    for effect, value in expected.items():
        assert res.effects.loc[effect, "estimate"] == pytest.approx(value, rel=1e-9), effect
    assert res.effects.loc["indirect", "estimate"] == pytest.approx(-0.0195, abs=5e-5)


# ---- published reference: framing (binary outcome, probit) ---------------------------------------------

def test_fit_link_framing_probit_matches_published_vignette(framing: pd.DataFrame) -> None:
    # Published: mediation vignette (Tingley, Yamamoto, Hirose, Keele & Imai 2014, J. Stat. Softw. 59(5)),
    # med.fit <- lm(emo ~ treat + age + educ + gender + income), out.fit <- glm(cong_mesg ~ emo + treat +
    # age + educ + gender + income, family = binomial("probit")), mediate(..., robustSE = TRUE, sims = 100);
    # output as quoted from the vignette in the Cross Validated question "Comprehending output from
    # mediation analysis in R" (mirror: imathworks.com/cv/solved-comprehending-output-from-mediation-
    # analysis-in-r): ACME (average) 0.0805 [0.0350, 0.1304], ADE (average) 0.0145 [-0.1087, 0.1364],
    # Total 0.0949 [-0.0316, 0.2129], Prop. Mediated (average) 0.7731; ACME control/treated 0.0802/0.0808.
    # R's estimates are means of 100 quasi-Bayesian draws (Monte Carlo SE = sd / 10) and its interval
    # ends are quantiles of 100 draws (SE ~ 0.27 sd).
    published = {"indirect": (0.0805, 0.0350, 0.1304), "direct": (0.0145, -0.1087, 0.1364),
                 "total": (0.0949, -0.0316, 0.2129)}
    res = fit_link(framing, exposure="treat", mediator="emo", outcome="cong_mesg", covariates=FRAMING_COVS,
                   outcome_link="probit", n_boot=1000, seed=2)
    sd = _sd(res)
    for effect, (estimate, low, high) in published.items():
        row = res.effects.loc[effect]
        assert row["estimate"] == pytest.approx(estimate, abs=3 * sd[effect] / 10), effect
        assert row["ci_low"] == pytest.approx(low, abs=0.9 * sd[effect]), effect
        assert row["ci_high"] == pytest.approx(high, abs=0.9 * sd[effect]), effect
    assert res.effects.loc["proportion_mediated", "estimate"] == pytest.approx(0.7731, abs=0.3)
    arms = res.effects_by_arm["estimate"]
    assert arms["indirect_control"] == pytest.approx(0.0802, abs=0.008)
    assert arms["indirect_treated"] == pytest.approx(0.0808, abs=0.008)


def _simulated_effects(frame: pd.DataFrame, family: str, draws: int, seed: int) -> dict[str, float]:
    """R mediation's algorithm at the point estimate: draw the mediator with its residual, average P(Y)."""
    med = sm.OLS.from_formula("emo ~ treat + age + C(educ) + gender + income", frame).fit()
    glm_link = sm.families.links.Logit() if family == "logit" else sm.families.links.Probit()
    out = sm.GLM.from_formula("cong_mesg ~ emo + treat + age + C(educ) + gender + income", frame,
                              family=sm.families.Binomial(link=glm_link)).fit()
    sigma = np.sqrt(med.scale)
    rng = np.random.default_rng(seed)
    eps = rng.normal(0, sigma, (draws, len(frame)))

    def prob(t_med: int, t_out: int) -> float:
        m = med.predict(frame.assign(treat=t_med)).to_numpy() + eps
        lin_no_m = out.predict(frame.assign(treat=t_out, emo=0.0), which="linear").to_numpy()
        return float(out.family.link.inverse(lin_no_m + out.params["emo"] * m).mean())

    p = {(tm, to): prob(tm, to) for tm in (0, 1) for to in (0, 1)}
    acme = ((p[1, 0] - p[0, 0]) + (p[1, 1] - p[0, 1])) / 2
    ade = ((p[0, 1] - p[0, 0]) + (p[1, 1] - p[1, 0])) / 2
    return {"indirect": acme, "direct": ade, "total": p[1, 1] - p[0, 0]}


@pytest.mark.parametrize("family", ["logit", "probit"])
def test_fit_link_framing_point_estimates_match_independent_simulation(
    framing: pd.DataFrame, family: str
) -> None:
    # Independent plain implementation: statsmodels formulas, 4000 simulated mediator draws per row.
    expected = _simulated_effects(framing, family, draws=4000, seed=5)
    res = fit_link(framing, exposure="treat", mediator="emo", outcome="cong_mesg", covariates=FRAMING_COVS,
                   outcome_link=family, n_boot=100)
    for effect, value in expected.items():
        assert res.effects.loc[effect, "estimate"] == pytest.approx(value, abs=1e-3), effect


def test_fit_link_logit_mean_plugging_would_be_biased(framing: pd.DataFrame) -> None:
    # The mediator's spread flattens the logistic curve: integrating over it differs from plugging in
    # its mean, which is why fit_link integrates (module docstring).
    res = fit_link(framing, exposure="treat", mediator="emo", outcome="cong_mesg", covariates=FRAMING_COVS,
                   n_boot=100)
    out = sm.Logit.from_formula("cong_mesg ~ emo + treat + age + C(educ) + gender + income", framing).fit(disp=0)
    med = sm.OLS.from_formula("emo ~ treat + age + C(educ) + gender + income", framing).fit()
    m0, m1 = (med.predict(framing.assign(treat=t)) for t in (0, 1))
    plug = np.mean([out.predict(framing.assign(treat=t, emo=m1)) - out.predict(framing.assign(treat=t, emo=m0))
                    for t in (0, 1)])
    assert abs(res.effects.loc["indirect", "estimate"] - plug) > 2e-3


def test_logistic_normal_mixture_within_stated_error() -> None:
    t = np.linspace(-60, 60, 240_001)
    mix = special.ndtr(t[:, None] / link_module.LOGISTIC_MIX_SCALE) @ link_module.LOGISTIC_MIX_WEIGHT
    assert np.abs(mix - special.expit(t)).max() < 8e-6
    # ... and so is its exact normal integral, for small and large mediator spreads alike (reference:
    # adaptive quadrature, which unlike Gauss-Hermite stays accurate when the spread is large).
    a = np.linspace(-6, 6, 25)
    for s in (0.1, 1.0, 3.0, 8.0):
        reference = [integrate.quad(lambda e, ai=ai, s=s: special.expit(ai + s * e) * stats.norm.pdf(e), -12, 12,
                                    epsabs=1e-12, points=[-ai / s])[0] for ai in a]
        assert np.abs(link_module._mean_over_normal("logit", a, s) - reference).max() < 8e-6


# ---- the fast bootstrap against the plain one ------------------------------------------------------------

def _refit_bootstrap(frame: pd.DataFrame, n_boot: int, seed: int) -> pd.DataFrame:
    """The slow, obvious bootstrap: resample rows, refit statsmodels OLS + Logit, recompute the effects."""
    xm = np.column_stack([np.ones(len(frame)), frame["contacts"], frame["tenure"],
                          pd.get_dummies(frame["segment"], drop_first=True, dtype=float)])
    z = np.column_stack([xm, frame["score"]])
    m, y, x = frame["score"].to_numpy(), frame["repeat"].to_numpy(), frame["contacts"].to_numpy()
    nodes, weights = hermgauss(20)  # the residual spread here is ~0.5: 20 nodes are exact to 1e-12
    nodes, weights = np.sqrt(2) * nodes, weights / np.sqrt(np.pi)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(frame), len(frame))
        med = sm.OLS(m[idx], xm[idx]).fit()
        logit = sm.Logit(y[idx], z[idx]).fit(disp=0)
        beta, sigma, gamma = med.params, np.sqrt(med.scale), logit.params
        lin_x = xm[idx] @ gamma[:-1]

        def prob(dx: float, dm: float, lin_x: np.ndarray = lin_x, idx: np.ndarray = idx,
                 beta: np.ndarray = beta, gamma: np.ndarray = gamma, sigma: float = sigma) -> float:
            mean_m = xm[idx] @ beta + dm * beta[1]
            eta = lin_x + dx * gamma[1] + gamma[-1] * mean_m
            return float((special.expit(eta[:, None] + gamma[-1] * sigma * nodes) @ weights).mean())

        p00, p01, p10, p11 = prob(0, 0), prob(0, 1), prob(1, 0), prob(1, 1)
        eta_obs = z[idx] @ gamma
        b_path = float(np.mean(gamma[-1] * special.expit(eta_obs) * (1 - special.expit(eta_obs))))
        indirect = ((p01 - p00) + (p11 - p10)) / 2
        direct = ((p10 - p00) + (p11 - p01)) / 2
        out.append([beta[1], b_path, direct, indirect, p11 - p00])
        assert x[idx].std() > 0
    return pd.DataFrame(out, columns=["a_path", "b_path", "direct", "indirect", "total"])


def test_fit_link_one_step_bootstrap_matches_refit_bootstrap() -> None:
    frame = _planted(3000, seed=11)
    fast = fit_link(frame, exposure="contacts", mediator="score", outcome="repeat",
                    covariates=("tenure", "segment"), n_boot=400, seed=4)
    slow = _refit_bootstrap(frame, n_boot=400, seed=9)
    for effect in slow.columns:
        sd = slow[effect].std()
        ci = slow[effect].quantile([0.025, 0.975]).to_numpy()
        got = fast.effects.loc[effect, ["ci_low", "ci_high"]].to_numpy(dtype=float)
        # Two independent 400-replicate percentile endpoints differ by ~0.19 sd; allow ~2.6 of those.
        np.testing.assert_allclose(got, ci, atol=0.5 * sd, err_msg=effect)
        assert fast.replicates[effect].std() == pytest.approx(sd, rel=0.15), effect


def test_fit_link_bucketed_bootstrap_matches_unit_bootstrap(monkeypatch: pytest.MonkeyPatch) -> None:
    # The large-n path (random buckets of units, effect changes on a row subsample) at a size where the
    # exact path also runs.
    frame = _planted(3000, seed=12, clusters=1500)
    kwargs = dict(exposure="contacts", mediator="score", outcome="repeat", covariates=("tenure", "segment"),
                  n_boot=400, cluster="customer")
    exact = fit_link(frame, seed=1, **kwargs)
    monkeypatch.setattr(link_module, "MAX_BOOT_UNITS", 300)
    monkeypatch.setattr(link_module, "EFFECT_SUBSAMPLE", 800)
    bucketed = fit_link(frame, seed=2, **kwargs)
    assert bucketed.n_boot_units == 300 and "300 random buckets" in bucketed.method
    assert "800 rows" in bucketed.method
    pd.testing.assert_series_equal(exact.effects["estimate"], bucketed.effects["estimate"])
    sd = _sd(exact)
    for effect in ("a_path", "b_path", "direct", "indirect", "total"):
        for end in ("ci_low", "ci_high"):
            assert bucketed.effects.loc[effect, end] == pytest.approx(
                exact.effects.loc[effect, end], abs=0.5 * sd[effect]), (effect, end)


def test_fit_link_cluster_bootstrap_of_copied_rows_matches_row_bootstrap() -> None:
    # Three identical copies of each row, clustered by the original row: resampling clusters must give the
    # row bootstrap of the original data, while a row bootstrap of the copies would be ~sqrt(3) too narrow.
    base = _planted(400, seed=13).reset_index(names="row")
    copies = pd.concat([base] * 3, ignore_index=True)
    kwargs = dict(exposure="contacts", mediator="score", outcome="repeat", covariates=("tenure", "segment"),
                  n_boot=300, seed=6)
    rows = fit_link(base, **kwargs)
    clustered = fit_link(copies, cluster="row", **kwargs)
    naive = fit_link(copies, **kwargs)
    assert clustered.n_clusters == 400 and clustered.n_used == 1200
    # Same resampling draws; only sigma's degrees of freedom (n - p vs 3n - p) differ, which moves the
    # effects that integrate over the mediator's residual in the fourth digit.
    pd.testing.assert_series_equal(rows.effects["estimate"], clustered.effects["estimate"], rtol=1e-3)
    assert clustered.effects.loc["a_path", "estimate"] == pytest.approx(rows.effects.loc["a_path", "estimate"])
    np.testing.assert_allclose(clustered.effects[["ci_low", "ci_high"]], rows.effects[["ci_low", "ci_high"]],
                               rtol=0.01, atol=1e-4)
    width = (naive.effects["ci_high"] - naive.effects["ci_low"]) / (rows.effects["ci_high"] - rows.effects["ci_low"])
    assert width[["a_path", "indirect", "total"]].between(0.45, 0.72).all()


def test_fit_link_planted_effects_recovered_within_intervals() -> None:
    frame = _planted(20_000, seed=14)
    res = fit_link(frame, exposure="contacts", mediator="score", outcome="repeat",
                   covariates=("tenure", "segment"), n_boot=200, seed=3)
    # The truth, by brute-force simulation from the planted model on the same covariates.
    rng = np.random.default_rng(0)
    seg = frame["segment"].map({"smb": 0.0, "mid": 0.5, "ent": 1.0}).to_numpy()
    x, tenure = frame["contacts"].to_numpy(), frame["tenure"].to_numpy()

    def p(dx: float, dm: float) -> float:
        score = 5.0 + 0.6 * (x + dm) + 0.3 * tenure - 0.5 * seg + rng.normal(0, 1.5, (50, len(x)))
        return float(special.expit(-3.0 + 0.35 * score + 0.15 * (x + dx) + 0.3 * seg - 0.1 * tenure).mean())

    p00, p01, p10, p11 = p(0, 0), p(0, 1), p(1, 0), p(1, 1)
    truth = {"a_path": 0.6, "indirect": ((p01 - p00) + (p11 - p10)) / 2,
             "direct": ((p10 - p00) + (p11 - p01)) / 2, "total": p11 - p00}
    assert res.exposure_contrast == "x -> x + 1"
    for effect, value in truth.items():
        row = res.effects.loc[effect]
        assert row["ci_low"] - 0.002 <= value <= row["ci_high"] + 0.002, (effect, value, row.to_dict())
    assert res.effects.loc["indirect", "p_value"] == pytest.approx(2 / 201)


# ---- result shape and bookkeeping ------------------------------------------------------------------------

def test_fit_link_effects_frame_has_contract_shape(framing: pd.DataFrame) -> None:
    res = fit_link(framing, exposure="treat", mediator="emo", outcome="cong_mesg", covariates=FRAMING_COVS,
                   n_boot=100)
    assert list(res.effects.index) == list(EFFECT_NAMES)
    assert list(res.effects.columns) == ["estimate", "ci_low", "ci_high", "p_value"]
    e = res.effects["estimate"]
    assert e["total"] == pytest.approx(e["direct"] + e["indirect"], abs=1e-12)
    assert e["proportion_mediated"] == pytest.approx(e["indirect"] / e["total"])
    assert (res.effects["ci_low"] <= res.effects["ci_high"]).all()
    assert res.effects["p_value"].between(2 / 101, 1).all()
    assert res.converged and res.outcome_link == "logit" and res.replicates.shape == (100, 6)
    assert list(res.outcome_coefficients.index[:3]) == ["Intercept", "treat", "emo"]


def test_fit_link_intervals_are_the_95_percent_quantiles_of_its_replicates(framing: pd.DataFrame) -> None:
    """The comparisons with R and with a refit bootstrap allow Monte Carlo error wide enough to pass a 90 %
    interval too; this pins the level and the p-value rule exactly, on the replicates the fit reports."""
    res = fit_link(framing, exposure="treat", mediator="emo", outcome="cong_mesg", covariates=FRAMING_COVS,
                   n_boot=400)
    reps = res.replicates[list(EFFECT_NAMES)]
    np.testing.assert_allclose(res.effects["ci_low"], reps.quantile(0.025), rtol=1e-12)
    np.testing.assert_allclose(res.effects["ci_high"], reps.quantile(0.975), rtol=1e-12)
    below, above = (reps <= 0).sum(), (reps >= 0).sum()
    expected_p = np.minimum(1.0, 2 * np.minimum(below + 1, above + 1) / (len(reps) + 1))
    np.testing.assert_allclose(res.effects["p_value"], expected_p, rtol=1e-12)
    # Wide enough to tell 95 % from 90 %: the 5 %/95 % quantiles lie strictly inside.
    assert (res.effects["ci_low"] < reps.quantile(0.05)).all() and (res.effects["ci_high"] > reps.quantile(0.95)).all()


def test_fit_link_same_seed_gives_same_intervals(framing: pd.DataFrame) -> None:
    kwargs = dict(exposure="treat", mediator="emo", outcome="cong_mesg", covariates=FRAMING_COVS, n_boot=100)
    pd.testing.assert_frame_equal(fit_link(framing, seed=7, **kwargs).effects,
                                  fit_link(framing, seed=7, **kwargs).effects)
    assert not fit_link(framing, seed=8, **kwargs).effects.equals(fit_link(framing, seed=7, **kwargs).effects)


def test_fit_link_missing_values_left_out_and_counted(framing: pd.DataFrame) -> None:
    holed = framing.copy()
    holed.loc[[0, 1, 2], "emo"] = np.nan
    holed.loc[[3], "educ"] = None
    holed.loc[[4], "cong_mesg"] = np.nan
    kwargs = dict(exposure="treat", mediator="emo", outcome="cong_mesg", covariates=FRAMING_COVS, n_boot=100)
    res = fit_link(holed, **kwargs)
    assert (res.n_used, res.n_dropped) == (260, 5)
    assert any("5 rows left out" in w for w in res.warnings)
    pd.testing.assert_frame_equal(res.effects, fit_link(framing.drop(index=range(5)), **kwargs).effects)


# A string, a whole number, and constants whose computed standard deviation is about 1e-17, not 0.
@pytest.mark.parametrize("value", ["US", 1.0, 0.1, 0.7])
def test_fit_link_constant_covariate_left_out_with_warning(framing: pd.DataFrame, value: object) -> None:
    kwargs = dict(exposure="treat", mediator="emo", outcome="cong_mesg", n_boot=100)
    res = fit_link(framing.assign(country=value), covariates=(*FRAMING_COVS, "country"), **kwargs)
    assert any("'country'" in w for w in res.warnings)
    pd.testing.assert_frame_equal(res.effects, fit_link(framing, covariates=FRAMING_COVS, **kwargs).effects)


# ---- degenerate input ------------------------------------------------------------------------------------

FRAMING_KW = dict(exposure="treat", mediator="emo", outcome="cong_mesg", covariates=FRAMING_COVS, n_boot=100)


def test_fit_link_no_exposure_variation_raises_insufficient_data(framing: pd.DataFrame) -> None:
    with pytest.raises(InsufficientDataError, match="exposure 'treat' has no variation"):
        fit_link(framing.assign(treat=1), **FRAMING_KW)


def test_fit_link_all_rows_missing_raises_insufficient_data(framing: pd.DataFrame) -> None:
    with pytest.raises(InsufficientDataError, match="no usable rows"):
        fit_link(framing.assign(cong_mesg=np.nan), **FRAMING_KW)


def test_fit_link_below_minimum_rows_raises_insufficient_data(framing: pd.DataFrame) -> None:
    with pytest.raises(InsufficientDataError, match="29 usable rows"):
        fit_link(framing.head(29), **FRAMING_KW)


def test_fit_link_constant_outcome_raises_insufficient_data(framing: pd.DataFrame) -> None:
    with pytest.raises(InsufficientDataError, match="outcome 'cong_mesg' has no variation"):
        fit_link(framing.assign(cong_mesg=0), **FRAMING_KW)


def test_fit_link_perfect_separation_raises_separation_error(framing: pd.DataFrame) -> None:
    separated = framing.assign(cong_mesg=(framing["income"] > framing["income"].median()).astype(int))
    with pytest.raises(SeparationError, match="perfect separation"):
        fit_link(separated, **FRAMING_KW)
    assert issubclass(SeparationError, InsufficientDataError)


@pytest.mark.parametrize("outcome", [0, 1])
def test_fit_link_covariate_level_with_one_outcome_warns_of_quasi_separation(outcome: int) -> None:
    """A small business unit whose every row bought again (or none did): no finite coefficient, named."""
    frame = _planted(2000, seed=3)
    frame.loc[:4, ["segment", "repeat"]] = ["new_unit", outcome]
    res = fit_link(frame, exposure="contacts", mediator="score", outcome="repeat",
                   covariates=("segment", "tenure"), n_boot=100)
    separated = [w for w in res.warnings if "quasi-separation" in w]
    assert separated == [
        f"covariate 'segment' level 'new_unit': all 5 of its rows have outcome {outcome}, so its coefficient "
        "has no finite estimate (quasi-separation); its rows are predicted as certain and add no effect of "
        "the exposure or the mediator"
    ]
    assert abs(res.outcome_coefficients["segment[new_unit]"]) > 8  # running off, as the warning says
    assert np.isfinite(res.effects["estimate"]).all()
    assert not [w for w in fit_link(_planted(2000, seed=3), exposure="contacts", mediator="score",
                                    outcome="repeat", covariates=("segment", "tenure"), n_boot=100).warnings
                if "quasi-separation" in w]


def test_fit_link_collinear_covariate_raises_insufficient_data(framing: pd.DataFrame) -> None:
    with pytest.raises(InsufficientDataError, match="collinear"):
        fit_link(framing.assign(age2=2 * framing["age"] + 1), **{**FRAMING_KW,
                 "covariates": (*FRAMING_COVS, "age2")})


def test_fit_link_too_few_clusters_raises_insufficient_data(framing: pd.DataFrame) -> None:
    with pytest.raises(InsufficientDataError, match="5 clusters"):
        fit_link(framing.assign(site=np.arange(len(framing)) % 5), cluster="site", **FRAMING_KW)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(outcome="nope"), "not in the frame"),
        (dict(exposure="english"), "must be numeric"),
        (dict(outcome="emo", mediator="cong_mesg"), "must be 0/1"),
        (dict(outcome_kind="count"), "outcome_kind"),
        (dict(outcome_link="cloglog"), "outcome_link"),
        (dict(n_boot=50), "n_boot"),
        (dict(covariates=("age", "treat")), "two roles"),
    ],
)
def test_fit_link_bad_arguments_raise_value_error(framing: pd.DataFrame, change: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fit_link(framing, **{**FRAMING_KW, **change})


def test_resampling_counts_are_draws_with_replacement_of_every_group() -> None:
    """Each replicate draws n_groups groups with replacement: Multinomial(n, 1/n) counts, row by row.

    250 replicates (not a multiple of the chunk) of 400 groups: every row sums to 400; each count is
    Binomial(400, 1/400) (mean 1, variance 399/400, P(0) = 0.3674); rows differ; the same seed gives
    the same counts.
    """
    counts = link_module._resampling_counts(np.random.default_rng(3), 250, 400)
    assert counts.shape == (250, 400)
    assert (counts.sum(axis=1) == 400).all()
    assert (counts >= 0).all() and (counts == np.round(counts)).all()
    assert counts.mean() == pytest.approx(1.0)
    assert counts.var() == pytest.approx(399 / 400, abs=0.03)  # sd of the variance estimate ~0.004
    assert (counts == 0).mean() == pytest.approx((399 / 400) ** 400, abs=0.01)
    assert len({row.tobytes() for row in counts}) == 250
    # No group is favoured: each group's total over the replicates is Binomial(100,000, 1/400) (sd 15.8).
    assert np.abs(counts.sum(axis=0) - 250).max() < 6 * np.sqrt(250 * 399 / 400)
    again = link_module._resampling_counts(np.random.default_rng(3), 250, 400)
    assert np.array_equal(counts, again)
