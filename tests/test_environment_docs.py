""".env.example claims to list every environment variable nps-link reads: the code's NPS_LINK_* names are all there."""

import re
from pathlib import Path

from orchestration.lib.dbt import TEST_SCOPE_ENV

REPO = Path(__file__).resolve().parents[1]
# Where the code reads its settings: the Python packages and the dbt project (env_var() in SQL and YAML).
SOURCES = ["orchestration", "quality", "analysis", "dbt_project/models", "dbt_project/macros",
           "dbt_project/profiles.yml", "dbt_project/dbt_project.yml"]
# Set by the pipeline for dbt, never by a person.
INTERNAL = {TEST_SCOPE_ENV}
NAME = re.compile(r"NPS_LINK_[A-Z0-9_]*[A-Z0-9]")


def _names_in(paths: list[Path]) -> set[str]:
    return {name for path in paths for name in NAME.findall(path.read_text(encoding="utf-8", errors="replace"))}


def test_every_variable_the_code_names_is_in_env_example() -> None:
    files = [
        path
        for source in SOURCES
        for path in ([REPO / source] if (REPO / source).is_file() else sorted((REPO / source).rglob("*")))
        if path.is_file() and path.suffix in {".py", ".sql", ".yml", ".yaml"}
    ]
    named = _names_in(files)
    # A prefix the code builds names from (NPS_LINK_SMTP_...) is not a variable of its own.
    variables = {name for name in named if not any(other.startswith(name + "_") for other in named)} - INTERNAL
    documented = _names_in([REPO / ".env.example"])

    assert len(variables) > 20  # the scan found the settings at all
    assert sorted(variables - documented) == []


def _make_instance_settings(home: Path) -> str:
    """Run make's rule for `<home>/dagster.yaml` (the part of `make setup` that gives an instance its settings)."""
    import subprocess

    return subprocess.run(["make", f"DAGSTER_HOME={home}", f"{home}/dagster.yaml"], cwd=REPO, capture_output=True,
                          text=True, check=True).stdout


def _older_than_the_repositorys(path: Path) -> None:
    import os

    stamp = (REPO / "dagster.yaml").stat().st_mtime - 3600
    os.utime(path, (stamp, stamp))


def test_setup_gives_a_new_instance_the_settings_and_never_overwrites_an_instance_of_its_own(tmp_path: Path) -> None:
    """An instance set up before run monitoring lacks it; one with its own storage must not lose that."""
    home = tmp_path / "dagster_home"
    assert "copied dagster.yaml" in _make_instance_settings(home)
    assert (home / "dagster.yaml").read_bytes() == (REPO / "dagster.yaml").read_bytes()

    own = "storage:\n  postgres:\n    postgres_url: postgresql://x\n"
    (home / "dagster.yaml").write_text(own)
    _older_than_the_repositorys(home / "dagster.yaml")
    assert "differs from the repository's dagster.yaml" in _make_instance_settings(home)
    assert (home / "dagster.yaml").read_text() == own


def test_make_dev_runs_the_ui_on_the_workspace() -> None:
    import subprocess

    dev = subprocess.run(["make", "-n", "dev"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert "dagster dev -w workspace.yaml" in dev
