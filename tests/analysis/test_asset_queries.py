"""The analysis assets' SQL (aggregates, pivots, integer join keys) gives the tables the row-level path gives.

The assets hand `analysis.tables` pre-aggregated or pre-pivoted frames so that a million customers do
not travel through pandas row by row. These tests build tiny marts in an in-memory DuckDB, run each
asset's builder on it, and compare with the table computed from the plain mart rows by the long-form
functions the rest of tests/analysis checks by hand: any difference is a bug in the SQL.
"""

from __future__ import annotations

import datetime as dt

import duckdb
import numpy as np
import pandas as pd
import pytest

from analysis import tables
from orchestration.defs.analysis import assets

SEGMENTS = ("smb", "mid_market", "enterprise")
AS_OF = dt.datetime(2025, 6, 30, 14, 59, 59)


def _category(score: int) -> str:
    return "promoter" if score >= 9 else "passive" if score >= 7 else "detractor"


@pytest.fixture()
def marts() -> tuple[duckdb.DuckDBPyConnection, dict[str, pd.DataFrame]]:
    """A connection with small marts.* tables, and the same tables as pandas frames."""
    rng = np.random.default_rng(3)
    n_customers, n_responses = 300, 900
    customer_ids = [f"C{i:05d}" for i in rng.permutation(n_customers)]
    customers = pd.DataFrame(
        {
            "customer_id": customer_ids,
            # A few customers without a segment: left out of the correlation only.
            "segment": [None if i % 37 == 0 else SEGMENTS[i % 3] for i in range(n_customers)],
            "outbound_contacts_first_7d": pd.array(
                [None if i % 11 == 0 else int(rng.integers(0, 6)) for i in range(n_customers)], dtype="Int64"
            ),
            "handoff_days": [None if i % 7 == 0 else float(rng.uniform(-2, 90)) for i in range(n_customers)],
            # Every 7th customer is not handed off: of those, some never ordered, some ordered within the
            # last 60 days before AS_OF (still open), the rest long before (never handed off).
            "first_order_at": [
                None if i % 21 == 0 else AS_OF - dt.timedelta(days=10 if i % 14 == 0 else 200)
                for i in range(n_customers)
            ],
        }
    )
    # The hand-off instant the days were measured to; NULL when not handed off.
    customers["first_account_management_contact_at"] = [
        None if days is None or pd.isna(days) else first + dt.timedelta(days=days)
        for first, days in zip(customers["first_order_at"], customers["handoff_days"], strict=True)
    ]
    scores = rng.integers(0, 11, n_responses)
    month_index = rng.integers(0, 6, n_responses)
    response_customers = rng.choice([*customer_ids, "C99999"], n_responses)  # one orphan customer
    responses = pd.DataFrame(
        {
            "response_id": [f"SR{i:06d}" for i in rng.permutation(n_responses)],
            "customer_id": response_customers,
            "response_month": [dt.date(2025, 1 + int(m), 1) for m in month_index],
            # Before and after each customer's first order, first week and hand-off.
            "responded_at": [AS_OF - dt.timedelta(days=float(d)) for d in rng.uniform(0, 300, n_responses)],
            "nps_score": scores,
            "nps_category": [_category(int(s)) for s in scores],
            "repeat_after": pd.array([None if i % 5 == 0 else int(rng.integers(0, 2)) for i in range(n_responses)],
                                     dtype="Int64"),
            "revenue_next_365d": [None if i % 9 == 0 else float(rng.gamma(2, 500)) for i in range(n_responses)],
        }
    )
    segment_of = dict(zip(customers["customer_id"], customers["segment"], strict=True))
    responses["segment"] = responses["customer_id"].map(segment_of)
    driver_rows = []
    for response_id, score in zip(responses["response_id"], responses["nps_score"], strict=True):
        for k, driver in enumerate(("responsiveness", "expertise", "billing_accuracy", "onboarding")):
            if driver == "onboarding" and rng.random() < 0.9:
                continue  # rarely rated: excluded for min_n
            if driver == "billing_accuracy" and rng.random() < 0.4:
                continue  # partially rated
            rating = None if rng.random() < 0.05 else float(np.clip(round(score * (0.5 + 0.1 * k) + rng.normal(0, 2)),
                                                                     0, 10))
            driver_rows.append((response_id, driver, rating))
    driver_scores = pd.DataFrame(driver_rows, columns=["response_id", "driver", "score"])
    months = pd.DataFrame(
        [(c, dt.date(2025, 1 + m, 1), None if (i + m) % 13 == 0 else float(rng.gamma(1.5, 100)))
         for i, c in enumerate(customer_ids) for m in range(6)],
        columns=["customer_id", "month", "revenue"],
    )
    con = duckdb.connect()
    con.execute("create schema marts")
    con.execute("create schema intermediate")
    con.execute("create table intermediate.int_run_parameters as select ?::timestamp as as_of_at", [AS_OF])
    for name, frame in {"dim_customers": customers, "fct_survey_responses": responses,
                        "fct_survey_driver_scores": driver_scores, "fct_customer_months": months}.items():
        con.register("frame", frame)
        con.execute(f"create table marts.{name} as select * from frame")
        con.unregister("frame")
    frames = {"customers": customers, "responses": responses, "driver_scores": driver_scores, "months": months}
    yield con, frames
    con.close()


def test_key_drivers_pivoted_in_sql_equals_long_form(marts) -> None:
    con, frames = marts
    expected = tables.key_drivers(frames["driver_scores"], frames["responses"][["response_id", "nps_score"]])
    got = assets.build_key_drivers(con)
    assert "onboarding" in set(got.loc[got["excluded_reason"].notna(), "driver"])  # the thin-data path is covered
    pd.testing.assert_frame_equal(got, expected)


