"""Analysis assets: thin wrappers that read marts, call `analysis/`, and write the `analysis` schema.

The statistics live in `analysis/` (plain Python, tested on its own). Each asset here queries the
marts it needs, calls one function, appends the run's rows to `analysis.<table>`, and reports a
check: blocking (ERROR) when the output is non-finite or a model did not converge, a WARN when the
data are too thin for the figure (the report then says "not enough data" instead of a number).
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from analysis import tables
from analysis.errors import InsufficientDataError
from analysis.link import fit_link
from orchestration.lib.resources import NpsLinkResource, WarehouseWriter
from orchestration.lib.warehouse import run_as_of, write_run_table

# The link model's covariates: what confounds contact frequency, NPS and repeat purchase. Segment and
# business unit drive contact policy and loyalty; survey type changes who answers; tenure and prior-year
# revenue (log, per million) capture relationship depth; first-week contacts and the hand-off delay
# are the onboarding experience, which moves NPS on its own.
# Every one of them is as known at the response, never after it: a score given on day 5 after the
# first order cannot depend on a hand-off on day 40, and adjusting for what happened later would bias
# every effect. So the onboarding stage at the response is a factor (before the first order, in its
# first week, after it); the first week's contacts count once that week is over; and a customer not
# handed off by the response gets the window's length as delay and a flag, so it is kept, not dropped.
LINK_COVARIATES = (
    "segment", "business_unit", "survey_type", "tenure_years", "log_revenue_prior_365d",
    "onboarding_stage", "first_week_contacts", "handoff_days_filled", "not_handed_off_yet",
)
LINK_BOOTSTRAP_REPLICATES = 1000

Builder = Callable[[duckdb.DuckDBPyConnection], pd.DataFrame]


def _mart(name: str) -> dg.AssetKey:
    return dg.AssetKey(["marts", name])


def _check_frame(frame: pd.DataFrame, min_rows: int = 1) -> tuple[bool, str]:
    """Is the output usable: enough rows and every float finite or an explicit NaN with a reason?"""
    if len(frame) < min_rows:
        return False, f"{len(frame)} rows (need at least {min_rows})"
    numeric = frame.select_dtypes(include="number")
    if np.isinf(numeric.to_numpy(dtype=float, na_value=np.nan)).any():
        return False, "infinite values in the output"
    return True, f"{len(frame)} rows, all values finite"


def _run(
    context: dg.AssetExecutionContext, nps_link: NpsLinkResource, table: str, build: Builder
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """Build one analysis table, append it for this run, and yield its materialization and check."""
    key = dg.AssetKey(["analysis", table])
    with nps_link.build_connection() as con:
        as_of = run_as_of(con)
        try:
            frame = build(con)
        except InsufficientDataError as exc:
            context.log.warning(f"[analysis] {table}: not enough data: {exc}")
            yield dg.MaterializeResult(asset_key=key, metadata={"not_enough_data": str(exc)})
            yield dg.AssetCheckResult(
                asset_key=key, check_name="usable_output", passed=False,
                severity=dg.AssetCheckSeverity.WARN, metadata={"reason": f"not enough data: {exc}"},
            )
            return
        rows = write_run_table(con, table, frame, run_id=context.run_id, as_of=as_of)
    ok, reason = _check_frame(frame)
    context.log.info(f"[analysis] {table}: {rows} rows for as_of {as_of}")
    fit_warnings = [str(w) for w in frame.attrs.get("warnings", ())]
    for warning in fit_warnings:
        context.log.warning(f"[analysis] {table}: {warning}")
    yield dg.MaterializeResult(
        asset_key=key,
        metadata={"rows": dg.MetadataValue.int(rows), "preview": dg.MetadataValue.md(frame.head(12).to_markdown()),
                  **({"warnings": dg.MetadataValue.md("\n".join(f"- {w}" for w in fit_warnings))}
                     if fit_warnings else {})},
    )
    yield dg.AssetCheckResult(asset_key=key, check_name="usable_output", passed=ok, metadata={"reason": reason})


# ---- link: contacts -> NPS score -> repeat ----------------------------------------------------------

# Ordered: the cluster bootstrap deals customers into buckets in the order they first appear, so an
# unordered parallel join (its order varies from run to run once the tables span several row groups)
# gave different intervals for the same data.
LINK_FRAME_SQL = """
    select
        r.customer_id, r.contacts_per_month, r.nps_score, r.repeat_after,
        r.segment, r.business_unit, r.survey_type,
        r.tenure_days / 365.25 as tenure_years,
        -- NULL (the row left out and counted) when an order's currency has no rate: unknown, not 0.
        ln(1 + greatest(r.revenue_prior_365d, 0) / 1e6) as log_revenue_prior_365d,
        case
            when c.first_order_at is null or c.first_order_at >= r.responded_at then 'before_first_order'
            when r.responded_at < c.first_order_at + interval 7 day then 'first_week'
            else 'after_first_week'
        end as onboarding_stage,
        case
            when c.first_order_at + interval 7 day <= r.responded_at then coalesce(c.outbound_contacts_first_7d, 0)
            else 0
        end as first_week_contacts,
        case
            when c.first_account_management_contact_at < r.responded_at then c.handoff_days
            else p.contact_window_days
        end as handoff_days_filled,
        case when c.first_account_management_contact_at < r.responded_at then 0 else 1 end as not_handed_off_yet
    from marts.fct_survey_responses as r
    left join marts.dim_customers as c on r.customer_id = c.customer_id
    cross join intermediate.int_run_parameters as p
    where r.repeat_after is not null
    order by r.response_id
