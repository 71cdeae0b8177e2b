"""Read one landing file, whatever its format and encoding, into DuckDB as text.

Every reader ends the same way: a DuckDB view `src` with `_rn` (1-based data row number, header
excluded) and one VARCHAR column `c<i>` per delivered column, plus the delivered column names in
order. Typing happens afterwards, in SQL, so a bad value costs one row and never the file.
A Parquet column that is already a timestamp also keeps its typed value, as `i<i>`
(`StagedFile.instants`): its text goes through the same rules, but parsing the text back into the
instant it came from was a third of the time of checking the CRM activities. (A typed value is a
timestamp by construction: nanoseconds are cut to the lake's microseconds, where their text, with
nine decimals, would not parse.)

Delivered column names are never used as SQL identifiers: columns are addressed as c0, c1, ...
and file paths travel as bound parameters, so a header like `"; drop table x; --` is only data.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

# Extension (after an optional .gz) -> format name used in the manifest.
FORMATS: dict[str, str] = {".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl"}
_DELIMITERS = {"csv": ",", "tsv": "\t"}
_UTF8_BOM = codecs.BOM_UTF8
_GZIP_MAGIC = b"\x1f\x8b"
_PARQUET_MAGIC = b"PAR1"
_CHUNK = 8 * 1024 * 1024
# Longest CSV line / JSON object DuckDB will read. Longer than any sane row, yet bounded so that a
# runaway field (an unclosed quote swallowing the file) ends as a rejected file, not an OOM.
MAX_RECORD_BYTES = 64 * 1024 * 1024


class RejectFile(Exception):
    """The whole file is refused: `rule` names the broken file-level rule, `reason` explains it."""

    def __init__(self, rule: str, reason: str) -> None:
        super().__init__(reason)
        self.rule = rule
        self.reason = reason


@dataclass(frozen=True)
class StagedFile:
    """A landing file staged in DuckDB: view `src` (_rn, c0..cN as VARCHAR) and its delivered column names."""

    names: list[str]
    file_format: str  # csv | tsv | parquet | jsonl, '+gzip' appended when compressed
    encoding: str
    # Delivered column index -> whether its typed timestamp `i<index>` is an instant (TIMESTAMPTZ)
    # or a wall-clock time without a zone (TIMESTAMP); Parquet timestamp columns only.
    instants: dict[int, bool] = field(default_factory=dict)
    # The Parquet file `src` reads (a .parquet.gz's inflated copy); None for the other formats, which
    # are read whole while staging.
    parquet: Path | None = None


def detect_format(name: str) -> tuple[str, bool]:
    """The format of a landing file from its name, and whether it is gzipped; RejectFile if unknown."""
    lower = name.lower()
    gzipped = lower.endswith(".gz")
    base = lower[:-3] if gzipped else lower
    ext = Path(base).suffix
    if ext not in FORMATS:
        known = ", ".join(sorted(FORMATS)) + " (any of them may end in .gz)"
        raise RejectFile("unknown_format", f"has unknown file extension {ext or '(none)'!r}; expected {known}")
    return FORMATS[ext], gzipped


def _open_bytes(path: Path, gzipped: bool) -> io.BufferedIOBase:
    return gzip.open(path, "rb") if gzipped else open(path, "rb")


def detect_encoding(path: Path, gzipped: bool) -> str:
    """Detect a text file's encoding: 'utf-8', 'utf-8-sig' (with BOM) or 'cp932' (Shift_JIS), by a full scan.

    The whole stream is checked, not a sample, because an export that is ASCII for a million rows
    and has its first Japanese name after that is common. ASCII chunks skip the decoder, so the
    scan costs little more than reading the file. NUL bytes mean binary content: rejected.
    """
    decoder = codecs.getincrementaldecoder("utf-8")()
    has_bom = False
    first = True
    with _open_bytes(path, gzipped) as fh:
        while chunk := fh.read(_CHUNK):
            if first:
                first = False
                if chunk.startswith(_UTF8_BOM):
                    has_bom = True
                    chunk = chunk[len(_UTF8_BOM) :]
            if b"\x00" in chunk:
                raise RejectFile("binary_content", "contains NUL bytes: not a text file")
            # An ASCII chunk is valid UTF-8 on its own unless a multi-byte character is still open.
            if chunk.isascii() and not decoder.getstate()[0]:
                continue
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError:
                break
        else:
            try:
                decoder.decode(b"", final=True)
            except UnicodeDecodeError:
                pass
            else:
                return "utf-8-sig" if has_bom else "utf-8"
    if has_bom:
        raise RejectFile("encoding", "starts with a UTF-8 byte order mark but is not valid UTF-8")
    # Not UTF-8: the only other encoding the contract allows. transcode() validates it fully.
    return "cp932"


def transcode(path: Path, gzipped: bool, encoding: str, target: Path) -> None:
    """Stream a text file into an uncompressed UTF-8 copy (DuckDB reads only UTF-8); RejectFile if undecodable."""
    with _open_bytes(path, gzipped) as raw, open(target, "w", encoding="utf-8", newline="") as out:
        text = io.TextIOWrapper(raw, encoding=encoding, errors="strict", newline="")
        try:
            while chunk := text.read(_CHUNK):
                if "\x00" in chunk:
                    raise RejectFile("binary_content", "contains NUL bytes: not a text file")
                out.write(chunk)
        except UnicodeDecodeError as exc:
            raise RejectFile(
                "encoding", f"is neither UTF-8 nor CP932 (Shift_JIS): {exc.reason} in a {encoding} read"
            ) from exc


def _read_header(path: Path, gzipped: bool, delimiter: str) -> list[str]:
    opener = gzip.open if gzipped else open
    with opener(path, "rt", encoding="utf-8-sig", newline="") as fh:
        header = next(csv.reader(fh, delimiter=delimiter, quotechar='"', doublequote=True, strict=True), None)
    if not header:
        raise RejectFile("empty_file", "has no header row")
    return header


def _stage_csv(con: duckdb.DuckDBPyConnection, path: Path, gzipped: bool, fmt: str) -> list[str]:
    delimiter = _DELIMITERS[fmt]
    # Python's csv only counts the header's columns; DuckDB then parses everything, the header
    # included (as row 0), so header and data are split by one and the same parser.
    width = len(_read_header(path, gzipped, delimiter))
    columns = "{" + ", ".join(f"'c{i}': 'VARCHAR'" for i in range(width)) + "}"
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE staged AS
        SELECT * FROM read_csv(
            $path, header = false, auto_detect = false, columns = {columns},
            delim = $delim, quote = '"', escape = '"', skip = 0, strict_mode = true,
            null_padding = false, compression = $compression, max_line_size = {MAX_RECORD_BYTES}
        )
        """,
        {"path": str(path), "delim": delimiter, "compression": "gzip" if gzipped else "none"},
    )
    cols = ", ".join(f"c{i}" for i in range(width))
    header = con.execute(f"SELECT {cols} FROM staged WHERE rowid = 0").fetchall()
    con.execute(f"CREATE OR REPLACE TEMP VIEW src AS SELECT rowid AS _rn, {cols} FROM staged WHERE rowid > 0")
    return [name or "" for name in header[0]] if header else []


