"""Pipeline benchmark at 10k / 100k / 1M customers: full refresh, one new day, and a raw-DuckDB baseline.

Run from the repo root: `make bench SCALE=S|M|L` (= `.venv/bin/python -m tests.bench.run --scale S`).
Not collected by pytest (no `test_` prefix): L takes a quarter of an hour and several GiB.

One invocation:
  1. generates the demo sources for the scale (cached under <work-dir>/sources/, reused when present),
     and prepares the dbt project as a deployment does (its manifest, `dbt parse`: untimed, but its
     seconds are recorded when it had to parse),
  2. copies them to a fresh data dir and runs `nps-link run --full-refresh` there,
  3. runs the raw-DuckDB baseline (baseline.sql: the same core joins, written directly) over the lake
     that run produced,
  4. delivers one more day (`nps-link demo-data --append-day`) and runs `nps-link run` again (the
     incremental path),
and records per stage the wall seconds (from the run's Dagster step events, `nps-link run --timings`)
and the peak RSS of the whole process tree (nps-link, which runs dbt inside it, and its outbox writer; polled
from /proc). The figures
go to tests/bench/results/<scale>.json, and BENCHMARKS.md is regenerated from every scale's results.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import resource
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
BENCHMARKS_MD = REPO / "BENCHMARKS.md"
BASELINE_SQL = BENCH_DIR / "baseline.sql"
FX_SEED = REPO / "dbt_project" / "seeds" / "fx_rates_to_reporting.csv"
NPS_LINK = Path(sys.executable).with_name("nps-link")
SCALES = {"S": 10_000, "M": 100_000, "L": 1_000_000}
STAGES = ("ingest", "dbt", "checks", "analysis", "report", "followups", "publish")
GIB = 1024**3
POLL_SECONDS = 0.2

# Issue 6's targets on the 2-core, 24 GiB machine. Ratios are of the full refresh's wall seconds.
TARGET_FULL_VS_BASELINE = 4.0
TARGET_FULL_SECONDS_L = 300.0
TARGET_NEW_DAY_SHARE = {"L": 0.10, "M": 0.25}
TARGET_PEAK_RSS_GIB = 6.0
TARGET_LINK_FIT_SECONDS = 60.0


def stage_of(step_key: str) -> str:
    """The benchmark stage a Dagster step belongs to.

    Ingestion steps are keyed by their dbt source (billing__orders, crm__..., survey_responses,
    lake__load_manifest); a step of its own that is none of the named kinds is a stand-alone asset
    check (e.g. marts__fct_survey_responses_daily_response_volume). The GE suites and dbt tests run
    inside the ingest and dbt steps and are reported apart from these (see _checks_seconds).
    """
    if step_key == "dbt_models":
        return "dbt"
    if step_key.startswith(("billing__", "crm__", "survey_", "lake__")):
        return "ingest"
    if step_key.startswith("reports__"):
        return "report"
    if step_key.startswith("ops__detractor_followups"):
        return "followups"
    if step_key.startswith("warehouse__"):
        return "publish"
    if step_key in {"link_effects", "dose_response", "key_drivers", "nps_revenue", "nps_changes",
                    "contact_timing", "handoff"}:
        return "analysis"
    return "checks"


# ---- measuring a process tree --------------------------------------------------------------------


def _tree_rss_bytes(root: int) -> int:
    """Resident memory of `root` and all its descendants, from /proc (0 once the tree is gone)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    page = os.sysconf("SC_PAGE_SIZE")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name may contain spaces and parentheses: fields start after the last ')'.
        fields = stat[stat.rfind(")") + 2:].split()
        pid, ppid = int(entry), int(fields[1])
        children.setdefault(ppid, []).append(pid)
        rss[pid] = int(fields[21]) * page
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo.extend(children.get(pid, []))
    return total


@dataclass
class Measured:
    """One measured command: wall seconds, exit code, CPU seconds of its process tree, (epoch, tree RSS) samples."""

    seconds: float
    returncode: int
    samples: list[tuple[float, int]] = field(default_factory=list)
    # User + system CPU seconds of the command and every process it waited for (dbt runs inside it;
    # the validation worker is its child): what the run cost the machine's two cores.
    cpu_seconds: float = 0.0

    def peak_bytes(self, start: float | None = None, end: float | None = None) -> int:
        """Peak tree RSS over the whole run, or within [start, end] (epoch seconds)."""
        window = [b for t, b in self.samples if (start is None or t >= start) and (end is None or t <= end)]
        return max(window, default=0)


