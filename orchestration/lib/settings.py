"""Run-time settings of nps-link, read from the environment only when asked for.

Environments differ by environment variables alone (STYLE §5); nothing here reads the
environment at import time, so tests can point a fresh `Settings` at a temporary data dir.
Every variable is listed in `.env.example` and the README.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def _parsed(env: Mapping[str, str], name: str, parse: Callable[[str], T], default: T, what: str) -> T:
    """`parse` of the variable `name`, or `default` when unset; a bad value fails naming the variable."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return parse(raw)
    except ValueError as exc:
        raise ValueError(f"{name}={raw!r} is not {what}: {exc}") from None


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    return _parsed(env, name, int, default, "a whole number")


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    return _parsed(env, name, float, default, "a number")


DEFAULT_REPORTING_TZ = "Asia/Tokyo"


def reporting_tz_from_env(env: Mapping[str, str] | None = None) -> str:
    """The reporting time zone alone (NPS_LINK_REPORTING_TZ), for what needs it when definitions load.

    The daily schedule's zone is fixed when Dagster loads the definitions; reading only this variable
    there (not the whole `Settings`) keeps a malformed other setting a failure of the runs, which say
    what is wrong, instead of taking the whole code location out of the UI.
    """
    env = os.environ if env is None else env
    return env.get("NPS_LINK_REPORTING_TZ", "").strip() or DEFAULT_REPORTING_TZ


@dataclass(frozen=True)
class Settings:
    """Everything a run needs to know besides its inputs; paths derive from `data_dir`."""

    data_dir: Path = Path("data")
    as_of: date | None = None
    reporting_tz: str = DEFAULT_REPORTING_TZ
    source_tz: str = "Asia/Tokyo"
    reporting_currency: str = "JPY"
    contact_window_days: int = 90
    repeat_window_days: int = 90
    followup_window_days: int = 14
    revenue_window_days: int = 365
    # Share of a file's rows that may be quarantined before the publish is blocked.
    quarantine_block_share: float = 0.05
    report_lang: str = "en"
    duckdb_threads: int = 2
    duckdb_memory_limit: str = "6GB"
    # DuckDB's memory limit inside dbt (dbt_project/profiles.yml reads the same env var and default):
    # lower than the Python side's, since dbt runs inside the orchestrator process (with a DuckDB
    # instance of its own) while that process keeps its own memory; DuckDB spills past it to a temp
    # directory beside the warehouse.
    dbt_memory_limit: str = "4GB"
    extra: Mapping[str, str] = field(default_factory=dict)

    # ---- derived paths (DESIGN.md "Data flow") ----
    @property
    def landing_dir(self) -> Path:
        return self.data_dir / "landing"

    @property
    def lake_dir(self) -> Path:
        return self.data_dir / "lake"

    @property
    def warehouse_dir(self) -> Path:
        return self.data_dir / "warehouse"

    @property
    def build_db_path(self) -> Path:
        return self.warehouse_dir / "build.duckdb"

    @property
    def published_db_path(self) -> Path:
        return self.warehouse_dir / "nps_link.duckdb"

    @property
    def reports_dir(self) -> Path:
        return self.data_dir / "reports"

    @property
    def quality_dir(self) -> Path:
        return self.data_dir / "quality"

    @property
    def outbox_dir(self) -> Path:
        return self.data_dir / "outbox"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Build settings from `env` (default: the process environment), then apply overrides."""
        env = os.environ if env is None else env
        settings = cls(
            data_dir=Path(env.get("NPS_LINK_DATA_DIR", "").strip() or "data").resolve(),
            as_of=_parsed(env, "NPS_LINK_AS_OF", date.fromisoformat, None, "a date (YYYY-MM-DD)"),
            reporting_tz=reporting_tz_from_env(env),
            source_tz=env.get("NPS_LINK_SOURCE_TZ", "").strip() or "Asia/Tokyo",
            reporting_currency=env.get("NPS_LINK_REPORTING_CURRENCY", "").strip() or "JPY",
            contact_window_days=_int(env, "NPS_LINK_CONTACT_WINDOW_DAYS", 90),
            repeat_window_days=_int(env, "NPS_LINK_REPEAT_WINDOW_DAYS", 90),
            followup_window_days=_int(env, "NPS_LINK_FOLLOWUP_WINDOW_DAYS", 14),
            revenue_window_days=_int(env, "NPS_LINK_REVENUE_WINDOW_DAYS", 365),
            quarantine_block_share=_float(env, "NPS_LINK_QUARANTINE_BLOCK_SHARE", 0.05),
            report_lang=env.get("NPS_LINK_REPORT_LANG", "").strip() or "en",
            duckdb_threads=_int(env, "NPS_LINK_DUCKDB_THREADS", 2),
            duckdb_memory_limit=env.get("NPS_LINK_DUCKDB_MEMORY_LIMIT", "").strip() or "6GB",
            dbt_memory_limit=env.get("NPS_LINK_DBT_MEMORY_LIMIT", "").strip() or "4GB",
        )
        clean = {k: v for k, v in overrides.items() if v is not None}
        if "data_dir" in clean:
            clean["data_dir"] = Path(str(clean["data_dir"])).resolve()
        return replace(settings, **clean) if clean else settings
