"""The dbt vars the orchestrator passes: as_of cut in the reporting time zone, windows from settings."""

import os
from datetime import date, datetime
from pathlib import Path

from orchestration.lib.dbt import as_of_utc, dbt_vars, manifest_is_stale
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
