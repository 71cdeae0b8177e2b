"""Held deliveries: a loaded file that failed a blocking ingestion check stays a block until someone accepts it.

A file over the quarantine share, or failing its Great Expectations suite, is in the lake by the time
its checks fail (its good rows loaded, its bad rows quarantined). Without a record of the failure the
next run would see no new file, pass its checks and publish those rows: under the landing sensor and
the 06:00 schedule that next run comes without anyone having looked. So the failure is written down
as a *hold*, and every later run's check of that lake table fails on it, naming the file, until a
person accepts it (`nps-link accept`, or the `accept_held` field of the run's `nps_link` resource in
the Dagster launchpad). Accepting says: its loaded rows may be published as they are (the quarantined
ones stay out, each with its reason); a corrected re-delivery replaces them by id either way.

Layout, beside the engine's per-file records (orchestration/lib/ingest/manifest.py):
    lake/manifest/<source>/holds/<check>--<table>--<sha>-<path digest>.json   one Hold
    lake/manifest/<source>/accepted/<sha>-<path digest>.json                  one Acceptance (all its holds)
The names carry the manifest's identity of a delivery (content + landing path), so a file's holds and
its acceptance find each other, and a later delivery of other bytes under the same name is a file of
its own. Every record is written through a temporary name and os.replace, as the manifest's are.
"""

from __future__ import annotations

import getpass
import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from orchestration.lib.ingest.manifest import ManifestStore, atomic_write_bytes, record_name
from orchestration.lib.ingest.results import FileLoadResult


@dataclass(frozen=True)
class Hold:
    """One loaded file that failed one blocking check of one lake table, and why."""

    source: str
    table: str
    check: str  # the asset check's name: contract_expectations | quarantine_share
    file: str  # path relative to <data_dir>/landing, as in the manifest
    sha256: str | None
    delivery_seq: int | None
    reason: str
    run_id: str  # the run whose check failed on it
    held_at: str  # ISO 8601, UTC

    def describe(self) -> str:
        """One line for a check's message: the file, why, and since which run."""
        return f"{self.file} ({self.reason}; held since run {self.run_id[:8]}, {self.held_at[:16]} UTC)"


@dataclass(frozen=True)
class Acceptance:
    """A person's word that a held file's loaded rows may be published."""

    source: str
    file: str
    sha256: str | None
    accepted_by: str
    accepted_at: str  # ISO 8601, UTC
    note: str


class NoSuchHoldError(ValueError):
    """`accept` was given a file that no open hold names (or a name that fits more than one)."""


def _holds_dir(lake_dir: Path, source: str) -> Path:
    return ManifestStore(lake_dir).root / source / "holds"


def _accepted_dir(lake_dir: Path, source: str) -> Path:
    return ManifestStore(lake_dir).root / source / "accepted"


def _hold_name(loaded: FileLoadResult, table: str, check: str) -> str:
    return f"{check}--{table}--{record_name(loaded.file, loaded.sha256)}"


def record_hold(lake_dir: Path, loaded: FileLoadResult, *, table: str, check: str, reason: str, run_id: str) -> Hold:
    """Write down that `loaded` failed `check` of `table` in run `run_id`; returns the hold."""
    hold = Hold(
        source=loaded.source, table=table, check=check, file=loaded.file, sha256=loaded.sha256,
        delivery_seq=loaded.delivery_seq, reason=reason, run_id=run_id,
        held_at=datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="seconds"),
    )
    path = _holds_dir(lake_dir, loaded.source) / _hold_name(loaded, table, check)
    atomic_write_bytes(path, json.dumps(asdict(hold), ensure_ascii=False, sort_keys=True).encode("utf-8"))
    return hold


