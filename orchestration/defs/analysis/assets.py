"""Analysis assets: thin wrappers that read marts, call `analysis/`, and write the `analysis` schema.

The statistics live in `analysis/` (plain Python, tested on its own). Each asset here queries the
marts it needs, calls one function, appends the run's rows to `analysis.<table>`, and reports a
check: blocking (ERROR) when the output is non-finite or a model did not converge, a WARN when the
data are too thin for the figure (the report then says "not enough data" instead of a number).
"""

from collections.abc import Callable, Iterator

import dagster as dg
import duckdb
import numpy as np
import pandas as pd

from analysis import tables
from analysis.errors import InsufficientDataError
from analysis.link import fit_link
from orchestration.lib.resources import NpsLinkResource
from orchestration.lib.warehouse import run_as_of, write_run_table

# The link model's covariates: what confounds contact frequency, NPS and repeat purchase. Segment and
# business unit drive contact policy and loyalty; survey type changes who answers; tenure and prior-year
# revenue (log, per million) capture relationship depth; first-week contacts and the hand-off delay
# are the onboarding experience, which moves NPS on its own. Customers never handed off get the
# window's length as delay and a flag, so they are kept rather than dropped.
LINK_COVARIATES = (
    "segment", "business_unit", "survey_type", "tenure_years", "log_revenue_prior_365d",
    "first_week_contacts", "handoff_days_filled", "never_handed_off",
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
    yield dg.MaterializeResult(
        asset_key=key,
        metadata={"rows": dg.MetadataValue.int(rows), "preview": dg.MetadataValue.md(frame.head(12).to_markdown())},
    )
    yield dg.AssetCheckResult(asset_key=key, check_name="usable_output", passed=ok, metadata={"reason": reason})


def _spec(table: str, deps: list[str], description: str) -> dg.AssetSpec:
    return dg.AssetSpec(
        key=dg.AssetKey(["analysis", table]), deps=[_mart(d) for d in deps], group_name="analysis",
        kinds={"python", "duckdb"}, description=description,
    )


def _usable(table: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec("usable_output", asset=dg.AssetKey(["analysis", table]), blocking=True,
                             description="Enough rows, a converged model, and finite numbers.")


# ---- link: contacts -> NPS score -> repeat ----------------------------------------------------------

LINK_FRAME_SQL = """
    select
        r.response_id, r.customer_id, r.contacts_per_month, r.nps_score, r.repeat_after,
        r.segment, r.business_unit, r.survey_type,
        r.tenure_days / 365.25 as tenure_years,
        ln(1 + greatest(coalesce(r.revenue_prior_365d, 0), 0) / 1e6) as log_revenue_prior_365d,
        coalesce(c.outbound_contacts_first_7d, 0) as first_week_contacts,
        coalesce(c.handoff_days, p.contact_window_days) as handoff_days_filled,
        case when c.handoff_days is null then 1 else 0 end as never_handed_off
    from marts.fct_survey_responses as r
    left join marts.dim_customers as c on r.customer_id = c.customer_id
    cross join intermediate.int_run_parameters as p
    where r.repeat_after is not null
"""


def build_link_effects(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Fit the contacts -> score -> repeat link on every uncensored response, clustered by customer."""
    frame = con.execute(LINK_FRAME_SQL).df()
    result = fit_link(
        frame, exposure="contacts_per_month", mediator="nps_score", outcome="repeat_after",
        covariates=LINK_COVARIATES, outcome_kind="binary", n_boot=LINK_BOOTSTRAP_REPLICATES, seed=0,
        cluster="customer_id",
    )
    if not result.converged:
        raise RuntimeError("the link model did not converge")
    return tables.link_effects_table(
        result, exposure="contacts_per_month", mediator="nps_score", outcome="repeat_after"
    )


@dg.multi_asset(
    specs=[_spec("link_effects", ["fct_survey_responses", "dim_customers"],
                 "Indirect, direct and total effect of one more outbound contact a month on repeat rate, via NPS.")],
    check_specs=[_usable("link_effects")],
)
def link_effects(context: dg.AssetExecutionContext, nps_link: NpsLinkResource) -> Iterator:
    """The link: a_path, b_path, direct, indirect, total and proportion mediated, with bootstrap CIs.

    Grain: run x effect. Uncensored responses only; covariates LINK_COVARIATES; clusters = customers.
    """
    yield from _run(context, nps_link, "link_effects", build_link_effects)


# ---- dose-response -----------------------------------------------------------------------------------

def build_dose_response(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Score, NPS and repeat rate by contacts-per-month bin."""
    frame = con.execute(
        "select contacts_per_month, nps_score, nps_category, repeat_after from marts.fct_survey_responses"
    ).df()
    return tables.dose_response(frame)


@dg.multi_asset(
    specs=[_spec("dose_response", ["fct_survey_responses"],
                 "NPS and repeat rate by contact-frequency bin, to show diminishing returns or over-contact.")],
    check_specs=[_usable("dose_response")],
)
def dose_response(context: dg.AssetExecutionContext, nps_link: NpsLinkResource) -> Iterator:
    """Mean score, NPS and repeat rate per contacts-per-month bin, with CIs. Grain: run x bin."""
    yield from _run(context, nps_link, "dose_response", build_dose_response)


# ---- key drivers -------------------------------------------------------------------------------------

def build_key_drivers(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Relative weights of the driver items on the 0-10 score, with their mean rating."""
    scores = con.execute("select response_id, driver, score from marts.fct_survey_driver_scores").df()
    responses = con.execute("select response_id, nps_score from marts.fct_survey_responses").df()
    return tables.key_drivers(scores, responses)


@dg.multi_asset(
    specs=[_spec("key_drivers", ["fct_survey_driver_scores", "fct_survey_responses"],
                 "Which CX items move the score most (Johnson's relative weights) and the top 5 to improve.")],
    check_specs=[_usable("key_drivers")],
)
def key_drivers(context: dg.AssetExecutionContext, nps_link: NpsLinkResource) -> Iterator:
    """Importance (share of R-squared) x performance (mean rating) per driver item. Grain: run x driver."""
    yield from _run(context, nps_link, "key_drivers", build_key_drivers)


# ---- NPS and revenue ---------------------------------------------------------------------------------

def build_nps_revenue(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Revenue in the year after a response by NPS category, and NPS-revenue correlation by segment-month."""
    responses = con.execute(
        """
        select customer_id, responded_at, response_month as month, nps_category, nps_score, segment,
               revenue_next_365d
        from marts.fct_survey_responses
        """
    ).df()
    months = con.execute(
        """
        select m.customer_id, m.month, m.revenue, m.responses, m.avg_nps_score, c.segment
        from marts.fct_customer_months as m
        left join marts.dim_customers as c on m.customer_id = c.customer_id
        """
    ).df()
    return tables.nps_revenue(responses, months)


@dg.multi_asset(
    specs=[_spec("nps_revenue", ["fct_survey_responses", "fct_customer_months", "dim_customers"],
                 "Revenue after a response by NPS category, and how NPS tracks revenue by segment and month.")],
    check_specs=[_usable("nps_revenue")],
)
def nps_revenue(context: dg.AssetExecutionContext, nps_link: NpsLinkResource) -> Iterator:
    """NPS vs revenue. Grain: run x NPS category (plus one correlation row)."""
    yield from _run(context, nps_link, "nps_revenue", build_nps_revenue)


# ---- month-on-month changes --------------------------------------------------------------------------

def build_nps_changes(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Each NPS cell against the same cell a month earlier, with a multiple-testing-adjusted p-value."""
    return tables.nps_changes(con.execute("select * from marts.nps_by_period").df())


@dg.multi_asset(
    specs=[_spec("nps_changes", ["nps_by_period"],
                 "Month-on-month NPS changes per cell, flagged when beyond sampling error.")],
    check_specs=[_usable("nps_changes")],
)
def nps_changes(context: dg.AssetExecutionContext, nps_link: NpsLinkResource) -> Iterator:
    """NPS changes against the previous month. Grain: run x month x survey type x dimension x value."""
    yield from _run(context, nps_link, "nps_changes", build_nps_changes)


# ---- contact timing and hand-off ---------------------------------------------------------------------

RESPONSES_FOR_CUSTOMER_BINS = "select customer_id, nps_category, repeat_after from marts.fct_survey_responses"


def build_contact_timing(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """NPS and repeat rate by outbound contacts in the first 7 days after the first order."""
    customers = con.execute("select customer_id, outbound_contacts_first_7d from marts.dim_customers").df()
    return tables.contact_timing(customers, con.execute(RESPONSES_FOR_CUSTOMER_BINS).df())


@dg.multi_asset(
    specs=[_spec("contact_timing", ["dim_customers", "fct_survey_responses"],
                 "Does contact in the first week after the first order pay off in NPS and repeat rate?")],
    check_specs=[_usable("contact_timing")],
)
def contact_timing(context: dg.AssetExecutionContext, nps_link: NpsLinkResource) -> Iterator:
    """NPS and repeat by first-week contacts. Grain: run x contact bin."""
    yield from _run(context, nps_link, "contact_timing", build_contact_timing)


def build_handoff(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """NPS and repeat rate by days from first order to the first account-management contact."""
    customers = con.execute("select customer_id, handoff_days from marts.dim_customers").df()
    return tables.handoff(customers, con.execute(RESPONSES_FOR_CUSTOMER_BINS).df())


@dg.multi_asset(
    specs=[_spec("handoff", ["dim_customers", "fct_survey_responses"],
                 "Does a slow hand-off from new sales to account management cost NPS?")],
    check_specs=[_usable("handoff")],
)
def handoff(context: dg.AssetExecutionContext, nps_link: NpsLinkResource) -> Iterator:
    """NPS and repeat by hand-off delay. Grain: run x delay bin."""
    yield from _run(context, nps_link, "handoff", build_handoff)
