"""The nps-link code location: everything under `orchestration/defs/`, loaded by folder."""

from pathlib import Path

import dagster as dg


@dg.definitions
def defs() -> dg.Definitions:
    """Load every definition in `defs/` (one folder per concern)."""
    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
