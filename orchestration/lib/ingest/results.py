"""What one ingestion run did: one record per landing file, and their sum per source.

A `FileLoadResult` is also the engine's manifest record (lake/manifest/...), so the audit trail
and what the caller sees are the same object.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Literal

Status = Literal["loaded", "rejected", "duplicate"]


@dataclass(frozen=True)
class FileLoadResult:
    """The outcome of one landing file: loaded (maybe with quarantined rows), rejected whole, or a duplicate.

    Invariant: rows_read == rows_loaded + rows_quarantined. A rejected file is refused before its
    rows are counted, so all three are 0 and `reason` says why; a duplicate loads nothing.
    """

    source: str
    file: str  # path relative to <data_dir>/landing, '/'-separated
    sha256: str | None  # None only for an entry that was refused without being read (unsafe path)
    status: Status
    rows_read: int = 0
    rows_loaded: int = 0
    rows_quarantined: int = 0
    reason: str | None = None
    rule_counts: dict[str, int] = field(default_factory=dict)
    extra_columns: list[str] = field(default_factory=list)
    missing_optional_columns: list[str] = field(default_factory=list)
    delivery_seq: int | None = None
    file_format: str | None = None  # csv | tsv | parquet | jsonl, with a '+gzip' suffix when compressed
    encoding: str | None = None  # utf-8 | utf-8-sig | cp932 (parquet: utf-8, its strings always are)
    size_bytes: int = 0
    loaded_at: datetime | None = None  # UTC, naive: when the record was written

    @property
    def quarantine_share(self) -> float:
        """Share of the file's rows that were quarantined (0.0 for an empty or rejected file)."""
        return self.rows_quarantined / self.rows_read if self.rows_read else 0.0

    def to_json(self) -> str:
        """Serialise as the engine's per-file manifest record."""
        doc = asdict(self)
        doc["loaded_at"] = self.loaded_at.isoformat() if self.loaded_at else None
        return json.dumps(doc, ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> FileLoadResult:
        """Read a record written by `to_json`."""
        doc = json.loads(text)
        raw_loaded_at = doc.get("loaded_at")
        doc["loaded_at"] = datetime.fromisoformat(raw_loaded_at) if raw_loaded_at else None
        return cls(**doc)


@dataclass(frozen=True)
class SourceLoadResult:
    """The files of one source processed by one `ingest_source` call, in processing order."""

    source: str
    files: list[FileLoadResult]
    # Landing paths left pending because they were still being written (`ingest_source`'s settled_before).
    unsettled: list[str] = field(default_factory=list)

    def _with(self, status: Status) -> list[FileLoadResult]:
        return [f for f in self.files if f.status == status]

    @property
    def loaded(self) -> list[FileLoadResult]:
        """Files whose rows went to the lake (some may have been quarantined)."""
        return self._with("loaded")

    @property
    def rejected(self) -> list[FileLoadResult]:
        """Files refused whole (copied to lake/rejected with a reason file)."""
        return self._with("rejected")

    @property
    def duplicates(self) -> list[FileLoadResult]:
        """Files whose exact bytes had already been loaded."""
        return self._with("duplicate")

    @property
    def rows_read(self) -> int:
        """Rows read over all files of this call."""
        return sum(f.rows_read for f in self.files)

    @property
    def rows_loaded(self) -> int:
        """Rows written to the raw tables over all files of this call."""
        return sum(f.rows_loaded for f in self.files)

    @property
    def rows_quarantined(self) -> int:
        """Rows written to quarantine over all files of this call."""
        return sum(f.rows_quarantined for f in self.files)

    @property
    def rule_counts(self) -> dict[str, int]:
        """Quarantined rows per rule, summed over the files of this call."""
        total: dict[str, int] = {}
        for f in self.files:
            for rule, n in f.rule_counts.items():
                total[rule] = total.get(rule, 0) + n
        return dict(sorted(total.items()))