def first_malformed_json_line(path: Path, gzipped: bool) -> tuple[int, str] | None:
    """(line number, the parser's complaint) of the first non-blank line that is not valid JSON, or None.

    Asked only after DuckDB refused the file: its error counts lines differently (it named line 3
    for a broken line 2), and a person fixing a delivery needs the line itself.
    """
    with _open_bytes(path, gzipped) as raw:
        for number, line in enumerate(io.TextIOWrapper(raw, encoding="utf-8-sig", errors="replace"), start=1):
            if not line.strip():
                continue
            try:
                json.loads(line.rstrip("\r\n"))  # columns count from the line's start, indentation included
            except json.JSONDecodeError as exc:
                return number, f"{exc.msg}: column {exc.colno}"
    return None


def _stage_jsonl(con: duckdb.DuckDBPyConnection, path: Path, gzipped: bool) -> list[str]:
    try:
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE jraw AS
            SELECT json FROM read_json_objects(
                $path, format = 'newline_delimited', compression = $compression,
                maximum_object_size = {MAX_RECORD_BYTES}
            )
            """,
            {"path": str(path), "compression": "gzip" if gzipped else "none"},
        )
    except duckdb.InvalidInputException:
        malformed = first_malformed_json_line(path, gzipped)
        if malformed is None:
            raise
        line, complaint = malformed
        # One broken line is a broken file (truncated, or written by hand): loading the rest would
        # publish a delivery whose sender does not know what was kept.
        raise RejectFile("unreadable", f"has line {line} that is not valid JSON ({complaint})") from None
    not_object = con.execute(
        "SELECT rowid + 1, json_type(json) FROM jraw WHERE json_type(json) <> 'OBJECT' ORDER BY rowid LIMIT 1"
    ).fetchall()
    if not_object:
        row, kind = not_object[0]
        raise RejectFile("not_json_objects", f"has record {row} that is a JSON {kind.lower()}, not an object")
    names: list[str] = []
    seen: set[str] = set()
    # Distinct key lists in order of first appearance: usually one, so this stays cheap at any size.
    for (keys,) in con.execute("SELECT json_keys(json) AS ks FROM jraw GROUP BY ks ORDER BY min(rowid)").fetchall():
        for key in keys:
            if key not in seen:
                seen.add(key)
                names.append(key)
    spec = json.dumps(dict.fromkeys(names, "VARCHAR"))
    cols = ", ".join(f"struct_extract_at(s, {i + 1}) AS c{i}" for i in range(len(names)))
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE staged AS
        SELECT _rn{", " + cols if cols else ""}
        FROM (SELECT rowid + 1 AS _rn, json_transform(json, $spec) AS s FROM jraw)
        """,
        {"spec": spec},
    )
    con.execute("DROP TABLE jraw")
    con.execute("CREATE OR REPLACE TEMP VIEW src AS SELECT * FROM staged")
    return names


