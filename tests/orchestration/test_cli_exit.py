"""The `nps-link` console script's exit: main's status, flushed output, exit handlers, and no teardown.

Each case runs `orchestration.cli.console` in a fresh interpreter with `main` replaced, so the exit path
is exercised exactly as the installed script runs it, without a pipeline run.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

# A module-level object whose finalizer prints at interpreter teardown, an exit handler registered by
# "the run" (as Dagster's and logging's are), and output left in the buffers of a pipe.
SCRIPT = textwrap.dedent(
    """
    import atexit, logging, sys
    from orchestration import cli

    class Teardown:
        def __del__(self):
            sys.stderr.write("teardown ran\\n")

    kept = Teardown()

    def fake_main(argv=None):
        atexit.register(lambda: sys.stdout.write("exit handler ran\\n"))
        logging.getLogger("nps").addHandler(logging.StreamHandler(sys.stdout))
        logging.getLogger("nps").warning("logged before exit")
        sys.stdout.write("printed, still buffered\\n")
        {body}

    cli.main = fake_main
    cli.console()
    """
)


def _run(body: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", SCRIPT.format(body=body)], capture_output=True, text=True, timeout=120, check=False
    )


def test_console_exits_with_mains_status_after_handlers_and_flush_without_teardown() -> None:
    done = _run("return 3")
    assert done.returncode == 3
    assert done.stdout.splitlines() == ["logged before exit", "printed, still buffered", "exit handler ran"]
    # The interpreter's teardown (module clearing, the last garbage collection) was skipped.
    assert "teardown ran" not in done.stderr
    assert done.stderr == ""


def test_console_keeps_the_normal_shutdown_when_main_raises() -> None:
    done = _run("raise RuntimeError('boom')")
    assert done.returncode == 1
    assert "RuntimeError: boom" in done.stderr
    assert "exit handler ran" in done.stdout
    assert "teardown ran" in done.stderr


def test_console_keeps_the_normal_shutdown_on_system_exit() -> None:
    done = _run("raise SystemExit(2)")
    assert done.returncode == 2
    assert "exit handler ran" in done.stdout
    assert "teardown ran" in done.stderr
