"""Held deliveries: a file that failed a blocking ingestion check blocks every later run until it is accepted.

Also what an ingestion step leaves for a later run when its run says files must have settled.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import dagster as dg
import pytest

from orchestration.lib import ingest_assets
from orchestration.lib.ingest import FileLoadResult
from orchestration.lib.ingest.holds import NoSuchHoldError, accept_held, open_holds, record_hold
from tests.conftest import run_cli

REPS = dg.AssetKey(["crm", "reps"])


def _loaded(file: str, sha: str, source: str = "crm_reps", seq: int = 1) -> FileLoadResult:
    return FileLoadResult(source, file, sha * 64, "loaded", 10, 8, 2, delivery_seq=seq)


def test_a_hold_stays_open_until_its_file_is_accepted(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    record_hold(lake, _loaded("crm_reps/a.csv", "a"), table="crm_reps", check="quarantine_share",
                reason="20.0% of rows quarantined", run_id="run-one")
    record_hold(lake, _loaded("crm_reps/a.csv", "a"), table="crm_reps", check="contract_expectations",
                reason="team: 1 of 8 values not in the set", run_id="run-one")
    record_hold(lake, _loaded("orders/b.csv", "b", "orders", 2), table="orders", check="quarantine_share",
                reason="9.0% of rows quarantined", run_id="run-one")
    assert [(h.file, h.check) for h in open_holds(lake)] == [
        ("crm_reps/a.csv", "contract_expectations"), ("crm_reps/a.csv", "quarantine_share"),
        ("orders/b.csv", "quarantine_share")]
    assert [h.file for h in open_holds(lake, "orders")] == ["orders/b.csv"]

    # By landing path (with or without landing/), or by a file name only one held file has; both checks at once.
    accepted = accept_held(lake, "landing/crm_reps/a.csv", note="a roster with two blank rows", accepted_by="kenji")
    assert sorted(h.check for h in accepted) == ["contract_expectations", "quarantine_share"]
    assert [h.file for h in open_holds(lake)] == ["orders/b.csv"]
    kept = json.loads(next((lake / "manifest" / "crm_reps" / "accepted").glob("*.json")).read_text())
    assert (kept["accepted_by"], kept["note"], kept["file"]) == ("kenji", "a roster with two blank rows",
                                                                 "crm_reps/a.csv")
    assert accept_held(lake, "a.csv", note="again") == []  # accepted before: nothing to do, no error
    with pytest.raises(NoSuchHoldError, match=r"no hold names 'c\.csv'; held files: orders/b\.csv"):
        accept_held(lake, "c.csv", note="a typo")
    assert [h.file for h in accept_held(lake, "b.csv", note="ok")] == ["orders/b.csv"]
    assert open_holds(lake) == []


def test_accepting_a_name_no_hold_fits_or_that_fits_two_says_which_are_held(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    for folder, sha in (("crm_reps/may", "a"), ("crm_reps/june", "b")):
        record_hold(lake, _loaded(f"{folder}/reps.csv", sha), table="crm_reps", check="quarantine_share",
                    reason="over", run_id="run-one")
    with pytest.raises(NoSuchHoldError, match=r"fits more than one held file: crm_reps/june/reps.csv, "
                                              r"crm_reps/may/reps.csv; give the landing path"):
        accept_held(lake, "reps.csv", note="x")
    with pytest.raises(NoSuchHoldError, match=r"no hold names 'rep.csv'; held files: crm_reps/june/reps.csv; "
                                              r"crm_reps/may/reps.csv"):
        accept_held(lake, "rep.csv", note="x")
    # Another delivery under the same landing path (other bytes) is a file of its own: held apart.
    record_hold(lake, _loaded("crm_reps/may/reps.csv", "c", seq=3), table="crm_reps", check="quarantine_share",
                reason="over", run_id="run-two")
    assert len(accept_held(lake, "crm_reps/may/reps.csv", note="both deliveries")) == 2
    assert [h.file for h in open_holds(lake)] == ["crm_reps/june/reps.csv"]


def _write_reps(data_dir: Path, name: str, blank_ids: int) -> None:
    """A roster of 20 reps, `blank_ids` of them without a rep_id (a required column: quarantined)."""
    lines = ["rep_id,team,manager_rep_id"]
    lines += [f"{'' if i < blank_ids else f'{name}{i:02d}'},support," for i in range(20)]
    path = data_dir / "landing" / "crm_reps" / f"{name}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _run_reps(data_dir: Path, accept: list[str] | None = None, tags: dict[str, str] | None = None
              ) -> dg.ExecuteInProcessResult:
    """Materialise the reps' ingestion asset alone, as a launchpad run would."""
    from orchestration.definitions import defs

    config: dict[str, object] = {"data_dir": str(data_dir)}
    if accept is not None:
        config["accept_held"] = accept
    job = defs().resolve_implicit_global_asset_job_def().get_subset(asset_selection={REPS})
    return job.execute_in_process(run_config={"resources": {"nps_link": {"config": config}}},
                                  instance=dg.DagsterInstance.ephemeral(), raise_on_error=False, tags=tags)