def run_measured(cmd: list[str], env: dict[str, str], log: Path) -> Measured:
    """Run `cmd` to completion with its output in `log`, polling the RSS of its process tree."""
    samples: list[tuple[float, int]] = []
    # The harness runs one command at a time, so the change in its reaped children's CPU is this command's.
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        done = threading.Event()

        def poll() -> None:
            while not done.is_set():
                samples.append((time.time(), _tree_rss_bytes(proc.pid)))
                done.wait(POLL_SECONDS)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        returncode = proc.wait()
        done.set()
        poller.join()
    seconds = time.perf_counter() - started
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (children_after.ru_utime - children_before.ru_utime) + (children_after.ru_stime - children_before.ru_stime)
    return Measured(seconds, returncode, samples, cpu_seconds=cpu)


# ---- one pipeline run ----------------------------------------------------------------------------


def _checks_seconds(data_dir: Path, run_id: str) -> dict[str, float]:
    """Seconds spent in data checks inside the ingest and dbt stages of one run.

    GE: the sum of the validations' own elapsed time (pickled per run by the ingestion assets).
    dbt tests: thread-seconds of the test nodes in the run's run_results.json (dbt runs two at a time).
    """
    ge = 0.0
    for pickled in (data_dir / "quality" / run_id / "outcomes").glob("*.pkl"):
        ge += sum(o.elapsed_seconds for o in pickle.loads(pickled.read_bytes()).values())
    tests = models = elapsed = process = 0.0
    for target in (REPO / "dbt_project" / "target").glob(f"dbt_models-{run_id[:7]}-*"):
        results = target / "run_results.json"
        if results.exists():
            document = json.loads(results.read_text())
            elapsed += document["elapsed_time"]
            for node in document["results"]:
                if node["unique_id"].startswith("test."):
                    tests += node["execution_time"]
                elif node["unique_id"].startswith("model."):
                    models += node["execution_time"]
        log = target / "dbt.log"
        if log.exists():
            # First to last event of the step's dbt log: its parse, then its build (both log there).
            stamps = [json.loads(line)["info"]["ts"] for line in log.read_text().splitlines() if line.startswith("{")]
            if stamps:
                first, last = (datetime.fromisoformat(t.replace("Z", "+00:00")) for t in (stamps[0], stamps[-1]))
                process += (last - first).total_seconds()
    return {"ge_seconds": round(ge, 2), "dbt_test_thread_seconds": round(tests, 2),
            "dbt_model_thread_seconds": round(models, 2), "dbt_elapsed_seconds": round(elapsed, 2),
            "dbt_process_seconds": round(process, 2)}


def covered_seconds(spans: list[tuple[float, float]]) -> float:
    """Wall seconds during which at least one of `spans` (start, end) was running."""
    total, reach = 0.0, float("-inf")
    for start, end in sorted(spans):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


def stage_figures(recorded_steps: dict[str, dict[str, float]]) -> tuple[dict[str, float], float, dict[str, float]]:
    """Per stage the wall seconds its steps covered, the seconds any step covered, and each step's seconds.

    Independent steps run two at a time (orchestration/lib/threaded_executor.py), so a stage's
    seconds are the wall time during which any of its steps ran, not the sum of its steps; stages
    after dbt overlap one another (checks, analysis and the mailer run side by side), so the stage
    figures add up to more than the run.
    """
    spans: dict[str, list[tuple[float, float]]] = {stage: [] for stage in STAGES}
    steps: dict[str, float] = {}
    for key, span in recorded_steps.items():
        spans[stage_of(key)].append((span["start"], span["end"]))
        steps[key] = round(span["end"] - span["start"], 2)
    every = [span for stage_spans in spans.values() for span in stage_spans]
    return {stage: covered_seconds(s) for stage, s in spans.items()}, covered_seconds(every), steps


