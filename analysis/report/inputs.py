"""What the leadership report is built from: the analysis tables of one run, as pandas frames."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import pandas as pd

# The analysis.* tables the report reads (and write_report saves as CSV beside the HTML), in report order.
ANALYSIS_TABLES: tuple[str, ...] = (
    "link_effects",
    "nps_changes",
    "dose_response",
    "key_drivers",
    "nps_revenue",
    "contact_timing",
    "handoff",
)


@dataclass(frozen=True, kw_only=True)
class ReportInputs:
    """The frames and run facts one leadership report is rendered from.

    Frames carry the columns of docs/architecture.md (`analysis.*`, `marts.nps_by_period`,
    `marts.load_audit`). Any frame may be None or empty: its section then says "not enough data"
    instead of failing the run. `as_of` is the run's data cut-off as stored in the warehouse (naive
    UTC; an aware datetime is converted); the report shows it in `reporting_tz`. `covariates` names
    what the link model adjusted for, so the caveats can say it. `n_responses`/`n_customers` default
    to the counts in `link_effects`.
    """

    as_of: datetime
    run_id: str
    link_effects: pd.DataFrame | None = None
    nps_by_period: pd.DataFrame | None = None
    nps_changes: pd.DataFrame | None = None
    dose_response: pd.DataFrame | None = None
    key_drivers: pd.DataFrame | None = None
    nps_revenue: pd.DataFrame | None = None
    contact_timing: pd.DataFrame | None = None
    handoff: pd.DataFrame | None = None
    load_audit: pd.DataFrame | None = None
    reporting_tz: str = "Asia/Tokyo"
    reporting_currency: str = "JPY"
    contact_window_days: int = 90
    repeat_window_days: int = 90
    revenue_window_days: int = 365
    covariates: Sequence[str] = ()
    n_responses: int | None = None
    n_customers: int | None = None

    def analysis_tables(self) -> dict[str, pd.DataFrame]:
        """The analysis.* frames of this run by table name, leaving out those that are missing."""
        tables = {name: getattr(self, name) for name in ANALYSIS_TABLES}
        return {name: frame for name, frame in tables.items() if frame is not None}