def _ingest_reps(data_dir: Path, accept: list[str] | None = None) -> tuple[dict[str, dg.AssetCheckEvaluation], str]:
    """The reps' ingestion run's checks by name, and its error."""
    result = _run_reps(data_dir, accept)
    checks = {e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data for e in result.all_events
              if e.event_type_value == "ASSET_CHECK_EVALUATION"}
    errors = [str(e.step_failure_data.error) for e in result.all_events if e.is_step_failure]
    return checks, "\n".join(errors)


def _checks(data_dir: Path, accept: list[str] | None = None) -> dict[str, dg.AssetCheckEvaluation]:
    checks, error = _ingest_reps(data_dir, accept)
    assert not error or "blocking asset check failed" in error, error  # a failed blocking check fails its step
    return checks


def test_a_file_over_the_quarantine_share_blocks_every_run_until_accepted(tmp_path: Path) -> None:
    """Without the hold, the second run (nothing new) passed its checks and went on to publish the file's rows."""
    _write_reps(tmp_path, "roster_a", blank_ids=0)
    _write_reps(tmp_path, "roster_b", blank_ids=4)  # 20% quarantined, over the 5% default
    first = _checks(tmp_path)
    assert not first["quarantine_share"].passed and first["contract_expectations"].passed
    assert "roster_b.csv: 20.0% of rows quarantined (4 of 20)" in first["quarantine_share"].metadata["message"].value

    second = _checks(tmp_path)  # no new file
    assert not second["quarantine_share"].passed
    message = second["quarantine_share"].metadata["message"].value
    assert message.startswith("1 file(s) held since an earlier run until a person accepts them: crm_reps/roster_b.csv "
                              "(crm_reps/roster_b.csv: 20.0% of rows quarantined (4 of 20)")
    assert "nps-link accept FILE" in message and "This run: 0 loaded file(s)" in message
    assert second["contract_expectations"].passed  # held by one check only

    # Accepted from the launchpad: that run passes, and so does the next without the config.
    third = _checks(tmp_path, accept=["roster_b.csv"])
    assert third["quarantine_share"].passed, third["quarantine_share"].metadata["message"].value
    assert _checks(tmp_path)["quarantine_share"].passed
    accepted = json.loads(next((tmp_path / "lake" / "manifest" / "crm_reps" / "accepted").glob("*.json")).read_text())
    assert accepted["accepted_by"].startswith("Dagster run ")
    # A later bad file is held anew, and the launchpad config naming the accepted one is harmless.
    _write_reps(tmp_path, "roster_c", blank_ids=3)
    fourth = _checks(tmp_path, accept=["roster_b.csv"])
    assert not fourth["quarantine_share"].passed and "roster_c.csv: 15.0%" in (
        fourth["quarantine_share"].metadata["message"].value)


def test_a_file_refused_whole_is_held_until_accepted(tmp_path: Path) -> None:
    """Before, a refused file failed no check: the run published without its rows and exited 0."""
    _write_reps(tmp_path, "roster_a", blank_ids=0)
    refused = tmp_path / "landing" / "crm_reps" / "no_team.csv"
    refused.write_text("rep_id,manager_rep_id\nr1,\n", encoding="utf-8")  # team is a required column
    first = _checks(tmp_path)
    assert not first["quarantine_share"].passed
    assert first["quarantine_share"].metadata["message"].value.startswith(
        "1 problem(s) in 1 loaded file(s) and 1 rejected whole: crm_reps/no_team.csv: rejected whole, none of its "
        "rows loaded (")
    assert not _checks(tmp_path)["quarantine_share"].passed
    accept_held(tmp_path / "lake", "no_team.csv", note="resent as roster_a.csv")
    assert _checks(tmp_path)["quarantine_share"].passed