def run_pipeline(data_dir: Path, env: dict[str, str], label: str, *, full_refresh: bool) -> dict[str, Any]:
    """`nps-link run` on `data_dir`, measured: total and per-stage wall seconds and peak RSS."""
    timings = data_dir.parent / f"{label}.timings.json"
    cmd = [str(NPS_LINK), "run", "--data-dir", str(data_dir), "--timings", str(timings)]
    if full_refresh:
        cmd.append("--full-refresh")
    measured = run_measured(cmd, env, data_dir.parent / f"{label}.log")
    if measured.returncode != 0:
        raise RuntimeError(f"{label}: nps-link run failed; see {data_dir.parent / f'{label}.log'}")
    recorded = json.loads(timings.read_text())
    stage_seconds, in_steps, steps = stage_figures(recorded["steps"])
    stages: dict[str, dict[str, float]] = {s: {"seconds": stage_seconds[s], "peak_rss_gib": 0.0} for s in STAGES}
    for key, span in recorded["steps"].items():
        stage = stages[stage_of(key)]
        stage["peak_rss_gib"] = max(stage["peak_rss_gib"], measured.peak_bytes(span["start"], span["end"]) / GIB)
    return {
        "seconds": round(measured.seconds, 2),
        "cpu_seconds": round(measured.cpu_seconds, 1),
        "peak_rss_gib": round(measured.peak_bytes() / GIB, 2),
        # Process start, imports, Dagster and dbt start-up: the wall time no step covered.
        "overhead_seconds": round(measured.seconds - in_steps, 2),
        "step_seconds_summed": round(sum(steps.values()), 2),
        "stages": {k: {"seconds": round(v["seconds"], 2), "peak_rss_gib": round(v["peak_rss_gib"], 2)}
                   for k, v in stages.items()},
        "checks": _checks_seconds(data_dir, recorded["run_id"]),
        "link_fit_seconds": steps.get("link_effects"),
        "steps": steps,
        # Start and end of every step, seconds from the first step's start, to re-derive the above.
        "spans": {k: [round(v["start"] - min(x["start"] for x in recorded["steps"].values()), 2),
                      round(v["end"] - min(x["start"] for x in recorded["steps"].values()), 2)]
                  for k, v in recorded["steps"].items()},
    }


# ---- the raw-DuckDB baseline ---------------------------------------------------------------------


def baseline_main(lake: Path, db: Path, threads: int, memory_limit: str) -> None:
    """Run baseline.sql over `lake` into a fresh DuckDB file and print its rows and seconds as JSON."""
    import duckdb

    db.unlink(missing_ok=True)
    con = duckdb.connect(str(db), config={"threads": threads, "memory_limit": memory_limit,
                                          "preserve_insertion_order": False})
    sql = BASELINE_SQL.read_text().replace("{lake}", str(lake)).replace("{seed}", str(FX_SEED))
    started = time.perf_counter()
    con.execute(sql)
    con.execute("checkpoint")
    seconds = time.perf_counter() - started
    rows = {t: con.execute(f"select count(*) from {t}").fetchone()[0]
            for t in ("activities", "fct_survey_responses", "fct_customer_months")}
    con.close()
    print(json.dumps({"sql_seconds": round(seconds, 2), "rows": rows}))


def run_baseline(data_dir: Path, env: dict[str, str]) -> dict[str, Any]:
    """The baseline in its own process (so its peak RSS is its own), over the full run's lake."""
    db = data_dir.parent / "baseline.duckdb"
    log = data_dir.parent / "baseline.log"
    cmd = [sys.executable, "-m", "tests.bench.run", "--baseline-lake", str(data_dir / "lake"),
           "--baseline-db", str(db)]
    measured = run_measured(cmd, env, log)
    if measured.returncode != 0:
        raise RuntimeError(f"baseline failed; see {log}")
    figures = json.loads(log.read_text().strip().splitlines()[-1])
    # Kept until the new day has been measured (bench_scale deletes it): see the note on deletions there.
    return {"seconds": round(measured.seconds, 2), "peak_rss_gib": round(measured.peak_bytes() / GIB, 2), **figures}


# ---- orchestration of one scale ------------------------------------------------------------------


