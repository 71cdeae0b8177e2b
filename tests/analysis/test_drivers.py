"""Johnson's relative weights against published R `rwa` output and the regression they decompose."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from analysis.drivers import RatingMoments, relative_weights, relative_weights_from_moments
from analysis.errors import InsufficientDataError

DATA = Path(__file__).with_name("data")


@pytest.fixture(scope="module")
def mtcars() -> pd.DataFrame:
    return pd.read_csv(DATA / "mtcars_R_datasets.csv")


@pytest.fixture(scope="module")
def swiss() -> pd.DataFrame:
    return pd.read_csv(DATA / "swiss_R_datasets.csv")


def test_relative_weights_mtcars_gear_matches_rwa_readme(mtcars: pd.DataFrame) -> None:
    # Published: README of R package rwa (github.com/martinctc/rwa), "Basic example":
    # rwa(mtcars, outcome = "mpg", predictors = c("cyl", "disp", "hp", "gear")) ->
    # rsquare 0.7791896; Raw.RelWeight / Rescaled.RelWeight as below.
    published = pd.DataFrame(
        {"raw_weight": [0.2284797, 0.2221469, 0.2321744, 0.0963886],
         "rescaled": [29.32274, 28.50999, 29.79691, 12.37037]},
        index=["cyl", "disp", "hp", "gear"],
    )
    got = relative_weights(mtcars, outcome="mpg", drivers=["cyl", "disp", "hp", "gear"])
    np.testing.assert_allclose(got["raw_weight"], published["raw_weight"], atol=5e-8)
    np.testing.assert_allclose(got["rescaled"], published["rescaled"], atol=5e-6)
    assert got.attrs["r_squared"] == pytest.approx(0.7791896, abs=5e-8)
    assert list(got.index) == ["cyl", "disp", "hp", "gear"]


def test_relative_weights_mtcars_wt_matches_rwa_vignette(mtcars: pd.DataFrame) -> None:
    # Published: rwa vignette "Regression Methods" (martinctc.github.io/rwa/articles/regression-methods.html):
    # rwa_multiregress(mtcars, "mpg", c("cyl", "disp", "hp", "wt")).
    got = relative_weights(mtcars, outcome="mpg", drivers=["cyl", "disp", "hp", "wt"])
    np.testing.assert_allclose(got["raw_weight"], [0.2096904, 0.1883043, 0.1799590, 0.2706812], atol=5e-8)
    np.testing.assert_allclose(got["rescaled"], [24.70914, 22.18908, 21.20570, 31.89607], atol=5e-6)


def test_relative_weights_swiss_sum_to_ols_r_squared(swiss: pd.DataFrame) -> None:
    drivers = ["Agriculture", "Examination", "Education", "Catholic", "Infant.Mortality"]
    got = relative_weights(swiss, outcome="Fertility", drivers=drivers)
    ols = sm.OLS(swiss["Fertility"], sm.add_constant(swiss[drivers])).fit()
    assert got["raw_weight"].sum() == pytest.approx(ols.rsquared, rel=1e-12)
    assert got["rescaled"].sum() == pytest.approx(100.0, rel=1e-12)
    assert (got["raw_weight"] > 0).all()


def test_relative_weights_orthogonal_drivers_equal_squared_correlations() -> None:
    # With uncorrelated drivers there is no shared variance to split: each weight is r^2 with the outcome.
    rng = np.random.default_rng(3)
    raw = rng.normal(size=(200, 2))
    a, b = np.linalg.qr(raw - raw.mean(axis=0))[0].T  # centred and orthogonal = exactly uncorrelated
    frame = pd.DataFrame({"a": a, "b": b, "y": 0.5 * a - 0.2 * b + rng.normal(size=200)})
    got = relative_weights(frame, outcome="y", drivers=["a", "b"])
    expected = [np.corrcoef(frame[c], frame["y"])[0, 1] ** 2 for c in ("a", "b")]
    np.testing.assert_allclose(got["raw_weight"], expected, rtol=1e-9)


def test_relative_weights_missing_rows_left_out_and_counted(mtcars: pd.DataFrame) -> None:
    frame = mtcars.copy()
    frame.loc[[0, 5], "hp"] = np.nan
    got = relative_weights(frame, outcome="mpg", drivers=["cyl", "hp"])
    expected = relative_weights(frame.dropna(subset=["hp"]), outcome="mpg", drivers=["cyl", "hp"])
    pd.testing.assert_frame_equal(got, expected)
    assert (got.attrs["n_used"], got.attrs["n_dropped"]) == (30, 2)


# 0.1 and 0.7: constants whose computed standard deviation is about 1e-17, not 0.
@pytest.mark.parametrize("value", [7.0, 0.1, 0.7])
def test_relative_weights_constant_driver_raises_insufficient_data(mtcars: pd.DataFrame, value: float) -> None:
    frame = mtcars.assign(flat=value)
    with pytest.raises(InsufficientDataError, match="'flat'"):
        relative_weights(frame, outcome="mpg", drivers=["cyl", "flat"])


@pytest.mark.parametrize("value", [1.0, 0.1, 0.7])
def test_relative_weights_constant_outcome_raises_insufficient_data(mtcars: pd.DataFrame, value: float) -> None:
    with pytest.raises(InsufficientDataError, match="outcome 'flat' is constant"):
        relative_weights(mtcars.assign(flat=value), outcome="flat", drivers=["cyl", "hp"])


def test_relative_weights_collinear_drivers_raise_insufficient_data(mtcars: pd.DataFrame) -> None:
    frame = mtcars.assign(hp_plus_cyl=mtcars["hp"] + 2 * mtcars["cyl"])
    with pytest.raises(InsufficientDataError, match="collinear"):
        relative_weights(frame, outcome="mpg", drivers=["cyl", "hp", "hp_plus_cyl"])


def test_relative_weights_too_few_rows_raise_insufficient_data(mtcars: pd.DataFrame) -> None:
    with pytest.raises(InsufficientDataError, match="9 complete rows"):
        relative_weights(mtcars.head(9), outcome="mpg", drivers=["cyl", "hp"])


def test_relative_weights_all_missing_raises_insufficient_data(mtcars: pd.DataFrame) -> None:
    with pytest.raises(InsufficientDataError, match="0 complete rows"):
        relative_weights(mtcars.assign(hp=np.nan), outcome="mpg", drivers=["cyl", "hp"])


@pytest.mark.parametrize(
    ("outcome", "drivers", "message"),
    [
        ("mpg", [], "at least one driver"),
        ("mpg", ["cyl", "cyl"], "twice"),
        ("mpg", ["mpg", "cyl"], "also listed"),
        ("mpg", ["cyl", "nope"], "not in the frame"),
        ("mpg", ["cyl", "model"], "must be numeric"),
    ],
)
def test_relative_weights_bad_arguments_raise_value_error(
    mtcars: pd.DataFrame, outcome: str, drivers: list[str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        relative_weights(mtcars, outcome=outcome, drivers=drivers)


# ---- the same weights from moments per rating pattern ---------------------------------------------


def _moments(frame: pd.DataFrame, outcome: str, drivers: list[str]) -> RatingMoments:
    return RatingMoments.from_rows(frame[outcome].to_numpy(float), frame[drivers].to_numpy(float), drivers)


def test_relative_weights_from_moments_equal_the_row_form(mtcars: pd.DataFrame) -> None:
    frame = mtcars.copy()
    frame.loc[[0, 5], "hp"] = np.nan  # a second rating pattern: these rows rate cyl and disp only
    drivers = ["cyl", "disp", "hp"]
    moments = _moments(frame, "mpg", drivers)
    assert sorted(moments.n.tolist()) == [2, 30]
    for subset in (["cyl", "disp", "hp"], ["cyl", "disp"], ["hp"]):
        got = relative_weights_from_moments(moments, subset, outcome="mpg")
        expected = relative_weights(frame.dropna(subset=subset), outcome="mpg", drivers=subset)
        pd.testing.assert_frame_equal(got, expected, check_exact=False, rtol=1e-10)
        assert got.attrs["n_used"] == expected.attrs["n_used"] == moments.rows_rating(subset)
        assert got.attrs["r_squared"] == pytest.approx(expected.attrs["r_squared"], rel=1e-10)
    rated = moments.rated()
    assert rated.loc["hp", "n"] == 30
    assert rated.loc["hp", "mean_score"] == pytest.approx(frame["hp"].mean(), rel=1e-12)


def test_rating_moments_of_integer_ratings_do_not_depend_on_row_order() -> None:
    rng = np.random.default_rng(5)
    ratings = rng.integers(0, 11, (500, 3)).astype(float)
    ratings[rng.random((500, 3)) < 0.2] = np.nan
    score = rng.integers(0, 11, 500).astype(float)
    shuffled = rng.permutation(500)
    one = RatingMoments.from_rows(score, ratings, ["a", "b", "c"])
    other = RatingMoments.from_rows(score[shuffled], ratings[shuffled], ["a", "b", "c"])
    for field in ("pattern", "n", "sums", "cross", "low", "high"):
        np.testing.assert_array_equal(getattr(one, field), getattr(other, field))
    pd.testing.assert_frame_equal(relative_weights_from_moments(one, ["a", "b", "c"]),
                                  relative_weights_from_moments(other, ["a", "b", "c"]), check_exact=True)


def test_relative_weights_from_moments_refuse_what_the_row_form_refuses(mtcars: pd.DataFrame) -> None:
    frame = mtcars.assign(flat=7.0, hp_plus_cyl=mtcars["hp"] + 2 * mtcars["cyl"], const_y=1.0)
    moments = _moments(frame, "mpg", ["cyl", "hp", "flat", "hp_plus_cyl"])
    with pytest.raises(InsufficientDataError, match="'flat'"):
        relative_weights_from_moments(moments, ["cyl", "flat"], outcome="mpg")
    with pytest.raises(InsufficientDataError, match="collinear"):
        relative_weights_from_moments(moments, ["cyl", "hp", "hp_plus_cyl"], outcome="mpg")
    with pytest.raises(InsufficientDataError, match="outcome 'const_y' is constant"):
        relative_weights_from_moments(_moments(frame, "const_y", ["cyl", "hp"]), ["cyl", "hp"], outcome="const_y")
    with pytest.raises(InsufficientDataError, match="complete rows"):
        relative_weights_from_moments(_moments(frame.head(8), "mpg", ["cyl", "hp"]), ["cyl", "hp"], outcome="mpg")


def test_rating_moments_refuse_rows_without_an_outcome() -> None:
    with pytest.raises(ValueError, match="outcome has missing values"):
        RatingMoments.from_rows([1.0, np.nan], [[1.0], [2.0]], ["a"])
