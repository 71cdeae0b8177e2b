"""Shared fixtures: run the real `nps-link` command on generated demo data, in real processes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NPS_LINK = Path(sys.executable).with_name("nps-link")
E2E_CUSTOMERS = 1500
E2E_SEED = 11


def cli_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of an `nps-link` subprocess: this one, pointed at `data_dir`, no shared Dagster home."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NPS_LINK_") and k not in ("DAGSTER_HOME",)}
    env.update({"NPS_LINK_DATA_DIR": str(data_dir), "GX_ANALYTICS_ENABLED": "False", **extra})
    env.pop("DUCKDB_PATH", None)
    return env


def run_cli(data_dir: Path, *args: str, timeout: float = 900, **env: str) -> subprocess.CompletedProcess[str]:
    """Run `nps-link <args>` to completion and return its result (never raises on a non-zero exit)."""
    return subprocess.run(
        [str(NPS_LINK), *args], cwd=REPO, env=cli_env(data_dir, **env), capture_output=True, text=True,
        timeout=timeout, check=False,
    )


def start_cli(data_dir: Path, *args: str, log: Path, **env: str) -> subprocess.Popen[bytes]:
    """Start `nps-link <args>` in its own process group (so a test can kill -9 it with its dbt child)."""
    with open(log, "wb") as out:
        return subprocess.Popen(
            [str(NPS_LINK), *args], cwd=REPO, env=cli_env(data_dir, **env), stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@pytest.fixture(scope="session")
def published_demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A data dir with demo sources and one successful full run (published warehouse, report, docs).

    Tests that change the data copy it first (`copy_data_dir`), so each starts from this state.
    """
    data_dir = tmp_path_factory.mktemp("demo") / "data"
    generated = run_cli(data_dir, "demo-data", "--data-dir", str(data_dir), "--customers", str(E2E_CUSTOMERS),
                        "--seed", str(E2E_SEED))
    assert generated.returncode == 0, generated.stderr
    result = run_cli(data_dir, "run", "--data-dir", str(data_dir))
    (data_dir.parent / "first_run.log").write_text(result.stdout + result.stderr)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    yield data_dir


def copy_data_dir(source: Path, target_parent: Path) -> Path:
    """A private copy of a data dir (landing, lake, warehouse, ledger and all) for a test that changes it."""
    target = target_parent / "data"
    shutil.copytree(source, target, symlinks=True)
    return target