def _holds(lake_dir: Path, source: str | None) -> list[tuple[Hold, bool]]:
    """Every hold of one source (or of all), with whether its file was accepted, in delivery order."""
    root = ManifestStore(lake_dir).root
    sources = [source] if source else sorted(p.parent.name for p in root.glob("*/holds"))
    found: list[tuple[Hold, bool]] = []
    for name in sources:
        folder = _holds_dir(lake_dir, name)
        if not folder.is_dir():
            continue
        accepted = {p.name for p in _accepted_dir(lake_dir, name).glob("*.json")}
        for path in sorted(folder.glob("*.json")):
            hold = Hold(**json.loads(path.read_text(encoding="utf-8")))
            found.append((hold, path.name.split("--")[-1] in accepted))
    return sorted(found, key=lambda pair: (pair[0].delivery_seq or 0, pair[0].file, pair[0].table, pair[0].check))


def open_holds(lake_dir: Path, source: str | None = None) -> list[Hold]:
    """Every hold not yet accepted, of one source or of all, in delivery order."""
    return [hold for hold, accepted in _holds(lake_dir, source) if not accepted]


def _naming(holds: list[tuple[Hold, bool]], file: str) -> list[tuple[Hold, bool]]:
    """The holds a name given by a person fits: the landing path, else a file name that one held file has.

    A file name is looked for among the open holds first, so an accepted file of the same name does not
    make it ambiguous; raises NoSuchHoldError when it fits more than one file.
    """
    wanted = PurePosixPath(file.replace("\\", "/").removeprefix("landing/")).as_posix()
    matching = [(h, accepted) for h, accepted in holds if h.file == wanted]
    if matching:
        return matching
    for pool in ([(h, a) for h, a in holds if not a], holds):
        matching = [(h, accepted) for h, accepted in pool if PurePosixPath(h.file).name == wanted]
        if len({h.file for h, _ in matching}) > 1:
            raise NoSuchHoldError(f"{file!r} fits more than one held file: "
                                  + ", ".join(sorted({h.file for h, _ in matching})) + "; give the landing path")
        if matching:
            return matching
    return []


def release_hold(lake_dir: Path, loaded: FileLoadResult, *, table: str, check: str) -> None:
    """Remove the hold of `loaded` by `check` of `table` (its check has now passed it), if there is one."""
    (_holds_dir(lake_dir, loaded.source) / _hold_name(loaded, table, check)).unlink(missing_ok=True)


def accept_held(
    lake_dir: Path, file: str, *, note: str, accepted_by: str | None = None, source: str | None = None
) -> list[Hold]:
    """Accept the holds of one delivered file; return those that were open. Raises NoSuchHoldError if none fits.

    `file` is the landing path the holds name (`survey_responses/batch.csv`), or its file name alone
    when only one held file has it, matched over every source; `source` then limits what is accepted
    to that source's holds (a name of another source's file returns []). A file accepted before
    returns [] too (so a launchpad config that names it can be run again).
    """
    holds = _holds(lake_dir, None)
    matching = _naming(holds, file)
    if not matching:
        listed = "; ".join(sorted({h.file for h, accepted in holds if not accepted})) or "none"
        raise NoSuchHoldError(f"no hold names {file!r}; held files: {listed}")
    still_open = [h for h, accepted in matching if not accepted and (source is None or h.source == source)]
    if not still_open:
        return []
    now = datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="seconds")
    # One acceptance per delivery: two deliveries under one landing path (other bytes) are both accepted.
    for source_name, path_name, sha256 in sorted({(h.source, h.file, h.sha256) for h in still_open}, key=str):
        acceptance = Acceptance(source=source_name, file=path_name, sha256=sha256,
                                accepted_by=accepted_by or current_user(), accepted_at=now, note=note)
        path = _accepted_dir(lake_dir, source_name) / record_name(path_name, sha256)
        atomic_write_bytes(path, json.dumps(asdict(acceptance), ensure_ascii=False, sort_keys=True).encode("utf-8"))
    return still_open


def current_user() -> str:
    """Who is accepting: the login name, "unknown" where there is none."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name in a container without a passwd entry
        return "unknown"