"""


def link_frame(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """The link model's rows (LINK_FRAME_SQL) as a frame with Arrow-backed columns.

    The fit reads the same values from them as from `.df()` (numbers and factor codes), without
    DuckDB's pandas conversion of 1.4M customer ids and three text covariates: at L that conversion
    was 1.9 of the 6.4 s of the link; the read is now 0.6 s.
    """
    return con.sql(LINK_FRAME_SQL).to_arrow_table().to_pandas(types_mapper=pd.ArrowDtype)


def build_link_effects(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Fit the contacts -> score -> repeat link on every uncensored response, clustered by customer."""
    frame = link_frame(con)
    result = fit_link(
        frame, exposure="contacts_per_month", mediator="nps_score", outcome="repeat_after",
        covariates=LINK_COVARIATES, outcome_kind="binary", n_boot=LINK_BOOTSTRAP_REPLICATES, seed=0,
        cluster="customer_id",
    )
    if not result.converged:
        raise RuntimeError("the link model did not converge")
    # The responses the frame leaves out because their repeat window is still open (censored).
    window_open = con.execute("select count(*) from marts.fct_survey_responses where repeat_after is null").fetchall()
    table = tables.link_effects_table(
        result, exposure="contacts_per_month", mediator="nps_score", outcome="repeat_after",
        n_window_open=int(window_open[0][0]),
    )
    table.attrs["warnings"] = list(result.warnings)  # covariates left out, rows dropped: _run logs them
    return table


