"""validate(): the whole-frame GX path and the sample + exact-aggregates path agree, and say what they did."""

from __future__ import annotations

from datetime import timedelta

from quality._gx import gx, whole_frame_batch_definition
from quality.suites import suite_for
from quality.validate import BASIS_EXACT, BASIS_SAMPLE, BASIS_SCHEMA, outcome_from_gx_result, validate
from tests.quality.conftest import LOADED_AT

# Forces the sampled path on small frames: 40 rows > 10, so GX sees every 4th row (10 rows).
SAMPLED = {"full_gx_max_rows": 10, "sample_rows": 10}


def violating_activities(good_batch):
    changes = {
        1: {"customer_id": None},  # rows 1, 2, 3, 5 ... are outside the every-4th-row sample
        2: {"activity_type": "fax"},
        3: {"duration_minutes": -1.0},
        5: {"activity_id": "A6"},  # duplicates row 6's key
        7: {"occurred_at": LOADED_AT + timedelta(days=1)},
        9: {"_file_sha256": "not-a-digest"},
        10: {"direction": None},
    }
    return good_batch("crm_activities", n=40, changes=changes)


def with_expectation(suite, expectation):
    """A copy of `suite` with one more expectation (no data context needed, unlike add_expectation)."""
    return gx.ExpectationSuite(name=suite.name, expectations=[*suite.expectations, expectation])


def failure_keys(outcome) -> set[tuple[str, str | None]]:
    return {(f.expectation_type, f.column) for f in outcome.failed}


def test_validate_sampled_path_finds_same_failures_as_whole_frame(good_batch):
    frame = violating_activities(good_batch)
    suite = suite_for("crm_activities", now=LOADED_AT)
    whole = validate(frame, suite)
    sampled = validate(frame, suite, **SAMPLED)
    assert not whole.sampled and sampled.sampled
    assert failure_keys(sampled) == failure_keys(whole)
    assert {
        ("expect_column_values_to_not_be_null", "customer_id"),
        ("expect_column_values_to_be_in_set", "activity_type"),
        ("expect_column_values_to_be_between", "duration_minutes"),
        ("expect_column_values_to_be_unique", "activity_id"),
        ("expect_column_values_to_be_between", "occurred_at"),
        ("expect_column_values_to_match_regex", "_file_sha256"),
        ("expect_column_unique_value_count_to_be_between", "_file_sha256"),
        ("expect_column_values_to_not_be_null", "direction"),
    } <= failure_keys(whole)
    # Counts are exact, not sample counts: the duplicate key has two copies among 40 rows.
    assert {f.column: f.summary for f in whole.failed}["activity_id"].startswith("2 of 40")
    assert {f.column: f.summary for f in sampled.failed}["activity_id"].startswith("2 of 40")


def test_validate_violation_outside_sample_is_caught_exactly(good_batch):
    frame = good_batch("crm_activities", n=40, changes={1: {"customer_id": None}})
    outcome = validate(frame, suite_for("crm_activities", now=LOADED_AT), **SAMPLED)
    assert not outcome.success
    failure = next(c for c in outcome.checks if not c.success)
    assert (failure.column, failure.basis) == ("customer_id", BASIS_EXACT)
    assert failure.observed == "1 of 40 rows null (2.50%)"


def test_validate_sampled_outcome_describes_sample_and_sample_only_checks(good_batch):
    # No exact implementation of a mean: GX judges it on the sample only.
    mean = gx.expectations.ExpectColumnMeanToBeBetween(column="nps_score", min_value=0, max_value=10)
    suite = with_expectation(suite_for("survey_responses", now=LOADED_AT), mean)
    outcome = validate(good_batch("survey_responses", n=40), suite, **SAMPLED)
    assert outcome.success
    assert "10 of 40 rows" in outcome.sample_description
    assert "1 row in every 4" in outcome.sample_description
    assert "judged on the sample only: expect_column_mean_to_be_between(nps_score)" in outcome.sample_description
    bases = {c.basis for c in outcome.checks}
    assert bases == {BASIS_EXACT, BASIS_SCHEMA, BASIS_SAMPLE}


def test_validate_row_condition_is_exact_and_agrees_with_whole_frame_gx(good_batch):
    # Odd rows are transactional with a touchpoint; 5 of the 20 lose it, all outside the 1-in-4 sample.
    frame = good_batch("survey_responses", n=40, changes={i: {"touchpoint": None} for i in (1, 3, 5, 9, 13)})
    suite = suite_for("survey_responses", now=LOADED_AT)
    whole = validate(frame, suite)
    sampled = validate(frame, suite, **SAMPLED)
    key = ("expect_column_values_to_not_be_null", "touchpoint")
    touchpoint = [c for c in whole.checks if (c.expectation_type, c.column) == key]
    exact = [c for c in sampled.checks if (c.expectation_type, c.column) == key]
    assert [(c.success, c.observed) for c in exact] == [(c.success, c.observed) for c in touchpoint]
    assert exact[0].observed == "5 of 20 rows null (25.00%)" and not exact[0].success
    assert exact[0].basis == BASIS_EXACT
    assert "none judged on the sample only" in sampled.sample_description


def test_validate_whole_frame_outcome_reports_statistics_and_time(good_batch):
    suite = suite_for("orders", now=LOADED_AT)
    outcome = validate(good_batch("orders", changes={0: {"status": "lost"}}), suite)
    assert not outcome.success and not outcome.sampled and outcome.sample_description is None
    assert outcome.statistics["evaluated_expectations"] == len(suite.expectations)
    assert outcome.statistics["unsuccessful_expectations"] == 1
    assert outcome.statistics["rows"] == outcome.rows == 6
    assert outcome.elapsed_seconds > 0
    assert "lost" in outcome.summary()


def test_validate_empty_batch_passes_on_both_paths(good_batch):
    empty = good_batch("orders").iloc[0:0]
    suite = suite_for("orders", now=LOADED_AT)
    assert validate(empty, suite).success
    assert validate(empty, suite, full_gx_max_rows=-1, sample_rows=1).success


def test_outcome_from_gx_result_converts_a_notebook_result(good_batch):
    frame = good_batch("crm_reps", changes={0: {"team": "marketing"}})
    result = (
        whole_frame_batch_definition()
        .get_batch(batch_parameters={"dataframe": frame})
        .validate(suite_for("crm_reps", now=LOADED_AT), result_format="SUMMARY")
    )
    assert isinstance(result, gx.core.ExpectationSuiteValidationResult)
    outcome = outcome_from_gx_result(result)
    assert outcome.suite_name == "crm_reps"
    assert not outcome.success
    assert outcome.rows == 6
    assert [(f.expectation_type, f.column) for f in outcome.failed] == [("expect_column_values_to_be_in_set", "team")]
