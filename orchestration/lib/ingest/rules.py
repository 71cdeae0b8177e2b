"""The contract's typing and row rules, compiled to one vectorised DuckDB query per file.

Input: the staged view `src` (_rn, c0..cN as text) and the delivered column names. Output: the
query of the checked rows (`checked`), with `_rn`, one typed column per contract column (`t0..`), one per
pattern column such as driver_* (`p0..`), and `_rule` / `_reason`, NULL for a row that loads.

Order in which a row's rules are tried (the first broken one is reported, the row counted once):
  1. `<column>:max_length` for every delivered column, in delivered order (a runaway value such as a
     10 MB field never reaches a typed table);
  2. for each contract column in contract order: `:required` (empty or missing value), then `:type`
     (the value does not parse as the column's type), then the column's rule (`:enum`, `:range`,
     `:not_in_future`, `:iso4217`);
  3. the same for pattern columns (driver_*), in delivered order.

Values are trimmed of spaces (DuckDB's trim: the ASCII space and Unicode spaces such as the
ideographic space U+3000 of Japanese input; tabs and line breaks are kept, as trimming them costs
twice as much at 20M rows and they do not occur at the edges of ids) and an empty value is NULL
before typing; enum values and booleans are matched in lower case, currency codes in upper case.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from orchestration.lib.ingest.currencies import ISO_4217_CODES
from orchestration.lib.ingest.readers import RejectFile, quote_literal
from quality.contract import ColumnSpec, SourceSpec

# Longest value a delivered field may hold. Survey comments are the longest legitimate text; a
# megabyte is far beyond any of them and well below what would hurt Parquet or the warehouse.
MAX_VALUE_BYTES = 1024 * 1024
# ISO 8601 date or date-time, optional seconds, fraction and offset; no week dates or ordinal days.
# Up to nine fraction digits (.NET writes seven, Java's Instant nine); the lake keeps microseconds, and
# DuckDB's cast drops the digits beyond them.
_ISO_TIMESTAMP = (
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,9})?)?(Z|[+-][0-9]{2}(:?[0-9]{2})?)?)?"
)
_INTEGER = r"[+-]?[0-9]+(\.0*)?"  # "8.0" is how spreadsheets export 8; "8.5" is not an integer
_TRUE = ("true", "t", "yes", "y", "1")
_FALSE = ("false", "f", "no", "n", "0")
_TYPE_WORDS = {
    "integer": "an integer",
    "number": "a finite number",
    "decimal": "a decimal number with at most 16 integer digits",
    "boolean": "a boolean (true/false)",
    "timestamp": "an ISO 8601 timestamp",
}
_NUMBER = r"-?[0-9]+(?:\.[0-9]+)?"


@dataclass(frozen=True)
class _Check:
    rule: str  # '<column>:<check>'
    fails: str  # SQL boolean, true when the row breaks the rule
    reason: str  # SQL text expression: what broke, without the '<file> row <n>: ' prefix


@dataclass(frozen=True)
class CheckPlan:
    """The compiled checks of one delivered file, and how its columns met the contract."""

    sql: str  # the checked rows (a query over `src`); bind $file (landing path) and $now (naive UTC)
    contract_columns: list[str]  # t<k> holds contract column k, in contract (= lake schema) order
    pattern_columns: list[str]  # p<j> holds this normalised delivered column (e.g. driver_ease)
    extra_columns: list[str]  # delivered names outside the contract: schema drift
    missing_optional_columns: list[str]

    def parameters(self, file: str, now: datetime) -> dict[str, object]:
        """The values to bind when running `sql`: DuckDB refuses a parameter the query does not use."""
        params: dict[str, object] = {"file": file}
        if "$now" in self.sql:
            params["now"] = now
        return params


def normalise(name: str) -> str:
    """How a delivered column name is matched to the contract: trimmed, lower case."""
    return name.strip().lower()


def _list_literal(values: object) -> str:
    return "(" + ", ".join(quote_literal(str(v)) for v in values) + ")"


def _shown(v: str) -> str:
    # Long values are cut in the reason text; the quarantine file keeps them whole.
    return f"(CASE WHEN length({v}) > 80 THEN left({v}, 80) || '…' ELSE {v} END)"


def _trimmed(c: str) -> str:
    """DuckDB's trim(c), called only where it can change something.

    Only a Unicode space separator (category Zs) is trimmed, and the one such character in ASCII
    is ' ': an all-ASCII value (as many bytes as characters) without a space at either end is its
    own trim. Checking that costs a third of trimming, which copies every value.
    """
    return f"(CASE WHEN strlen({c}) <> length({c}) OR prefix({c}, ' ') OR suffix({c}, ' ') THEN trim({c}) ELSE {c} END)"


def _typed(spec: ColumnSpec, v: str, source_tz: str) -> str:
    if spec.type == "string":
        return f"upper({v})" if spec.rule == "ISO 4217 code" else v
    if spec.type == "enum":
        return f"lower({v})"
    if spec.type == "integer":
        return f"TRY_CAST(CASE WHEN regexp_full_match({v}, '{_INTEGER}') THEN {v} END AS BIGINT)"
    if spec.type == "number":
        return f"(CASE WHEN isfinite(TRY_CAST({v} AS DOUBLE)) THEN TRY_CAST({v} AS DOUBLE) END)"
    if spec.type == "decimal":
        return f"TRY_CAST({v} AS DECIMAL(20, 4))"
    if spec.type == "boolean":
        return (
            f"(CASE WHEN lower({v}) IN {_list_literal(_TRUE)} THEN true "
            f"WHEN lower({v}) IN {_list_literal(_FALSE)} THEN false END)"
        )
    if spec.type == "timestamp":
        # An offset (Z, +09:00, -0500) is taken as given; a naive value is local time in the source
        # zone. DuckDB's plain TIMESTAMP cast would silently drop an offset, hence the two paths.
        # The instant becomes naive UTC through its epoch microseconds: the same value as
        # `AT TIME ZONE 'UTC'`, without a time-zone lookup per row (a third of the typing cost).
        tail = f"substr({v}, 11)"
        has_offset = f"(contains({tail}, '+') OR contains({tail}, '-') OR ends_with({v}, 'Z'))"
        return (
            f"(CASE WHEN NOT regexp_full_match({v}, '{_ISO_TIMESTAMP}') THEN NULL "
            f"WHEN {has_offset} THEN make_timestamp(epoch_us(TRY_CAST({v} AS TIMESTAMPTZ))) "
            f"ELSE make_timestamp(epoch_us(TRY_CAST({v} AS TIMESTAMP) AT TIME ZONE {quote_literal(source_tz)})) END)"
        )
    raise ValueError(f"contract type {spec.type!r} is not implemented by ingestion")


def _typed_instant(column: str, is_instant: bool, source_tz: str) -> str:
    """A typed Parquet timestamp as naive UTC: what `_typed` makes of its text, without parsing it."""
    if is_instant:
        return f"make_timestamp(epoch_us({column}))"
    return f"make_timestamp(epoch_us({column} AT TIME ZONE {quote_literal(source_tz)}))"


def _rule_checks(col: str, spec: ColumnSpec, v: str, t: str) -> list[_Check]:
    """The value rule of a column (enum values or the contract's `rule:` text) as checks on typed `t`."""
    checks: list[_Check] = []
    shown = f"concat({quote_literal(col + '=')}, {_shown(v)})"
    if spec.type == "enum":
        allowed = ", ".join(spec.values)
        checks.append(
            _Check(
                f"{col}:enum",
                f"{t} NOT IN {_list_literal(spec.values)}",
                f"concat({shown}, {quote_literal(f' breaks rule {col} in ({allowed})')})",
            )
        )
    if spec.rule is None:
        return checks
    text = spec.rule.strip()
    bounds: tuple[str | None, str | None] | None = None
    if (m := re.fullmatch(rf"({_NUMBER})\s*<=\s*[a-z_*]+\s*<=\s*({_NUMBER})", text)) or (
        m := re.fullmatch(rf"({_NUMBER})\s*\.\.\s*({_NUMBER})", text)
    ):
        bounds = (m.group(1), m.group(2))
    elif m := re.fullmatch(rf">=\s*({_NUMBER})", text):
        bounds = (m.group(1), None)
    elif m := re.fullmatch(rf"<=\s*({_NUMBER})", text):
        bounds = (None, m.group(1))
    if bounds is not None:
        low, high = bounds
        parts = [f"{t} < {low}"] if low is not None else []
        parts += [f"{t} > {high}"] if high is not None else []
        if low is not None and high is not None:
            desc = f"{low} <= {col} <= {high}"
        else:
            desc = f"{col} >= {low}" if low is not None else f"{col} <= {high}"
        checks.append(
            _Check(f"{col}:range", " OR ".join(parts), f"concat({shown}, {quote_literal(' breaks rule ' + desc)})")
        )
    elif text == "not in the future":
        checks.append(
            _Check(
                f"{col}:not_in_future",
                f"{t} > $now",
                f"concat({shown}, {quote_literal(f' breaks rule {col} not in the future (now: ')}, "
                f"strftime($now, '%Y-%m-%dT%H:%M:%SZ'), ')')",
            )
        )
    elif text == "ISO 4217 code":
        checks.append(
            _Check(
                f"{col}:iso4217",
                f"{t} NOT IN {_list_literal(sorted(ISO_4217_CODES))}",
                f"concat({shown}, {quote_literal(f' breaks rule {col} is an active ISO 4217 currency code')})",
            )
        )
    else:
        raise ValueError(f"contract rule {spec.rule!r} of column {col} is not implemented by ingestion")
    return checks


def _column_checks(col: str, spec: ColumnSpec, v: str, t: str) -> list[_Check]:
    checks: list[_Check] = []
    if spec.required and spec.default is None:
        checks.append(
            _Check(f"{col}:required", f"{v} IS NULL", quote_literal(f"{col} is empty, breaks rule {col} is required"))
        )
    if spec.type not in ("string", "enum"):
        word = _TYPE_WORDS[spec.type]
        checks.append(
            _Check(
                f"{col}:type",
                f"{v} IS NOT NULL AND {t} IS NULL",
                f"concat({quote_literal(col + '=')}, {_shown(v)}, {quote_literal(f' breaks rule {col} is {word}')})",
            )
        )
    return checks + _rule_checks(col, spec, v, t)


def compile_checks(
    source: SourceSpec, names: list[str], *, source_tz: str, instants: Mapping[int, bool] | None = None
) -> CheckPlan:
    """Match delivered columns to the contract and compile every rule; RejectFile when the columns cannot load.

    A file is refused whole when two delivered names that a contract column or pattern claims are the
    same after trimming and lower-casing (which one is meant is unknowable) or when a required
    contract column is missing. Two extra columns of the same name (e.g. the blank headers of a
    spreadsheet's trailing empty columns) are extra columns like any other: recorded, never fatal.
    `instants` (StagedFile.instants) names the delivered columns that `src` also holds as typed
    timestamps `i<index>`: a contract timestamp column delivered so takes its value from there, the
    value its text would parse to (an instant as given, a zone-less time as local time in the source
    zone), without parsing the text. Its text still meets every other rule the same way.
    """
    instants = instants or {}
    normal = [normalise(n) for n in names]
    seen: dict[str, str] = {}
    for raw, norm in zip(names, normal, strict=True):
        if norm in seen and (norm in source.columns or source.pattern_for(norm)):
            raise RejectFile(
                "duplicate_columns", f"has columns {seen[norm]!r} and {raw!r}, the same name ignoring case"
            )
        seen[norm] = raw
    index = {norm: i for i, norm in enumerate(normal)}
    missing_required = [c for c, s in source.columns.items() if s.required and c not in index]
    if missing_required:
        raise RejectFile("missing_required_columns", f"lacks required column(s) {', '.join(missing_required)}")
    missing_optional = [c for c in source.columns if c not in index]
    patterns = [(i, norm) for i, norm in enumerate(normal) if norm not in source.columns and source.pattern_for(norm)]
    pattern_idx = {i for i, _ in patterns}
    extra = [names[i] for i, norm in enumerate(normal) if norm not in source.columns and i not in pattern_idx]

    def value(i: int | None, spec: ColumnSpec) -> str:
        # The trimmed text of a delivered column (NULL when empty or not delivered), default applied.
        text = f"nullif({_trimmed(f'c{i}')}, '')" if i is not None else "CAST(NULL AS VARCHAR)"
        if spec.default is not None:
            default = str(spec.default).lower() if isinstance(spec.default, bool) else str(spec.default)
            text = f"coalesce({text}, {quote_literal(default)})"
        return text

    values, typed, checks = [], [], []
    # The length rule is decided in the first stage, on the raw text, so the raw columns need not be
    # carried further: `_long` is the index of the first over-long column, `_long_bytes` its size.
    long_index = " ".join(f"WHEN strlen(c{i}) > {MAX_VALUE_BYTES} THEN {i}" for i in range(len(names)))
    long_bytes = " ".join(f"WHEN strlen(c{i}) > {MAX_VALUE_BYTES} THEN strlen(c{i})" for i in range(len(names)))
    if names:
        values += [f"CASE {long_index} END AS _long", f"CASE {long_bytes} END AS _long_bytes"]
    for i in range(len(names)):
        checks.append(
            _Check(
                f"{normal[i] or '(unnamed)'}:max_length",
                f"_long = {i}",
                f"concat({quote_literal((normal[i] or '(unnamed)') + ' has ')}, _long_bytes, "
                f"{quote_literal(f' bytes, breaks rule value length <= {MAX_VALUE_BYTES} bytes')})",
            )
        )
    for k, (col, spec) in enumerate(source.columns.items()):
        delivered = index.get(col)
        values.append(f"{value(delivered, spec)} AS v{k}")
        if spec.type == "timestamp" and spec.default is None and delivered in instants:
            # NULL exactly when the text is (a timestamp's text is never empty or spaces).
            values.append(f"i{delivered}")
            typed.append(f"{_typed_instant(f'i{delivered}', instants[delivered], source_tz)} AS t{k}")
        else:
            typed.append(f"{_typed(spec, f'v{k}', source_tz)} AS t{k}")
        checks += _column_checks(col, spec, f"v{k}", f"t{k}")
    pattern_columns = []
    for j, (i, norm) in enumerate(patterns):
        spec = source.pattern_for(norm)
        assert spec is not None
        pattern_columns.append(norm)
        values.append(f"{value(i, spec)} AS w{j}")
        typed.append(f"{_typed(spec, f'w{j}', source_tz)} AS p{j}")
        checks += _column_checks(norm, spec, f"w{j}", f"p{j}")

    outputs = [f"t{k}" for k in range(len(source.columns))] + [f"p{j}" for j in range(len(patterns))]
    rule_case = " ".join(f"WHEN {c.fails} THEN {quote_literal(c.rule)}" for c in checks)
    reason_case = " ".join(f"WHEN {quote_literal(c.rule)} THEN {c.reason}" for c in checks)
    sql = f"""
        WITH n AS (SELECT _rn, {", ".join(values)} FROM src),
        p AS (SELECT *, {", ".join(typed)} FROM n),
        r AS (SELECT *, CASE {rule_case} END AS _rule FROM p)
        SELECT _rn, {", ".join(outputs)}, _rule,
            CASE WHEN _rule IS NOT NULL THEN concat($file, ' row ', _rn, ': ', CASE _rule {reason_case} END) END
                AS _reason
        FROM r
    """
    return CheckPlan(
        sql=sql,
        contract_columns=list(source.columns),
        pattern_columns=pattern_columns,
        extra_columns=extra,
        missing_optional_columns=missing_optional,
    )


def naive_utc(moment: datetime) -> datetime:
    """A datetime as naive UTC (the lake's convention): aware values are converted, naive ones taken as UTC."""
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)
