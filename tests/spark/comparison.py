"""Cell-by-cell comparison of two engines' copies of a table, and the grain keys it matches rows on.

Plain pyarrow + numpy + pandas, no engine: `tests/spark/compare.py` feeds it DuckDB's and Spark's marts,
and `tests/spark/test_comparison.py` pins its rules on small hand-made tables.

The rules (what "equal" means for the DuckDB-vs-Spark proof):
- the same columns, each of the same kind (integer, float, decimal, string, boolean, date,
  timestamp; integer widths may differ, a DOUBLE on one engine and a DECIMAL on the other may not,
  because analysts' arithmetic on them differs);
- the same number of rows, no duplicated grain key, the same set of grain keys;
- for every row, the same NULL pattern; strings, booleans and dates exactly equal; timestamps equal
  to the microsecond (a time-zone-aware column is read as its UTC instant, a naive one as naive UTC);
- numbers within NUMERIC_TOLERANCE: |a - b| <= 1e-9 * max(1, |a|, |b|), i.e. absolute 1e-9 for
  values up to 1 in magnitude, relative 1e-9 above. Sums of doubles in another order differ in the
  last bits, never by that much. Integer and decimal columns are compared the same way (their
  values are exact, so any difference shows).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

NUMERIC_TOLERANCE = 1e-9
# How many example rows a difference keeps for the report; the count is always complete.
MAX_EXAMPLES = 3
GRAIN_TESTS = ("unique", "unique_combination_of_columns")
NUMERIC_KINDS = ("integer", "float", "decimal")


@dataclass(frozen=True)
class Difference:
    """One way two copies of a table disagree: a kind, how many rows or cells, and a few examples."""

    table: str
    kind: str
    count: int
    column: str | None = None
    examples: tuple[str, ...] = ()

    def describe(self) -> str:
        """One line for the report: table, column, kind, count and the examples."""
        where = f"{self.table}.{self.column}" if self.column else self.table
        shown = "; ".join(self.examples)
        return f"{where}: {self.kind} x{self.count:,}" + (f" (e.g. {shown})" if shown else "")


@dataclass
class TableComparison:
    """The outcome of comparing one table: its rows on each side and every difference found."""

    table: str
    keys: tuple[str, ...]
    rows_left: int
    rows_right: int
    columns: int
    differences: list[Difference] = field(default_factory=list)

    @property
    def difference_count(self) -> int:
        """Total rows and cells that differ (each missing row and each unequal cell counts once)."""
        return sum(d.count for d in self.differences)


def grain_keys(manifest: Mapping[str, Any], schema: str = "marts") -> dict[str, tuple[str, ...]]:
    """The grain key of every model in `schema`, read from its unique tests in a dbt manifest.

    STYLE §4 gives every model a `unique` (one column) or `unique_combination_of_columns` test on
    its grain; where a model has several, the one with the fewest columns is its grain (ties: the
    first in column order). A model without such a test is absent from the result.
    """
    models = {
        unique_id: node["name"]
        for unique_id, node in manifest["nodes"].items()
        if node["resource_type"] == "model" and node["config"].get("schema") == schema
    }
    candidates: dict[str, list[tuple[str, ...]]] = {}
    for node in manifest["nodes"].values():
        metadata = node.get("test_metadata") or {}
        if node["resource_type"] != "test" or metadata.get("name") not in GRAIN_TESTS:
            continue
        model = models.get(node.get("attached_node") or "")
        if model is None:
            continue
        if metadata["name"] == "unique":
            key: tuple[str, ...] = (node.get("column_name") or metadata["kwargs"]["column_name"],)
        else:
            key = tuple(metadata["kwargs"]["combination_of_columns"])
        candidates.setdefault(model, []).append(key)
    return {model: min(keys, key=len) for model, keys in candidates.items()}


# ---- canonical values: one representation per kind, whatever engine or Arrow type they came in ----

@dataclass(frozen=True)
class _Column:
    kind: str
    nulls: np.ndarray  # bool per row
    values: np.ndarray  # float64 for NUMERIC_KINDS (NULL -> 0.0), object otherwise (NULL -> None)


def column_kind(data_type: pa.DataType) -> str:
    """The comparison kind of an Arrow type: integer, float, decimal, string, boolean, date, timestamp or other."""
    if pa.types.is_integer(data_type):
        return "integer"
    if pa.types.is_floating(data_type):
        return "float"
    if pa.types.is_decimal(data_type):
        return "decimal"
    if pa.types.is_string(data_type) or pa.types.is_large_string(data_type):
        return "string"
    if pa.types.is_boolean(data_type):
        return "boolean"
    if pa.types.is_date(data_type):
        return "date"
    if pa.types.is_timestamp(data_type):
        return "timestamp"
    return "other"


def _canonical(array: pa.ChunkedArray | pa.Array) -> _Column:
    kind = column_kind(array.type)
    nulls = np.asarray(pc.is_null(array).to_numpy(zero_copy_only=False), dtype=bool)
    if kind in NUMERIC_KINDS:
        values = np.asarray(pc.fill_null(array.cast(pa.float64()), 0.0).to_numpy(zero_copy_only=False), dtype=float)
    elif kind == "timestamp":
        # A zone-aware timestamp's integer is its UTC instant; a naive one's is its wall time, which
        # in this warehouse is naive UTC: both become microseconds since the epoch in UTC.
        micros = array.cast(pa.timestamp("us", tz=array.type.tz)).cast(pa.int64())
        values = np.asarray(micros.to_pylist(), dtype=object)
    elif kind == "date":
        values = np.asarray(array.cast(pa.date32()).cast(pa.int32()).to_pylist(), dtype=object)
    else:
        values = np.asarray(array.to_pylist(), dtype=object)
    return _Column(kind=kind, nulls=nulls, values=values)


def _key_values(array: pa.ChunkedArray | pa.Array) -> list[Any]:
    # Numbers stay exact Python values here (a NULL key must not meet a 0), the rest as in _canonical.
    if column_kind(array.type) in NUMERIC_KINDS:
        return array.to_pylist()
    return list(_canonical(array).values)


def _key_frame(table: pa.Table, keys: Sequence[str]) -> pd.DataFrame:
    frame = pd.DataFrame({key: _key_values(table.column(key)) for key in keys}, dtype=object)
    frame["__row"] = np.arange(table.num_rows)
    return frame


def _render(value: Any, kind: str) -> str:
    if value is None:
        return "NULL"
    if kind == "timestamp":
        return str(pd.Timestamp(int(value), unit="us"))
    if kind == "date":
        return str(pd.Timestamp(int(value), unit="D").date())
    if kind in NUMERIC_KINDS:
        return repr(float(value))
    return repr(value)


def _cell_text(column: _Column, row: int) -> str:
    return _render(None if column.nulls[row] else column.values[row], column.kind)


def _key_text(frame: pd.DataFrame, keys: Sequence[str], kinds: Mapping[str, str], row: int) -> str:
    return ", ".join(f"{key}={_render(frame.iloc[row][key], kinds[key])}" for key in keys)


def _unequal(left: _Column, right: _Column, left_rows: np.ndarray, right_rows: np.ndarray) -> np.ndarray:
    """A mask over matched row pairs: True where the two cells differ (NULL pattern or value)."""
    left_null, right_null = left.nulls[left_rows], right.nulls[right_rows]
    both = ~left_null & ~right_null
    if left.kind in NUMERIC_KINDS:
        a, b = left.values[left_rows], right.values[right_rows]
        with np.errstate(invalid="ignore", over="ignore"):
            scale = np.maximum(1.0, np.maximum(np.abs(a), np.abs(b)))
            close = (np.abs(a - b) <= NUMERIC_TOLERANCE * scale) | (a == b) | (np.isnan(a) & np.isnan(b))
        values_differ = both & ~close
    else:
        a, b = left.values[left_rows], right.values[right_rows]
        values_differ = both & np.fromiter((x != y for x, y in zip(a, b, strict=True)), dtype=bool, count=len(a))
    return (left_null != right_null) | values_differ


def compare_tables(
    table: str,
    left: pa.Table,
    right: pa.Table,
    keys: Sequence[str],
    *,
    left_name: str = "duckdb",
    right_name: str = "spark",
) -> TableComparison:
    """Every difference between two copies of `table`, rows matched on the grain `keys`.

    Column names are compared case-insensitively (Spark and DuckDB both fold unquoted names) and
    the order of rows and columns does not matter.
    """
    left = left.rename_columns([name.lower() for name in left.column_names])
    right = right.rename_columns([name.lower() for name in right.column_names])
    keys = [key.lower() for key in keys]
    result = TableComparison(table, tuple(keys), left.num_rows, right.num_rows, left.num_columns)
    found = result.differences

    left_columns, right_columns = set(left.column_names), set(right.column_names)
    for column in sorted(left_columns - right_columns):
        found.append(Difference(table, f"column only in {left_name}", 1, column))
    for column in sorted(right_columns - left_columns):
        found.append(Difference(table, f"column only in {right_name}", 1, column))
    missing_keys = [key for key in keys if key not in left_columns or key not in right_columns]
    if not keys or missing_keys:
        found.append(Difference(table, "no grain key to match rows on", 1, ",".join(missing_keys) or None))
        return result

    common = [name for name in left.column_names if name in right_columns]
    kinds: dict[str, str] = {}
    for column in common:
        left_kind = column_kind(left.schema.field(column).type)
        right_kind = column_kind(right.schema.field(column).type)
        if left_kind != right_kind:
            found.append(Difference(table, f"kind {left_name}={left_kind} {right_name}={right_kind}", 1, column))
        else:
            kinds[column] = left_kind
    if any(key not in kinds for key in keys):
        return result

    if left.num_rows != right.num_rows:
        found.append(Difference(
            table, f"row count {left_name}={left.num_rows:,} {right_name}={right.num_rows:,}", 1,
        ))
    left_keys, right_keys = _key_frame(left, keys), _key_frame(right, keys)
    for side, frame in ((left_name, left_keys), (right_name, right_keys)):
        duplicated = frame.duplicated(subset=keys, keep=False)
        if duplicated.any():
            rows = np.flatnonzero(duplicated.to_numpy())
            examples = tuple(_key_text(frame, keys, kinds, row) for row in rows[:MAX_EXAMPLES])
            found.append(Difference(table, f"duplicated grain key in {side}", len(rows), examples=examples))
    if any(d.kind.startswith("duplicated") for d in found):
        return result

    matched = left_keys.merge(right_keys, on=keys, how="outer", suffixes=("_left", "_right"), indicator=True)
    for side, only in ((left_name, "left_only"), (right_name, "right_only")):
        rows = matched.index[matched["_merge"] == only].to_numpy()
        if len(rows):
            examples = tuple(_key_text(matched, keys, kinds, row) for row in rows[:MAX_EXAMPLES])
            found.append(Difference(table, f"row only in {side}", len(rows), examples=examples))

    pairs = matched[matched["_merge"] == "both"]
    left_rows = pairs["__row_left"].to_numpy(dtype=np.int64)
    right_rows = pairs["__row_right"].to_numpy(dtype=np.int64)
    for column in common:
        if column in keys or column not in kinds:
            continue
        left_column, right_column = _canonical(left.column(column)), _canonical(right.column(column))
        unequal = np.flatnonzero(_unequal(left_column, right_column, left_rows, right_rows))
        if len(unequal):
            examples = tuple(
                f"{_key_text(pairs, keys, kinds, i)}: "
                f"{left_name}={_cell_text(left_column, left_rows[i])} "
                f"{right_name}={_cell_text(right_column, right_rows[i])}"
                for i in unequal[:MAX_EXAMPLES]
            )
            found.append(Difference(table, "unequal cells", len(unequal), column, examples))
    return result


def summary_line(comparisons: Sequence[TableComparison], extra: Sequence[Difference] = (), runs: int = 1) -> str:
    """The one line the comparison ends with: marts, builds compared, rows (left side) and differences."""
    marts = len({c.table for c in comparisons} | {d.table for d in extra})
    rows = sum(c.rows_left for c in comparisons)
    differences = sum(c.difference_count for c in comparisons) + sum(d.count for d in extra)
    builds = f" x {runs} builds" if runs > 1 else ""
    return f"spark-vs-duckdb: {marts} marts{builds}, {rows:,} rows, {differences:,} differences"
