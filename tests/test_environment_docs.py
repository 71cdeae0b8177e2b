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


def test_setup_gives_the_dagster_instance_the_repositorys_settings_again_when_they_change(tmp_path) -> None:
    """`make setup` once copied dagster.yaml only when absent: an instance set up before run monitoring never got it."""
    import os
    import subprocess
    import time

    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    older = time.time() - 3600
    os.utime(home / "dagster.yaml", (older, older))
    dry_run = subprocess.run(["make", "-n", "setup", f"DAGSTER_HOME={home}"], cwd=REPO, capture_output=True,
                             text=True, check=True).stdout
    assert f"cp dagster.yaml {home}/dagster.yaml" in dry_run
    dev = subprocess.run(["make", "-n", "dev", f"DAGSTER_HOME={home}"], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout
    assert "dagster dev -w workspace.yaml" in dev
