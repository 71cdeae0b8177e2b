"""Load thresholds over the manifest: quarantine share, reconciliation, rejected files reported."""

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


def test_quarantine_share_rejected_files_are_listed_not_blocking():
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
    assert outcome.success
    assert outcome.files_checked == 1
    assert [(r.file, r.reason) for r in outcome.rejected] == [
        ("survey_responses/broken.csv", "required column nps_score missing")
    ]
    assert "rejected whole" in outcome.message and "nps_score missing" in outcome.message


def test_quarantine_share_empty_file_has_zero_share():
    rows = manifest({"source": "orders", "file": "orders/empty.csv", "rows_read": 0, "rows_loaded": 0})
    assert quarantine_share_outcome(rows).success


def test_quarantine_share_manifest_without_counts_raises():
    with pytest.raises(ValueError, match="rows_read"):
        quarantine_share_outcome(pd.DataFrame({"source": ["x"], "file": ["y"], "status": ["loaded"]}))
