"""Mart-level expectations: what row rules cannot catch, judged on the built marts before publish.

Each check wraps one function of `quality/marts.py` (plain Python, tested on its own). A failure with
severity ERROR blocks the publish; WARN is shown in the UI and in `nps-link run`'s summary.
"""

from datetime import timedelta

import dagster as dg

from orchestration.lib.mart_acceptance import accepted_months
from orchestration.lib.publish import record_blocking_check
from orchestration.lib.resources import NpsLinkResource, WarehouseWriter
from orchestration.lib.warehouse import run_as_of, stored_run_parameters
from quality.marts import (
    ERROR,
    MartOutcome,
    accepted_outcome,
    contact_explosion_from_aggregate,
    contact_explosion_sql,
    daily_volume_outcome,
    months_outcome,
    nps_jump_outcome,
    repeat_rate_jump_outcome,
)


def _result(outcome: MartOutcome, nps_link: NpsLinkResource, check: str) -> dg.AssetCheckResult:
    """The check's result; a failure of severity ERROR is also left beside the build warehouse for the publish."""
    severity = dg.AssetCheckSeverity.ERROR if outcome.severity == ERROR else dg.AssetCheckSeverity.WARN
    record_blocking_check(nps_link.settings().build_db_path, check,
                          blocks=not outcome.success and outcome.severity == ERROR, message=outcome.message)
    return dg.AssetCheckResult(
        passed=outcome.success, severity=severity,
        metadata={"message": outcome.message, "check": outcome.check},
    )


# Step priorities (orchestration/lib/threaded_executor.py starts the highest ready step first). Each
# blocking check outranks the steps it gates, so what waits on it is not kept waiting
# (tests/orchestration/test_definitions.py holds the rule). The two response checks gate the link
# (priority 2, the longest analysis) and key drivers (1), and they take a fraction of a second, so
# they also go before the mail-out (3): without this the link waited behind the mail-out and the
# contact-explosion check, about 3 s at a million customers. The other two each gate one analysis (0).
GATES_THE_LINK_PRIORITY = {"dagster/priority": "4"}
GATES_ONE_ANALYSIS_PRIORITY = {"dagster/priority": "1"}


def _local(reporting_tz: str, column: str) -> str:
    """SQL for a naive-UTC timestamp in the reporting time zone (the same cut as dbt's macro)."""
    if "'" in reporting_tz:
        raise ValueError(f"not a time zone name: {reporting_tz!r}")
    return f"timezone('{reporting_tz}', timezone('UTC', {column}))"


def _local_day(reporting_tz: str) -> str:
    """SQL for a response's calendar day in the reporting time zone."""
    return f"cast({_local(reporting_tz, 'responded_at')} as date)"


@dg.asset_check(asset=dg.AssetKey(["marts", "fct_survey_responses"]), blocking=True, op_tags=GATES_THE_LINK_PRIORITY,
                description="Responses per day within the trailing 28-day median's range (latest complete day).")
def daily_response_volume(
    nps_link: NpsLinkResource,
    warehouse_writer: WarehouseWriter,  # held for the run: one run per data directory
) -> dg.AssetCheckResult:
    """A day with far more or far fewer responses than usual: a double export or a broken feed."""
    settings = nps_link.settings()
    day = _local_day(settings.reporting_tz)
    with nps_link.build_connection() as con:
        daily = con.execute(f"select {day} as day, count(*) as responses from marts.fct_survey_responses group by 1"
                            ).df()
        as_of = run_as_of(con)
        last_day = con.execute(f"select cast({_local(settings.reporting_tz, '?::timestamp')} as date)",
                               [as_of]).fetchone()[0]
    # The as_of day may still be filling up: judge the last complete day before it.
    outcome = daily_volume_outcome(daily, through=last_day - timedelta(days=1))
    return _result(outcome, nps_link, "daily_response_volume")


@dg.asset_check(asset=dg.AssetKey(["marts", "nps_by_period"]), blocking=True, op_tags=GATES_ONE_ANALYSIS_PRIORITY,
                description="The latest month's NPS moved no more than sampling error explains.")
