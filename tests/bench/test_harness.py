"""The benchmark harness's own measurements (tests/bench/run.py), on small commands, not the pipeline."""

from __future__ import annotations

import sys
from pathlib import Path

from tests.bench import run as bench

# A parent that starts a child and waits for it; each spins for 0.4 s of CPU.
BURN = """
import subprocess, sys, time
def burn(seconds):
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass
if len(sys.argv) == 1:
    child = subprocess.Popen([sys.executable, __file__, "child"])
    burn(0.4)
    child.wait()
else:
    burn(0.4)
"""


def test_run_measured_counts_the_cpu_of_the_command_and_its_children(tmp_path: Path) -> None:
    """CPU seconds include a child the command waited for (dbt's threads, the validation worker)."""
    script = tmp_path / "burn.py"
    script.write_text(BURN)
    measured = bench.run_measured([sys.executable, str(script)], {"PATH": "/usr/bin:/bin"}, tmp_path / "burn.log")
    assert measured.returncode == 0, (tmp_path / "burn.log").read_text()
    assert 0.75 <= measured.cpu_seconds <= 0.8 + 2.0  # two burners of 0.4 s, plus two interpreters' start
    assert measured.samples  # the RSS poller ran


def _run(seconds: float, cpu: float | None) -> dict:
    stages = {s: {"seconds": 1.0, "peak_rss_gib": 0.1} for s in bench.STAGES}
    run = {"seconds": seconds, "peak_rss_gib": 1.0, "overhead_seconds": 1.0, "step_seconds_summed": 7.0,
           "stages": stages, "checks": {"ge_seconds": 0.1, "dbt_test_thread_seconds": 1.0,
                                        "dbt_model_thread_seconds": 1.0}}
    if cpu is not None:
        run["cpu_seconds"] = cpu
    return run


def test_run_table_shows_cpu_seconds_as_a_share_of_both_cores() -> None:
    """120 CPU-s in a 100 s run is 60% of two cores; results saved before CPU was counted have no row."""
    lines = bench._run_table(_run(100.0, 120.0), _run(20.0, 30.0))
    row = next(line for line in lines if line.startswith("| CPU seconds"))
    assert "| 120.0 (60%) |" in row and "| 30.0 (75%) |" in row
    old = bench._run_table(_run(100.0, None), _run(20.0, 30.0))
    assert not any(line.startswith("| CPU seconds") for line in old)
