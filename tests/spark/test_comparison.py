"""The DuckDB-vs-Spark comparison rules, pinned on hand-made Arrow tables (no engine, well under a second).

Each test builds a 'duckdb' and a 'spark' copy of a small table that differ in exactly one way (or
not at all) and checks that the comparison reports that way, with the right count, and nothing else.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pyarrow as pa

from tests.spark.compare import compare_marts
from tests.spark.comparison import NUMERIC_TOLERANCE, TableComparison, compare_tables, grain_keys, summary_line


def orders(**overrides: list) -> pa.Table:
    """Three orders: a string key, a timestamp, a date, a double, a decimal, a boolean and a nullable text."""
    columns = {
        "order_id": ["o1", "o2", "o3"],
        "ordered_at": pa.array(
            [datetime(2025, 1, 1, 9, 30), datetime(2025, 2, 1, 0, 0, 0, 123456), datetime(2025, 3, 31, 23, 59, 59)],
            pa.timestamp("us"),
        ),
        "month": [date(2025, 1, 1), date(2025, 2, 1), date(2025, 3, 1)],
        "amount_reporting": [1500.0, 0.1 + 0.2, 2.5e9],
        "amount": pa.array([Decimal("10.0000"), Decimal("0.3000"), Decimal("25.5000")], pa.decimal128(20, 4)),
        "is_orphan_customer": [False, True, False],
        "product_line": ["placement", None, "consulting"],
    }
    columns.update(overrides)
    return pa.table(columns)


def kinds_of(result: TableComparison) -> list[str]:
    """The kinds of the differences found, in report order."""
    return [d.kind for d in result.differences]


def test_compare_tables_same_rows_in_other_order_and_column_order_has_no_differences() -> None:
    duck = orders()
    spark = duck.take([2, 0, 1]).select(list(reversed(duck.column_names)))

    result = compare_tables("fct_orders", duck, spark, ["order_id"])

    assert result.differences == []
    assert (result.rows_left, result.rows_right, result.columns) == (3, 3, 7)


def test_compare_tables_double_within_tolerance_is_equal_and_beyond_is_one_cell() -> None:
    # 2.5e9 may move by 2.5 (relative 1e-9) and 0.3 by 1e-9 (absolute below 1), not more.
    within = orders(amount_reporting=[1500.0 + 1e-7, 0.3 + 0.9 * NUMERIC_TOLERANCE, 2.5e9 + 2.0])
    beyond = orders(amount_reporting=[1500.0, 0.3 + 3 * NUMERIC_TOLERANCE, 2.5e9])

    assert compare_tables("fct_orders", orders(), within, ["order_id"]).differences == []
    result = compare_tables("fct_orders", orders(), beyond, ["order_id"])
    assert [(d.kind, d.column, d.count) for d in result.differences] == [
        ("unequal cells", "amount_reporting", 1)
    ]
    assert "order_id='o2'" in result.differences[0].examples[0]


def test_compare_tables_decimal_against_double_of_same_values_is_a_kind_difference() -> None:
    # Spark turns `100.0 * count / count` into DECIMAL(38,14) where DuckDB gives DOUBLE: the values
    # agree to 1e-14, but an analyst's arithmetic on the column would not.
    spark = orders(amount=[10.0, 0.3, 25.5])

    result = compare_tables("fct_orders", orders(), spark, ["order_id"])

    assert [(d.kind, d.column) for d in result.differences] == [("kind duckdb=decimal spark=float", "amount")]


def test_compare_tables_integer_widths_may_differ() -> None:
    spark = orders(order_id=pa.array([1, 2, 3], pa.int64()))

    result = compare_tables("fct_orders", orders(order_id=pa.array([1, 2, 3], pa.int32())), spark, ["order_id"])

    assert result.differences == []


def test_compare_tables_timestamp_one_microsecond_later_is_a_difference() -> None:
    moved = orders().column("ordered_at").to_pylist()
    moved[1] += timedelta(microseconds=1)

    spark = orders(ordered_at=pa.array(moved, pa.timestamp("us")))

    result = compare_tables("fct_orders", orders(), spark, ["order_id"])

    assert [(d.column, d.count) for d in result.differences] == [("ordered_at", 1)]
    assert "2025-02-01 00:00:00.123456" in result.differences[0].examples[0]


def test_compare_tables_utc_aware_timestamps_equal_naive_utc_ones() -> None:
    # Spark hands its TIMESTAMP to Arrow as UTC-aware; DuckDB's naive TIMESTAMP holds the same UTC wall time.
    aware = orders().column("ordered_at").cast(pa.timestamp("us", tz="UTC"))
    tokyo = orders().column("ordered_at").cast(pa.timestamp("us", tz="UTC")).cast(pa.timestamp("us", tz="Asia/Tokyo"))

    assert compare_tables("fct_orders", orders(), orders(ordered_at=aware), ["order_id"]).differences == []
    assert compare_tables("fct_orders", orders(), orders(ordered_at=tokyo), ["order_id"]).differences == []


def test_compare_tables_null_against_value_is_a_difference_both_ways() -> None:
    spark = orders(product_line=["placement", "", "consulting"], amount_reporting=[None, 0.1 + 0.2, 2.5e9])

    result = compare_tables("fct_orders", orders(amount_reporting=[0.0, 0.1 + 0.2, 2.5e9]), spark, ["order_id"])

    assert sorted((d.column, d.count) for d in result.differences) == [("amount_reporting", 1), ("product_line", 1)]


def test_compare_tables_missing_and_extra_rows_are_counted_per_row() -> None:
    duck = orders()
    spark = pa.concat_tables([duck.slice(0, 1), orders(order_id=["o7", "o8", "o9"])])

    result = compare_tables("fct_orders", duck, spark, ["order_id"])

    by_kind = {d.kind: d.count for d in result.differences}
    assert by_kind == {"row count duckdb=3 spark=4": 1, "row only in duckdb": 2, "row only in spark": 3}
    assert result.difference_count == 6


def test_compare_tables_duplicated_grain_key_is_reported_and_stops_the_cell_comparison() -> None:
    spark = orders(order_id=["o1", "o1", "o3"], amount_reporting=[1.0, 2.0, 3.0])

    result = compare_tables("fct_orders", orders(), spark, ["order_id"])

    assert kinds_of(result) == ["duplicated grain key in spark"]
    assert result.differences[0].count == 2


def test_compare_tables_composite_key_with_date_matches_rows() -> None:
    jan, feb = date(2025, 1, 1), date(2025, 2, 1)
    duck = pa.table({"customer_id": ["c1", "c1", "c2"], "month": [jan, feb, jan], "contacts": [1, 2, 3]})
    spark = pa.table({"customer_id": ["c1", "c2", "c1"], "month": [feb, jan, jan], "contacts": [2, 3, 5]})

    result = compare_tables("fct_customer_months", duck, spark, ["customer_id", "month"])

    assert [(d.column, d.count) for d in result.differences] == [("contacts", 1)]
    assert result.differences[0].examples == ("customer_id='c1', month=2025-01-01: duckdb=1.0 spark=5.0",)


def test_compare_tables_date_against_timestamp_is_a_kind_difference() -> None:
    months = [datetime(2025, 1, 1), datetime(2025, 2, 1), datetime(2025, 3, 1)]
    spark = orders(month=pa.array(months, pa.timestamp("us")))

    result = compare_tables("fct_orders", orders(), spark, ["order_id"])

    assert [(d.kind, d.column) for d in result.differences] == [("kind duckdb=date spark=timestamp", "month")]


def test_compare_tables_column_missing_on_one_side_is_a_difference_and_case_is_ignored() -> None:
    spark = orders().drop_columns(["product_line"])
    spark = spark.rename_columns([name.upper() for name in spark.column_names])

    result = compare_tables("fct_orders", orders(), spark, ["order_id"])

    assert [(d.kind, d.column) for d in result.differences] == [("column only in duckdb", "product_line")]


def test_compare_tables_without_grain_key_reports_it_instead_of_guessing() -> None:
    result = compare_tables("new_mart", orders(), orders(), [])

    assert kinds_of(result) == ["no grain key to match rows on"]


def test_grain_keys_reads_unique_tests_of_marts_and_prefers_the_smallest() -> None:
    def model(name: str, schema: str) -> dict:
        return {"resource_type": "model", "name": name, "config": {"schema": schema}}

    def unique(model_id: str, column: str) -> dict:
        return {"resource_type": "test", "attached_node": model_id, "column_name": column,
                "test_metadata": {"name": "unique", "kwargs": {"column_name": column}}}

    def combination(model_id: str, columns: list[str]) -> dict:
        metadata = {"name": "unique_combination_of_columns", "kwargs": {"combination_of_columns": columns}}
        return {"resource_type": "test", "attached_node": model_id, "column_name": None, "test_metadata": metadata}

    manifest = {"nodes": {
        "model.p.fct_orders": model("fct_orders", "marts"),
        "model.p.fct_customer_months": model("fct_customer_months", "marts"),
        "model.p.stg_orders": model("stg_orders", "staging"),
        "test.1": combination("model.p.fct_orders", ["order_id", "customer_id"]),
        "test.2": unique("model.p.fct_orders", "order_id"),
        "test.3": combination("model.p.fct_customer_months", ["customer_id", "month"]),
        "test.4": unique("model.p.stg_orders", "order_id"),
        "test.5": {"resource_type": "test", "attached_node": "model.p.fct_orders", "column_name": "amount",
                   "test_metadata": {"name": "not_null", "kwargs": {}}},
    }}

    assert grain_keys(manifest) == {"fct_orders": ("order_id",), "fct_customer_months": ("customer_id", "month")}


def test_compare_marts_mart_missing_on_spark_counts_in_the_summary() -> None:
    comparisons, extra = compare_marts(
        {"fct_orders": orders(), "dim_reps": pa.table({"rep_id": ["r1"]})},
        {"fct_orders": orders()},
        {"fct_orders": ("order_id",), "dim_reps": ("rep_id",)},
    )

    assert [d.kind for d in extra] == ["mart missing on spark"]
    assert summary_line(comparisons, extra) == "spark-vs-duckdb: 2 marts, 3 rows, 1 differences"


def test_summary_line_of_two_builds_counts_marts_once_and_rows_of_both() -> None:
    first = compare_tables("fct_orders", orders(), orders(), ["order_id"])
    second = compare_tables("fct_orders", orders(), orders(amount_reporting=[0.0, 0.0, 0.0]), ["order_id"])

    assert summary_line([first, second], runs=2) == "spark-vs-duckdb: 1 marts x 2 builds, 6 rows, 3 differences"


def test_every_mart_of_the_project_declares_a_grain_test() -> None:
    # The comparison matches rows on each mart's grain test (STYLE §4); a mart whose YAML lost it
    # made `make test-spark` report "no grain key to match rows on", so pin it on the YAML itself.
    import yaml

    marts = Path(__file__).resolve().parents[2] / "dbt_project" / "models" / "marts"

    def has_grain_test(model: dict) -> bool:
        def names(tests: list) -> set[str]:
            return {next(iter(test)) if isinstance(test, dict) else test for test in tests or []}

        if "unique_combination_of_columns" in names(model.get("data_tests")):
            return True
        return any("unique" in names(column.get("data_tests")) for column in model.get("columns") or [])

    declared = {
        model["name"]: has_grain_test(model)
        for path in marts.rglob("*.yml")
        for model in (yaml.safe_load(path.read_text()) or {}).get("models") or []
    }
    built = {path.stem for path in marts.rglob("*.sql")}

    assert built <= declared.keys()
    assert [name for name in sorted(built) if not declared[name]] == []
