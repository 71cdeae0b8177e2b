"""Arrow tables of the five sources and the file sinks that write them (CSV, JSONL, gzip, CP932, Parquet).

Everything written is a pure function of the rows and a seeded generator: no wall-clock time, gzip
headers with mtime 0, stable row order, so the same inputs give byte-identical files.
"""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

JST_OFFSET = 9 * 3600
# Source exports mix naive local times (read in Asia/Tokyo), +09:00 offsets and UTC "Z" times.
TIMESTAMP_STYLES: tuple[str, ...] = ("naive_jst", "offset_0900", "utc_z")
TIMESTAMP_STYLE_SHARE: tuple[float, ...] = (0.60, 0.25, 0.15)
UTC_TS = pa.timestamp("us", tz="UTC")


def ids(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    """Zero-padded ids such as C00000042, built in Arrow (fast for tens of millions)."""
    digits = pc.utf8_lpad(pa.array(numbers, pa.int64()).cast(pa.string()), width=width, padding="0")
    return pc.binary_join_element_wise(prefix, digits, "")


def utc(t: np.ndarray) -> pa.Array:
    """Epoch seconds -> tz-aware UTC timestamps (how the Parquet exports type them)."""
    return pa.array(np.asarray(t, np.int64) * 1_000_000, pa.int64()).cast(UTC_TS)


def take(pool: pa.Array, idx: np.ndarray) -> pa.Array:
    """pool[idx], with idx < 0 giving null."""
    idx = np.asarray(idx, np.int64)
    return pool.take(pa.array(idx, pa.int64(), mask=idx < 0))


def styled_timestamps(ts: pa.Array, style: np.ndarray) -> pa.Array:
    """ISO 8601 strings of UTC timestamps, each row in its style (naive JST, +09:00, or Z)."""
    secs = pc.cast(pc.cast(ts, pa.int64()), pa.int64()).to_numpy(zero_copy_only=False) // 1_000_000
    jst = pc.strftime(
        pa.array(secs + JST_OFFSET, pa.int64()).cast(pa.timestamp("s")), format="%Y-%m-%dT%H:%M:%S"
    )
    utc_s = pc.strftime(pa.array(secs, pa.int64()).cast(pa.timestamp("s")), format="%Y-%m-%dT%H:%M:%S")
    out = pc.choose(
        pa.array(style, pa.int8()),
        jst,
        pc.binary_join_element_wise(jst, "+09:00", ""),
        pc.binary_join_element_wise(utc_s, "Z", ""),
    )
    if ts.null_count:
        out = pc.if_else(pc.is_null(ts), pa.nulls(len(ts), pa.string()), out)
    return out


def to_text(table: pa.Table, rng: np.random.Generator) -> pa.Table:
    """The table as a text export sees it: every timestamp column a string in a mixed style."""
    cols = []
    for name in table.column_names:
        col = table.column(name).combine_chunks()
        if pa.types.is_timestamp(col.type):
            style = rng.choice(len(TIMESTAMP_STYLES), size=len(col), p=TIMESTAMP_STYLE_SHARE)
            col = styled_timestamps(col, style)
        cols.append(col)
    return pa.table(cols, names=table.column_names)


def csv_bytes(table: pa.Table, *, header: bool = True) -> bytes:
    """CSV text of a table (UTF-8, no BOM)."""
    sink = io.BytesIO()
    pacsv.write_csv(table, sink, write_options=pacsv.WriteOptions(include_header=header))
    return sink.getvalue()


def jsonl_bytes(table: pa.Table) -> bytes:
    """JSON Lines of a table, built column-wise in Arrow (no Python loop over rows)."""
    if table.num_rows == 0:
        return b""
    pieces: list[pa.Array | str] = []
    for i, name in enumerate(table.column_names):
        col = table.column(name).combine_chunks()
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            escaped = pc.replace_substring(pc.replace_substring(col, "\\", "\\\\"), '"', '\\"')
            value = pc.binary_join_element_wise('"', escaped, '"', "")
        elif pa.types.is_boolean(col.type):
            value = pc.if_else(col, "true", "false")
        else:
            value = col.cast(pa.string())
        value = pc.fill_null(value, "null")
        pieces += [("{" if i == 0 else ",") + f'"{name}":', value]
    lines = pc.binary_join_element_wise(*pieces, "}\n", "")
    # Every line is non-null, so the string array's data buffer is the file body, in order.
    offsets = np.frombuffer(lines.buffers()[1], np.int32)[lines.offset : lines.offset + len(lines) + 1]
    return lines.buffers()[2].to_pybytes()[offsets[0] : offsets[-1]]


class Sink:
    """One landing file written in pieces (chunks of customers), closed once."""

    def __init__(self, path: Path, kind: str, rng: np.random.Generator) -> None:
        self.path, self.kind, self.rng = path, kind, rng
        self.rows = 0
        self._parquet: pq.ParquetWriter | None = None
        self._fh = None
        self._gz: gzip.GzipFile | None = None
        path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, table: pa.Table) -> None:
        """Append rows: typed for Parquet, converted to mixed-style text for the text formats."""
        if self.kind == "parquet":
            table = table.cast(
                pa.schema(
                    [
                        pa.field(f.name, UTC_TS if pa.types.is_timestamp(f.type) else f.type)
                        for f in table.schema
                    ]
                )
            )
            if self._parquet is None:
                self._parquet = pq.ParquetWriter(self.path, table.schema, compression="snappy")
            self._parquet.write_table(table)
        else:
            text = to_text(table, self.rng) if self.kind != "raw" else table
            self.write_text(text)
        self.rows += table.num_rows

    def write_text(self, text: pa.Table) -> None:
        """Append a table whose timestamp columns are already strings (fault rows use this)."""
        if self._fh is None:
            self._fh = open(self.path, "wb")  # noqa: SIM115 - kept open across chunks, closed in close()
            if self.kind == "csv_bom":
                self._fh.write(b"\xef\xbb\xbf")
            if self.kind == "jsonl_gz":
                self._gz = gzip.GzipFile(filename="", mode="wb", fileobj=self._fh, mtime=0)
            first = True
        else:
            first = False
        data = jsonl_bytes(text) if self.kind in ("jsonl", "jsonl_gz") else csv_bytes(text, header=first)
        (self._gz or self._fh).write(data)

    def close(self) -> None:
        """Finish the file (Parquet footer, gzip trailer)."""
        if self._parquet is not None:
            self._parquet.close()
        if self._gz is not None:
            self._gz.close()
        if self._fh is not None:
            self._fh.close()


def write_cp932_csv(path: Path, table: pa.Table) -> None:
    """A CSV in CP932 (Shift_JIS), as Japanese desktop tools still save it; strings must be JIS-safe."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(csv_bytes(table).decode("utf-8").encode("cp932"))
