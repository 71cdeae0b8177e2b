"""The follow-up step as Dagster runs it: which runs mail, and in which language."""

from __future__ import annotations

import email
from datetime import datetime, timedelta
from email import policy
from pathlib import Path

import dagster as dg
import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from orchestration.lib.lake import lake_schema

FOLLOWUPS_KEY = dg.AssetKey(["ops", "detractor_followups_sent"])


def _prepare(data_dir: Path, *, as_of: datetime, latest_event: datetime) -> None:
    """What a dbt build leaves for the step: run parameters, one detractor two days before as_of, a rep."""
    warehouse = data_dir / "warehouse"
    warehouse.mkdir(parents=True)
    con = duckdb.connect(str(warehouse / "build.duckdb"))
    con.execute("create schema intermediate")
    con.execute("create table intermediate.int_run_parameters as select 7 as input_seq, ?::timestamp as as_of_at, "
                "?::timestamp as latest_event_at, 'Asia/Tokyo' as reporting_tz, 'JPY' as reporting_currency, "
                "90 as contact_window_days, 90 as repeat_window_days, 14 as followup_window_days, "
                "365 as revenue_window_days", [as_of, latest_event])
    con.execute("create schema marts")
    con.execute("create table marts.detractor_followups as select 'D1' as response_id, 'C001' as customer_id, "
                "?::timestamp as responded_at, 2 as nps_score, '遅い' as comment, 'R1' as owner_rep_id, "
                "'M1' as manager_rep_id, 'support' as touchpoint, 'transactional' as survey_type, "
                "'smb' as segment, 'staffing' as business_unit, 4 as _delivery_seq", [as_of - timedelta(days=2)])
    # A detractor of 20 days before as_of, first delivered in this run's delivery 4: its window closed.
    con.execute("insert into marts.detractor_followups select 'LATE', 'C002', ?::timestamp, 3, null, 'R1', 'M1', "
                "'billing', 'transactional', 'smb', 'staffing', 4", [as_of - timedelta(days=20)])
    con.close()
    reps = data_dir / "lake" / "raw" / "crm_reps"
    reps.mkdir(parents=True)
    rows = [{"rep_id": rep, "rep_name": "x", "team": "account_management", "manager_rep_id": manager,
             "email": f"{rep.lower()}@example.co.jp", "active": True, "_source_file": "a", "_file_sha256": "a",
             "_loaded_at": datetime(2025, 6, 1), "_delivery_seq": 1, "_row_number": n}
            for n, (rep, manager) in enumerate([("R1", "M1"), ("M1", None)], start=1)]
    pq.write_table(pa.Table.from_pylist(rows, schema=lake_schema("crm_reps")), reps / "a.parquet")


def _run_step(data_dir: Path, monkeypatch: pytest.MonkeyPatch, lang: str = "en") -> dg.ExecuteInProcessResult:
    from orchestration.definitions import defs

    for name in ("NPS_LINK_SMTP_HOST", "NPS_LINK_FOLLOWUP_FALLBACK", "NPS_LINK_AS_OF"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NPS_LINK_REPORT_LANG", lang)
    job = defs().resolve_implicit_global_asset_job_def().get_subset(asset_selection={FOLLOWUPS_KEY})
    return job.execute_in_process(run_config={"resources": {"nps_link": {"config": {"data_dir": str(data_dir)}}}},
                                  instance=dg.DagsterInstance.ephemeral())


def _materialization(result: dg.ExecuteInProcessResult) -> dict[str, object]:
    [event] = result.asset_materializations_for_node("ops__detractor_followups_sent")
    return {k: v.value for k, v in event.metadata.items()}


def test_a_first_run_set_weeks_before_its_data_ends_mails_nobody(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a new deployment (nothing published) run with --as-of 30 days before the newest event loaded
    as_of = datetime(2025, 6, 30, 14, 59, 59)
    _prepare(tmp_path, as_of=as_of, latest_event=as_of + timedelta(days=30))
    result = _run_step(tmp_path, monkeypatch)
    # THEN its window's detractor, a month old by the data's clock, is not mailed, and the step says why
    assert result.success
    metadata = _materialization(result)
    assert metadata["sent"] == 0 and "its detractors are past the window" in str(metadata["not_sent_because"])
    assert not (tmp_path / "outbox").exists() or list((tmp_path / "outbox").glob("*.eml")) == []


def test_the_step_counts_a_detractor_delivered_after_the_last_publish_but_past_its_window(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    as_of = datetime(2025, 6, 30, 14, 59, 59)
    _prepare(tmp_path, as_of=as_of, latest_event=as_of)
    # The last publish had taken deliveries up to 3.
    published = duckdb.connect(str(tmp_path / "warehouse" / "nps_link.duckdb"))
    published.execute("create schema intermediate")
    published.execute("create table intermediate.int_run_parameters as select * replace (3 as input_seq) "
                      "from read_parquet(?)", [str(_run_parameters_parquet(tmp_path))])
    published.close()
    result = _run_step(tmp_path, monkeypatch)
    metadata = _materialization(result)
    assert (metadata["sent"], metadata["arrived_after_window"]) == (1, 1)
    [check] = result.get_asset_check_evaluations()
    assert check.passed and check.metadata["arrived_after_window"].value == 1


def _run_parameters_parquet(data_dir: Path) -> Path:
    """The build's run parameters as a Parquet file, to copy into another warehouse file."""
    path = data_dir / "run_parameters.parquet"
    con = duckdb.connect(str(data_dir / "warehouse" / "build.duckdb"), read_only=True)
    con.execute(f"copy intermediate.int_run_parameters to '{path}' (format parquet)")
    con.close()
    return path


@pytest.mark.parametrize("lang", ["en", "ja"])
def test_a_run_whose_window_is_recent_mails_its_detractor_in_the_report_language(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lang: str
) -> None:
    # GIVEN the cut-off a day before the newest event (a daily run set to yesterday's end)
    as_of = datetime(2025, 6, 30, 14, 59, 59)
    _prepare(tmp_path, as_of=as_of, latest_event=as_of + timedelta(days=1))
    result = _run_step(tmp_path, monkeypatch, lang=lang)
    assert result.success
    assert _materialization(result)["sent"] == 1
    [message] = (tmp_path / "outbox").glob("*.eml")
    text = message.read_bytes()
    assert b"To: r1@example.co.jp" in text and b"Cc: m1@example.co.jp" in text
    body = email.message_from_bytes(text, policy=policy.SMTP).get_content()
    assert ("対応のお願い" in body) == (lang == "ja") and ("What to do" in body) == (lang == "en")
