"""Turn the input contract (`quality.contract`) into Great Expectations suites for lake/raw tables.

A suite is built from a *plan*: the contract-derived list of expectations with placeholders for
what varies per batch (the batch's load time, the optional columns a file did not deliver). The
plan is computed once per process (`functools.cache`); building a suite from it costs about a
millisecond, so every batch gets a fresh suite object that no other caller can have mutated.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache

from quality._gx import ExpectColumnArrowTypeToBe, gx
from quality.contract import LOAD_METADATA_COLUMNS, ColumnSpec, load_contract

E = gx.expectations

# Placeholder in a plan for the batch's load time: "not in the future" means every value <= it.
NOW = object()

# A sha256 hex digest as ingestion writes it into _file_sha256.
SHA256_REGEX = r"^[0-9a-f]{64}$"


@dataclass(frozen=True)
class PlannedExpectation:
    """One expectation of a suite, before the batch-specific values are filled in."""

    kind: type
    kwargs: tuple[tuple[str, object], ...]
    # Null-rate limits only judge columns the file delivered: a missing optional column is allowed
    # by the contract (recorded as schema drift), and an all-null stand-in says nothing about quality.
    skip_if_absent: str | None = None

    def build(self, now: datetime) -> object:
        """Instantiate the GX expectation with `now` in place of the NOW placeholder."""
        # GX reads a tuple column_list as one column name, so tuples go back to lists here.
        return self.kind(**{k: now if v is NOW else list(v) if isinstance(v, tuple) else v for k, v in self.kwargs})


def plan(kind: type, /, *, skip_if_absent: str | None = None, **kwargs: object) -> PlannedExpectation:
    """A PlannedExpectation from keyword arguments (lists become tuples so plans stay hashable)."""
    frozen = tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in kwargs.items())
    return PlannedExpectation(kind=kind, kwargs=frozen, skip_if_absent=skip_if_absent)


def arrow_type_name(spec: ColumnSpec) -> str:
    """The Arrow type name a contract column has in the lake (the form `ExpectColumnArrowTypeToBe` compares)."""
    return str(spec.arrow_type)


_BETWEEN = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(?:<=\s*\w+\s*<=|\.\.)\s*(-?\d+(?:\.\d+)?)\s*$")
_AT_LEAST = re.compile(r"^\s*>=\s*(-?\d+(?:\.\d+)?)\s*$")


def _number(text: str) -> int | float:
    return float(text) if "." in text else int(text)


def rule_expectations(spec: ColumnSpec) -> list[PlannedExpectation]:
    """The expectations that enforce a contract column's `rule:` text.

    Raises ValueError for a rule this module does not understand, so that a rule added to the
    contract cannot go unchecked silently.
    """
    rule = spec.rule
    if rule is None:
        return []
    column = spec.name
    why = f"contract rule: {rule}"
    if rule.strip().lower() == "not in the future":
        # Row-level rather than a max: an empty or all-null batch has no future value (GX fails a
        # max it cannot compute), and a failure counts and quotes the offending values.
        return [plan(E.ExpectColumnValuesToBeBetween, column=column, max_value=NOW, notes=why)]
    if match := _BETWEEN.match(rule):
        low, high = (_number(g) for g in match.groups())
        return [plan(E.ExpectColumnValuesToBeBetween, column=column, min_value=low, max_value=high, notes=why)]
    if match := _AT_LEAST.match(rule):
        return [plan(E.ExpectColumnValuesToBeBetween, column=column, min_value=_number(match.group(1)), notes=why)]
    if rule.strip().upper() == "ISO 4217 CODE":
        return [plan(E.ExpectColumnValuesToMatchRegex, column=column, regex=r"^[A-Z]{3}$", notes=why)]
    raise ValueError(f"contract rule {rule!r} of column {column!r} has no expectation; add one in {__name__}")


def column_expectations(spec: ColumnSpec) -> list[PlannedExpectation]:
    """Type, required, enum and rule expectations of one contract column."""
    planned = [plan(ExpectColumnArrowTypeToBe, column=spec.name, type_=arrow_type_name(spec))]
    if spec.required:
        planned.append(plan(E.ExpectColumnValuesToNotBeNull, column=spec.name, notes="contract: required"))
    if spec.values:
        planned.append(
            plan(E.ExpectColumnValuesToBeInSet, column=spec.name, value_set=list(spec.values), notes="contract: enum")
        )
    planned += rule_expectations(spec)
    return planned


def load_metadata_expectations(*, row_number_unique: bool) -> list[PlannedExpectation]:
    """Expectations on the load metadata columns ingestion adds to every raw table.

    A batch is the rows of one delivered file, so the file columns hold one value each; rows are
    numbered from 1; nothing can have been loaded after the batch's load time.
    """
    planned = [plan(ExpectColumnArrowTypeToBe, column=n, type_=str(t)) for n, t in LOAD_METADATA_COLUMNS.items()]
    planned += [
        plan(E.ExpectColumnValuesToNotBeNull, column=n, notes="load metadata is always set")
        for n in LOAD_METADATA_COLUMNS
    ]
    for column in ("_source_file", "_file_sha256", "_delivery_seq"):
        planned.append(
            plan(
                E.ExpectColumnUniqueValueCountToBeBetween,
                column=column,
                min_value=0,  # an empty delivered file yields a batch without rows
                max_value=1,
                notes="a batch is one delivered file",
            )
        )
    planned.append(plan(E.ExpectColumnValuesToMatchRegex, column="_file_sha256", regex=SHA256_REGEX))
    planned.append(plan(E.ExpectColumnValuesToBeBetween, column="_row_number", min_value=1))
    if row_number_unique:
        planned.append(plan(E.ExpectColumnValuesToBeUnique, column="_row_number", notes="one lake row per file row"))
    planned.append(
        plan(E.ExpectColumnValuesToBeBetween, column="_loaded_at", max_value=NOW, notes="not after the load")
    )
    return planned


def null_rate_expectations(min_non_null_share: Mapping[str, float]) -> list[PlannedExpectation]:
    """Warning-level limits on the share of nulls in delivered optional columns (GX `mostly`)."""
    return [
        plan(
            E.ExpectColumnValuesToNotBeNull,
            column=column,
            mostly=share,
            severity="warning",
            notes=f"at least {share:.0%} filled when the column is delivered",
            skip_if_absent=column,
        )
        for column, share in sorted(min_non_null_share.items())
    ]


@cache
def contract_plan(
    source: str,
    min_non_null_share: tuple[tuple[str, float], ...] = (),
    extra: tuple[PlannedExpectation, ...] = (),
) -> tuple[PlannedExpectation, ...]:
    """The full plan for lake/raw/<source>: columns, types, required, enums, rules, key, metadata, null rates."""
    spec = load_contract().sources[source]
    unknown = {c for c, _ in min_non_null_share} - set(spec.columns)
    if unknown:
        raise ValueError(f"null-rate limits for columns not in the {source} contract: {sorted(unknown)}")
    lake_columns = spec.lake_schema().names
    planned = [plan(E.ExpectTableColumnsToMatchSet, column_set=lake_columns, exact_match=True)]
    for column in spec.columns.values():
        planned += column_expectations(column)
    if spec.version_column:
        # Several versions of a key in one file load, each with its own version (ingestion quarantines the rest).
        planned.append(plan(E.ExpectCompoundColumnsToBeUnique, column_list=[spec.key, spec.version_column],
                            notes="contract key and its version, unique within one file"))
    else:
        planned.append(plan(E.ExpectColumnValuesToBeUnique, column=spec.key,
                            notes="contract key, unique within one file"))
    planned += load_metadata_expectations(row_number_unique=True)
    planned += null_rate_expectations(dict(min_non_null_share))
    planned += extra
    return tuple(planned)


def naive_utc(now: datetime) -> datetime:
    """`now` as a naive UTC datetime, the form every lake timestamp has (docs/architecture.md)."""
    return now.astimezone(UTC).replace(tzinfo=None) if now.tzinfo is not None else now


def build_suite(
    name: str, planned: Iterable[PlannedExpectation], *, now: datetime, absent_columns: Collection[str] = ()
) -> gx.ExpectationSuite:
    """A fresh GX ExpectationSuite from a plan, for a batch loaded at `now` (naive UTC or aware)."""
    moment = naive_utc(now)
    absent = set(absent_columns)
    expectations = [p.build(moment) for p in planned if p.skip_if_absent not in absent]
    return gx.ExpectationSuite(name=name, expectations=expectations)


def build_contract_suite(
    source: str,
    *,
    now: datetime,
    absent_columns: Collection[str] = (),
    min_non_null_share: Mapping[str, float] | None = None,
    extra: tuple[PlannedExpectation, ...] = (),
) -> gx.ExpectationSuite:
    """The suite of one contract source: `contract_plan` built for a batch loaded at `now`."""
    limits = tuple(sorted((min_non_null_share or {}).items()))
    return build_suite(source, contract_plan(source, limits, extra), now=now, absent_columns=absent_columns)