def _env(work: Path) -> dict[str, str]:
    """The benchmark's environment: this one without NPS_LINK_* overrides, a private Dagster home."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NPS_LINK_") and k != "DUCKDB_PATH"}
    home = work / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").touch()
    env.update({"DAGSTER_HOME": str(home), "GX_ANALYTICS_ENABLED": "False"})
    return env


def _sources(work: Path, customers: int, seed: int, env: dict[str, str]) -> tuple[Path, float | None]:
    """Generated demo sources for this size, reused when a previous invocation left them complete."""
    sources = work / "sources" / f"{customers}-seed{seed}"
    if (sources / ".complete").exists():
        return sources, None
    shutil.rmtree(sources, ignore_errors=True)
    started = time.perf_counter()
    subprocess.run([str(NPS_LINK), "demo-data", "--data-dir", str(sources), "--customers", str(customers),
                    "--seed", str(seed)], cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL)
    (sources / ".complete").touch()
    return sources, round(time.perf_counter() - started, 1)


def _prepare_project(env: dict[str, str]) -> float | None:
    """Parse the dbt project if its manifest is stale, as deploying the code does; the seconds, or None if current.

    Dagster's code location loads the dbt manifest when it starts (`ensure_manifest`), which a
    deployment does once per release, not once per run (`dagster-dbt project prepare-and-package`).
    On a checkout without a manifest the first timed run would otherwise pay the parse (about 5 s),
    so the first of several runs in a fresh checkout measured 5 s more than the others.
    """
    code = (
        "import time\n"
        "from orchestration.lib.dbt import DBT_PROJECT_DIR, dbt_project, ensure_manifest, manifest_is_stale\n"
        "stale = manifest_is_stale(dbt_project.manifest_path, DBT_PROJECT_DIR)\n"
        "started = time.perf_counter()\n"
        "ensure_manifest()\n"
        "print(round(time.perf_counter() - started, 2) if stale else '')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, check=True, capture_output=True, text=True)
    printed = done.stdout.strip().splitlines()[-1:] or [""]
    return float(printed[0]) if printed[0] else None


def _lake_rows(data_dir: Path) -> dict[str, int]:
    """Rows per raw lake table (every delivery), to state the size a run worked on."""
    import duckdb

    con = duckdb.connect()
    rows = {}
    for table in ("crm_accounts", "crm_activities", "survey_responses", "orders"):
        rows[table] = con.execute(
            f"select count(*) from read_parquet('{data_dir}/lake/raw/{table}/*.parquet', union_by_name = true)"
        ).fetchone()[0]
    con.close()
    return rows


def _machine() -> dict[str, Any]:
    mem_kib = int(next(line for line in Path("/proc/meminfo").read_text().splitlines()
                       if line.startswith("MemTotal")).split()[1])
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"cpus": os.cpu_count(), "memory_gib": round(mem_kib / 1024**2, 1), "cpu": cpu,
            "python": platform.python_version(), "kernel": platform.release()}


def bench_scale(scale: str, work: Path, seed: int) -> dict[str, Any]:
    """Generate, full refresh, baseline, new day, incremental run at one scale; the figures as a dict."""
    customers = SCALES[scale]
    work = work / scale
    work.mkdir(parents=True, exist_ok=True)
    env = _env(work)
    load_before = os.getloadavg()
    print(f"[bench {scale}] sources for {customers:,} customers", flush=True)
    sources, generate_seconds = _sources(work.parent, customers, seed, env)
    prepare_seconds = _prepare_project(env)
    run_dir = work / "run"
    # The previous run (5 GB at L) is moved aside now and deleted only after the measurements: on a disk
    # mounted with `discard`, as this machine's is, writing small files runs about ten times slower for
    # half a minute after a large deletion, and the run would pay for the last one's clean-up.
    trash = work / f"trash-{os.getpid()}"
    if run_dir.exists():
        run_dir.rename(trash)
    run_dir.mkdir(parents=True)
    data_dir = run_dir / "data"
    shutil.copytree(sources, data_dir, ignore=shutil.ignore_patterns(".complete"))

    print(f"[bench {scale}] full refresh", flush=True)
    full = run_pipeline(data_dir, env, "full", full_refresh=True)
    full["lake_rows"] = _lake_rows(data_dir)
    print(f"[bench {scale}] full refresh {full['seconds']} s; raw-DuckDB baseline", flush=True)
    baseline = run_baseline(data_dir, env)
    print(f"[bench {scale}] baseline {baseline['seconds']} s; appending one day", flush=True)
    subprocess.run([str(NPS_LINK), "demo-data", "--data-dir", str(data_dir), "--append-day", "--seed", str(seed)],
                   cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL)
    new_day_rows = json.loads((data_dir / "demo_truth.json").read_text())["state"]["appended_days"][-1]["rows"]
    new_day = run_pipeline(data_dir, env, "new_day", full_refresh=False)
    new_day["delivered_rows"] = new_day_rows
    print(f"[bench {scale}] new day {new_day['seconds']} s", flush=True)
    load_after = os.getloadavg()
    for moved_aside in work.glob("trash-*"):  # this run's, and any an interrupted run left
        shutil.rmtree(moved_aside, ignore_errors=True)
    (run_dir / "baseline.duckdb").unlink(missing_ok=True)
    return {
        "scale": scale,
        "customers": customers,
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": f"make bench SCALE={scale}",
        "machine": _machine(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
        "generate_seconds": generate_seconds,
        "project_prepare_seconds": prepare_seconds,
        "full_refresh": full,
        "baseline": baseline,
        "new_day": new_day,
    }


# ---- BENCHMARKS.md -------------------------------------------------------------------------------


def pipeline_seconds(run: dict[str, Any]) -> float:
    """A run's wall seconds, as the targets judge it: the whole `nps-link run` process, every stage.

    That includes the detractor follow-up mailing, which on the benchmark's first run mails the
    whole history's in-window backlog (tens of thousands of outbox files at L): a real first
    installation pays it too.
    """
    return run["seconds"]


def targets(result: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(target, measured, met) for every target that applies at this result's scale."""
    full, base, new = result["full_refresh"], result["baseline"], result["new_day"]
    full_s, new_s = pipeline_seconds(full), pipeline_seconds(new)
    ratio = full_s / base["seconds"]
    share = new_s / full_s
    scale = result["scale"]
    rows: list[tuple[str, str, bool]] = []
    if scale == "L":
        rows.append((f"full refresh <= {TARGET_FULL_VS_BASELINE:g}x raw-SQL baseline",
                     f"{ratio:.2f}x ({full_s:.1f} s / {base['seconds']:.1f} s)",
                     ratio <= TARGET_FULL_VS_BASELINE))
        rows.append((f"full refresh <= {TARGET_FULL_SECONDS_L:.0f} s",
                     f"{full_s:.0f} s",
                     full_s <= TARGET_FULL_SECONDS_L))
        peak = max(full["peak_rss_gib"], new["peak_rss_gib"])
        rows.append((f"peak RSS <= {TARGET_PEAK_RSS_GIB:g} GiB", f"{peak:.2f} GiB", peak <= TARGET_PEAK_RSS_GIB))
        link = full["link_fit_seconds"] or 0.0
        rows.append((f"link fit with bootstrap <= {TARGET_LINK_FIT_SECONDS:.0f} s", f"{link:.1f} s",
                     link <= TARGET_LINK_FIT_SECONDS))
    if scale in TARGET_NEW_DAY_SHARE:
        limit = TARGET_NEW_DAY_SHARE[scale]
        rows.append((f"new-day run <= {limit:.0%} of full refresh",
                     f"{share:.1%} ({new_s:.0f} s / {full_s:.0f} s)", share <= limit))
    return rows


