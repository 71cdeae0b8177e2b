"""The input contract (quality/sources.yaml, a copy of shared/contracts/sources.yaml) as typed objects.

Ingestion, the Great Expectations suites and the lake schema all derive from this one reading of
the contract, so a rule changes in one place. No Dagster imports.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pyarrow as pa
import yaml

CONTRACT_PATH = Path(__file__).with_name("sources.yaml")

# Column added by ingestion to every raw table: where the row came from, and its delivery order.
LOAD_METADATA_COLUMNS: dict[str, pa.DataType] = {
    "_source_file": pa.string(),  # path relative to <data_dir>/landing
    "_file_sha256": pa.string(),
    "_row_number": pa.int64(),  # 1-based data row within the file (header excluded)
    "_delivery_seq": pa.int64(),  # increases with every delivered file; latest delivery wins
    "_loaded_at": pa.timestamp("us"),  # UTC, naive
}

# What the `*` of a column pattern (e.g. driver_*) stands for: any non-empty rest of the trimmed,
# lower-cased name. Survey tools name items in the survey's language and with spaces or hyphens
# (driver_対応速度, driver_ease-of-use); the item name is only ever data (a value of the long driver
# scores table, a bound parameter in SQL), never an identifier, so none of them needs refusing.
PATTERN_WILDCARD = ".+"


def pattern_regex(pattern: str) -> str:
    """A contract column pattern as a regular expression matching a whole (normalised) column name."""
    return re.escape(pattern).replace(re.escape("*"), PATTERN_WILDCARD)


# Suffix of the keyed hash (HMAC-SHA256, key NPS_LINK_PII_KEY) ingestion adds beside every `pii: true`
# column: the warehouse keeps the hash, so e.g. a respondent can be matched to the account contact,
# and never the address itself.
PII_KEY_SUFFIX = "_key"
# The contract's name for the column that orders versions of a key (see SourceSpec.version_column).
VERSION_COLUMN = "updated_at"

# Contract type -> Arrow type of the typed lake column. Timestamps are stored as naive UTC.
ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "enum": pa.string(),
    "timestamp": pa.timestamp("us"),
    "integer": pa.int64(),
    "number": pa.float64(),
    "decimal": pa.decimal128(20, 4),
    "boolean": pa.bool_(),
}


@dataclass(frozen=True)
class ColumnSpec:
    """One contract column: its type, whether it is required, and the rule a value must meet."""

    name: str
    type: str
    required: bool = False
    pii: bool = False
    values: tuple[str, ...] = ()
    default: object | None = None
    rule: str | None = None

    @property
    def arrow_type(self) -> pa.DataType:
        return ARROW_TYPES[self.type]


@dataclass(frozen=True)
class SourceSpec:
    """One source system's delivery: its key, its columns and its column patterns (e.g. driver_*)."""

    name: str
    key: str
    description: str
    columns: dict[str, ColumnSpec]
    column_patterns: dict[str, ColumnSpec] = field(default_factory=dict)

    @property
    def required_columns(self) -> list[str]:
        return [c.name for c in self.columns.values() if c.required]

    @property
    def pii_columns(self) -> list[str]:
        return [c.name for c in self.columns.values() if c.pii]

    @property
    def version_column(self) -> str | None:
        """The column that orders versions of one key, or None (sources.yaml: crm_accounts.updated_at
        "orders versions of the same customer"; staging keeps the newest, so one file may hold several)."""
        return VERSION_COLUMN if VERSION_COLUMN in self.columns else None

    @property
    def pii_key_columns(self) -> list[str]:
        """The keyed-hash columns ingestion adds, one per personal-data column."""
        return [f"{name}{PII_KEY_SUFFIX}" for name in self.pii_columns]

    def pattern_for(self, column: str) -> ColumnSpec | None:
        """The pattern spec a column name matches (e.g. driver_responsiveness -> driver_*), if any."""
        for pattern, spec in self.column_patterns.items():
            if re.fullmatch(pattern_regex(pattern), column):
                return spec
        return None

    def lake_schema(self) -> pa.Schema:
        """Arrow schema of lake/raw/<source>: contract columns in order, keyed hashes of PII, then load metadata."""
        fields = [pa.field(c.name, c.arrow_type) for c in self.columns.values()]
        fields += [pa.field(name, pa.string()) for name in self.pii_key_columns]
        fields += [pa.field(n, t) for n, t in LOAD_METADATA_COLUMNS.items()]
        return pa.schema(fields)


@dataclass(frozen=True)
class Contract:
    """The whole contract: defaults and every source."""

    version: int
    source_time_zone_default: str
    reporting_currency_default: str
    sources: dict[str, SourceSpec]


def _column(name: str, raw: dict) -> ColumnSpec:
    pii = raw.get("pii", False)
    return ColumnSpec(
        name=name,
        type=raw["type"],
        required=bool(raw.get("required", False)),
        pii=pii is True,  # "possible" (free-text comments) is handled by where comments may go
        values=tuple(raw.get("values", ())),
        default=raw.get("default"),
        rule=raw.get("rule"),
    )


@cache
def load_contract(path: Path = CONTRACT_PATH) -> Contract:
    """Parse the contract YAML once per process."""
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    sources = {
        name: SourceSpec(
            name=name,
            key=raw["key"],
            description=" ".join(str(raw.get("description", "")).split()),
            columns={c: _column(c, spec) for c, spec in raw["columns"].items()},
            column_patterns={p: _column(p, spec) for p, spec in raw.get("column_patterns", {}).items()},
        )
        for name, raw in doc["sources"].items()
    }
    return Contract(
        version=int(doc["version"]),
        source_time_zone_default=doc["source_time_zone_default"],
        reporting_currency_default=doc["reporting_currency_default"],
        sources=sources,
    )


# Long table that ingestion derives from survey_responses' driver_* columns (one row per item rated),
# so the warehouse never needs a column per survey item.
DRIVER_SCORES_TABLE = "survey_driver_scores"
DRIVER_SCORES_SCHEMA = pa.schema(
    [
        pa.field("response_id", pa.string()),
        pa.field("driver", pa.string()),  # item name without the "driver_" prefix
        pa.field("score", pa.int64()),
        *[pa.field(n, t) for n, t in LOAD_METADATA_COLUMNS.items()],
    ]
)
