"""Closed loop: every detractor response reaches its owner rep (manager in Cc), exactly once."""

import os

import dagster as dg

from orchestration.lib.followups import (
    SmtpSettings,
    fallback_address_from_env,
    rep_emails_from_lake,
    send_followups,
)
from orchestration.lib.resources import NpsLinkResource, WarehouseWriter
from orchestration.lib.warehouse import (
    look_back_reason,
    run_as_of,
    stale_followup_window_reason,
    stored_run_parameters,
)


@dg.asset(
    key=dg.AssetKey(["ops", "detractor_followups_sent"]),
    deps=[dg.AssetKey(["marts", "detractor_followups"])],
    group_name="followups",
    kinds={"python", "email"},
    # Among the longest steps after dbt (a first run mails the whole backlog): started first.
    op_tags={"dagster/priority": "3"},
    check_specs=[
        dg.AssetCheckSpec("all_detractors_reached", asset=dg.AssetKey(["ops", "detractor_followups_sent"]),
                          description="Every in-window detractor was delivered to each of its recipients "
                                      "or is already in the ledger."),
    ],
)
def detractor_followups_sent(
    context: dg.AssetExecutionContext,
    nps_link: NpsLinkResource,
    warehouse_writer: WarehouseWriter,  # held for the run: one writer per data directory
):
    """Follow-up mails for the detractors of the last `followup_window_days` before as_of.

    None from a run that looks back at a past date (orchestration.lib.warehouse.look_back_reason), or
    whose window ends `followup_window_days` or more before the newest event it loaded
    (`stale_followup_window_reason`): its detractors are no longer today's.

    Written in the report's language (NPS_LINK_REPORT_LANG, `nps-link run --lang`).

    Grain of the ledger `ops.followup_ledger`: one row per response delivered (SMTP accepted, or .eml
    written to <data_dir>/outbox when no SMTP host is set). Reruns and crashes never resend a
    recorded response; see orchestration/lib/followups.py for the exact guarantee.
    """
    settings = nps_link.settings()
    smtp = SmtpSettings.from_env(os.environ)
    with nps_link.build_connection() as con:
        not_today = look_back_reason(con, settings.published_db_path) or stale_followup_window_reason(con)
        if not_today:
            # The detractors of the window before a past as_of are months old: nobody is mailed.
            context.log.warning(f"[followups] {not_today}: no follow-ups are sent")
            yield dg.MaterializeResult(metadata={"not_sent_because": not_today, "sent": dg.MetadataValue.int(0)})
            yield dg.AssetCheckResult(passed=True, severity=dg.AssetCheckSeverity.WARN,
                                      metadata={"not_sent_because": not_today})
            return
        result = send_followups(
            con,
            rep_emails=rep_emails_from_lake(settings.lake_dir),
            as_of=run_as_of(con),
            window_days=settings.followup_window_days,
            smtp=smtp,
            outbox_dir=settings.outbox_dir,
            fallback_address=fallback_address_from_env(os.environ),
            run_id=context.run_id,
            reporting_tz=settings.reporting_tz,
            lang=settings.report_lang,
            delivered_since_seq=(stored_run_parameters(settings.published_db_path) or {}).get("input_seq"),
            previous_db=settings.published_db_path,
        )
    phases = ", ".join(f"{phase} {seconds:.1f} s" for phase, seconds in result.outbox_seconds.items())
    context.log.info(
        f"[followups] {result.sent} sent via {result.transport} ({result.fallback_count} to the fallback), "
        f"{result.skipped_already_sent} already sent, {len(result.failed)} not delivered"
        + (f"; outbox time: {phases}" if phases else "")
    )
    yield dg.MaterializeResult(
        metadata={
            "transport": result.transport,
            "sent": dg.MetadataValue.int(result.sent),
            "already_sent": dg.MetadataValue.int(result.skipped_already_sent),
            "fallback": dg.MetadataValue.int(result.fallback_count),
            "not_delivered": dg.MetadataValue.int(len(result.failed)),
            "manager_unreachable": dg.MetadataValue.int(result.manager_unreachable),
            "arrived_after_window": dg.MetadataValue.int(result.arrived_after_window),
            "outbox": dg.MetadataValue.path(str(settings.outbox_dir)),
            **{f"outbox_{phase}_seconds": dg.MetadataValue.float(round(seconds, 3))
               for phase, seconds in result.outbox_seconds.items()},
        }
    )
    # A recipient refused while another took the message, or a manager the CRM names without a usable
    # address: sent and recorded, but someone who should know was not told.
    for warning in result.warnings[:10] + result.manager_warnings[:10]:
        context.log.warning(f"[followups] {warning}")
    if result.arrived_after_window:
        context.log.warning(
            f"[followups] {result.arrived_after_window} detractor response(s) arrived after their "
            f"{settings.followup_window_days}-day follow-up window and are not mailed (newest: "
            f"{', '.join(result.arrived_after_window_ids)}); see marts.detractor_followups"
        )
    reasons = (sorted({f"{f.reason}: {f.detail}" for f in result.failed})[:10] + result.warnings[:10]
               + result.manager_warnings[:10])
    yield dg.AssetCheckResult(
        passed=result.all_reached,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "not_delivered": len(result.failed),
            "recipients_refused": len(result.warnings),
            "manager_unreachable": result.manager_unreachable,
            "arrived_after_window": result.arrived_after_window,
            "reasons": "; ".join(reasons) or "none",
        },
    )
