"""validate_loaded_files(): the run's files of a table validated together in bounded groups, one outcome per file."""

from __future__ import annotations

import pickle
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq

import quality.validate
from orchestration.lib import ingest_assets
from orchestration.lib.ingest import FileLoadResult
from orchestration.lib.lake import raw_dir
from orchestration.lib.settings import Settings
from tests.quality.conftest import _good_rows, make_batch


def _land(settings: Settings, table: str, sha: str, changes: dict[int, dict] | None = None) -> None:
    rows = _good_rows(table, 6)
    for index, update in (changes or {}).items():
        rows[index].update(update)
    folder = raw_dir(settings.lake_dir, table)
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pandas(make_batch(table, rows), preserve_index=False), folder / f"{sha}.parquet")


def test_validate_loaded_files_groups_files_and_attributes_failures(tmp_path, monkeypatch):
    settings = Settings(data_dir=tmp_path)
    for sha, changes in (("a" * 64, None), ("b" * 64, {2: {"team": "marketing"}}), ("c" * 64, None)):
        _land(settings, "crm_reps", sha, changes)
    files = [
        FileLoadResult("crm_reps", "crm_reps/a.csv", "a" * 64, "loaded", 6, 6),
        FileLoadResult("crm_reps", "crm_reps/b.csv", "b" * 64, "loaded", 6, 6),
        FileLoadResult("crm_reps", "crm_reps/gone.csv", "d" * 64, "rejected", reason="bad header"),
        FileLoadResult("crm_reps", "crm_reps/c.csv", "c" * 64, "loaded", 6, 6),
    ]
    groups: list[list[str]] = []
    real = quality.validate.validate_batches

    def recording(batches, **kwargs):
        groups.append(list(batches))
        return real(batches, **kwargs)

    monkeypatch.setattr(quality.validate, "validate_batches", recording)
    monkeypatch.setattr(ingest_assets, "VALIDATION_GROUP_ROWS", 10)  # a and b reach it together; c alone
    outcomes = ingest_assets.validate_loaded_files("crm_reps", files, settings, "run-1")
    assert groups == [["crm_reps: crm_reps/a.csv", "crm_reps: crm_reps/b.csv"], ["crm_reps: crm_reps/c.csv"]]
    assert {name: o.success for name, o in outcomes.items()} == {
        "crm_reps: crm_reps/a.csv": True,
        "crm_reps: crm_reps/b.csv": False,
        "crm_reps: crm_reps/c.csv": True,
    }
    failed = outcomes["crm_reps: crm_reps/b.csv"].failed
    assert [(f.expectation_type, f.column, f.summary[:9]) for f in failed] == [
        ("expect_column_values_to_be_in_set", "team", "1 of 6 va")
    ]
    check = ingest_assets.contract_check("crm_reps", outcomes)
    assert not check.passed and "crm_reps/b.csv" in check.metadata["failures"].value
    # The harness sums the pickled outcomes' elapsed_seconds: one file per table, every file in it.
    kept = pickle.loads((ingest_assets.outcomes_dir(settings, "run-1") / "crm_reps.pkl").read_bytes())
    assert list(kept) == list(outcomes) and all(o.elapsed_seconds > 0 for o in kept.values())
    assert ingest_assets.write_run_data_docs(settings, "run-1").exists()


def test_a_run_without_new_files_does_not_import_great_expectations(tmp_path):
    # GX imports pyspark (seconds): loading the definitions and a run with nothing to validate must not pay for it.
    code = (
        "import sys, orchestration.definitions\n"
        "from pathlib import Path\n"
        "from orchestration.lib.ingest import FileLoadResult\n"
        "from orchestration.lib.ingest_assets import validate_loaded_files, write_run_data_docs\n"
        "from orchestration.lib.settings import Settings\n"
        f"settings = Settings(data_dir=Path({str(tmp_path)!r}))\n"
        "rejected = FileLoadResult('crm_reps', 'crm_reps/x.csv', 'e' * 64, 'rejected', reason='bad header')\n"
        "assert validate_loaded_files('crm_reps', [rejected], settings, 'run-2') == {}\n"
        "assert write_run_data_docs(settings, 'run-2') is None\n"
        "print('great_expectations' in sys.modules, 'pyspark' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "False"]
