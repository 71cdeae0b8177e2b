"""A user's mistakes at the `nps-link` command line get one plain sentence and exit 2, not a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestration.cli import main, nothing_to_run_reason
from orchestration.lib.settings import Settings
from tests.conftest import run_cli


def test_a_run_of_a_mistyped_data_dir_says_so_and_creates_nothing(tmp_path: Path) -> None:
    mistyped = tmp_path / "dta"
    result = run_cli(mistyped, "run", "--data-dir", str(mistyped))
    assert result.returncode == 2
    assert f"nothing to run: there is no {mistyped / 'landing'}" in result.stderr
    assert "Traceback" not in result.stderr
    assert not mistyped.exists()  # no lake, warehouse or lock folders left behind


def test_nothing_to_run_only_without_a_delivery_and_without_an_earlier_load(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    (tmp_path / "landing" / "orders").mkdir(parents=True)
    (tmp_path / "landing" / "orders" / ".being_uploaded.csv").write_text("x")  # not a delivery yet
    (tmp_path / "landing" / "ordres").mkdir()
    (tmp_path / "landing" / "ordres" / "orders_2025-06-30.csv").write_text("x")  # not a source's folder
    assert "has no delivery in a source's folder" in (nothing_to_run_reason(settings) or "")
    (tmp_path / "landing" / "orders" / "2025-06").mkdir()
    (tmp_path / "landing" / "orders" / "2025-06" / "orders_2025-06-30.csv").write_text("x")  # read, however deep
    assert nothing_to_run_reason(settings) is None
    (tmp_path / "landing" / "orders" / "2025-06" / "orders_2025-06-30.csv").unlink()
    (tmp_path / "lake").mkdir()
    (tmp_path / "lake" / "load_manifest.parquet").write_bytes(b"")  # loaded before: a day with no new file
    assert nothing_to_run_reason(settings) is None


def test_a_date_that_is_not_one_is_refused_by_name(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["run", "--data-dir", str(tmp_path), "--as-of", "2026-13-01"])
    assert exited.value.code == 2
    assert "argument --as-of: '2026-13-01' is not a date (YYYY-MM-DD)" in capsys.readouterr().err
    monkeypatch.setenv("NPS_LINK_AS_OF", "2026-13-01")
    assert main(["run", "--data-dir", str(tmp_path)]) == 2
    assert "NPS_LINK_AS_OF='2026-13-01' is not a date (YYYY-MM-DD)" in capsys.readouterr().err
    monkeypatch.delenv("NPS_LINK_AS_OF")
    monkeypatch.setenv("NPS_LINK_REPEAT_WINDOW_DAYS", "ninety")
    for command in (["run"], ["sql", "select 1"], ["docs"]):
        assert main([*command, "--data-dir", str(tmp_path)]) == 2
        err = capsys.readouterr().err
        assert f"nps-link {command[0]}: NPS_LINK_REPEAT_WINDOW_DAYS='ninety' is not a whole number" in err


def test_demo_data_into_a_dir_with_someone_elses_deliveries_refuses_in_words(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    theirs = tmp_path / "landing" / "crm_activities" / "bad.jsonl"
    theirs.parent.mkdir(parents=True)
    theirs.write_text("{}\n")
    assert main(["demo-data", "--data-dir", str(tmp_path), "--customers", "300"]) == 2
    err = capsys.readouterr().err
    assert "holds files this generator did not write" in err and "choose another --data-dir" in err
    assert theirs.read_text() == "{}\n"