def test_key_drivers_duplicate_rating_in_the_mart_raises(marts) -> None:
    con, _ = marts
    con.execute("insert into marts.fct_survey_driver_scores select * from marts.fct_survey_driver_scores limit 1")
    with pytest.raises(ValueError, match="twice"):
        assets.build_key_drivers(con)


def test_nps_revenue_with_sql_segment_month_sums_equals_row_form(marts) -> None:
    con, frames = marts
    responses = frames["responses"].rename(columns={"response_month": "month"})
    months = frames["months"].merge(frames["customers"][["customer_id", "segment"]], on="customer_id", how="left")
    expected = tables.nps_revenue(responses, months)
    got = assets.build_nps_revenue(con)
    assert got.set_index("category").at[tables.CORRELATION_CATEGORY, "n_cells"] >= 4  # a real correlation
    pd.testing.assert_frame_equal(got, expected, check_exact=False, rtol=1e-12)


@pytest.mark.parametrize("value", ["'bogus'", "null"])
def test_nps_revenue_summed_in_sql_still_refuses_an_unknown_category(marts, value) -> None:
    con, _ = marts
    con.execute(f"update marts.fct_survey_responses set nps_category = {value} "
                "where response_id = (select min(response_id) from marts.fct_survey_responses)")
    with pytest.raises(ValueError, match="outside"):
        assets.build_nps_revenue(con)


def test_segment_month_revenue_aggregate_input_is_taken_as_is() -> None:
    rows = pd.DataFrame(
        {
            "customer_id": ["a", "a", "b", "c"],
            "month": pd.to_datetime(["2025-01-01", "2025-02-01", "2025-01-01", "2025-01-01"]),
            "revenue": [10.0, 5.0, None, 7.0],
            "segment": ["smb", "smb", "smb", None],
        }
    )
    summed = tables.segment_month_revenue(rows)
    assert summed.to_dict("records") == [
        {"segment": "smb", "month": pd.Timestamp("2025-01-01"), "revenue": 10.0, "customers": 2},
        {"segment": "smb", "month": pd.Timestamp("2025-02-01"), "revenue": 5.0, "customers": 1},
    ]
    pd.testing.assert_frame_equal(tables.segment_month_revenue(summed), summed)
    with pytest.raises(ValueError, match="duplicate"):
        tables.segment_month_revenue(pd.concat([summed, summed]))


@pytest.mark.parametrize(("build", "function", "column"), [
    (assets.build_contact_timing, tables.contact_timing, "outbound_contacts_first_7d"),
    (assets.build_handoff, tables.handoff, "handoff_days"),
])
def test_customer_bins_joined_on_integer_keys_equal_string_ids(marts, build, function, column) -> None:
    """The SQL's counts equal the row form's on the responses given after the event that defines the bin."""
    con, frames = marts
    customers = frames["customers"]
    responses = frames["responses"].merge(customers, on="customer_id", how="inner")
    first_order = pd.to_datetime(responses["first_order_at"])
    if column == "handoff_days":  # the customers whose hand-off is known (build_handoff)
        ordered = customers["first_order_at"].notna()
        due = customers["first_order_at"] <= AS_OF - dt.timedelta(days=tables.HANDOFF_NEVER_AFTER_DAYS)
        customers = customers[ordered & (customers["handoff_days"].notna() | due)]
        handed_off = pd.to_datetime(responses["first_account_management_contact_at"])
        never_since = first_order + pd.Timedelta(days=tables.HANDOFF_NEVER_AFTER_DAYS)
        after = (responses["responded_at"] > handed_off).where(handed_off.notna(),
                                                                responses["responded_at"] >= never_since)
    else:
        after = responses["responded_at"] >= first_order + pd.Timedelta(days=7)
    counted = responses[after.fillna(False).astype(bool)]
    assert 0 < len(counted) < len(responses)  # the fixture has responses on both sides
    expected = function(customers[["customer_id", column]], counted[["customer_id", "nps_category", "repeat_after"]])
    pd.testing.assert_frame_equal(build(con), expected)


def test_handoff_never_holds_only_customers_long_past_their_first_order(marts) -> None:
    con, frames = marts
    customers = frames["customers"]
    not_handed_off = customers[customers["handoff_days"].isna()]
    long_ago = not_handed_off["first_order_at"] == AS_OF - dt.timedelta(days=200)
    assert 0 < long_ago.sum() < len(not_handed_off)  # the fixture has all three kinds
    table = assets.build_handoff(con).set_index("bin_label")
    assert table.loc["never", "customers"] == long_ago.sum()


@pytest.mark.parametrize(("column", "value", "message"), [
    ("nps_category", "'bogus'", "outside"),
    ("nps_category", "null", "outside"),
    ("repeat_after", "2", "must be 0, 1 or NULL"),
])
def test_customer_bins_counted_in_sql_still_refuse_bad_values(marts, column, value, message) -> None:
    con, _ = marts
    con.execute(f"""
        update marts.fct_survey_responses set {column} = {value}
        where response_id = (select min(r.response_id) from marts.fct_survey_responses as r
                             join marts.dim_customers as c on c.customer_id = r.customer_id
                             where c.first_account_management_contact_at < r.responded_at)  -- counted
    """)
    with pytest.raises(ValueError, match=message):
        assets.build_handoff(con)


def test_customer_bins_duplicate_customer_still_raises(marts) -> None:
    con, _ = marts
    # A customer build_handoff counts (handed off): the duplicate must reach the grain check.
    con.execute("insert into marts.dim_customers select * from marts.dim_customers where handoff_days > 0 limit 1")
    with pytest.raises(ValueError, match="duplicate"):
        assets.build_handoff(con)
