"""One pipeline run per data directory at a time: `nps-link run` and Dagster-launched runs exclude each other."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import pytest

from orchestration.lib.resources import NpsLinkResource, WarehouseWriter, warehouse_writer
from orchestration.lib.run_lock import LOCK_NAME, WarehouseBusyError, pipeline_run_lock
from tests.conftest import run_cli

# Another process that takes the run lock, says so, and keeps it for argv[2] seconds.
HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from orchestration.lib.run_lock import pipeline_run_lock

    with pipeline_run_lock(Path(sys.argv[1])):
        print("holding", flush=True)
        time.sleep(float(sys.argv[2]))
    """
)


@contextmanager
def held_elsewhere(warehouse_dir: Path, seconds: float = 60) -> Iterator[subprocess.Popen[str]]:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(warehouse_dir), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        yield holder
    finally:
        holder.kill()
        holder.wait()


def lock_is_free(warehouse_dir: Path) -> bool:
    """Whether another process could take the lock now (asked from a fresh interpreter)."""
    probe = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        from orchestration.lib.run_lock import WarehouseBusyError, pipeline_run_lock
        try:
            with pipeline_run_lock(Path(sys.argv[1])):
                print("free")
        except WarehouseBusyError:
            print("busy")
        """
    )
    out = subprocess.run([sys.executable, "-c", probe, str(warehouse_dir)], capture_output=True, text=True, check=True)
    return out.stdout.strip() == "free"


def test_run_lock_is_reentrant_in_a_process_and_exclusive_across_processes(tmp_path: Path) -> None:
    warehouse = tmp_path / "warehouse"
    with pipeline_run_lock(warehouse) as path:
        assert path == (warehouse / LOCK_NAME).resolve()
        with pipeline_run_lock(warehouse):  # the job that `nps-link run` starts, in its process
            assert not lock_is_free(warehouse)
        assert not lock_is_free(warehouse)  # the outer holder still has it
    assert lock_is_free(warehouse)

    with (
        held_elsewhere(warehouse),
        pytest.raises(WarehouseBusyError, match="not starting a second writer"),
        pipeline_run_lock(warehouse),
    ):
        pass


def test_run_lock_waits_for_the_other_run_when_asked(tmp_path: Path) -> None:
    warehouse = tmp_path / "warehouse"
    waits: list[Path] = []
    with held_elsewhere(warehouse, seconds=2):
        started = time.monotonic()
        with pipeline_run_lock(warehouse, wait_seconds=60, on_wait=waits.append):
            waited = time.monotonic() - started
    assert 1.0 < waited < 30
    assert waits == [(warehouse / LOCK_NAME).resolve()]  # told once


@dg.asset
def writes_the_warehouse(nps_link: NpsLinkResource, warehouse_writer: WarehouseWriter) -> None:
    """Stands for a writer step: while it runs, no other process may take the lock."""
    assert not lock_is_free(nps_link.settings().warehouse_dir)


def _resources(wait_seconds: int) -> dict[str, object]:
    writer = warehouse_writer.configured({"wait_seconds": wait_seconds})
    return {"nps_link": NpsLinkResource(), "warehouse_writer": writer}


def test_a_dagster_run_holds_the_lock_of_the_data_dir_its_launchpad_config_names(tmp_path: Path) -> None:
    data_dir = tmp_path / "launchpad"
    run_config = {"resources": {"nps_link": {"config": {"data_dir": str(data_dir)}}}}

    result = dg.materialize([writes_the_warehouse], resources=_resources(60), run_config=run_config)

    assert result.success
    assert (data_dir / "warehouse" / LOCK_NAME).exists()
    assert lock_is_free(data_dir / "warehouse")  # let go when the run ended


def test_a_dagster_run_beside_a_cli_run_fails_before_any_step(tmp_path: Path) -> None:
    run_config = {"resources": {"nps_link": {"config": {"data_dir": str(tmp_path)}}}}
    with held_elsewhere(tmp_path / "warehouse"):
        result = dg.materialize(
            [writes_the_warehouse], resources=_resources(0), run_config=run_config, raise_on_error=False
        )
    assert not result.success
    assert result.get_step_success_events() == [] and result.get_asset_materialization_events() == []
    failure = result.get_run_failure_event().event_specific_data
    assert failure is not None and "not starting a second writer" in str(failure.error)


def test_nps_link_run_beside_another_run_exits_at_once(tmp_path: Path) -> None:
    delivery = tmp_path / "landing" / "crm_reps" / "reps.csv"  # something to run, so the lock is what stops it
    delivery.parent.mkdir(parents=True)
    delivery.write_text("rep_id,team\nr1,support\n")
    with held_elsewhere(tmp_path / "warehouse"):
        result = run_cli(tmp_path, "run", "--data-dir", str(tmp_path), timeout=120)
    assert result.returncode == 2
    assert "not starting a second writer" in result.stderr


def _steps_and_their_resources() -> list[tuple[str, set[str]]]:
    """Every asset and asset check of the definitions, by name, with the resources it requires."""
    from orchestration.definitions import defs

    definitions = defs()
    graph = definitions.resolve_asset_graph()
    assets = {graph.get(key).assets_def for key in graph.get_all_asset_keys() if graph.get(key).is_materializable}
    checks = list(definitions.asset_checks or [])
    return [(node.node_def.name, set(node.required_resource_keys)) for node in [*assets, *checks]]


def test_every_step_that_reads_or_writes_the_data_dir_holds_the_run_lock() -> None:
    """README: runs of one data directory never overlap, however started.

    An ingestion asset materialised from the UI while a refresh's dbt build ran could land a delivery
    below the build's watermark (never recomputed until a full refresh), and a mart check executed
    from the UI opened the build warehouse and failed the refresh's next step on DuckDB's file lock.
    """
    steps = _steps_and_their_resources()
    assert len(steps) > 15
    missing = sorted(name for name, needs in steps if "nps_link" in needs and "warehouse_writer" not in needs)
    assert missing == []


@pytest.mark.parametrize(
    "selection",
    [{"asset_selection": {dg.AssetKey(["crm", "reps"])}},
     {"asset_selection": set(), "asset_check_selection": {
         dg.AssetCheckKey(dg.AssetKey(["marts", "nps_by_period"]), "nps_month_on_month_jump")}}],
    ids=["an ingestion", "a mart check"],
)
def test_a_step_materialised_alone_needs_the_lock_another_run_holds(tmp_path: Path,
                                                                       selection: dict[str, object]) -> None:
    """With no time to wait, it fails before any step: it would otherwise wait (test_run_lock_waits_...)."""
    from orchestration.definitions import defs

    run_config = {"resources": {"nps_link": {"config": {"data_dir": str(tmp_path)}},
                                "warehouse_writer": {"config": {"wait_seconds": 0}}}}
    job = defs().resolve_implicit_global_asset_job_def().get_subset(**selection)
    with held_elsewhere(tmp_path / "warehouse"):
        result = job.execute_in_process(run_config=run_config, raise_on_error=False,
                                        instance=dg.DagsterInstance.ephemeral())
    assert not result.success
    assert result.get_step_success_events() == []
    failure = result.get_run_failure_event().event_specific_data
    assert failure is not None and "not starting a second writer" in str(failure.error)
