"""dbt wiring shared by the Dagster assets and the CLI: the project, asset naming, and the run's vars.

We use the Pythonic `DbtProject` + `@dbt_assets` rather than the state-backed component: the
component runs dbt from a copied project refreshed only by `dg utils refresh-defs-state`, which
lets tests and the CLI run stale SQL (STYLE §3). Here the manifest is rebuilt by `dbt parse`
whenever any file of the dbt project is newer than it, under a file lock.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
import sys
from collections.abc import Mapping
from datetime import datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtProject

from orchestration.lib.settings import Settings
from orchestration.lib.warehouse import RUN_PARAMETER_VARS, stored_run_parameters

DBT_PROJECT_DIR = Path(__file__).resolve().parents[2] / "dbt_project"
DBT_TARGET_DIR = DBT_PROJECT_DIR / "target"
# The dbt installed beside this interpreter (the project venv), whether or not the venv is on PATH.
DBT_EXECUTABLE = Path(sys.executable).with_name("dbt")

dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR, target_path=DBT_TARGET_DIR)


def as_of_utc(settings: Settings) -> datetime | None:
    """The run's cut-off as a naive UTC timestamp, or None for "latest event loaded".

    DESIGN.md: a configured date means the end of that day, 23:59:59, in the reporting time zone.
    """
    if settings.as_of is None:
        return None
    local_end = datetime.combine(settings.as_of, time(23, 59, 59), tzinfo=ZoneInfo(settings.reporting_tz))
    return local_end.astimezone(ZoneInfo("UTC")).replace(tzinfo=None)


def previous_input_seq(settings: Settings) -> int | None:
    """The delivery watermark below which this run's incremental models hold only tested rows, or None.

    That is int_run_parameters.input_seq of the last published build: publishing waits for every dbt
    test to pass, so its rows were tested, and a row an incremental run writes carries a newer
    delivery (`_delivery_seq` in staging, `_input_seq` in the intermediates) whenever the run keeps
    the published build's parameters and cut-off rule. When it does not (other windows, time zone or
    currency, a configured as_of that differs, or as_of "latest event" after a configured one),
    rows can be rewritten without a newer delivery, so this is None and every test sees every row;
    likewise without a previous build or a published one (macros/test_scope.sql).

    The build warehouse must agree too: a build that failed its tests after the last publish holds
    rows the published one lacks, and those have deliveries above the published watermark only if
    that build ran with the same parameters.
    """
    cut_off = as_of_utc(settings)
    watermarks = []
    for db_path in (settings.build_db_path, settings.published_db_path):
        stored = stored_run_parameters(db_path)
        if stored is None or stored["input_seq"] is None or stored["as_of_at"] is None:
            return None
        if any(stored[name] != getattr(settings, name) for name in RUN_PARAMETER_VARS):
            return None
        # The same cut-off rule: the configured cut-off, or the latest event when none is configured.
        if stored["as_of_at"] != (cut_off if cut_off is not None else stored["latest_event_at"]):
            return None
        watermarks.append(int(stored["input_seq"]))
    return min(watermarks)


def unfinished_build_marker(settings: Settings, target: str = "") -> Path:
    """The file that exists while a `dbt build` of this warehouse runs, and stays if it did not finish.

    One per profile output, as the parse state (`dbt_parse_state_file`): a Spark build of the same
    data dir says nothing of the DuckDB warehouse's state. The default output (DuckDB) has no suffix.
    """
    suffix = f"-{target}" if target else ""
    return settings.build_db_path.with_name(f"{settings.build_db_path.name}.dbt-build-unfinished{suffix}")


def project_fingerprint_file(settings: Settings, target: str = "") -> Path:
    """Where the fingerprint of the dbt project that last built this warehouse (with this output) is kept."""
    suffix = f"-{target}" if target else ""
    return settings.build_db_path.with_name(f"{settings.build_db_path.name}.dbt-project{suffix}")


def dbt_parse_state_file(settings: Settings, target: str = "") -> Path:
    """Where the dbt parse that last built this warehouse with this profile output is kept (the next starts from it).

    One per warehouse and output, not one for the project: dbt discards a parse made for another
    profile (orchestration/lib/dbt_runner.py `keep_partial_parse`). The default output has no suffix.
    """
    suffix = f"-{target}" if target else ""
    return settings.build_db_path.with_name(f"{settings.build_db_path.name}.dbt-parse{suffix}.msgpack")


def project_fingerprint(project_dir: Path = DBT_PROJECT_DIR, profiles_dir: Path | None = None) -> str:
    """SHA-256 over the name and bytes of every file that decides what the models store.

    Models, macros and seeds (SQL, YAML configs, CSV), dbt_project.yml and the profile the build
    connects with (`profiles_dir`, by default the project's own: its session settings, such as
    DuckDB's time zone, decide how implicit timestamp casts come out); not target/ or logs/. An
    edit of the profile's threads or memory costs one full refresh, which is slower, never wrong.
    """
    digest = hashlib.sha256()
    files = [project_dir / "dbt_project.yml"]
    for sub in ("models", "macros", "seeds"):
        files += sorted(p for p in (project_dir / sub).rglob("*") if p.is_file())
    for path in files:
        digest.update(str(path.relative_to(project_dir)).encode() + b"\0" + path.read_bytes() + b"\0")
    profile = (profiles_dir or project_dir) / "profiles.yml"
    if profile.is_file():
        digest.update(b"profiles.yml\0" + profile.read_bytes() + b"\0")
    return digest.hexdigest()


def full_refresh_reason(settings: Settings, *, fingerprint: str = "", target: str = "") -> str | None:
    """Why the next `dbt build` of this warehouse must rebuild everything, or None when it may be incremental.

    `fingerprint` is the project the build will run (`project_fingerprint()` when not given), and
    `target` the profile output it builds.

    The incremental models decide what to recompute from what the last build stored, which is only
    sound when that build finished and ran the same SQL:
    - a build that stopped half-way (a failing test, a crash) can leave a model rebuilt for a new
      cut-off and a model downstream of it not, and a later cut-off would then skip rows the stopped
      build never wrote (models/marts/customer/fct_survey_responses.sql);
    - a changed model, macro, seed or project config changes what every stored row should hold (and
      a warehouse built by an older release may lack bookkeeping columns the models now read).
    Rebuilding once is slower, never wrong. A first build (no warehouse yet) needs no reason.
    """
    if unfinished_build_marker(settings, target).exists():
        return "the previous build did not finish"
    if not settings.build_db_path.exists():
        return None
    stored = project_fingerprint_file(settings, target)
    if not stored.exists() or stored.read_text().strip() != (fingerprint or project_fingerprint()):
        return "the dbt project changed since the last build"
    return None


def build_flags(
    settings: Settings,
    *,
    full_refresh_requested: bool,
    environ: Mapping[str, str] = os.environ,
    fingerprint: str = "",
    target: str = "",
) -> tuple[list[str], str | None]:
    """The `dbt build` flags this warehouse's state calls for, and why the build is a full refresh (or None).

    - `--full-refresh` when asked for, or when `full_refresh_reason` gives a reason (returned, to log).
    - Unit tests (dbt's tests of the SQL on fixed inputs, independent of the data) run when the SQL
      may have changed since they last passed: a full refresh, which every change of the project
      forces, or a first build. An incremental build of an unchanged project skips them
      (`--exclude-resource-type unit_test`), as dbt advises for production builds: they would repeat
      a result that cannot differ (nine tests, about 0.2 s each). CI runs them on every change.
    - The file log at info level, not dbt's default debug: the debug lines (every statement dbt
      sends) cost a tenth of the dbt threads' time on a new day. `DBT_LOG_LEVEL_FILE` in the
      environment still chooses, e.g. `debug` when investigating a build.
    """
    reason = None if full_refresh_requested else full_refresh_reason(settings, fingerprint=fingerprint, target=target)
    flags: list[str] = []
    if full_refresh_requested or reason is not None:
        flags.append("--full-refresh")
    elif settings.build_db_path.exists():
        flags += ["--exclude-resource-type", "unit_test"]
    if not environ.get("DBT_LOG_LEVEL_FILE"):
        flags += ["--log-level-file", "info"]
    return flags, reason


def build_started(settings: Settings, target: str = "") -> bool:
    """Mark the warehouse as being built (see full_refresh_reason); call right before `dbt build`.

    Returns whether the last build had finished (no marker was there): what a build of a subset of
    the models may restore when it passes (`subset_build_finished`).
    """
    marker = unfinished_build_marker(settings, target)
    finished_before = not marker.exists()
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()
    return finished_before


def build_finished(settings: Settings, fingerprint: str, target: str = "") -> None:
    """Record that a `dbt build` of every model finished with every test passing, and which project it ran.

    `fingerprint` is `project_fingerprint()` as it was before the build parsed the project: a file
    changed while the build ran then differs from it, and the next build is a full refresh.
    """
    stored = project_fingerprint_file(settings, target)
    staged = stored.with_name(stored.name + ".tmp")
    staged.write_text(fingerprint + "\n")
    os.replace(staged, stored)
    unfinished_build_marker(settings, target).unlink(missing_ok=True)


def subset_build_finished(
    settings: Settings, *, finished_before: bool, full_refresh_due: bool, target: str = ""
) -> None:
    """After a build of some of the models (a materialisation from the asset graph) passed its tests.

    It says nothing of the models it did not build, so it records no project: a warehouse that had
    finished, of the same project (`full_refresh_reason` gave none), is finished again; one that had
    not stays unfinished, its next whole build a full refresh and its publish refused.
    """
    if finished_before and not full_refresh_due:
        unfinished_build_marker(settings, target).unlink(missing_ok=True)


TEST_SCOPE_ENV = "NPS_LINK_TEST_SCOPE_SINCE"


def dbt_vars(settings: Settings) -> dict[str, Any]:
    """The `--vars` of a dbt invocation for these settings (the names dbt_project.yml declares)."""
    cut_off = as_of_utc(settings)
    return {
        "as_of": cut_off.strftime("%Y-%m-%d %H:%M:%S") if cut_off else "",
        "reporting_tz": settings.reporting_tz,
        "reporting_currency": settings.reporting_currency,
        "contact_window_days": settings.contact_window_days,
        "repeat_window_days": settings.repeat_window_days,
        "followup_window_days": settings.followup_window_days,
        "revenue_window_days": settings.revenue_window_days,
    }


def data_test_scope_env(settings: Settings) -> dict[str, str]:
    """The environment a `dbt build` needs for its data tests' scope (macros/test_scope.sql).

    NPS_LINK_TEST_SCOPE_SINCE is previous_input_seq (see that function), "" for every row. It is an
    environment variable rather than a --vars entry because it changes on every new day, and dbt
    re-parses the whole project whenever --vars change (4 s at L), but only the files that read a
    changed env var at parse time.
    """
    since = previous_input_seq(settings)
    return {TEST_SCOPE_ENV: "" if since is None else str(since)}


def _newest_source_mtime(project_dir: Path) -> float:
    newest = 0.0
    for sub in ("models", "macros", "seeds", "tests", "snapshots", "analyses"):
        folder = project_dir / sub
        if folder.exists():
            for path in folder.rglob("*"):
                if path.is_file():
                    newest = max(newest, path.stat().st_mtime)
    for name in ("dbt_project.yml", "profiles.yml"):
        if (project_dir / name).exists():
            newest = max(newest, (project_dir / name).stat().st_mtime)
    return newest


def manifest_is_stale(manifest: Path, project_dir: Path) -> bool:
    """True when the manifest is missing or older than any file of the dbt project."""
    return not manifest.exists() or manifest.stat().st_mtime < _newest_source_mtime(project_dir)


def ensure_manifest(env: Mapping[str, str] | None = None) -> Path:
    """Run `dbt parse` when the manifest is stale, so the asset graph never reflects old SQL.

    A file lock serialises concurrent parses (parallel test processes, the UI and the CLI).
    """
    manifest = dbt_project.manifest_path
    if not manifest_is_stale(manifest, DBT_PROJECT_DIR):
        return manifest
    DBT_TARGET_DIR.mkdir(parents=True, exist_ok=True)
    with open(DBT_TARGET_DIR / ".parse.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if manifest_is_stale(manifest, DBT_PROJECT_DIR):
            parse_env = dict(os.environ if env is None else env)
            # Parsing renders env_var() calls; the values only matter at run time.
            parse_env.setdefault("NPS_LINK_DATA_DIR", str(Path("data").resolve()))
            parse_env.setdefault("DUCKDB_PATH", str(Path("data/warehouse/build.duckdb").resolve()))
            subprocess.run(
                [str(DBT_EXECUTABLE), "parse", "--quiet", "--project-dir", str(DBT_PROJECT_DIR),
                 "--profiles-dir", str(DBT_PROJECT_DIR), "--target-path", str(DBT_TARGET_DIR)],
                check=True,
                env=parse_env,
                cwd=DBT_PROJECT_DIR,
            )
    return manifest


class NpsLinkDbtTranslator(DagsterDbtTranslator):
    """Asset keys `[<layer>, <model>]` grouped by layer; sources keep dagster-dbt's `[<source>, <table>]`.

    Sources therefore meet the ingestion assets' keys (`["crm", "accounts"]`, ...) without glue.
    """

    def __init__(self) -> None:
        super().__init__(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True))

    def get_asset_spec(self, manifest: Mapping[str, Any], unique_id: str, project: DbtProject | None) -> dg.AssetSpec:
        spec = super().get_asset_spec(manifest, unique_id, project)
        props = self.get_resource_props(manifest, unique_id)
        if props["resource_type"] in ("model", "seed", "snapshot"):
            fqn = props["fqn"]
            layer = fqn[1] if props["resource_type"] == "model" and len(fqn) > 2 else "seeds"
            return spec.replace_attributes(key=dg.AssetKey([layer, props["name"]]), group_name=layer)
        return spec
