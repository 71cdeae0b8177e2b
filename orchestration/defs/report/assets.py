"""The leadership report: one self-contained HTML file per run, history kept, tables as CSV beside it."""

from datetime import UTC
from zoneinfo import ZoneInfo

import dagster as dg

from analysis.report import ANALYSIS_TABLES, ReportInputs, headline_numbers, render_report, write_report
from orchestration.defs.analysis.assets import LINK_COVARIATES
from orchestration.lib.resources import NpsLinkResource, WarehouseWriter
from orchestration.lib.warehouse import (
    dagster_run_lineage,
    lineage_rows,
    look_back_reason,
    planned_steps,
    run_as_of,
    table_lineage,
)


@dg.asset(
    key=dg.AssetKey(["reports", "leadership_report"]),
    deps=[dg.AssetKey(["analysis", t]) for t in ANALYSIS_TABLES]
    + [dg.AssetKey(["marts", "nps_by_period"]), dg.AssetKey(["marts", "load_audit"])],
    group_name="report",
    kinds={"html"},
)
def leadership_report(
    context: dg.AssetExecutionContext,
    nps_link: NpsLinkResource,
    warehouse_writer: WarehouseWriter,  # held for the run: one writer per data directory
) -> dg.MaterializeResult:
    """The leadership report (HTML, offline, no personal data) for this run's analysis tables.

    A re-execution of a failed run reads the rows its parent run's analysis steps wrote, for the
    analyses it did not run again (table_lineage).

    Written to <data_dir>/reports/leadership_report.html and reports/<as_of>/ with the tables as CSV;
    a run that looks back at a past date (`look_back_reason`) writes reports/<as_of>/ only.
    Language from NPS_LINK_REPORT_LANG (en | ja).
    """
    settings = nps_link.settings()
    with nps_link.build_connection() as con:
        as_of = run_as_of(con)
        look_back = look_back_reason(con, settings.published_db_path)
        lineage = dagster_run_lineage(context.instance, context.run_id)
        executed = planned_steps(context.instance, context.run_id)
        frames = {
            table: lineage_rows(con, table, table_lineage(table, lineage, executed), as_of) for table in ANALYSIS_TABLES
        }
        nps_by_period = con.execute("select * from marts.nps_by_period").df()
        load_audit = con.execute("select * from marts.load_audit").df()
    inputs = ReportInputs(
        as_of=as_of,
        run_id=context.run_id,
        nps_by_period=nps_by_period,
        load_audit=load_audit,
        reporting_tz=settings.reporting_tz,
        reporting_currency=settings.reporting_currency,
        contact_window_days=settings.contact_window_days,
        repeat_window_days=settings.repeat_window_days,
        revenue_window_days=settings.revenue_window_days,
        covariates=LINK_COVARIATES,
        **frames,
    )
    html = render_report(inputs, lang=settings.report_lang)
    local_day = as_of.replace(tzinfo=UTC).astimezone(ZoneInfo(settings.reporting_tz)).date()
    paths = write_report(html, settings.reports_dir, as_of=local_day, tables=inputs.analysis_tables(),
                         latest=look_back is None)
    if look_back:
        context.log.warning(f"[report] {look_back}: {paths.dated_html} only; the latest report stays the newest")
    else:
        context.log.info(f"[report] {paths.latest_html} ({settings.report_lang})")
    metadata: dict[str, dg.MetadataValue] = {
        "path": dg.MetadataValue.path(str(paths.dated_html if look_back else paths.latest_html)),
        "dated_copy": dg.MetadataValue.path(str(paths.dated_html)),
        "language": dg.MetadataValue.text(settings.report_lang),
        **({"look_back": dg.MetadataValue.text(look_back)} if look_back else {}),
    }
    if frames["link_effects"] is not None:
        numbers = headline_numbers(frames["link_effects"])
        metadata["headline"] = dg.MetadataValue.md(
            "| figure | estimate | 95% CI |\n|---|---|---|\n"
            + "\n".join(
                f"| {name} | {numbers[name]:.2f} "
                f"| {numbers[name + '_ci_low']:.2f} to {numbers[name + '_ci_high']:.2f} |"
                for name in ("a_path", "b_path", "indirect", "direct", "total")
                if name in numbers
            )
        )
    return dg.MaterializeResult(metadata=metadata)
