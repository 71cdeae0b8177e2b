"""Load thresholds over the manifest: quarantine share, reconciliation, rejected files, each by file."""

from __future__ import annotations

import pandas as pd
import pytest

from quality.thresholds import quarantine_share_outcome


def manifest(*rows: dict) -> pd.DataFrame:
    base = {"status": "loaded", "reason": None, "rows_read": 1000, "rows_loaded": 1000, "rows_quarantined": 0}
    return pd.DataFrame([{**base, **row} for row in rows])


def test_quarantine_share_below_threshold_passes():
    outcome = quarantine_share_outcome(
        manifest(
            {"source": "orders", "file": "orders/a.csv", "rows_loaded": 960, "rows_quarantined": 40},
            {"source": "crm_reps", "file": "crm_reps/r.csv"},
        )
    )
    assert outcome.success and outcome.reasons == []
    assert outcome.files_checked == 2
    assert outcome.severity == "error"


def test_quarantine_share_above_threshold_fails_naming_file_share_and_threshold():
    outcome = quarantine_share_outcome(
        manifest(
            {"source": "orders", "file": "orders/a.csv", "rows_loaded": 880, "rows_quarantined": 120},
            {"source": "crm_reps", "file": "crm_reps/r.csv"},
        )
    )
    assert not outcome.success
    assert [f.file for f in outcome.over_threshold] == ["orders/a.csv"]
    assert outcome.reasons == ["orders/a.csv: 12.0% of rows quarantined (120 of 1,000), above the 5.0% threshold"]
    assert "orders/a.csv" in outcome.message and "12.0%" in outcome.message and "5.0%" in outcome.message
    assert outcome.reasons_by_file == {"orders/a.csv": outcome.reasons}  # what a held file's record says


def test_quarantine_share_reasons_by_file_gather_each_files_problems():
    outcome = quarantine_share_outcome(
        manifest(
            {"source": "orders", "file": "orders/a.csv", "rows_loaded": 800, "rows_quarantined": 100},
            {"source": "orders", "file": "orders/b.csv", "rows_loaded": None},
            {"source": "orders", "file": "orders/c.csv"},
        )
    )
    assert outcome.reasons_by_file == {
        "orders/a.csv": ["orders/a.csv: 10.0% of rows quarantined (100 of 1,000), above the 5.0% threshold",
                         "row counts do not reconcile for orders/a.csv: 1,000 rows read but 800 loaded + 100 "
                         "quarantined = 900"],
        "orders/b.csv": ["row counts do not reconcile for orders/b.csv: row counts missing (read=1,000, "
                         "loaded=missing, quarantined=0)"],
    }


def test_quarantine_share_custom_threshold_applies():
    rows = manifest({"source": "orders", "file": "orders/a.csv", "rows_loaded": 880, "rows_quarantined": 120})
    assert quarantine_share_outcome(rows, max_share=0.15).success
    assert not quarantine_share_outcome(rows, max_share=0.10).success


def test_quarantine_share_broken_reconciliation_fails():
    outcome = quarantine_share_outcome(
        manifest(
            {"source": "crm_activities", "file": "crm_activities/x.csv", "rows_loaded": 990, "rows_quarantined": 5}
        )
    )
    assert not outcome.success
    assert outcome.unreconciled == ["crm_activities/x.csv: 1,000 rows read but 990 loaded + 5 quarantined = 995"]
    assert "do not reconcile" in outcome.message


def test_quarantine_share_missing_counts_fail_reconciliation():
    outcome = quarantine_share_outcome(manifest({"source": "orders", "file": "orders/a.csv", "rows_loaded": None}))
    assert not outcome.success
    assert "row counts missing" in outcome.unreconciled[0]


def test_quarantine_share_rejected_files_block_with_their_reasons():
    """A refused file's rows are all missing: publishing without them, with exit 0, went unnoticed."""
    outcome = quarantine_share_outcome(
        manifest(
            {"source": "orders", "file": "orders/a.csv"},
            {
                "source": "survey_responses",
                "file": "survey_responses/broken.csv",
                "status": "rejected",
                "reason": "required column nps_score missing",
                "rows_read": None,
                "rows_loaded": None,
                "rows_quarantined": None,
            },
            {"source": "orders", "file": "orders/a-again.csv", "status": "duplicate", "rows_loaded": 0},
        )
    )
    assert not outcome.success
    assert outcome.files_checked == 1
    assert [(r.file, r.reason) for r in outcome.rejected] == [
        ("survey_responses/broken.csv", "required column nps_score missing")
    ]
    assert outcome.message == ("1 problem(s) in 1 loaded file(s) and 1 rejected whole: survey_responses/broken.csv: "
                               "rejected whole, none of its rows loaded (required column nps_score missing)")
    assert outcome.reasons_by_file == {"survey_responses/broken.csv": [
        "survey_responses/broken.csv: rejected whole, none of its rows loaded (required column nps_score missing)"]}


def test_quarantine_share_empty_file_has_zero_share():
    rows = manifest({"source": "orders", "file": "orders/empty.csv", "rows_read": 0, "rows_loaded": 0})
    assert quarantine_share_outcome(rows).success


def test_quarantine_share_manifest_without_counts_raises():
    with pytest.raises(ValueError, match="rows_read"):
        quarantine_share_outcome(pd.DataFrame({"source": ["x"], "file": ["y"], "status": ["loaded"]}))
