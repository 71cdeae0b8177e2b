"""The link model recovers the demo generator's planted effects through the real pipeline.

Issue "The link", item 5: at 20k customers every effect within 15% of the truth the generator
computed by simulation (not by an estimator), and the naive fit without covariates demonstrably off.
The frame comes from the same SQL the pipeline's asset uses, over marts that ingestion and dbt built
from the generated landing files, so a bug anywhere on the path (exposure window, censoring, months,
dedup) shows up here as a miss.
"""

from __future__ import annotations

import json
import os
import subprocess

import duckdb
import pytest

from analysis.link import fit_link
from orchestration.defs.analysis.assets import LINK_COVARIATES, link_frame
from orchestration.lib.dbt import DBT_EXECUTABLE, DBT_PROJECT_DIR, dbt_vars
from orchestration.lib.demo_data import generate_demo_data
from orchestration.lib.ingest import ingest_all, write_load_manifest
from orchestration.lib.settings import Settings

pytestmark = pytest.mark.slow

CUSTOMERS = 20_000
TOLERANCE = 0.15
EFFECTS = ("a_path", "b_path", "indirect", "direct", "total")


@pytest.fixture(scope="module")
def recovery(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, object, object]:
    """Generate 20k customers, ingest, build the marts, and fit the link with and without covariates."""
    data_dir = tmp_path_factory.mktemp("recovery") / "data"
    summary = generate_demo_data(data_dir, customers=CUSTOMERS, seed=7)
    settings = Settings.from_env({}, data_dir=data_dir)
    ingest_all(settings)
    write_load_manifest(settings)
    env = {**os.environ, "NPS_LINK_DATA_DIR": str(settings.data_dir), "DUCKDB_PATH": str(settings.build_db_path)}
    settings.warehouse_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [str(DBT_EXECUTABLE), "build", "--quiet", "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir",
         str(DBT_PROJECT_DIR), "--target-path", str(data_dir / "dbt_target"), "--vars", json.dumps(dbt_vars(settings))],
        check=True, env=env, cwd=DBT_PROJECT_DIR,
    )
    con = duckdb.connect(str(settings.build_db_path), read_only=True)
    frame = link_frame(con)
    con.close()
    common = {"exposure": "contacts_per_month", "mediator": "nps_score", "outcome": "repeat_after",
              "outcome_kind": "binary", "n_boot": 300, "seed": 0, "cluster": "customer_id"}
    adjusted = fit_link(frame, covariates=LINK_COVARIATES, **common)
    naive = fit_link(frame, covariates=(), **common)
    return summary.truth["link"], adjusted, naive


def test_adjusted_fit_recovers_every_planted_effect_within_15_percent(recovery) -> None:
    truth, adjusted, _ = recovery
    misses = {}
    for effect in EFFECTS:
        expected = truth["effects"][effect]
        estimate = adjusted.effects.loc[effect, "estimate"]
        if abs(estimate - expected) > TOLERANCE * abs(expected):
            misses[effect] = (round(estimate, 4), round(expected, 4))
    assert misses == {}, f"estimate vs truth beyond {TOLERANCE:.0%}: {misses}"


def test_adjusted_fit_uses_the_uncensored_responses_the_truth_was_computed_on(recovery) -> None:
    truth, adjusted, _ = recovery
    # The truth covers delivered responses with responded_at + 90 d <= as_of; the fit drops only rows
    # with a missing covariate (orphan customers), so the counts agree to within those few rows.
    assert abs(adjusted.n_used - truth["n_responses"]) <= 0.01 * truth["n_responses"]


def test_naive_fit_without_covariates_is_demonstrably_biased(recovery) -> None:
    truth, adjusted, naive = recovery
    expected = truth["effects"]["a_path"]
    naive_a = naive.effects.loc["a_path"]
    # Segment drives both contact rate and NPS: the naive slope overstates the effect by more than
    # the tolerance, and its confidence interval excludes the truth, while the adjusted one is close.
    assert naive_a["estimate"] > expected * (1 + TOLERANCE)
    assert naive_a["ci_low"] > expected
    assert abs(adjusted.effects.loc["a_path", "estimate"] - expected) < abs(naive_a["estimate"] - expected) / 2
