"""validate_batches(): several files validated together keep per-file results, equal to validating each alone."""

from __future__ import annotations

import time
from datetime import timedelta

import pandas as pd
import pytest

from quality._gx import gx
from quality.suites import suite_for
from quality.validate import BASIS_EXACT, BASIS_GX, BASIS_SCHEMA, validate, validate_batches
from tests.quality.conftest import LOADED_AT
from tests.quality.test_validate import with_expectation

# Forces validate()'s sample + exact path (every check exact except schema), the reference for observed texts.
EXACT_ALONE = {"full_gx_max_rows": -1, "sample_rows": 10}


def as_file(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    """`frame` as the rows of delivered file `name` (its own _source_file)."""
    frame = frame.copy()
    frame["_source_file"] = pd.Series([name] * len(frame), dtype=frame["_source_file"].dtype)
    return frame


@pytest.fixture
def activity_files(good_batch):
    """Four crm_activities files; the same keys recur across files (allowed), violations only in b and d."""
    return {
        "a": as_file(good_batch("crm_activities", n=30), "a.csv"),
        "b": as_file(
            good_batch(
                "crm_activities",
                n=40,
                changes={
                    1: {"customer_id": None},
                    2: {"activity_type": "fax"},
                    3: {"duration_minutes": -1.0},
                    5: {"activity_id": "A6"},
                    7: {"occurred_at": LOADED_AT + timedelta(days=1)},
                    9: {"_file_sha256": "not-a-digest"},
                },
            ),
            "b.csv",
        ),
        "c": as_file(good_batch("crm_activities", n=6).iloc[0:0], "c.csv"),
        "d": as_file(good_batch("crm_activities", n=25, changes={4: {"direction": "sideways"}}), "d.csv"),
    }


def test_validate_batches_equals_each_batch_validated_alone(activity_files):
    suite = suite_for("crm_activities", now=LOADED_AT)
    together = validate_batches({k: (f, suite) for k, f in activity_files.items()}, shared_sample_rows=20)
    assert list(together) == list(activity_files)
    for name, frame in activity_files.items():
        alone_gx = validate(frame, suite)  # GX on the whole file
        alone_exact = validate(frame, suite, **EXACT_ALONE)
        outcome = together[name]
        assert outcome.rows == len(frame)
        assert [(c.expectation_type, c.column, c.success) for c in outcome.checks] == [
            (c.expectation_type, c.column, c.success) for c in alone_gx.checks
        ]
        assert [(c.observed, c.basis) for c in outcome.checks] == [(c.observed, c.basis) for c in alone_exact.checks]
        assert outcome.success == alone_gx.success
    assert together["a"].success and together["c"].success and not together["d"].success
    failed_b = {(f.expectation_type, f.column) for f in together["b"].failed}
    assert ("expect_column_values_to_be_unique", "activity_id") in failed_b
    assert {f.column: f.summary for f in together["b"].failed}["activity_id"].startswith("2 of 40")
    assert [(f.expectation_type, f.column) for f in together["d"].failed] == [
        ("expect_column_values_to_be_in_set", "direction")
    ]


def test_validate_batches_keys_repeated_across_files_are_not_duplicates(good_batch):
    suite = suite_for("orders", now=LOADED_AT)
    # Same order ids and row numbers in both files: unique within each file, so both pass.
    files = {"x": as_file(good_batch("orders", n=8), "x.csv"), "y": as_file(good_batch("orders", n=8), "y.csv")}
    outcomes = validate_batches({k: (f, suite) for k, f in files.items()})
    assert all(o.success for o in outcomes.values())
    uniqueness = [c for c in outcomes["y"].checks if c.expectation_type == "expect_column_values_to_be_unique"]
    assert uniqueness and all(c.success and c.basis == BASIS_EXACT for c in uniqueness)


def test_validate_batches_shared_sample_and_time_are_reported(activity_files):
    suite = suite_for("crm_activities", now=LOADED_AT)
    started = time.perf_counter()
    outcomes = validate_batches({k: (f, suite) for k, f in activity_files.items()}, shared_sample_rows=20)
    wall = time.perf_counter() - started
    # 95 rows, at most 20 for GX: every 5th row; file a holds rows 0-29, so rows 0, 5, ..., 25 of it.
    assert "1 row in every 5" in outcomes["a"].sample_description
    assert "(6 of this batch's 30 rows)" in outcomes["a"].sample_description
    assert outcomes["a"].sampled and not outcomes["c"].sampled
    assert {c.basis for c in outcomes["a"].checks} == {BASIS_EXACT, BASIS_SCHEMA}
    total = sum(o.elapsed_seconds for o in outcomes.values())
    assert 0 < total <= wall
    # The shared work is split by rows: the empty file carries none of it.
    assert outcomes["c"].elapsed_seconds < outcomes["b"].elapsed_seconds


def test_validate_batches_groups_by_suite_and_schema(good_batch):
    full = suite_for("crm_activities", now=LOADED_AT)
    without_rep = suite_for("crm_activities", now=LOADED_AT, absent_columns=["rep_id"])
    odd = good_batch("crm_activities", n=5)
    odd["_row_number"] = odd["_row_number"].astype("float64")  # not the lake type: a schema failure
    no_rep = good_batch("crm_activities", n=5, changes={i: {"rep_id": None} for i in range(5)})
    outcomes = validate_batches(
        {"full": (good_batch("crm_activities", n=5), full), "no_rep": (no_rep, without_rep), "odd": (odd, full)}
    )
    assert outcomes["full"].success and outcomes["no_rep"].success
    assert outcomes["no_rep"].evaluated == outcomes["full"].evaluated - 1
    assert [(f.expectation_type, f.column) for f in outcomes["odd"].failed] == [
        ("expect_column_arrow_type_to_be", "_row_number")
    ]


def test_validate_batches_judges_checks_without_exact_version_per_batch(good_batch):
    # No exact implementation of a mean: GX judges it on each file alone, never on the files together.
    mean = gx.expectations.ExpectColumnMeanToBeBetween(column="duration_minutes", min_value=0, max_value=60)
    suite = with_expectation(suite_for("crm_activities", now=LOADED_AT), mean)
    short = good_batch("crm_activities", n=6)
    long = good_batch("crm_activities", n=6, changes={i: {"duration_minutes": 500.0} for i in range(6)})
    outcomes = validate_batches({"short": (short, suite), "long": (long, suite)})
    means = {
        k: [(c.success, c.basis) for c in o.checks if c.expectation_type == "expect_column_mean_to_be_between"]
        for k, o in outcomes.items()
    }
    assert means == {"short": [(True, BASIS_GX)], "long": [(False, BASIS_GX)]}
    assert "judged by GX on this batch alone: expect_column_mean_to_be_between(duration_minutes)" in (
        outcomes["long"].sample_description
    )


def test_validate_batches_duplicate_row_numbers_are_found_without_sort_shortcut(good_batch):
    # _row_number rising within each file takes the no-sort path; a repeat in one file must still fail.
    suite = suite_for("crm_reps", now=LOADED_AT)
    rising, repeated = good_batch("crm_reps", n=6), good_batch("crm_reps", n=6)
    repeated["_row_number"] = pd.Series([1, 2, 3, 3, 5, 6], dtype=repeated["_row_number"].dtype)
    outcomes = validate_batches({"rising": (rising, suite), "repeated": (repeated, suite)})
    key = ("expect_column_values_to_be_unique", "_row_number")
    row_number = {k: [c for c in o.checks if (c.expectation_type, c.column) == key] for k, o in outcomes.items()}
    assert [(c.success, c.observed) for c in row_number["rising"]] == [(True, "0 of 6 values unexpected (0.00%)")]
    assert [(c.success, c.observed[:30]) for c in row_number["repeated"]] == [
        (False, "2 of 6 values unexpected (33.3")
    ]


@pytest.fixture
def gx_runs(monkeypatch) -> list[int]:
    """The rows of every GX run `quality.validate` makes from here on, in order."""
    import quality.validate

    calls: list[int] = []
    real = quality.validate._run_gx

    def counting(frame, suite_):
        calls.append(len(frame))
        return real(frame, suite_)

    monkeypatch.setattr(quality.validate, "_run_gx", counting)
    return calls


def test_validate_batches_reuses_the_gx_sample_run_across_calls(activity_files, gx_runs):
    """Files validated a group at a time share one GX run per suite and schema, with the same results."""
    suite = suite_for("crm_activities", now=LOADED_AT)
    calls = gx_runs
    together = validate_batches({k: (f, suite) for k, f in activity_files.items()}, shared_sample_rows=20)
    calls.clear()
    runs: dict = {}
    in_groups = {}
    for name, frame in activity_files.items():  # one call per file, as ingestion does past a million rows
        in_groups |= validate_batches({name: (frame, suite)}, shared_sample_rows=20, shared_runs=runs)
    assert len(calls) == 1
    for name in activity_files:
        assert [(c.expectation_type, c.column, c.success, c.observed, c.basis) for c in in_groups[name].checks] == [
            (c.expectation_type, c.column, c.success, c.observed, c.basis) for c in together[name].checks
        ]
    later = list(activity_files)[1]
    assert "earlier batch(es) with this schema and suite (none of this batch's" in in_groups[later].sample_description
    assert in_groups[later].sampled


def test_a_kept_gx_run_serves_the_suite_built_later_with_that_suites_own_moment(good_batch, gx_runs):
    """Ingestion judges each group at the moment it validates it: one GX run, each group's own "now"."""
    # Loaded an hour after LOADED_AT: "not after the load" fails for a suite of LOADED_AT, passes an hour later.
    later = good_batch("crm_reps", n=6, changes={i: {"_loaded_at": LOADED_AT + timedelta(hours=1)} for i in range(6)})
    early, late = suite_for("crm_reps", now=LOADED_AT), suite_for("crm_reps", now=LOADED_AT + timedelta(hours=2))
    runs: dict = {}
    first = validate_batches({"first": (later, late)}, shared_runs=runs)["first"]
    second = validate_batches({"second": (later, early)}, shared_runs=runs)["second"]
    third = validate_batches({"third": (later, late)}, shared_runs=runs)["third"]
    assert len(gx_runs) == 1  # the three suites differ only in their moment: one GX run serves them all
    assert first.success and third.success
    assert [(f.expectation_type, f.column) for f in second.failed] == [
        ("expect_column_values_to_be_between", "_loaded_at")
    ]
    loaded_at = [c for c in second.checks if c.column == "_loaded_at" and "between" in c.expectation_type]
    assert [c.expected for c in loaded_at] == [f"max_value={LOADED_AT}"]  # the suite's own, not the kept run's
    # Against each suite validated alone, the same results.
    for outcome, suite in ((first, late), (second, early)):
        alone = validate(later, suite, **EXACT_ALONE)
        assert [(c.expectation_type, c.column, c.success, c.expected) for c in outcome.checks] == [
            (c.expectation_type, c.column, c.success, c.expected) for c in alone.checks
        ]


def test_a_suite_that_differs_in_more_than_its_moment_gets_its_own_gx_run(good_batch):
    runs: dict = {}
    reps = good_batch("crm_reps", n=6)
    validate_batches({"a": (reps, suite_for("crm_reps", now=LOADED_AT))}, shared_runs=runs)
    validate_batches({"b": (reps, suite_for("crm_reps", now=LOADED_AT + timedelta(days=1)))}, shared_runs=runs)
    assert len(runs) == 1
    mean = gx.expectations.ExpectColumnMeanToBeBetween(column="_row_number", min_value=0, max_value=60)
    outcome = validate_batches(
        {"c": (reps, with_expectation(suite_for("crm_reps", now=LOADED_AT), mean))}, shared_runs=runs
    )["c"]
    assert len(runs) == 2 and "expect_column_mean_to_be_between" in {c.expectation_type for c in outcome.checks}