def test_accept_held_naming_no_held_file_fails_the_step_before_any_load(tmp_path: Path) -> None:
    _write_reps(tmp_path, "roster_a", blank_ids=0)
    checks, error = _ingest_reps(tmp_path, accept=["rostr_b.csv"])
    assert checks == {}
    assert "accept_held: no hold names 'rostr_b.csv'; held files: none" in error
    assert not (tmp_path / "lake" / "manifest" / "crm_reps" / "records").exists()


def test_a_file_failing_its_suite_is_held_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Row rules catch what the suite does on a contract-shaped file, so the suite's verdict is planted here."""
    from quality.validate import ValidationOutcome

    real_finish = ingest_assets.LoadedFileValidator.finish

    def failing_finish(self: ingest_assets.LoadedFileValidator) -> dict[str, ValidationOutcome]:
        outcomes = real_finish(self)
        return {name: ValidationOutcome(**{**o.__dict__, "success": False}) for name, o in outcomes.items()}

    _write_reps(tmp_path, "roster_a", blank_ids=0)
    monkeypatch.setattr(ingest_assets.LoadedFileValidator, "finish", failing_finish)
    assert not _checks(tmp_path)["contract_expectations"].passed
    monkeypatch.setattr(ingest_assets.LoadedFileValidator, "finish", real_finish)
    second = _checks(tmp_path)
    assert not second["contract_expectations"].passed and second["quarantine_share"].passed
    assert "crm_reps/roster_a.csv" in second["contract_expectations"].metadata["message"].value
    assert [h.check for h in open_holds(tmp_path / "lake")] == ["contract_expectations"]


