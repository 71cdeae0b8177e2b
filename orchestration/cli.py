"""`nps-link`: generate demo sources, run the whole pipeline once, build the analysts' dbt docs.

Dagster is imported only by the commands that need it, so `nps-link --help` stays instant.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import gc
import json
import logging
import os
import subprocess
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from orchestration.lib.run_lock import WarehouseBusyError, pipeline_run_lock
from orchestration.lib.settings import Settings

if TYPE_CHECKING:
    import dagster as dg


def _iso_date(text: str) -> str:
    """An argparse type: a YYYY-MM-DD date, kept as text; argparse words the error when it is not one."""
    try:
        date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD): {exc}") from None
    return text


class SettingError(ValueError):
    """A malformed NPS_LINK_* setting (Settings names the variable): the command says so in one line."""


def _settings(args: argparse.Namespace) -> Settings:
    as_of = date.fromisoformat(args.as_of) if getattr(args, "as_of", None) else None
    try:
        return Settings.from_env(data_dir=args.data_dir, as_of=as_of, report_lang=getattr(args, "lang", None))
    except ValueError as exc:
        raise SettingError(str(exc)) from None


def _export(settings: Settings) -> None:
    """Make the run's settings visible to Dagster resources and to dbt (both read the environment)."""
    os.environ["NPS_LINK_REPORT_LANG"] = settings.report_lang
    os.environ["NPS_LINK_DATA_DIR"] = str(settings.data_dir)
    os.environ["DUCKDB_PATH"] = str(settings.build_db_path)
    if settings.as_of is not None:
        os.environ["NPS_LINK_AS_OF"] = settings.as_of.isoformat()
    else:
        os.environ.pop("NPS_LINK_AS_OF", None)
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")


def cmd_demo_data(args: argparse.Namespace) -> int:
    """Write realistic landing files with a planted, documented structure."""
    from orchestration.lib.demo_data import DEFAULT_END_DATE, DemoDataError, append_day, generate_demo_data

    data_dir = Path(args.data_dir).resolve()
    started = time.perf_counter()
    try:
        if args.append_day:
            summary = append_day(data_dir, seed=args.seed)
        else:
            end = date.fromisoformat(args.end_date) if args.end_date else DEFAULT_END_DATE
            summary = generate_demo_data(data_dir, customers=args.customers, seed=args.seed, end_date=end)
    except FileExistsError as exc:
        # The generator replaces only its own files; it never overwrites someone's deliveries.
        print(f"nps-link demo-data: {exc}.\nThe demo data is written only into a data dir whose landing "
              "files it wrote itself: choose another --data-dir (NPS_LINK_DATA_DIR).", file=sys.stderr)
        return 2
    except DemoDataError as exc:
        print(f"nps-link demo-data: {exc}", file=sys.stderr)
        return 2
    print(f"demo sources written under {data_dir / 'landing'} in {time.perf_counter() - started:.1f} s")
    for source, rows in sorted(summary.rows.items()):
        print(f"  {source:<18} {rows:>12,} rows")
    print(f"planted truth: {data_dir / 'demo_truth.json'}")
    return 0


def _print_quality_summary(settings: Settings, since_epoch: float) -> None:
    """Per-source summary of the files this run delivered (rows read / loaded / quarantined, rejected)."""
    import duckdb

    manifest = settings.lake_dir / "load_manifest.parquet"
    if not manifest.exists():
        return
    con = duckdb.connect()
    rows = con.execute(
        """
        select source,
               count(*) filter (where status = 'loaded') as files_loaded,
               count(*) filter (where status = 'rejected') as files_rejected,
               count(*) filter (where status = 'duplicate') as files_duplicate,
               coalesce(sum(rows_read), 0), coalesce(sum(rows_loaded), 0), coalesce(sum(rows_quarantined), 0)
        from read_parquet(?)
        where loaded_at >= ?
        group by source
        order by source
        """,
        # loaded_at is naive UTC; `to_timestamp(epoch)::timestamp` would be the machine's wall clock
        # (DuckDB's session zone), hours off on a host in Tokyo.
        [str(manifest), datetime.fromtimestamp(since_epoch, UTC).replace(tzinfo=None)],
    ).fetchall()
    con.close()
    print("\nData quality (files delivered in this run):")
    if not rows:
        print("  no new landing files")
        return
    print(f"  {'source':<18}{'files':>7}{'rejected':>10}{'dup':>5}{'rows read':>13}{'loaded':>13}{'quarantined':>13}")
    for source, loaded, rejected, dup, read, ok, quarantined in rows:
        print(f"  {source:<18}{loaded:>7}{rejected:>10}{dup:>5}{read:>13,}{ok:>13,}{quarantined:>13,}")


