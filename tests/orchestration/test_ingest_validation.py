"""LoadedFileValidator: a table's files validated as written, in bounded groups, one outcome per file."""

from __future__ import annotations

import pickle
import subprocess
import sys
from datetime import UTC, datetime

import pyarrow as pa

import quality.validate
from orchestration.lib import ingest_assets
from orchestration.lib.ingest import FileLoadResult
from orchestration.lib.settings import Settings
from tests.quality.conftest import _good_rows, make_batch


def _rows(table: str, changes: dict[int, dict] | None = None) -> pa.Table:
    """Six valid lake rows of `table` as the ingestion writer hands them over, with `changes` planted."""
    rows = _good_rows(table, 6)
    for index, update in (changes or {}).items():
        rows[index].update(update)
    return pa.Table.from_pandas(make_batch(table, rows), preserve_index=False)


def test_validator_groups_files_and_attributes_failures(tmp_path, monkeypatch):
    settings = Settings(data_dir=tmp_path)
    groups: list[list[str]] = []
    real = quality.validate.validate_batches

    def recording(batches, **kwargs):
        groups.append(list(batches))
        return real(batches, **kwargs)

    monkeypatch.setattr(quality.validate, "validate_batches", recording)
    monkeypatch.setattr(ingest_assets, "VALIDATION_GROUP_ROWS", 10)  # a and b reach it together; c alone
    validator = ingest_assets.LoadedFileValidator("crm_reps", settings, "run-1")
    for name, changes in (("a", None), ("b", {2: {"team": "marketing"}}), ("c", None)):
        loaded = FileLoadResult("crm_reps", f"crm_reps/{name}.csv", name * 64, "loaded", 6, 6)
        validator.add(loaded, _rows("crm_reps", changes))
    assert groups == [["crm_reps: crm_reps/a.csv", "crm_reps: crm_reps/b.csv"]]  # c waits for more rows
    outcomes = validator.finish()
    assert groups[1:] == [["crm_reps: crm_reps/c.csv"]]
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


def test_a_file_missing_an_optional_column_is_judged_by_its_own_suite(tmp_path):
    # segment must be filled on half the rows of a file that delivered it; a file without the column
    # (NULL on every row, recorded as missing) is not held to that. Both files share a group.
    settings = Settings(data_dir=tmp_path)
    validator = ingest_assets.LoadedFileValidator("crm_accounts", settings, "run-1")
    no_segments = {i: {"segment": None} for i in range(6)}
    delivered = FileLoadResult("crm_accounts", "crm_accounts/a.csv", "a" * 64, "loaded", 6, 6)
    missing = FileLoadResult(
        "crm_accounts", "crm_accounts/b.csv", "b" * 64, "loaded", 6, 6, missing_optional_columns=["segment"]
    )
    validator.add(delivered, _rows("crm_accounts", no_segments))
    validator.add(missing, _rows("crm_accounts", no_segments))
    outcomes = validator.finish()
    # A warning, not a block: the outcome stays successful and lists it.
    assert {name: (o.success, [(f.column, f.severity) for f in o.failed]) for name, o in outcomes.items()} == {
        "crm_accounts: crm_accounts/a.csv": (True, [("segment", "warning")]),
        "crm_accounts: crm_accounts/b.csv": (True, []),
    }


def test_each_group_is_judged_after_its_files_were_loaded(tmp_path, monkeypatch):
    # "_loaded_at not after the load": files loaded after the validator was made must pass, and the
    # groups still share one GX run although each group's suite has its own moment.
    settings = Settings(data_dir=tmp_path)
    monkeypatch.setattr(ingest_assets, "VALIDATION_GROUP_ROWS", 6)  # one group per file
    runs = []
    real = quality.validate._run_gx
    monkeypatch.setattr(quality.validate, "_run_gx", lambda frame, suite: runs.append(1) or real(frame, suite))
    validator = ingest_assets.LoadedFileValidator("crm_reps", settings, "run-1")
    for name in "ab":
        loaded_at = datetime.now(UTC).replace(tzinfo=None)
        rows = _rows("crm_reps", {i: {"_loaded_at": loaded_at} for i in range(6)})
        validator.add(FileLoadResult("crm_reps", f"crm_reps/{name}.csv", name * 64, "loaded", 6, 6), rows)
    outcomes = validator.finish()
    assert [o.success for o in outcomes.values()] == [True, True] and len(runs) == 1


def test_a_run_without_new_files_does_not_import_great_expectations(tmp_path):
    # GX imports pyspark (seconds): loading the definitions and a run with nothing to validate must not pay for it.
    code = (
        "import sys, orchestration.definitions\n"
        "from pathlib import Path\n"
        "from orchestration.lib.ingest_assets import LoadedFileValidator, write_run_data_docs\n"
        "from orchestration.lib.settings import Settings\n"
        f"settings = Settings(data_dir=Path({str(tmp_path)!r}))\n"
        "assert LoadedFileValidator('crm_reps', settings, 'run-2').finish() == {}\n"
        "assert write_run_data_docs(settings, 'run-2') is None\n"
        "print('great_expectations' in sys.modules, 'pyspark' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "False"]