def nps_month_on_month_jump(
    nps_link: NpsLinkResource,
    warehouse_writer: WarehouseWriter,  # held for the run: one run per data directory
) -> dg.AssetCheckResult:
    """An NPS jump between the last two months beyond sampling error (p < 0.001 and >= 3 points)."""
    with nps_link.build_connection() as con:
        frame = con.execute("select * from marts.nps_by_period where survey_type <> 'all'").df()
    return _result(nps_jump_outcome(frame), nps_link, "nps_month_on_month_jump")


@dg.asset_check(asset=dg.AssetKey(["marts", "fct_survey_responses"]), blocking=True, op_tags=GATES_THE_LINK_PRIORITY,
                description="The latest month's repeat rate moved no more than sampling error explains.")
def repeat_rate_month_on_month_jump(
    nps_link: NpsLinkResource,
    warehouse_writer: WarehouseWriter,  # held for the run: one run per data directory
) -> dg.AssetCheckResult:
    """A repeat-rate jump between the last two months with uncensored responses."""
    with nps_link.build_connection() as con:
        frame = con.execute(
            """
            select response_month as period_month, count(repeat_after) as repeat_n,
                   coalesce(sum(repeat_after), 0) as repeats
            from marts.fct_survey_responses
            where repeat_after is not null
            group by 1
            """
        ).df()
    return _result(repeat_rate_jump_outcome(frame), nps_link, "repeat_rate_month_on_month_jump")


@dg.asset_check(asset=dg.AssetKey(["marts", "fct_customer_months"]), blocking=True,
                op_tags=GATES_ONE_ANALYSIS_PRIORITY,
                description="No customer's contacts exploded against their own history, in the latest month or "
                            "in a month that received activities since the last publish.")
def contact_count_explosion(
    nps_link: NpsLinkResource,
    warehouse_writer: WarehouseWriter,  # held for the run: one run per data directory
) -> dg.AssetCheckResult:
    """Contacts per customer exploding in a month: a logging loop or a re-imported batch.

    Judged: the latest month, and every earlier month that received activities since the published
    build (`_delivery_seq` above its watermark): a batch re-imported into an old month, or the last
    evening's activities of a month delivered after midnight on the 1st, were otherwise never looked
    at. Such a month is judged until a build with it is published, so a block lasts until a corrected
    delivery, or a person's acceptance of the month (`nps-link accept --contact-explosion YYYY-MM`),
    which turns it into a warning.
    """
    settings = nps_link.settings()
    # An activity's month as fct_customer_months cuts it: the reporting time zone's.
    month_of_activity = f"cast(date_trunc('month', {_local(settings.reporting_tz, 'occurred_at')}) as date)"
    watermark = (stored_run_parameters(settings.published_db_path) or {}).get("input_seq")
    accepted = accepted_months(settings.quality_dir)
    totals_sql, flagged_sql = contact_explosion_sql("marts.fct_customer_months")
    with nps_link.build_connection() as con:
        # The aggregate in DuckDB: only the flagged customers come back, not 7 months of the panel.
        latest = con.execute(
            "select cast(date_trunc('month', max(month)) as date) from marts.fct_customer_months"
        ).fetchall()[0][0]
        months = [latest]
        if latest is not None and watermark is not None:
            delivered = con.execute(
                f"select distinct {month_of_activity} as month "
                "from staging.stg_crm__activities where _delivery_seq > ? order by month",
                [int(watermark)],
            ).fetchall()
            months = sorted({latest, *(month for month, in delivered if month is not None and month < latest)})
        outcomes = []
        for month in months:
            _, judged, total = con.execute(totals_sql, [month]).fetchall()[0]
            flagged = con.execute(flagged_sql, [month]).df()
            outcome = contact_explosion_from_aggregate(month, judged, float(total), flagged)
            acceptance = accepted.get(month.strftime("%Y-%m")) if month is not None else None
            if acceptance is not None and not outcome.success:
                newest = con.execute(
                    f"select max(_delivery_seq) from staging.stg_crm__activities where {month_of_activity} = ?",
                    [month]).fetchall()[0][0]
                if not acceptance.covers(newest):
                    acceptance = None  # a delivery into the month after it was accepted: judged afresh
            if acceptance is not None:
                outcome = accepted_outcome(
                    outcome, f"by {acceptance.accepted_by} at {acceptance.accepted_at} UTC: {acceptance.note}")
            outcomes.append(outcome)
    return _result(months_outcome(outcomes), nps_link, "contact_count_explosion")