def _run_table(full: dict[str, Any], new: dict[str, Any]) -> list[str]:
    lines = ["| stage | full refresh s | full peak RSS GiB | new day s | new day peak RSS GiB |",
             "|---|---:|---:|---:|---:|"]
    for stage in STAGES:
        if stage not in full["stages"]:
            # Results saved before the stage was split out: its steps are counted under ingest.
            lines.append(f"| {stage} | (in ingest) | | (in ingest) | |")
            continue
        f, n = full["stages"][stage], new["stages"][stage]
        lines.append(f"| {stage} | {f['seconds']:.1f} | {f['peak_rss_gib']:.2f} | {n['seconds']:.1f} | "
                     f"{n['peak_rss_gib']:.2f} |")
    lines.append(f"| process start-up and between steps (no step running) | {full['overhead_seconds']:.1f} | | "
                 f"{new['overhead_seconds']:.1f} | |")
    lines.append(f"| **total** (wall) | **{full['seconds']:.1f}** | **{full['peak_rss_gib']:.2f}** | "
                 f"**{new['seconds']:.1f}** | **{new['peak_rss_gib']:.2f}** |")
    if "cpu_seconds" in full and "cpu_seconds" in new:  # results saved before the harness counted CPU lack it
        lines.append(f"| CPU seconds, user + system, of the whole process tree (of wall x 2 cores) | "
                     f"{full['cpu_seconds']:.1f} ({full['cpu_seconds'] / (2 * full['seconds']):.0%}) | | "
                     f"{new['cpu_seconds']:.1f} ({new['cpu_seconds'] / (2 * new['seconds']):.0%}) | |")
    if "step_seconds_summed" in full:
        lines += ["", "Stage seconds are wall time during which a step of the stage ran; independent steps run "
                  "two at a time, so stages overlap and add up to more than the total (every step's own seconds "
                  f"summed: {full['step_seconds_summed']:.1f} full / {new['step_seconds_summed']:.1f} new day)."]
    fc, nc = full["checks"], new["checks"]
    lines += [
        "",
        "Checks, inside the stages above: Great Expectations "
        f"{fc['ge_seconds']:.1f} s (full) / {nc['ge_seconds']:.1f} s (new day) inside ingest; dbt data tests "
        f"{fc['dbt_test_thread_seconds']:.1f} / {nc['dbt_test_thread_seconds']:.1f} thread-seconds and dbt "
        f"models {fc['dbt_model_thread_seconds']:.1f} / {nc['dbt_model_thread_seconds']:.1f} thread-seconds "
        "inside dbt (two threads).",
    ]
    if "dbt_elapsed_seconds" in fc:
        lines += [
            "",
            f"The dbt step: dbt's own run {fc['dbt_elapsed_seconds']:.1f} s (full) / {nc['dbt_elapsed_seconds']:.1f} s "
            f"(new day); dbt's parse and build, from the first to the last line of their log, "
            f"{fc['dbt_process_seconds']:.1f} / {nc['dbt_process_seconds']:.1f} s (dbt runs inside nps-link); the "
            "rest of the step is turning dbt's results into Dagster events and closing (checkpointing) the "
            "warehouse.",
        ]
    return lines