def build_dose_response(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Score, NPS and repeat rate by contacts-per-month bin."""
    frame = con.execute(
        "select contacts_per_month, nps_score, nps_category, repeat_after from marts.fct_survey_responses"
    ).df()
    return tables.dose_response(frame)


DRIVERS_SQL = """
    select distinct driver from marts.fct_survey_driver_scores where score is not null order by driver
"""

# One row per rated response: its score, one column per driver (d0, d1, ...: NULL when not rated) and
# the most rows any one driver has for it (more than one would break the mart's grain). The scores are
# pivoted on the driver's position in the bound list $1 (an integer compare, and no driver name ever
# becomes SQL text) before the join, so the join reads one row per response instead of one per
# rating; `{columns}` is filled with the pivot's aliases (d0, n0, ...), `{ratings}` and `{counts}`
# with their lists. No order: the fit sums the rows per rating pattern (analysis.drivers.RatingMoments),
# exactly for integer ratings, so their order changes nothing. Ordering two million rows by response
# id and converting them to pandas had cost 1.5 of the 4.1 CPU-s this step took at a million customers.
DRIVER_RATINGS_SQL = """
    with

    scores as (
        select response_id, list_position($1, driver) as driver_position, score
        from marts.fct_survey_driver_scores
        where score is not null
    ),

    responses as (
        select response_id, nps_score from marts.fct_survey_responses where nps_score is not null
    ),

    ratings as (
        select
            response_id,
            {columns}
        from scores
        group by response_id
    )

    select responses.nps_score, {ratings}, greatest({counts}) as most_ratings
    from ratings
    inner join responses on ratings.response_id = responses.response_id
"""


def _floats(column: pa.ChunkedArray) -> np.ndarray:
    """An Arrow column as float64 with NaN for NULL."""
    return column.cast(pa.float64()).to_numpy(zero_copy_only=False)


def build_key_drivers(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Relative weights of the driver items on the 0-10 score, with their mean rating.

    The long mart (a row per response and item, about 6M at a million customers) is pivoted in SQL
    into one row per rated response, handed over as Arrow numbers, and summed per rating pattern.
    """
    drivers = [driver for (driver,) in con.execute(DRIVERS_SQL).fetchall()]
    if not drivers:
        raise InsufficientDataError("key_drivers: no driver score in marts.fct_survey_driver_scores")
    columns = ",\n            ".join(
        f"max(score) filter (where driver_position = {i}) as d{i - 1}, "
        f"count(*) filter (where driver_position = {i}) as n{i - 1}"
        for i in range(1, len(drivers) + 1)
    )
    query = DRIVER_RATINGS_SQL.format(
        columns=columns,
        ratings=", ".join(f"ratings.d{i}" for i in range(len(drivers))),
        counts=", ".join(f"ratings.n{i}" for i in range(len(drivers))),
    )
    wide = con.sql(query, params=[drivers]).to_arrow_table()
    if (pc.max(wide["most_ratings"]).as_py() or 0) > 1:
        raise ValueError("marts.fct_survey_driver_scores has a (response_id, driver) twice")
    ratings = pd.DataFrame({d: _floats(wide[f"d{i}"]) for i, d in enumerate(drivers)})
    return tables.key_drivers_wide(ratings, _floats(wide["nps_score"]))


# Revenue per segment x month, summed in SQL: the customer-month mart has ten million rows at a
# million customers. fsum is a compensated sum like pandas' groupby sum, so the total is the same.
# The mart has one row per customer and month (the grain test on int_customer_months_densified), so
# counting rows counts distinct customers, without the cost of a distinct count over ten million rows.
SEGMENT_MONTH_REVENUE_SQL = """
    with

    customer_months as (
        select customer_id, month, revenue from marts.fct_customer_months
    ),

    customers as (
        select customer_id, segment from marts.dim_customers
    )

    select
        customers.segment,
        customer_months.month,
        coalesce(fsum(customer_months.revenue), 0) as revenue,
        count(customer_months.customer_id) as customers
    from customer_months
    left join customers on customer_months.customer_id = customers.customer_id
    where customers.segment is not null and customer_months.month is not null
    group by customers.segment, customer_months.month
"""


# Responses per NPS category, as the promoters/passives/detractors columns of an aggregate: the
# category names are analysis.tables', which computes every NPS figure from such counts.
CATEGORY_COUNTS_SQL = ", ".join(
    f"count(*) filter (where nps_category = '{category}') as {category}s" for category in tables.CATEGORIES
)

# nps_revenue's aggregates of the responses (tables.nps_revenue_counts gives the same from rows): per
# category, and per segment x month. fsum is a compensated sum, as exact as pandas' grouped sum. The
# per-customer sums are what the mean's interval, clustered by customer, is computed from.
NPS_REVENUE_CATEGORY_SQL = """
    with

    responses as (
        select customer_id, nps_category, revenue_next_365d from marts.fct_survey_responses
    ),

    per_customer as (
        select
            nps_category,
            customer_id,
            count(*) as responses,
            count(revenue_next_365d) as revenue_responses,
            fsum(revenue_next_365d) as revenue_after
        from responses
        group by nps_category, customer_id
    ),

    -- The mean first, then each customer's deviation from it: two passes, no cancellation.
    category_means as (
        select nps_category, fsum(revenue_after) / sum(revenue_responses) as revenue_mean
        from per_customer
        group by nps_category
        having sum(revenue_responses) > 0
    )

    select
        per_customer.nps_category,
        count(per_customer.customer_id) as customers,
        cast(sum(per_customer.responses) as bigint) as responses,
        cast(sum(per_customer.revenue_responses) as bigint) as revenue_responses,
        fsum(per_customer.revenue_after) as revenue_after,
        count(*) filter (where per_customer.revenue_responses > 0) as revenue_customers,
        fsum(power(per_customer.revenue_after - per_customer.revenue_responses * category_means.revenue_mean, 2))
            as revenue_customer_spread
    from per_customer
    left join category_means
        on per_customer.nps_category is not distinct from category_means.nps_category
    group by per_customer.nps_category
"""

NPS_REVENUE_CELLS_SQL = f"""
    with

    responses as (
        select segment, response_month, nps_category from marts.fct_survey_responses
    )

    select
        segment,
        response_month as month,
        {CATEGORY_COUNTS_SQL}
    from responses
    where segment is not null and response_month is not null
    group by segment, response_month
"""


def build_nps_revenue(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Revenue in the year after a response by NPS category, and NPS-revenue correlation by segment-month.

    The responses arrive summed per category and per segment-month, not as two million rows.
    """
    return tables.nps_revenue_from_counts(
        con.execute(NPS_REVENUE_CATEGORY_SQL).df(),
        con.execute(NPS_REVENUE_CELLS_SQL).df(),
        con.execute(SEGMENT_MONTH_REVENUE_SQL).df(),
    )


def build_nps_changes(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Each NPS cell against the same cell a month earlier, with a multiple-testing-adjusted p-value."""
    return tables.nps_changes(con.execute("select * from marts.nps_by_period").df())


# contact_timing and handoff: one row per customer with its bin column and its responses as counts
# (tables.CUSTOMER_RESPONSE_COUNTS), so Python bins a million customers instead of joining two
# million responses to them (at a million customers 0.8-1.1 instead of 1.4 CPU-s each). The counts use
# the tables' category names; a category or repeat value outside them is counted, and refused there.
# customer_id becomes a dense integer (dense_rank keeps a duplicated id a duplicate, so the grain
# check still sees it) because Python only needs it for that check. A response whose customer is
# not in dim_customers counts nowhere, as in the row form. Only responses given after what defines the
# customer's bin count (`counted`): a score given before the hand-off cannot tell how the hand-off went,
# and counting it made customers handed off late, who have more such scores, look worse.
CUSTOMER_RESPONSE_COUNTS_SQL = f"""
    with

    customers as (
        select customer_id, {{column}}, first_order_at, first_account_management_contact_at
        from marts.dim_customers
        {{where}}
    ),

    responses as (
        select responses.customer_id, responses.nps_category, responses.repeat_after
        from marts.fct_survey_responses as responses
        inner join customers on customers.customer_id = responses.customer_id
        where {{counted}}
    ),

    response_counts as (
        select
            customer_id,
            {CATEGORY_COUNTS_SQL},
            count(*) filter (
                where nps_category is null
                    or nps_category not in ('{tables.PROMOTER}', '{tables.PASSIVE}', '{tables.DETRACTOR}')
            ) as other_categories,
            count(repeat_after) as repeat_n,
            coalesce(sum(repeat_after), 0) as repeats,
            count(*) filter (where repeat_after not in (0, 1)) as other_repeats
        from responses
        group by customer_id
    )

    select
        dense_rank() over (order by customers.customer_id) as customer_id,
        customers.{{column}},
        {", ".join(f"coalesce(response_counts.{c}, 0) as {c}" for c in tables.CUSTOMER_RESPONSE_COUNTS)}
    from customers
    left join response_counts on response_counts.customer_id = customers.customer_id
"""


# The responses each bin counts: given once the first week is over (the link's onboarding stage
# 'after_first_week' draws the same line) ...
AFTER_FIRST_WEEK_SQL = "responses.responded_at >= customers.first_order_at + interval 7 day"
# ... and after the hand-off, or, for a customer never handed off, once the first order is
# HANDOFF_NEVER_AFTER_DAYS old (when it became 'never'; a hand-off before the response, as in the link).
AFTER_HANDOFF_SQL = f"""
    case
        when customers.first_account_management_contact_at is not null
            then responses.responded_at > customers.first_account_management_contact_at
        else responses.responded_at >= customers.first_order_at + interval {tables.HANDOFF_NEVER_AFTER_DAYS} day
    end
"""


def build_contact_timing(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """NPS and repeat rate by outbound contacts in the first 7 days after the first order.

    Only responses given after that week count (AFTER_FIRST_WEEK_SQL).
    """
    customers = con.execute(CUSTOMER_RESPONSE_COUNTS_SQL.format(
        column="outbound_contacts_first_7d", where="", counted=AFTER_FIRST_WEEK_SQL)).df()
    return tables.contact_timing(customers)


# The customers whose hand-off is known (tables.handoff): handed off, or never within the last bin's
# time after a first order. Without an order there is nothing to hand off; a recent first order
# without a hand-off yet is still open, as a repeat window or a first week is (censored, left out).
HANDOFF_KNOWN_SQL = f"""
    where first_order_at is not null
        and (
            handoff_days is not null
            or first_order_at <= (select as_of_at from intermediate.int_run_parameters)
                - interval {tables.HANDOFF_NEVER_AFTER_DAYS} day
        )
"""


def build_handoff(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """NPS and repeat rate by days from first order to the first account-management contact.

    Only responses given after the hand-off count (AFTER_HANDOFF_SQL).
    """
    customers = con.execute(CUSTOMER_RESPONSE_COUNTS_SQL.format(
        column="handoff_days", where=HANDOFF_KNOWN_SQL, counted=AFTER_HANDOFF_SQL)).df()
    return tables.handoff(customers)


# ---- the assets: one per analysis table ---------------------------------------------------------------


@dataclass(frozen=True)
class AnalysisTable:
    """One `analysis.<table>` asset: the marts it reads, what it is (the UI description), how to build it."""

    table: str
    marts: tuple[str, ...]
    description: str
    build: Builder


ANALYSIS_ASSETS = (
    AnalysisTable("link_effects", ("fct_survey_responses", "dim_customers"),
                  "The link: indirect, direct and total effect of one more outbound contact a month on the repeat "
                  "rate via the NPS score, with a_path, b_path, proportion mediated and cluster-bootstrap CIs. "
                  "Grain: run x effect. Uncensored responses; covariates LINK_COVARIATES.", build_link_effects),
    AnalysisTable("dose_response", ("fct_survey_responses",),
                  "Mean score, NPS and repeat rate by contacts-per-month bin with CIs, so diminishing returns or "
                  "over-contact show. Grain: run x bin.", build_dose_response),
    AnalysisTable("key_drivers", ("fct_survey_driver_scores", "fct_survey_responses"),
                  "Which CX items move the score most (Johnson's relative weights) against their mean rating, "
                  "and the top 5 to improve. Grain: run x driver.", build_key_drivers),
    AnalysisTable("nps_revenue", ("fct_survey_responses", "fct_customer_months", "dim_customers"),
                  "Revenue in the year after a response by NPS category, and how NPS tracks revenue by segment "
                  "and month. Grain: run x category (plus one correlation row).", build_nps_revenue),
    AnalysisTable("nps_changes", ("nps_by_period",),
                  "Each NPS cell against the same cell a month earlier, flagged when beyond sampling error "
                  "(Benjamini-Hochberg within a month). Grain: run x month x survey type x dimension x value.",
                  build_nps_changes),
    AnalysisTable("contact_timing", ("dim_customers", "fct_survey_responses"),
                  "NPS and repeat rate by outbound contacts in the first 7 days after the first order. "
                  "Grain: run x contact bin.", build_contact_timing),
    AnalysisTable("handoff", ("dim_customers", "fct_survey_responses"),
                  "NPS and repeat rate by days from the first order to the first account-management contact "
                  "(the new-sales to account-management hand-off). Grain: run x delay bin.", build_handoff),
)


# Steps run two at a time (orchestration/lib/threaded_executor.py); the longest start first, so the
# short ones fill in beside them instead of leaving one long step alone at the end.
_PRIORITY = {"link_effects": 2, "key_drivers": 1}


def analysis_asset(spec: AnalysisTable) -> dg.AssetsDefinition:
    """The asset (with its `usable_output` check) that builds and appends one analysis table per run."""
    key = dg.AssetKey(["analysis", spec.table])

    @dg.multi_asset(
        name=spec.table,
        specs=[dg.AssetSpec(key=key, deps=[_mart(m) for m in spec.marts], group_name="analysis",
                            kinds={"python", "duckdb"}, description=spec.description)],
        check_specs=[dg.AssetCheckSpec("usable_output", asset=key, blocking=True,
                                       description="Enough rows, a converged model, and finite numbers.")],
        op_tags={"dagster/priority": str(_PRIORITY.get(spec.table, 0))},
    )
    def _asset(
        context: dg.AssetExecutionContext,
        nps_link: NpsLinkResource,
        warehouse_writer: WarehouseWriter,  # held for the run: one writer per data directory
    ) -> Iterator:
        yield from _run(context, nps_link, spec.table, spec.build)

    return _asset


# Module-level names, so the defs folder loader finds every asset.
(link_effects, dose_response, key_drivers, nps_revenue, nps_changes, contact_timing, handoff) = (
    analysis_asset(spec) for spec in ANALYSIS_ASSETS
)
