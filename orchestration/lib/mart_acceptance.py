"""Months whose contact explosion a person accepted, so the blocking mart check lets them be published.

`contact_count_explosion` judges every month that received activities since the last publish (and
the latest month). Its block therefore lasts until someone acts: before, it judged only the newest
month and lifted by itself on the 1st, publishing last month's explosion unseen. The ways out are a
corrected delivery (the same activity ids with the right values) or this acceptance, for an
explosion that is real (a campaign of calls) or whose rows the source cannot withdraw. An accepted
month's explosion is still reported, as a warning that names who accepted it and why. The acceptance
covers the month's activities delivered by then: a later delivery into the month (another re-import)
is judged afresh.

Layout: <data_dir>/quality/accepted/contact_count_explosion/<YYYY-MM>.json, one Acceptance per month.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from orchestration.lib.ingest.holds import current_user
from orchestration.lib.ingest.manifest import atomic_write_bytes

EXPLOSION_CHECK = "contact_count_explosion"
_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


@dataclass(frozen=True)
class MonthAcceptance:
    """A person's word that a month's contact explosion may be published."""

    check: str
    month: str  # YYYY-MM, the reporting time zone's month
    accepted_by: str
    accepted_at: str  # ISO 8601, UTC
    note: str
    # The last delivery number when it was accepted: activities delivered after it are not covered.
    through_delivery_seq: int | None = None

    def covers(self, newest_delivery_seq: int | None) -> bool:
        """True when the month's newest activity delivery was there when the month was accepted."""
        return self.through_delivery_seq is None or (newest_delivery_seq or 0) <= self.through_delivery_seq


def validate_month(month: str) -> None:
    """Raise ValueError unless `month` is YYYY-MM."""
    if not _MONTH.match(month):
        raise ValueError(f"{month!r} is not a month (YYYY-MM)")


def _folder(quality_dir: Path, check: str) -> Path:
    return quality_dir / "accepted" / check


def accept_month(quality_dir: Path, month: str, *, note: str, through_delivery_seq: int,
                 accepted_by: str | None = None, check: str = EXPLOSION_CHECK) -> MonthAcceptance:
    """Record that `month` (YYYY-MM) of `check` is accepted for the deliveries up to `through_delivery_seq`.

    Raises ValueError for a malformed month.
    """
    validate_month(month)
    acceptance = MonthAcceptance(
        check=check, month=month, accepted_by=accepted_by or current_user(), note=note,
        accepted_at=datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="seconds"),
        through_delivery_seq=through_delivery_seq,
    )
    data = json.dumps(asdict(acceptance), ensure_ascii=False, sort_keys=True).encode("utf-8")
    atomic_write_bytes(_folder(quality_dir, check) / f"{month}.json", data)
    return acceptance


def accepted_months(quality_dir: Path, check: str = EXPLOSION_CHECK) -> dict[str, MonthAcceptance]:
    """Every accepted month of `check`, by YYYY-MM."""
    folder = _folder(quality_dir, check)
    found = {}
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        acceptance = MonthAcceptance(**json.loads(path.read_text(encoding="utf-8")))
        found[acceptance.month] = acceptance
    return found
