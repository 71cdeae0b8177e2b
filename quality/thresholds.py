"""Run-level load thresholds over lake/load_manifest.parquet: quarantine share, reconciliation, refused files.

Row rules quarantine single bad rows so that one typo never stops a load; but when a large share of
a file is quarantined, the file itself is suspect (a shifted column, a new code list, a broken
export), and publishing the rest would silently bias every figure built on it. A file refused whole
(a required column missing, an unreadable encoding) is the extreme case: a delivery none of whose
rows is there. This check turns the manifest of a run into one blocking verdict with reasons a data
engineer can act on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

# Settings.quarantine_block_share defaults to the same value; the orchestrator passes the setting.
DEFAULT_MAX_SHARE = 0.05

MANIFEST_COLUMNS = ("source", "file", "status", "reason", "rows_read", "rows_loaded", "rows_quarantined")


@dataclass(frozen=True)
class FileShare:
    """One loaded file whose quarantined share is above the threshold."""

    source: str
    file: str
    rows_read: int
    rows_quarantined: int
    share: float


@dataclass(frozen=True)
class RejectedFile:
    """A file refused whole at ingestion, with the reason recorded in the manifest."""

    source: str
    file: str
    reason: str


@dataclass(frozen=True)
class ThresholdOutcome:
    """Verdict of the load thresholds for one run's files.

    `success` is False when a loaded file quarantined more than `max_share` of its rows, when its
    row counts do not reconcile (rows_read = rows_loaded + rows_quarantined), or when a file was
    refused whole (listed in `rejected`): none of its rows is in the lake, and a warehouse published
    without them would be short of a delivery with no figure saying so.
    """

    success: bool
    severity: str  # always "error": a failing outcome blocks the publish
    message: str
    max_share: float
    files_checked: int
    reasons: list[str] = field(default_factory=list)
    over_threshold: list[FileShare] = field(default_factory=list)
    unreconciled: list[str] = field(default_factory=list)
    rejected: list[RejectedFile] = field(default_factory=list)
    # The reasons again, by the manifest's `file` of the loaded file they are about (a held file's record).
    reasons_by_file: dict[str, list[str]] = field(default_factory=dict)


def quarantine_share_outcome(manifest: pd.DataFrame, *, max_share: float = DEFAULT_MAX_SHARE) -> ThresholdOutcome:
    """Judge the manifest rows of a run's files (schema `lake.LOAD_MANIFEST_SCHEMA`) against the load thresholds.

    `loaded` rows are judged by their shares and counts; `rejected` rows fail with their reasons;
    `duplicate` rows (the same bytes delivered again, loaded once before) carry nothing new.
    A file with zero rows read has a share of 0.
    """
    if not 0 <= max_share <= 1:
        raise ValueError(f"max_share must be between 0 and 1, got {max_share}")
    missing = [c for c in MANIFEST_COLUMNS if c not in manifest.columns]
    if missing:
        raise ValueError(f"manifest lacks columns {missing}")

    loaded = manifest[manifest["status"] == "loaded"]
    over: list[FileShare] = []
    unreconciled: list[str] = []
    by_file: dict[str, list[str]] = {}
    for row in loaded.itertuples(index=False):
        name = f"{row.source}/{row.file}" if not str(row.file).startswith(f"{row.source}/") else str(row.file)
        counts = (row.rows_read, row.rows_loaded, row.rows_quarantined)
        if any(pd.isna(c) for c in counts):
            unreconciled.append(
                f"{name}: row counts missing (read={_n(row.rows_read)}, "
                f"loaded={_n(row.rows_loaded)}, quarantined={_n(row.rows_quarantined)})"
            )
            by_file.setdefault(str(row.file), []).append(f"row counts do not reconcile for {unreconciled[-1]}")
            continue
        read, loaded_rows, quarantined = (int(c) for c in counts)
        if read != loaded_rows + quarantined:
            unreconciled.append(
                f"{name}: {read:,} rows read but {loaded_rows:,} loaded + {quarantined:,} quarantined "
                f"= {loaded_rows + quarantined:,}"
            )
            by_file.setdefault(str(row.file), []).append(f"row counts do not reconcile for {unreconciled[-1]}")
        share = quarantined / read if read else 0.0
        if share > max_share:
            over.append(FileShare(str(row.source), name, read, quarantined, share))
            by_file.setdefault(str(row.file), []).insert(0, _over_reason(over[-1], max_share))

    rejected = [
        RejectedFile(str(r.source), str(r.file), "" if pd.isna(r.reason) else str(r.reason))
        for r in manifest[manifest["status"] == "rejected"].itertuples(index=False)
    ]
    for r in rejected:
        by_file.setdefault(r.file, []).append(_rejected_reason(r))
    reasons = [_over_reason(f, max_share) for f in over]
    reasons += [f"row counts do not reconcile for {u}" for u in unreconciled]
    reasons += [_rejected_reason(r) for r in rejected]
    success = not reasons
    message = _message(success, len(loaded), reasons, rejected, max_share)
    return ThresholdOutcome(
        success=success,
        severity="error",
        message=message,
        max_share=max_share,
        files_checked=len(loaded),
        reasons=reasons,
        over_threshold=over,
        unreconciled=unreconciled,
        rejected=rejected,
        reasons_by_file=by_file,
    )


def _rejected_reason(rejected: RejectedFile) -> str:
    name = rejected.file if rejected.file.startswith(f"{rejected.source}/") else f"{rejected.source}/{rejected.file}"
    return f"{name}: rejected whole, none of its rows loaded ({rejected.reason or 'no reason recorded'})"


def _over_reason(share: FileShare, max_share: float) -> str:
    return (f"{share.file}: {share.share:.1%} of rows quarantined ({share.rows_quarantined:,} of "
            f"{share.rows_read:,}), above the {max_share:.1%} threshold")


def _n(value: object) -> str:
    return "missing" if pd.isna(value) else f"{int(value):,}"


def _message(success: bool, files: int, reasons: list[str], rejected: list[RejectedFile], max_share: float) -> str:
    if success:
        return f"{files} loaded file(s) within the {max_share:.1%} quarantine threshold and reconciled"
    refused = f" and {len(rejected)} rejected whole" if rejected else ""
    return f"{len(reasons)} problem(s) in {files} loaded file(s){refused}: " + "; ".join(reasons)
