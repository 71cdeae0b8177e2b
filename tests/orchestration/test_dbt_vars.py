"""The dbt vars the orchestrator passes: as_of cut in the reporting time zone, windows from settings."""

import os
from dataclasses import replace
from datetime import date, datetime
from pathlib import Path

import duckdb

from orchestration.lib.dbt import (
    TEST_SCOPE_ENV,
    as_of_utc,
    build_finished,
    build_flags,
    build_started,
    data_test_scope_env,
    dbt_vars,
    full_refresh_reason,
    manifest_is_stale,
    previous_input_seq,
    project_fingerprint,
    project_fingerprint_file,
    subset_build_finished,
    unfinished_build_marker,
)
from orchestration.lib.settings import Settings


def test_as_of_date_means_end_of_that_day_in_tokyo_as_naive_utc() -> None:
    settings = Settings(as_of=date(2026, 3, 31), reporting_tz="Asia/Tokyo")
    # 2026-03-31 23:59:59 JST is 14:59:59 UTC the same day.
    assert as_of_utc(settings) == datetime(2026, 3, 31, 14, 59, 59)
    assert dbt_vars(settings)["as_of"] == "2026-03-31 14:59:59"


def test_as_of_unset_passes_empty_string_so_dbt_uses_latest_event() -> None:
    assert dbt_vars(Settings())["as_of"] == ""


def test_as_of_in_a_zone_behind_utc_lands_on_the_next_utc_day() -> None:
    settings = Settings(as_of=date(2026, 1, 15), reporting_tz="America/New_York")
    assert as_of_utc(settings) == datetime(2026, 1, 16, 4, 59, 59)


def test_windows_and_currency_come_from_settings() -> None:
    settings = Settings.from_env(
        {"NPS_LINK_CONTACT_WINDOW_DAYS": "60", "NPS_LINK_REPEAT_WINDOW_DAYS": "120",
         "NPS_LINK_REPORTING_CURRENCY": "USD", "NPS_LINK_REPORTING_TZ": "Europe/Berlin"}
    )
    vars_ = dbt_vars(settings)
    assert (vars_["contact_window_days"], vars_["repeat_window_days"]) == (60, 120)
    assert (vars_["reporting_currency"], vars_["reporting_tz"]) == ("USD", "Europe/Berlin")
    assert vars_["followup_window_days"] == 14 and vars_["revenue_window_days"] == 365


def test_settings_from_env_reads_as_of_and_data_dir_overrides_win(tmp_path: Path) -> None:
    settings = Settings.from_env({"NPS_LINK_AS_OF": "2026-09-30", "NPS_LINK_DATA_DIR": "/nowhere"},
                                 data_dir=tmp_path)
    assert settings.as_of == date(2026, 9, 30)
    assert settings.data_dir == tmp_path.resolve()
    assert settings.published_db_path == tmp_path.resolve() / "warehouse" / "nps_link.duckdb"


def test_manifest_is_stale_when_missing_or_older_than_a_model(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    (project / "models").mkdir(parents=True)
    model = project / "models" / "m.sql"
    model.write_text("select 1")
    manifest = tmp_path / "manifest.json"
    assert manifest_is_stale(manifest, project)
    manifest.write_text("{}")
    os.utime(model, (1_000_000, 1_000_000))
    assert not manifest_is_stale(manifest, project)
    os.utime(model, None)
    os.utime(manifest, (1_000_000, 1_000_000))
    assert manifest_is_stale(manifest, project)


# ---- previous_input_seq: the watermark of the data tests' scope (macros/test_scope.sql) ----------

LATEST = datetime(2026, 9, 30, 14, 59, 58)


def _store_run_parameters(db_path: Path, input_seq: int, as_of_at: datetime = LATEST,
                          latest_event_at: datetime = LATEST, contact_window_days: int = 90) -> None:
    """A warehouse file holding only intermediate.int_run_parameters, as a build leaves it."""
    db_path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(db_path))
    con.execute("create schema if not exists intermediate")
    con.execute(
        "create or replace table intermediate.int_run_parameters as select ? as as_of_at, ? as latest_event_at,"
        " ? as input_seq, 'Asia/Tokyo' as reporting_tz, 'JPY' as reporting_currency,"
        " ? as contact_window_days, 90 as repeat_window_days, 14 as followup_window_days,"
        " 365 as revenue_window_days",
        [as_of_at, latest_event_at, input_seq, contact_window_days],
    )
    con.close()