# DuckDB's names for Parquet timestamp columns: with a zone (isAdjustedToUTC), and without one.
_INSTANT_TYPES = {"TIMESTAMP WITH TIME ZONE", "TIMESTAMPTZ_NS"}
_WALL_CLOCK_TYPES = {"TIMESTAMP", "TIMESTAMP_S", "TIMESTAMP_MS", "TIMESTAMP_NS"}
_TIMESTAMP_TYPES = _INSTANT_TYPES | _WALL_CLOCK_TYPES


def _stage_parquet(con: duckdb.DuckDBPyConnection, path: Path) -> tuple[list[str], dict[int, bool]]:
    with open(path, "rb") as fh:
        if fh.read(4) != _PARQUET_MAGIC:
            raise RejectFile("unreadable", "is not a Parquet file (no PAR1 magic bytes)")
    described = con.execute("DESCRIBE SELECT * FROM read_parquet($path)", {"path": str(path)}).fetchall()
    names = [row[0] for row in described]
    instants = {i: row[1] in _INSTANT_TYPES for i, row in enumerate(described) if row[1] in _TIMESTAMP_TYPES}
    cols = ", ".join(
        [f"CAST({quote_ident(n)} AS VARCHAR) AS c{i}" for i, n in enumerate(names)]
        + [
            f"CAST({quote_ident(names[i])} AS {'TIMESTAMPTZ' if is_instant else 'TIMESTAMP'}) AS i{i}"
            for i, is_instant in instants.items()
        ]
    )
    # A view, not a copy: the checks read the file once, in one pass, and Parquet is already
    # columnar and typed, so a staged table only added a write of every row (a third of the time
    # of checking CRM activities). The path is a literal because a view cannot keep a parameter.
    con.execute(
        f"""
        CREATE OR REPLACE TEMP VIEW staged AS
        SELECT file_row_number + 1 AS _rn{", " + cols if cols else ""}
        FROM read_parquet({quote_literal(str(path))}, file_row_number = true)
        """
    )
    con.execute("CREATE OR REPLACE TEMP VIEW src AS SELECT * FROM staged")
    return names, instants


# DuckDB vectors (2,048 rows) per chunk when reading a Parquet file through for damage.
_DAMAGE_SCAN_VECTORS = 50


def parquet_damage(con: duckdb.DuckDBPyConnection, path: Path) -> duckdb.Error | None:
    """The error that reading the Parquet file's data gives (e.g. a corrupt page, text that is not UTF-8), or None.

    Staging reads only a Parquet file's footer, so damage further in shows first when the checks
    read the rows. The caller asks this after such an error: if the file alone, every value of every
    column, reads without error, the error was not the file's. Streamed in batches, so it holds no
    more than one batch however large the file; a full memory is the machine's fault, not the file's.
    """
    try:
        # Chunks of a result, not an Arrow stream: once a stream has handed over its first batch, a
        # later error comes out of pyarrow as a bare OSError instead of DuckDB's error.
        result = con.execute(f"SELECT * FROM read_parquet({quote_literal(str(path))})")
        while len(result.fetch_df_chunk(_DAMAGE_SCAN_VECTORS)):
            pass
    except duckdb.OutOfMemoryException:
        return None
    except duckdb.Error as exc:
        return exc
    return None


def stage_file(con: duckdb.DuckDBPyConnection, path: Path, work_dir: Path) -> StagedFile:
    """Stage one landing file as view `src`; RejectFile when it cannot be read as its format says.

    `work_dir` takes the temporary UTF-8 or decompressed copies (deleted by the caller).
    """
    fmt, gzipped = detect_format(path.name)
    with open(path, "rb") as fh:
        head = fh.read(4)
    if not head:
        raise RejectFile("empty_file", "is empty (0 bytes)")
    if gzipped and not head.startswith(_GZIP_MAGIC):
        raise RejectFile("unreadable", "has a .gz name but is not gzip data")
    label = f"{fmt}+gzip" if gzipped else fmt
    if fmt == "parquet":
        if gzipped:
            # DuckDB reads Parquet only uncompressed on the outside; inflate to a temporary copy.
            plain = work_dir / "delivery.parquet"
            with gzip.open(path, "rb") as src, open(plain, "wb") as dst:
                shutil.copyfileobj(src, dst, _CHUNK)
            path = plain
        names, instants = _stage_parquet(con, path)
        return StagedFile(names, label, "utf-8", instants, parquet=path)
    encoding = detect_encoding(path, gzipped)
    if encoding != "utf-8":
        # DuckDB has no CP932 reader (and cannot download the encodings extension offline).
        plain = work_dir / f"delivery.{fmt}"
        transcode(path, gzipped, encoding, plain)
        path, gzipped = plain, False
    names = _stage_jsonl(con, path, gzipped) if fmt == "jsonl" else _stage_csv(con, path, gzipped, fmt)
    return StagedFile(names, label, encoding)


def quote_ident(name: str) -> str:
    """A SQL identifier for any string: double quotes, inner quotes doubled."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    """A SQL string literal for any string: single quotes, inner quotes doubled."""
    return "'" + value.replace("'", "''") + "'"