def _print_held(settings: Settings) -> None:
    """The deliveries a blocking ingestion check holds: every run fails on them until they are accepted."""
    from orchestration.lib.ingest.holds import open_holds

    held = sorted({h.file for h in open_holds(settings.lake_dir)})
    if held:
        print(f"\nHeld until a person accepts them (`nps-link accept FILE --note WHY`): {', '.join(held)}")


def step_timings(instance: dg.DagsterInstance, run_id: str) -> dict[str, dict[str, float]]:
    """Start and end (epoch seconds) of every step of a finished run, read from its event log.

    Steps that failed end at their failure event; a step with no end event is left out.
    """
    steps: dict[str, dict[str, float]] = {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or event.step_key is None:
            continue
        if event.event_type_value == "STEP_START":
            steps.setdefault(event.step_key, {})["start"] = entry.timestamp
        elif event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE"):
            steps.setdefault(event.step_key, {})["end"] = entry.timestamp
    return {key: span for key, span in steps.items() if {"start", "end"} <= span.keys()}


def write_step_timings(instance: dg.DagsterInstance, run_id: str, path: Path) -> None:
    """Write the run id and every step's start/end as JSON, for the benchmark harness."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"run_id": run_id, "steps": step_timings(instance, run_id)}, indent=1))


# Allocations between two collections of the youngest generation during `nps-link run` (Python's default: 700).
RUN_GC_YOUNG_THRESHOLD = 50_000


def nothing_to_run_reason(settings: Settings) -> str | None:
    """Why a run of this data dir would have nothing to build, or None.

    A data dir with no landing file and nothing loaded before is almost always a mistyped
    `--data-dir` (or a first run before any delivery); a run would create the folders, build empty
    marts and fail in the analyses with errors about missing values, far from the cause.
    """
    from orchestration.lib.lake import load_manifest_path

    if load_manifest_path(settings.lake_dir).exists():
        return None  # loaded before: a day without new files is a normal run
    from quality.contract import load_contract

    landing = settings.landing_dir
    # Ingestion reads a source's folder all the way down; dot-names are uploads still in progress.
    for source in load_contract().sources:
        if any(p.is_file() and not p.name.startswith(".") for p in (landing / source).rglob("*")):
            return None
    where = f"{landing} has no delivery in a source's folder" if landing.is_dir() else f"there is no {landing}"
    return (f"nothing to run: {where}, and nothing was loaded into {settings.data_dir} before. Is the data dir "
            "right (--data-dir, NPS_LINK_DATA_DIR)? Deliveries go to landing/<source>/; "
            "`nps-link demo-data --data-dir DIR` writes demo sources.")


def cmd_run(args: argparse.Namespace) -> int:
    """One full refresh: ingest -> dbt -> checks -> analysis -> report -> publish."""
    settings = _settings(args)
    reason = nothing_to_run_reason(settings)
    if reason:
        print(f"nps-link run: {reason}", file=sys.stderr)
        return 2
    _export(settings)
    # dbt prints a console line per model and per test (about 330 at the demo's size, with colour codes
    # when the output is a file), which drowned the stage-by-stage progress and the summary. It prints
    # its warnings and errors; every line stays in the build's dbt.log, and --log-level DEBUG shows them.
    if args.log_level != "DEBUG":
        os.environ.setdefault("DBT_LOG_LEVEL", "warn")
    if not sys.stdout.isatty():
        os.environ.setdefault("DBT_USE_COLORS", "false")
    with contextlib.ExitStack() as held:
        # Held for the whole run, and not waited for: a person who started a second run hears so at
        # once. The job's writer steps take the same lock (re-entrant here; a run Dagster launched
        # waits for it, orchestration/lib/run_lock.py).
        try:
            held.enter_context(pipeline_run_lock(settings.warehouse_dir))
        except WarehouseBusyError as exc:
            print(str(exc), file=sys.stderr)
            return 2

        from orchestration.lib.validation_worker import start_worker, stop_worker

        # Python's cyclic garbage collector looks at the young objects every 700 net allocations. A
        # run allocates tens of millions of short-lived objects (Dagster's and dbt's events, dbt's
        # Jinja, the imports) that reference counting frees, and few cycles, so at S a new day spent
        # about 2 of its 16 s in over 2,000 collections; with this threshold 1 s in 27, and the run
        # 0.7-1.7 s shorter in three alternating pairs (tests/bench/results/NOTES.md, round 14).
        gc.set_threshold(RUN_GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
        # Before Dagster's imports: the worker imports Great Expectations on the other core meanwhile.
        start_worker()
        try:
            return _run_job(args, settings)
        finally:
            stop_worker()


def _run_job(args: argparse.Namespace, settings: Settings) -> int:
    """`cmd_run`'s run of the refresh job, with its summary; the exit status."""
    import dagster as dg

    from orchestration.definitions import defs
    from orchestration.lib.threaded_executor import execute_job_threaded

    started_epoch = time.time()
    started = time.perf_counter()
    print(f"nps-link run: data dir {settings.data_dir}, as_of {settings.as_of or 'latest event loaded'}")
    job = defs().resolve_job_def("refresh")
    if os.environ.get("DAGSTER_HOME"):
        from orchestration.lib.dagster_instance import relax_sqlite_sync

        instance = dg.DagsterInstance.get()
        # Fewer fsyncs per event in the run history's SQLite files (see that module for what stays safe).
        relax_sqlite_sync(Path(instance.root_directory))
    else:
        instance = dg.DagsterInstance.ephemeral()
    run_config: dict = {"loggers": {"console": {"config": {"log_level": args.log_level}}}}
    if args.full_refresh:
        # dbt rebuilds every incremental model from the whole lake (the always-available path).
        run_config["ops"] = {"dbt_models": {"config": {"full_refresh": True}}}
    from orchestration.lib.dagster_instance import reused_sqlite_connections

    # The job's own executor (independent steps two at a time), not execute_in_process's one-at-a-time;
    # the run history's SQLite files opened once per run, not once per event (see that module).
    with reused_sqlite_connections(instance):
        result = execute_job_threaded(job, instance=instance, run_config=run_config)
    if args.timings:
        write_step_timings(instance, result.run_id, Path(args.timings))
    failed_steps = [e for e in result.all_events if e.is_step_failure]
    failed_checks = [
        e.asset_check_evaluation_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION" and not e.asset_check_evaluation_data.passed
    ]
    _print_quality_summary(settings, started_epoch)
    for title, severities in (("Checks that failed (blocking):", ("ERROR",)), ("Warnings (not blocking):", ("WARN",))):
        listed = [c for c in failed_checks if (c.severity.value if c.severity else "ERROR") in severities]
        if listed:
            print(f"\n{title}")
        for check in listed:
            why = check_failure_note(check)
            note = f": {why}" if why else ""
            print(f"  {check.asset_check_key.asset_key.to_user_string()}:{check.asset_check_key.name}{note}")
    _print_held(settings)
    elapsed = time.perf_counter() - started
    if not result.success:
        published = any(e.event_type_value == "ASSET_MATERIALIZATION" and e.asset_key.path == ["warehouse", "published"]
                        for e in result.all_events)
        if published:  # the publish step ended before the run failed (e.g. a later step, or a termination)
            left = f"this run's warehouse was published ({settings.published_db_path}) before it failed"
        elif settings.published_db_path.exists():
            left = "the published warehouse was left as it was"
        else:
            left = "nothing was published (there is no published warehouse yet)"
        print(f"\nRUN FAILED after {elapsed:.0f} s; {left}.", file=sys.stderr)
        for event in failed_steps:
            error = event.step_failure_data.error
            while error is not None and error.cause is not None:  # the root cause, not Dagster's wrapper
                error = error.cause
            # A blocking check's error names the checks on the lines after its first.
            message = " ".join(error.message.strip().splitlines()[:4]) if error else "unknown error"
            print(f"  step {event.step_key}: {message}", file=sys.stderr)
        return 1
    print(f"\nDone in {elapsed:.0f} s.")
    look_back = _look_back(result.all_events)
    report = settings.reports_dir / "leadership_report.html"
    if look_back:
        print(f"This run was {look_back[0]}.")
        print(f"Leadership report:   {look_back[1]} (the latest report is unchanged)")
    elif report.exists():
        print(f"Leadership report:   {report}")
    if (settings.quality_dir / "latest" / "index.html").exists():
        print(f"Data docs:           {settings.quality_dir / 'latest' / 'index.html'}")
    cut_off = " (as of this run's past date, until a run at the newest date)" if look_back else ""
    print(f"Published warehouse: {settings.published_db_path}{cut_off}")
    return 0


# Metadata entries that say why a check failed, in the order the summary prefers them (the checks'
# own results put their verdict in one of these when they give no description).
CHECK_NOTE_METADATA = ("message", "reason", "failures", "not_sent_because")
CHECK_NOTE_CHARS = 300


def check_failure_note(evaluation: dg.AssetCheckEvaluation) -> str:
    """One line saying why a check failed: its description, else its first explaining metadata entry."""
    text = evaluation.description or ""
    if not text.strip():
        for key in CHECK_NOTE_METADATA:
            value = evaluation.metadata.get(key)
            if value is not None and str(value.value).strip() not in ("", "none"):
                text = str(value.value)
                break
        else:
            failing_rows = evaluation.metadata.get("dagster_dbt/failed_row_count")  # a dbt data test's
            if failing_rows is not None:
                text = f"{int(failing_rows.value):,} row(s) fail the test"
    line = " ".join(part.strip() for part in text.strip().splitlines() if part.strip())
    return line if len(line) <= CHECK_NOTE_CHARS else line[: CHECK_NOTE_CHARS - 3] + "..."


def _look_back(events: list) -> tuple[str, str] | None:
    """(why, the dated report) when the run looked back at a past date (the report step says so), else None."""
    for event in events:
        if event.event_type_value != "ASSET_MATERIALIZATION":
            continue
        if event.asset_key.path == ["reports", "leadership_report"]:
            metadata = event.step_materialization_data.materialization.metadata
            if "look_back" in metadata:
                return str(metadata["look_back"].value), str(metadata["dated_copy"].value)
    return None


def cmd_docs(args: argparse.Namespace) -> int:
    """Build the dbt docs site (models, columns, tests, lineage) as static files for analysts."""
    from orchestration.lib.dbt import DBT_EXECUTABLE, DBT_PROJECT_DIR, dbt_vars

    settings = _settings(args)
    _export(settings)
    out = settings.data_dir / "docs"
    cmd = [str(DBT_EXECUTABLE), "docs", "generate", "--static", "--project-dir", str(DBT_PROJECT_DIR),
           "--profiles-dir", str(DBT_PROJECT_DIR), "--target-path", str(out),
           "--vars", json.dumps(dbt_vars(settings))]
    completed = subprocess.run(cmd, check=False)
    if completed.returncode == 0:
        print(f"dbt docs: {out / 'static_index.html'} (open it in a browser; no server needed)")
    return completed.returncode


def cmd_sql(args: argparse.Namespace) -> int:
    """Run SQL on the published warehouse, read-only, and print the result (a table, or CSV with --csv).

    The shell of analysts without a DuckDB command line of their own: the published file is in the
    storage format of the DuckDB that built it (2.0), which the 1.x command line (PyPI's duckdb-cli)
    cannot read. Read-only, so it never blocks a publish and cannot change the file.
    """
    import csv as csv_module

    import duckdb

    settings = _settings(args)
    query = args.query if args.query is not None else sys.stdin.read()
    if not query.strip():
        print("nps-link sql: no query (give it as an argument or on standard input)", file=sys.stderr)
        return 2
    if not settings.published_db_path.exists():
        print(f"nps-link sql: there is no published warehouse at {settings.published_db_path} (run "
              "`nps-link run` first, or check --data-dir)", file=sys.stderr)
        return 2
    con = duckdb.connect(str(settings.published_db_path), read_only=True)
    try:
        if args.csv:
            # A result streamed in chunks: every row, however many, without holding them all.
            result = con.execute(query)
            if result.description is not None:
                writer = csv_module.writer(sys.stdout, lineterminator="\n")
                writer.writerow([column[0] for column in result.description])
                while rows := result.fetchmany(10_000):
                    writer.writerows(rows)
        elif (relation := con.sql(query)) is not None:  # None: a statement without a result (SET, ...)
            relation.show(max_width=args.width, max_rows=args.max_rows)
    except duckdb.Error as exc:
        print(f"nps-link sql: {exc}", file=sys.stderr)
        return 1
    finally:
        con.close()
    return 0


def cmd_accept(args: argparse.Namespace) -> int:
    """Accept held deliveries, so the next run publishes their loaded rows; without FILE, list what is held.

    A file that failed a blocking ingestion check (over the quarantine share, its Great Expectations
    suite, or refused whole) blocks every run until a person accepts it (orchestration/lib/ingest/holds.py).
    """
    from orchestration.lib.ingest.holds import NoSuchHoldError, accept_held, open_holds

    settings = _settings(args)
    if args.contact_explosion:
        return _accept_explosion(settings, args)
    if not args.files:
        held = open_holds(settings.lake_dir)
        if not held:
            print(f"no held files in {settings.lake_dir}")
        for hold in held:
            print(f"{hold.file}  [{hold.table}: {hold.check}]  {hold.reason}  "
                  f"(held since run {hold.run_id[:8]}, {hold.held_at[:16]} UTC)")
        return 0
    if not args.note.strip():
        print("nps-link accept: say why with --note (it is kept with the acceptance)", file=sys.stderr)
        return 2
    status = 0
    for file in args.files:
        try:
            accepted = accept_held(settings.lake_dir, file, note=args.note)
        except NoSuchHoldError as exc:
            print(f"nps-link accept: {exc}", file=sys.stderr)
            status = 2
            continue
        if not accepted:
            print(f"{file}: accepted before; nothing to do")
        for hold in accepted:
            print(f"accepted {hold.file} [{hold.table}: {hold.check}]: it no longer blocks a run; the next one "
                  "publishes what of it loaded")
    return status


def _accept_explosion(settings: Settings, args: argparse.Namespace) -> int:
    """`nps-link accept --contact-explosion YYYY-MM`: the month's explosion no longer blocks (it still warns)."""
    from orchestration.lib.mart_acceptance import accept_month, validate_month
    from orchestration.lib.publish import failed_blocking_checks
    from orchestration.lib.warehouse import stored_run_parameters

    if args.files:
        print("nps-link accept: give held files or --contact-explosion, not both", file=sys.stderr)
        return 2
    if not args.note.strip():
        print("nps-link accept: say why with --note (it is kept with the acceptance)", file=sys.stderr)
        return 2
    month = args.contact_explosion
    try:
        validate_month(month)
    except ValueError as exc:
        print(f"nps-link accept: {exc}", file=sys.stderr)
        return 2
    # Only a month the last build's check blocked on: accepting a month in advance would wave through
    # an explosion nobody has seen.
    blocked = failed_blocking_checks(settings.build_db_path).get("contact_count_explosion", "")
    if month not in blocked:
        print(f"nps-link accept: the last build's contact_count_explosion check did not block on {month!r}; "
              "nothing to accept" + (f" (it blocked on: {blocked})" if blocked else ""), file=sys.stderr)
        return 2
    # What that build had staged is what a person has seen: a later delivery into the month is judged afresh.
    seen = (stored_run_parameters(settings.build_db_path) or {}).get("input_seq")
    if seen is None:
        print(f"nps-link accept: cannot read what the last build staged from {settings.build_db_path} (a run may "
              "be writing it); try again when no run is going", file=sys.stderr)
        return 2
    accepted = accept_month(settings.quality_dir, month, note=args.note, through_delivery_seq=int(seen))
    print(f"accepted the contact explosion of {accepted.month}: the next run reports it as a warning and publishes")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `nps-link` command."""
    parser = argparse.ArgumentParser(prog="nps-link", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo-data", help="write realistic landing files with a planted structure")
    demo.add_argument("--data-dir", required=True)
    demo.add_argument("--customers", type=int, default=3000)
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--end-date", default=None, type=_iso_date, help="last day of history (default: a fixed date)")
    demo.add_argument("--append-day", action="store_true", help="add one more day of deliveries")
    demo.set_defaults(func=cmd_demo_data)

    run = sub.add_parser("run", help="one full refresh; non-zero exit when a step or blocking check fails")
    run.add_argument("--data-dir", default=None)
    run.add_argument("--as-of", default=None, type=_iso_date,
                     help="data cut-off date (end of that day, reporting time zone)")
    run.add_argument("--lang", default=None, choices=["en", "ja"], help="language of the report and follow-up mails")
    run.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                     help="the run's log on stderr (DEBUG also prints dbt's line per model and test)")
    run.add_argument("--full-refresh", action="store_true",
                     help="rebuild every incremental dbt model from the whole lake instead of the new deliveries")
    run.add_argument("--timings", default=None, help="write each step's start and end (JSON) to this file")
    run.set_defaults(func=cmd_run)

    sql = sub.add_parser("sql", help="run SQL on the published warehouse (read-only) and print the result")
    sql.add_argument("query", nargs="?", default=None, help="the SQL (default: read from standard input)")
    sql.add_argument("--data-dir", default=None)
    sql.add_argument("--csv", action="store_true", help="print every row as CSV instead of a table")
    sql.add_argument("--max-rows", type=int, default=40, help="rows the table shows (default 40)")
    sql.add_argument("--width", type=int, default=200, help="characters the table may be wide (default 200)")
    sql.set_defaults(func=cmd_sql, as_of=None)

    accept = sub.add_parser("accept", help="accept files a blocking ingestion check held (without FILE: list them), "
                                           "or a month's contact explosion")
    accept.add_argument("files", nargs="*", metavar="FILE",
                        help="landing path of a held file (e.g. survey_responses/batch.csv), or its file name")
    accept.add_argument("--note", default="", help="why it may be published (required with FILE; kept with it)")
    accept.add_argument("--contact-explosion", metavar="YYYY-MM", default=None,
                        help="accept the contact_count_explosion check's finding for this month instead")
    accept.add_argument("--data-dir", default=None)
    accept.set_defaults(func=cmd_accept, as_of=None)

    docs = sub.add_parser("docs", help="build the dbt docs site as static files")
    docs.add_argument("--data-dir", default=None)
    docs.set_defaults(func=cmd_docs, as_of=None)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `nps-link` console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except SettingError as exc:
        print(f"nps-link {args.command}: {exc}", file=sys.stderr)
        return 2


# The exit status of a `main` that returned; None while it runs or when it raised.
_returned_status: int | None = None


def _exit_without_teardown() -> None:
    """The last exit handler: flush the logs and streams, then end the process without teardown.

    Registered by `console` before anything else registers one, so it runs after every other exit
    handler (they run last-registered first) and after the interpreter joined non-daemon threads.
    What it skips is the teardown of modules and the final garbage collection over the roughly 570k
    objects a run leaves (Dagster's definitions, dbt's manifest, GX's registry): 1.7 s of every run,
    at any scale. Nothing there writes data: the warehouses, the lake and the run history are closed
    by the steps themselves before `main` returns. After an exception the usual shutdown runs.
    """
    if _returned_status is None:
        return
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(_returned_status)


def console() -> None:
    """The `nps-link` console script: `main`, and an exit that skips the interpreter's teardown."""
    global _returned_status
    atexit.register(_exit_without_teardown)
    status = main()
    _returned_status = status
    sys.exit(status)


if __name__ == "__main__":
    console()