def test_previous_input_seq_is_the_published_watermark_when_parameters_match(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    _store_run_parameters(settings.build_db_path, 12)
    _store_run_parameters(settings.published_db_path, 10)
    # The build got further than the publish (its tests failed): rows from 11 on are not trusted yet.
    assert previous_input_seq(settings) == 10
    assert data_test_scope_env(settings) == {TEST_SCOPE_ENV: "10"}


def test_no_previous_build_or_publish_means_every_row_is_tested(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert data_test_scope_env(settings) == {TEST_SCOPE_ENV: ""}
    _store_run_parameters(settings.published_db_path, 10)
    assert previous_input_seq(settings) is None  # published, but the build warehouse is gone
    _store_run_parameters(settings.build_db_path, 10)
    settings.published_db_path.unlink()
    assert previous_input_seq(settings) is None  # built, never published


def test_other_parameters_or_cut_off_rule_mean_every_row_is_tested(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    for db_path in (settings.build_db_path, settings.published_db_path):
        _store_run_parameters(db_path, 10, contact_window_days=60)
    assert previous_input_seq(settings) is None  # rows are rewritten without a newer delivery
    assert previous_input_seq(replace(settings, contact_window_days=60)) == 10

    # The last build cut at a configured date: with as_of "latest event" now, rows move without a delivery.
    configured = datetime(2026, 9, 1, 14, 59, 59)
    for db_path in (settings.build_db_path, settings.published_db_path):
        _store_run_parameters(db_path, 10, as_of_at=configured)
    assert previous_input_seq(settings) is None
    # The same configured date again (2026-09-01 23:59:59 in Tokyo): limited; another date: not.
    assert previous_input_seq(replace(settings, as_of=date(2026, 9, 1))) == 10
    assert previous_input_seq(replace(settings, as_of=date(2026, 9, 2))) is None


def test_dbt_memory_limit_defaults_to_the_profiles_default_and_reads_its_env_var() -> None:
    assert Settings.from_env({}).dbt_memory_limit == "4GB"
    assert Settings.from_env({"NPS_LINK_DBT_MEMORY_LIMIT": "3GB"}).dbt_memory_limit == "3GB"
    profiles = (Path(__file__).resolve().parents[2] / "dbt_project" / "profiles.yml").read_text()
    assert "env_var('NPS_LINK_DBT_MEMORY_LIMIT', '4GB')" in profiles


def test_a_build_is_incremental_only_after_a_finished_build_of_the_same_project(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert full_refresh_reason(settings) is None  # first build: nothing stored yet
    settings.build_db_path.parent.mkdir(parents=True)
    duckdb.connect(str(settings.build_db_path)).close()
    # A warehouse with no record of the project that built it (an older release): rebuild.
    assert full_refresh_reason(settings) == "the dbt project changed since the last build"
    build_started(settings)
    assert unfinished_build_marker(settings).parent == settings.build_db_path.parent
    assert full_refresh_reason(settings) == "the previous build did not finish"  # killed or failed
    build_finished(settings, project_fingerprint())
    assert full_refresh_reason(settings) is None
    project_fingerprint_file(settings).write_text("another project\n")
    assert full_refresh_reason(settings) == "the dbt project changed since the last build"


def _warehouse(tmp_path: Path) -> Settings:
    """Settings of a data dir whose build warehouse exists (an empty DuckDB file)."""
    settings = Settings(data_dir=tmp_path)
    settings.build_db_path.parent.mkdir(parents=True)
    duckdb.connect(str(settings.build_db_path)).close()
    return settings


def test_a_build_records_the_project_it_parsed_not_one_edited_meanwhile(tmp_path: Path) -> None:
    settings = _warehouse(tmp_path)
    parsed = project_fingerprint()
    build_started(settings)
    # ... a model edited (a git pull) while the build runs the SQL it parsed before ...
    build_finished(settings, "the project as parsed, before the edit")
    assert full_refresh_reason(settings, fingerprint=parsed) == "the dbt project changed since the last build"


def test_a_build_of_some_models_never_marks_an_unfinished_warehouse_finished(tmp_path: Path) -> None:
    settings = _warehouse(tmp_path)
    fingerprint = project_fingerprint()
    build_started(settings)
    build_finished(settings, fingerprint)
    # A subset of a finished warehouse of the same project passes: it is finished again.
    finished_before = build_started(settings)
    subset_build_finished(settings, finished_before=finished_before, full_refresh_due=False)
    assert full_refresh_reason(settings) is None
    # A refresh fails its tests (the marker stays); a subset built from the UI then passes: still unfinished.
    assert build_started(settings) is True
    finished_before = build_started(settings)
    assert finished_before is False
    subset_build_finished(settings, finished_before=finished_before, full_refresh_due=True)
    assert full_refresh_reason(settings) == "the previous build did not finish"
    # Nor after a project change, with or without a finished build before it.
    build_finished(settings, "an older project")
    finished_before = build_started(settings)
    subset_build_finished(settings, finished_before=finished_before, full_refresh_due=True)
    assert unfinished_build_marker(settings).exists()


def test_a_spark_build_keeps_its_own_marker_and_project_record(tmp_path: Path) -> None:
    settings = _warehouse(tmp_path)
    build_started(settings)  # a DuckDB build killed
    build_started(settings, "spark")
    build_finished(settings, project_fingerprint(), "spark")
    assert full_refresh_reason(settings) == "the previous build did not finish"
    assert full_refresh_reason(settings, target="spark") is None
    assert unfinished_build_marker(settings, "spark") != unfinished_build_marker(settings)
    assert project_fingerprint_file(settings, "spark") != project_fingerprint_file(settings)


def test_the_project_fingerprint_follows_every_model_macro_and_seed_file(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    for sub in ("models", "macros", "seeds"):
        (project / sub).mkdir(parents=True)
    (project / "dbt_project.yml").write_text("name: p\n")
    (project / "models" / "a.sql").write_text("select 1")
    before = project_fingerprint(project)
    assert project_fingerprint(project) == before
    (project / "macros" / "m.sql").write_text("{% macro m() %}1{% endmacro %}")
    after_macro = project_fingerprint(project)
    assert after_macro != before
    (project / "models" / "a.sql").write_text("select 2")
    assert project_fingerprint(project) not in (before, after_macro)


def test_the_project_fingerprint_follows_the_profile_the_build_connects_with(tmp_path: Path) -> None:
    """A profile's session settings (DuckDB's TimeZone) decide how implicit timestamp casts come out."""
    project, elsewhere = tmp_path / "proj", tmp_path / "profiles"
    for folder in (project / "models", elsewhere):
        folder.mkdir(parents=True)
    (project / "dbt_project.yml").write_text("name: p\n")
    (project / "profiles.yml").write_text("settings: {TimeZone: UTC}\n")
    (elsewhere / "profiles.yml").write_text("settings: {TimeZone: UTC}\n")
    before = project_fingerprint(project)
    assert project_fingerprint(project, elsewhere) == before  # the same profile, wherever it is kept
    (project / "profiles.yml").write_text("settings: {TimeZone: Asia/Tokyo}\n")
    assert project_fingerprint(project) != before
    assert project_fingerprint(project, elsewhere) == before  # the build's own profile, not the project's copy
    (elsewhere / "profiles.yml").write_text("settings: {TimeZone: Asia/Tokyo}\n")
    assert project_fingerprint(project, elsewhere) == project_fingerprint(project)


def test_build_flags_run_unit_tests_only_when_the_sql_may_have_changed(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    quiet = {"DBT_LOG_LEVEL_FILE": "warn"}  # the file log's level is checked on its own below
    # A first build: unit tests run (no exclusion), nothing to refresh.
    assert build_flags(settings, full_refresh_requested=False, environ=quiet) == ([], None)
    settings.build_db_path.parent.mkdir(parents=True)
    duckdb.connect(str(settings.build_db_path)).close()
    build_started(settings)
    build_finished(settings, project_fingerprint())
    # An incremental build of the project that last built the warehouse: no unit tests.
    assert build_flags(settings, full_refresh_requested=False, environ=quiet) == (
        ["--exclude-resource-type", "unit_test"], None)
    # Asked for a full refresh: unit tests run.
    assert build_flags(settings, full_refresh_requested=True, environ=quiet) == (["--full-refresh"], None)
    # The project changed (or the last build stopped): a full refresh, with unit tests, and its reason.
    project_fingerprint_file(settings).write_text("another project\n")
    assert build_flags(settings, full_refresh_requested=False, environ=quiet) == (
        ["--full-refresh"], "the dbt project changed since the last build")
    build_started(settings)
    assert build_flags(settings, full_refresh_requested=False, environ=quiet) == (
        ["--full-refresh"], "the previous build did not finish")


def test_build_flags_keep_the_file_log_at_info_unless_the_environment_chooses(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert build_flags(settings, full_refresh_requested=True, environ={}) == (
        ["--full-refresh", "--log-level-file", "info"], None)
    assert build_flags(settings, full_refresh_requested=True, environ={"DBT_LOG_LEVEL_FILE": "debug"}) == (
        ["--full-refresh"], None)