def render_scale(result: dict[str, Any]) -> list[str]:
    """The Markdown section of one scale."""
    full, base, new = result["full_refresh"], result["baseline"], result["new_day"]
    lake = ", ".join(f"{k} {v:,}" for k, v in full["lake_rows"].items())
    delivered = ", ".join(f"{k} {v:,}" for k, v in new["delivered_rows"].items())
    m = result["machine"]
    lines = [
        f"## {result['scale']}: {result['customers']:,} customers",
        "",
        f"Measured {result['date']} with `{result['command']}` on {m['cpus']} CPUs ({m['cpu']}), "
        f"{m['memory_gib']} GiB, Python {m['python']}, Linux {m['kernel']}. Load average (1/5/15 min) "
        f"{' / '.join(map(str, result['load_average_before']))} before, "
        f"{' / '.join(map(str, result['load_average_after']))} after (the machine is shared).",
        "",
        f"Lake after the full refresh (rows, every delivery): {lake}. The new day delivered: {delivered}.",
        "",
    ]
    checked = targets(result)
    if checked:
        lines += ["| target | measured | met |", "|---|---|---|"]
        lines += [f"| {name} | {measured} | {'yes' if ok else '**no**'} |" for name, measured, ok in checked]
    else:
        lines.append("The issue sets no target at this scale; the figures show how the costs grow.")
    lines += [
        "",
        f"Raw-DuckDB baseline (`tests/bench/baseline.sql`, same lake, 2 threads): {base['seconds']:.1f} s "
        f"process wall ({base['sql_seconds']:.1f} s of SQL), peak RSS {base['peak_rss_gib']:.2f} GiB; "
        f"{base['rows']['fct_survey_responses']:,} responses, {base['rows']['fct_customer_months']:,} "
        f"customer-months. Whole runs: full refresh "
        f"{pipeline_seconds(full):.0f} s = {pipeline_seconds(full) / base['seconds']:.2f}x the baseline; new day "
        f"{pipeline_seconds(new):.0f} s = {pipeline_seconds(new) / pipeline_seconds(full):.1%} of the full refresh; "
        "link fit (1000 bootstrap "
        f"replicates) {full['link_fit_seconds'] or 0:.1f} s in the full run, "
        f"{new['link_fit_seconds'] or 0:.1f} s in the new-day run.",
        "",
    ]
    if "project_prepare_seconds" in result:  # results saved before the harness prepared the project lack it
        prepared = result["project_prepare_seconds"]
        lines += [
            "The dbt project was prepared before the timed runs, as deploying the code does (its manifest): "
            + (f"{prepared:.1f} s of `dbt parse` in this checkout." if prepared is not None
               else "it was current already."),
            "",
        ]
    lines += _run_table(full, new)
    slowest = sorted(full["steps"].items(), key=lambda kv: -kv[1])[:6]
    lines += ["", "Slowest steps of the full refresh: " + ", ".join(f"{k} {v:.1f} s" for k, v in slowest) + ".",
              ""]
    return lines


