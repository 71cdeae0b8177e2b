"""The contract-derived GX suites: good batches pass, each kind of violation fails naming its column."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from quality.contract import load_contract
from quality.suites import SUITE_BUILDERS, suite_for
from quality.suites._derive import contract_plan, rule_expectations
from quality.validate import lake_frame, validate
from tests.quality.conftest import LOADED_AT

TABLES = sorted(SUITE_BUILDERS)


def failed_on(outcome, expectation_type: str) -> list[str | None]:
    return [f.column for f in outcome.failed if f.expectation_type == expectation_type]


@pytest.mark.parametrize("table", TABLES)
def test_suite_valid_batch_passes(table, good_batch):
    outcome = validate(good_batch(table), suite_for(table, now=LOADED_AT))
    assert outcome.success, outcome.summary()
    assert outcome.failed == []
    assert outcome.evaluated == len(suite_for(table, now=LOADED_AT).expectations)


@pytest.mark.parametrize("table", TABLES)
def test_suite_missing_column_fails_column_set(table, good_batch):
    frame = good_batch(table)
    dropped = frame.columns[1]
    outcome = validate(frame.drop(columns=[dropped]), suite_for(table, now=LOADED_AT))
    assert not outcome.success
    column_set = [f for f in outcome.failed if f.expectation_type == "expect_table_columns_to_match_set"]
    assert column_set and dropped in column_set[0].summary


def test_suite_default_pandas_conversion_fails_arrow_type_naming_column(good_batch):
    # pandas' default conversion turns a decimal into Python objects: not the lake type.
    frame = good_batch("orders")
    default = lake_frame_default(frame)
    outcome = validate(default, suite_for("orders", now=LOADED_AT))
    assert "amount" in failed_on(outcome, "expect_column_arrow_type_to_be")
    assert "order_id" not in failed_on(outcome, "expect_column_arrow_type_to_be")


def lake_frame_default(frame):
    import pyarrow as pa

    return pa.Table.from_pandas(frame, preserve_index=False).to_pandas()


@pytest.mark.parametrize(
    ("table", "column"),
    [
        ("crm_accounts", "customer_id"),
        ("crm_accounts", "created_at"),
        ("crm_reps", "team"),
        ("crm_activities", "direction"),
        ("survey_responses", "nps_score"),
        ("survey_driver_scores", "score"),
        ("orders", "amount"),
        ("orders", "_loaded_at"),
    ],
)
def test_suite_null_in_required_column_fails_not_null(table, column, good_batch):
    outcome = validate(good_batch(table, changes={2: {column: None}}), suite_for(table, now=LOADED_AT))
    assert not outcome.success
    assert column in failed_on(outcome, "expect_column_values_to_not_be_null")


@pytest.mark.parametrize(
    ("table", "column", "value"),
    [
        ("crm_reps", "team", "marketing"),
        ("crm_activities", "activity_type", "fax"),
        ("crm_activities", "direction", "sideways"),
        ("survey_responses", "survey_type", "pulse"),
        ("orders", "status", "lost"),
    ],
)
def test_suite_value_outside_enum_fails_in_set(table, column, value, good_batch):
    outcome = validate(good_batch(table, changes={1: {column: value}}), suite_for(table, now=LOADED_AT))
    assert not outcome.success
    failure = next(f for f in outcome.failed if f.expectation_type == "expect_column_values_to_be_in_set")
    assert failure.column == column
    assert value in failure.summary


@pytest.mark.parametrize(
    ("table", "column", "value"),
    [
        ("survey_responses", "nps_score", 11),
        ("survey_responses", "nps_score", -1),
        ("survey_driver_scores", "score", 12),
        ("crm_activities", "duration_minutes", -5.0),
    ],
)
def test_suite_value_out_of_range_fails_between(table, column, value, good_batch):
    outcome = validate(good_batch(table, changes={0: {column: value}}), suite_for(table, now=LOADED_AT))
    assert not outcome.success
    assert column in failed_on(outcome, "expect_column_values_to_be_between")


def test_suite_lowercase_currency_fails_iso_code_rule(good_batch):
    outcome = validate(good_batch("orders", changes={3: {"currency": "jpy"}}), suite_for("orders", now=LOADED_AT))
    assert "currency" in failed_on(outcome, "expect_column_values_to_match_regex")


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ("crm_reps", "rep_id"),
        ("crm_activities", "activity_id"),
        ("survey_responses", "response_id"),
        ("orders", "order_id"),
    ],
)
def test_suite_duplicate_key_in_batch_fails_unique(table, key, good_batch):
    frame = good_batch(table)
    duplicated = good_batch(table, changes={4: {key: frame[key].iloc[1]}})
    outcome = validate(duplicated, suite_for(table, now=LOADED_AT))
    assert not outcome.success
    assert key in failed_on(outcome, "expect_column_values_to_be_unique")


def test_suite_accounts_key_unique_with_its_version_so_a_change_history_file_passes(good_batch):
    """sources.yaml: updated_at orders versions of the same customer; one file may carry several."""
    frame = good_batch("crm_accounts")
    later = frame["updated_at"].iloc[1] + timedelta(days=1)
    customer = frame["customer_id"].iloc[1]
    versions = good_batch("crm_accounts", changes={4: {"customer_id": customer, "updated_at": later}})
    assert validate(versions, suite_for("crm_accounts", now=LOADED_AT)).success
    same_version = good_batch("crm_accounts", changes={4: {"customer_id": frame["customer_id"].iloc[1],
                                                           "updated_at": frame["updated_at"].iloc[1]}})
    outcome = validate(same_version, suite_for("crm_accounts", now=LOADED_AT))
    assert "customer_id, updated_at" in failed_on(outcome, "expect_compound_columns_to_be_unique")


def test_driver_scores_same_item_twice_for_a_response_fails_compound_unique(good_batch):
    outcome = validate(
        good_batch("survey_driver_scores", changes={1: {"driver": "speed"}}),
        suite_for("survey_driver_scores", now=LOADED_AT),
    )
    assert "response_id, driver" in failed_on(outcome, "expect_compound_columns_to_be_unique")


def test_driver_scores_item_names_in_any_script_pass_and_an_empty_name_fails(good_batch):
    suite = suite_for("survey_driver_scores", now=LOADED_AT)
    named = good_batch("survey_driver_scores", changes={0: {"driver": "対応速度"}, 1: {"driver": "ease-of-use"}})
    assert validate(named, suite).success
    unnamed = validate(good_batch("survey_driver_scores", changes={0: {"driver": ""}}), suite)
    assert "driver" in failed_on(unnamed, "expect_column_values_to_match_regex")


@pytest.mark.parametrize(
    ("table", "column"),
    [
        ("crm_accounts", "created_at"),
        ("crm_activities", "occurred_at"),
        ("survey_responses", "responded_at"),
        ("orders", "ordered_at"),
    ],
)
def test_suite_timestamp_after_load_time_fails_no_future(table, column, good_batch):
    future = LOADED_AT + timedelta(minutes=5)
    outcome = validate(good_batch(table, changes={5: {column: future}}), suite_for(table, now=LOADED_AT))
    assert not outcome.success
    assert column in failed_on(outcome, "expect_column_values_to_be_between")
    # The same batch judged later is fine: `now` is the batch's load time, passed in.
    assert validate(good_batch(table, changes={5: {column: future}}), suite_for(table, now=future)).success


def test_suite_aware_now_is_compared_as_naive_utc(good_batch):
    from datetime import UTC

    aware = LOADED_AT.replace(tzinfo=UTC) - timedelta(hours=1)
    outcome = validate(good_batch("crm_activities"), suite_for("crm_activities", now=aware))
    # _loaded_at equals LOADED_AT, one hour after `now`
    assert "_loaded_at" in failed_on(outcome, "expect_column_values_to_be_between")


def test_suite_mostly_empty_optional_column_warns_without_failing(good_batch):
    changes = {i: {"segment": None} for i in range(4)}
    outcome = validate(good_batch("crm_accounts", changes=changes), suite_for("crm_accounts", now=LOADED_AT))
    assert outcome.success
    warning = [f for f in outcome.failed if f.column == "segment"]
    assert warning and warning[0].severity == "warning"
    assert outcome.blocking == []


def test_suite_absent_optional_column_skips_its_null_rate_limit(good_batch):
    changes = {i: {"segment": None} for i in range(6)}
    suite = suite_for("crm_accounts", now=LOADED_AT, absent_columns=["segment"])
    outcome = validate(good_batch("crm_accounts", changes=changes), suite)
    assert outcome.failed == []


def test_survey_transactional_rows_without_touchpoint_warn(good_batch):
    changes = {i: {"touchpoint": None} for i in (1, 3, 5)}
    outcome = validate(good_batch("survey_responses", changes=changes), suite_for("survey_responses", now=LOADED_AT))
    assert outcome.success
    assert [(f.column, f.severity) for f in outcome.failed] == [("touchpoint", "warning")]


def test_suite_batch_mixing_two_files_fails(good_batch):
    frame = good_batch("orders")
    frame.loc[0, "_file_sha256"] = "cd" * 32
    outcome = validate(frame, suite_for("orders", now=LOADED_AT))
    assert "_file_sha256" in failed_on(outcome, "expect_column_unique_value_count_to_be_between")


def test_suite_expectations_cover_every_contract_column():
    contract = load_contract()
    for source, spec in contract.sources.items():
        suite = suite_for(source, now=LOADED_AT)
        typed = {e.column for e in suite.expectations if e.expectation_type == "expect_column_arrow_type_to_be"}
        assert set(spec.columns) <= typed
        required = {
            e.column
            for e in suite.expectations
            if e.expectation_type == "expect_column_values_to_not_be_null" and e.mostly == 1
        }
        assert set(spec.required_columns) <= required


def test_suite_plan_is_cached_and_suites_are_independent():
    assert contract_plan("orders") is contract_plan("orders")
    first = suite_for("orders", now=LOADED_AT)
    first.expectations.pop()
    assert len(suite_for("orders", now=LOADED_AT).expectations) == len(first.expectations) + 1


def test_rule_expectations_unknown_contract_rule_raises():
    spec = load_contract().sources["orders"].columns["amount"]
    with pytest.raises(ValueError, match="has no expectation"):
        rule_expectations(replace(spec, rule="prime numbers only"))


def test_suite_for_unknown_table_raises_naming_known_tables():
    with pytest.raises(KeyError, match="crm_accounts"):
        suite_for("invoices", now=datetime(2025, 1, 1))


def test_lake_frame_nullable_integer_and_decimal_keep_lake_types():
    import pyarrow as pa

    table = pa.table(
        {
            "n": pa.array([1, None], pa.int64()),
            "amount": pa.array([Decimal("-1.25"), None], pa.decimal128(20, 4)),
        }
    )
    frame = lake_frame(table)
    assert str(frame["n"].dtype) == "int64[pyarrow]"
    assert str(frame["amount"].dtype) == "decimal128(20, 4)[pyarrow]"
    assert frame["amount"].iloc[0] == Decimal("-1.25")
