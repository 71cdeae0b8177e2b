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


def build_dose_response(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Score, NPS and repeat rate by contacts-per-month bin."""
    frame = con.execute(
        "select contacts_per_month, nps_score, nps_category, repeat_after from marts.fct_survey_responses"
    ).df()
    return tables.dose_response(frame)


def build_key_drivers(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Relative weights of the driver items on the 0-10 score, with their mean rating."""
    scores = con.execute("select response_id, driver, score from marts.fct_survey_driver_scores").df()
    responses = con.execute("select response_id, nps_score from marts.fct_survey_responses").df()
    return tables.key_drivers(scores, responses)


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


def build_nps_changes(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Each NPS cell against the same cell a month earlier, with a multiple-testing-adjusted p-value."""
    return tables.nps_changes(con.execute("select * from marts.nps_by_period").df())


RESPONSES_FOR_CUSTOMER_BINS = "select customer_id, nps_category, repeat_after from marts.fct_survey_responses"


def build_contact_timing(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """NPS and repeat rate by outbound contacts in the first 7 days after the first order."""
    customers = con.execute("select customer_id, outbound_contacts_first_7d from marts.dim_customers").df()
    return tables.contact_timing(customers, con.execute(RESPONSES_FOR_CUSTOMER_BINS).df())


def build_handoff(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """NPS and repeat rate by days from first order to the first account-management contact."""
    customers = con.execute("select customer_id, handoff_days from marts.dim_customers").df()
    return tables.handoff(customers, con.execute(RESPONSES_FOR_CUSTOMER_BINS).df())


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


def analysis_asset(spec: AnalysisTable) -> dg.AssetsDefinition:
    """The asset (with its `usable_output` check) that builds and appends one analysis table per run."""
    key = dg.AssetKey(["analysis", spec.table])

    @dg.multi_asset(
        name=spec.table,
        specs=[dg.AssetSpec(key=key, deps=[_mart(m) for m in spec.marts], group_name="analysis",
                            kinds={"python", "duckdb"}, description=spec.description)],
        check_specs=[dg.AssetCheckSpec("usable_output", asset=key, blocking=True,
                                       description="Enough rows, a converged model, and finite numbers.")],
    )
    def _asset(context: dg.AssetExecutionContext, nps_link: NpsLinkResource) -> Iterator:
        yield from _run(context, nps_link, spec.table, spec.build)

    return _asset


# Module-level names, so the defs folder loader finds every asset.
(link_effects, dose_response, key_drivers, nps_revenue, nps_changes, contact_timing, handoff) = (
    analysis_asset(spec) for spec in ANALYSIS_ASSETS
)