def render(results: list[dict[str, Any]], notes: str) -> str:
    """BENCHMARKS.md from every scale's results and the hand-written analysis in results/NOTES.md."""
    lines = [
        "# Benchmarks",
        "",
        "Generated by `tests/bench/run.py` (`make bench SCALE=S|M|L`); do not edit by hand: the figures come",
        "from `tests/bench/results/<scale>.json` and the discussion from `tests/bench/results/NOTES.md`.",
        "Each scale: demo sources generated, `nps-link run --full-refresh`, the raw-DuckDB baseline over the",
        "same lake, one more day delivered (`nps-link demo-data --append-day`), `nps-link run` (incremental).",
        "Stage seconds are the Dagster steps' own wall time; peak RSS is of the whole process tree",
        "(nps-link, which runs dbt inside it), polled every 0.2 s. Targets are judged on the whole run, the",
        "first run's mailing of the history's in-window detractor backlog included.",
        "",
    ]
    for result in results:
        lines += render_scale(result)
    if notes.strip():
        lines += [notes.strip(), ""]
    return "\n".join(lines)


def write_outputs(result: dict[str, Any]) -> None:
    """Save this scale's figures and regenerate BENCHMARKS.md from all saved scales."""
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / f"{result['scale']}.json").write_text(json.dumps(result, indent=1) + "\n")
    results = [json.loads((RESULTS_DIR / f"{s}.json").read_text()) for s in SCALES
               if (RESULTS_DIR / f"{s}.json").exists()]
    notes_path = RESULTS_DIR / "NOTES.md"
    notes = notes_path.read_text() if notes_path.exists() else ""
    BENCHMARKS_MD.write_text(render(results, notes))


def main(argv: list[str] | None = None) -> int:
    """Entry point: benchmark one scale (or, internally, run the baseline SQL)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=sorted(SCALES), default="S")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--work-dir", default=str(REPO / "data" / "bench"),
                        help="where sources are cached and runs happen (default ./data/bench)")
    parser.add_argument("--render-only", action="store_true", help="regenerate BENCHMARKS.md from saved results")
    parser.add_argument("--baseline-lake", help=argparse.SUPPRESS)
    parser.add_argument("--baseline-db", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.baseline_lake:
        from orchestration.lib.settings import Settings

        settings = Settings.from_env()
        baseline_main(Path(args.baseline_lake), Path(args.baseline_db), settings.duckdb_threads,
                      settings.duckdb_memory_limit)
        return 0
    if args.render_only:
        results = [json.loads((RESULTS_DIR / f"{s}.json").read_text()) for s in SCALES
                   if (RESULTS_DIR / f"{s}.json").exists()]
        notes_path = RESULTS_DIR / "NOTES.md"
        BENCHMARKS_MD.write_text(render(results, notes_path.read_text() if notes_path.exists() else ""))
        return 0
    result = bench_scale(args.scale, Path(args.work_dir).resolve(), args.seed)
    write_outputs(result)
    for name, measured, ok in targets(result):
        print(f"  {'MET ' if ok else 'MISS'} {name}: {measured}")
    print(f"figures written to {BENCHMARKS_MD}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