def test_nps_link_accept_lists_accepts_and_says_why_not(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    assert run_cli(tmp_path, "accept", "--data-dir", str(tmp_path)).stdout.startswith("no held files")
    record_hold(lake, _loaded("crm_reps/a.csv", "a"), table="crm_reps", check="quarantine_share",
                reason="crm_reps/a.csv: 20.0% of rows quarantined (2 of 10)", run_id="0123456789abcdef")
    listed = run_cli(tmp_path, "accept", "--data-dir", str(tmp_path))
    assert listed.returncode == 0
    assert listed.stdout.startswith("crm_reps/a.csv  [crm_reps: quarantine_share]  crm_reps/a.csv: 20.0% of rows "
                                    "quarantined (2 of 10)  (held since run 01234567, ")
    no_note = run_cli(tmp_path, "accept", "a.csv", "--data-dir", str(tmp_path))
    assert no_note.returncode == 2 and "--note" in no_note.stderr
    typo = run_cli(tmp_path, "accept", "b.csv", "--note", "x", "--data-dir", str(tmp_path))
    assert typo.returncode == 2 and "no hold names 'b.csv'; held files: crm_reps/a.csv" in typo.stderr
    done = run_cli(tmp_path, "accept", "a.csv", "--note", "two test rows", "--data-dir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert done.stdout == ("accepted crm_reps/a.csv [crm_reps: quarantine_share]: it no longer blocks a run; the "
                           "next one publishes what of it loaded\n")
    assert open_holds(lake) == []


def test_a_run_tagged_to_let_files_settle_leaves_a_fresh_file_for_a_later_run(tmp_path: Path) -> None:
    """The 06:00 schedule's runs carry the tag (test_definitions.py): a file written in place is not half-loaded."""
    from orchestration.lib.ingest_assets import SETTLE_TAG

    _write_reps(tmp_path, "roster_a", blank_ids=0)
    result = _run_reps(tmp_path, tags={SETTLE_TAG: "120"})
    metadata = result.asset_materializations_for_node("crm__reps")[0].metadata
    assert (metadata["new_files"].value, metadata["files_left_for_a_later_run"].value) == (0, ["crm_reps/roster_a.csv"])
    assert _checks(tmp_path)["quarantine_share"].metadata["files_checked"].value == 1  # an untagged run loads it


def test_a_name_two_held_files_share_is_refused_across_sources_and_in_the_launchpad(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    record_hold(lake, _loaded("orders/batch.csv", "a", "orders"), table="orders", check="quarantine_share",
                reason="over", run_id="run-one")
    record_hold(lake, _loaded("crm_reps/batch.csv", "b"), table="crm_reps", check="quarantine_share",
                reason="over", run_id="run-one")
    # Each ingestion step accepts its own source's files, but the name is matched over every source.
    with pytest.raises(NoSuchHoldError, match=r"fits more than one held file: crm_reps/batch\.csv, orders/batch\.csv"):
        accept_held(lake, "batch.csv", note="x", source="crm_reps")
    assert accept_held(lake, "orders/batch.csv", note="x", source="crm_reps") == []  # another source's file
    assert [h.file for h in accept_held(lake, "orders/batch.csv", note="x", source="orders")] == ["orders/batch.csv"]
    # Once one is accepted, the name fits the one still held.
    assert [h.file for h in accept_held(lake, "batch.csv", note="x")] == ["crm_reps/batch.csv"]

    _write_reps(tmp_path, "roster_a", blank_ids=0)
    for folder, sha in (("crm_reps/may", "c"), ("crm_reps/june", "d")):
        record_hold(lake, _loaded(f"{folder}/reps.csv", sha), table="crm_reps", check="quarantine_share",
                    reason="over", run_id="run-one")
    checks, error = _ingest_reps(tmp_path, accept=["reps.csv"])
    assert checks == {} and "accept_held: 'reps.csv' fits more than one held file" in error


def test_a_file_loaded_by_a_run_that_stopped_before_its_suite_judged_it_is_judged_by_the_next(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before, the file was in the manifest unjudged, and the next run, finding nothing new, published it."""

    def stopped(self: ingest_assets.LoadedFileValidator) -> dict:
        raise RuntimeError("the validation worker died")

    _write_reps(tmp_path, "roster_a", blank_ids=0)
    _write_reps(tmp_path, "roster_b", blank_ids=0)
    monkeypatch.setattr(ingest_assets.LoadedFileValidator, "finish", stopped)
    checks, error = _ingest_reps(tmp_path)
    assert checks == {} and "the validation worker died" in error
    assert {h.reason for h in open_holds(tmp_path / "lake")} == {ingest_assets.UNJUDGED}
    monkeypatch.undo()

    # The next run validates both from their lake rows; here the suite finds roster_b wrong.
    real_finish = ingest_assets.LoadedFileValidator.finish
    validated: list[str] = []

    def b_fails(self: ingest_assets.LoadedFileValidator) -> dict:
        outcomes = real_finish(self)
        validated.extend(outcomes)
        return {name: dataclasses.replace(o, success=not name.endswith("roster_b.csv")) for name, o in outcomes.items()}

    monkeypatch.setattr(ingest_assets.LoadedFileValidator, "finish", b_fails)
    second = _checks(tmp_path)
    assert sorted(validated) == ["crm_reps: crm_reps/roster_a.csv", "crm_reps: crm_reps/roster_b.csv"]
    assert not second["contract_expectations"].passed
    assert "crm_reps/roster_b.csv" in second["contract_expectations"].metadata["failures"].value
    assert [(h.file, h.reason == ingest_assets.UNJUDGED) for h in open_holds(tmp_path / "lake")] == [
        ("crm_reps/roster_b.csv", False)]
    monkeypatch.undo()
    third = _checks(tmp_path)  # held now for what the suite found, not re-judged: a person looks
    assert not third["contract_expectations"].passed and validated == validated[:2]


def test_a_file_held_unjudged_by_a_killed_run_and_loaded_again_is_judged_and_released(tmp_path: Path) -> None:
    """A run killed after the hold but before the manifest record: the file is pending, and the next run judges it."""
    from orchestration.lib.ingest.manifest import sha256_of

    _write_reps(tmp_path, "roster_a", blank_ids=0)
    landed = tmp_path / "landing" / "crm_reps" / "roster_a.csv"
    record_hold(tmp_path / "lake", FileLoadResult("crm_reps", "crm_reps/roster_a.csv", sha256_of(landed), "loaded"),
                table="crm_reps", check="contract_expectations", reason=ingest_assets.UNJUDGED, run_id="killed")
    checks = _checks(tmp_path)
    assert checks["contract_expectations"].passed and checks["quarantine_share"].passed
    assert open_holds(tmp_path / "lake") == []
