"""Validate pandas frames against GX suites and return plain, serialisable outcomes.

Speed. GX's pandas engine evaluates value ranges row by row in Python and hashes the whole frame
per batch. Measured on this project's shared 2-core machine (other jobs running) with the
36-expectation crm_activities suite: GX on the whole frame took 10-19 s at 1 M rows and 59 s at
5 M rows (several GB of memory), so a 20 M-row file would take minutes and most of the memory.
This module's single-frame path took 2.2 s at 200 k rows (whole-frame GX), 1.4 s at 1 M, 3.5 s at
5 M and 15 s at 20 M rows (`python -m tests.quality.bench_validate`).

`validate` (one frame): up to `full_gx_max_rows` rows GX validates the whole frame. Above it:

- GX validates a deterministic systematic sample: every k-th row from the first, k chosen so at
  most `sample_rows` rows remain. Systematic rather than the first rows because delivered files
  are usually sorted by time or id, so the head of a file is not like its tail.
- Every expectation whose result a sample could get wrong (a single null, duplicate, out-of-set or
  out-of-range value among millions) is then recomputed exactly over all rows with vectorised
  pandas/Arrow operations, with GX's semantics (`mostly`, nulls outside the domain of value checks,
  every copy of a duplicate counted, a pandas `row_condition` applied with `DataFrame.query` as GX
  does). Schema expectations (column set, column types) are exact on any sample, since a sample
  has the frame's columns and dtypes.
- Expectations with no exact implementation here keep their sample result;
  `ValidationOutcome.sample_description` names them, and each `CheckResult.basis` says where its
  result came from.

`validate_batches` (the files one run loaded into a lake table): a GX run costs about 0.2 s before
it reads a row (building its metric graph for ~35 expectations), and the single-frame path paid
that plus GX on up to 200,000 rows for every file: 2 s a file, 158 s for the 80 files of the L
benchmark. Here batches that share a suite object and a schema are validated together:

- one GX run on a systematic sample of their rows together (`shared_sample_rows`), kept for the
  schema expectations and for any expectation GX could not evaluate (an error is a schema fact);
- every other expectation computed exactly over every row of every batch, in one vectorised pass
  over the batches together, counted per batch (duplicates only within a batch); a batch with an
  offending value is recomputed alone, so its counts and quoted examples are those of the file;
- expectations with no exact implementation judged by `validate` on each batch alone.

Every batch keeps its own outcome, so a failure is still attributed to the file it is in.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

if TYPE_CHECKING:  # GX is imported on first use (quality._gx): it pulls in pyspark, seconds of start-up.
    import great_expectations as gx

# Whole-frame GX up to here (a few seconds); above it, the sample + exact aggregates path, which
# is as exact for every expectation it implements and much faster, so the bar is set low.
FULL_GX_MAX_ROWS = 200_000
# Rows GX sees on the sampled path (about 1 s); only sample-only expectations depend on it, and
# 100,000 rows estimate a share to within half a percentage point.
SAMPLE_ROWS = 100_000
# Rows of the one GX run that several batches validated together share (`validate_batches`). Only
# its schema results (exact on any sample) and evaluation errors are kept, every other result is
# recomputed exactly per batch, so it is kept small. Measured with the crm_activities suite: a GX
# run costs 0.18 s on 1 row (building the metric graph), 0.25 s on 2,000 rows and 0.6 s on 10,000
# (row-by-row value ranges in Python).
SHARED_SAMPLE_ROWS = 2_000
# How many offending values a summary quotes.
EXAMPLES = 5

# Where a check's result came from.
BASIS_GX = "gx"  # GX on the whole frame
BASIS_SCHEMA = "gx-schema"  # GX on the sample, for a schema expectation (exact on any sample)
BASIS_EXACT = "exact"  # recomputed over every row, vectorised
BASIS_SAMPLE = "gx-sample"  # GX on the sample only

SCHEMA_EXPECTATIONS = frozenset(
    {
        "expect_table_columns_to_match_set",
        "expect_table_columns_to_match_ordered_list",
        "expect_column_to_exist",
        "expect_column_type_to_be",
        "expect_column_arrow_type_to_be",
        "expect_column_values_to_be_of_type",
        "expect_column_values_to_be_in_type_list",
        "expect_table_column_count_to_equal",
        "expect_table_column_count_to_be_between",
    }
)


class Failure(NamedTuple):
    """One failed expectation: its type, its column(s), what was observed, and how much it matters."""

    expectation_type: str
    column: str | None
    summary: str
    severity: str  # "critical" blocks; "warning" and "info" are reported only


@dataclass(frozen=True)
class CheckResult:
    """The result of one expectation, as the data docs show it."""

    expectation_type: str
    column: str | None
    success: bool
    severity: str
    expected: str  # the expectation's arguments, e.g. "min_value=0, max_value=10"
    observed: str  # what the data showed, e.g. "3 of 1,000 values unexpected (0.30%), e.g. ['x']"
    basis: str  # BASIS_GX, BASIS_SCHEMA, BASIS_EXACT or BASIS_SAMPLE
    notes: str = ""


@dataclass(frozen=True)
class ValidationOutcome:
    """What validating one frame against one suite found.

    `success` is False when a critical expectation failed; failures of warning-severity
    expectations are listed in `failed` but do not fail the outcome.
    """

    suite_name: str
    success: bool
    evaluated: int
    failed: list[Failure]
    statistics: dict[str, Any]
    elapsed_seconds: float
    rows: int
    sampled: bool
    sample_description: str | None
    checks: tuple[CheckResult, ...] = field(default=())

    @property
    def blocking(self) -> list[Failure]:
        """The failures that make `success` False (critical severity)."""
        return [f for f in self.failed if f.severity == "critical"]

    def summary(self) -> str:
        """One line for a log or a check's description."""
        state = "passed" if self.success else "FAILED"
        text = f"{self.suite_name}: {state}, {self.evaluated} expectations on {self.rows:,} rows"
        if self.failed:
            text += "; " + "; ".join(f"{f.expectation_type}({f.column}): {f.summary}" for f in self.failed[:5])
        return text


def lake_frame(source: Path | str | pa.Table) -> pd.DataFrame:
    """A pandas frame of lake rows with Arrow-backed columns (`pd.ArrowDtype`), the form the suites expect.

    Arrow-backed columns keep the lake schema's types exactly (an int64 column with nulls stays
    int64, a decimal stays decimal128(20, 4)) and cost no copy, where pandas' default conversion
    turns nullable integers into float64 and decimals into Python objects.
    """
    table = source if isinstance(source, pa.Table) else pq.read_table(source)
    return table.to_pandas(types_mapper=pd.ArrowDtype)


def validate(
    frame: pd.DataFrame,
    suite: gx.ExpectationSuite,
    *,
    full_gx_max_rows: int = FULL_GX_MAX_ROWS,
    sample_rows: int = SAMPLE_ROWS,
) -> ValidationOutcome:
    """Validate `frame` against `suite` with an ephemeral GX context; the module docstring explains sampling."""
    started = time.perf_counter()
    rows = len(frame)
    sampled = rows > full_gx_max_rows
    step = max(1, math.ceil(rows / sample_rows)) if sampled else 1
    batch_frame = frame.iloc[::step] if sampled else frame
    result = _run_gx(batch_frame, suite)
    checks = [_check_from_gx(r, BASIS_GX) for r in result.results]
    description = None
    if sampled:
        checks = [_exact_or_sample(r, frame) for r in result.results]
        description = _describe_sample(checks, rows=rows, sampled_rows=len(batch_frame), step=step)
    return _outcome(suite.name, checks, rows, time.perf_counter() - started, sampled, description)


class SharedSampleRun(NamedTuple):
    """A GX run on a systematic sample of batches validated together, kept for reuse (`validate_batches`)."""

    result: Any  # GX's suite validation result on the sample
    # The suite it ran. When the run is keyed by that suite's identity (`_run_key`), holding it here
    # keeps its id from being reused by another suite while the run is kept.
    suite: Any
    step: int  # every `step`-th row of the batches together, from the first
    total: int  # rows of those batches
    batches: int  # how many batches


def validate_batches(
    batches: Mapping[str, tuple[pd.DataFrame, gx.ExpectationSuite]],
    *,
    shared_sample_rows: int = SHARED_SAMPLE_ROWS,
    full_gx_max_rows: int = FULL_GX_MAX_ROWS,
    sample_rows: int = SAMPLE_ROWS,
    shared_runs: dict[tuple, SharedSampleRun] | None = None,
) -> dict[str, ValidationOutcome]:
    """Validate several batches (e.g. the files of one lake table loaded in one run), one outcome per batch.

    Batches with the same columns, dtypes and suite object (pass one object for batches that share
    a suite; equal copies are validated apart) share one GX run on a systematic sample of
    their rows together (at most `shared_sample_rows`), and every expectation with an exact
    implementation is computed over all rows of every batch, grouped by batch (see the module
    docstring). Each outcome's `elapsed_seconds` is its row share of the shared work plus its own,
    so the outcomes' times add up to the time spent. Expectations with no exact implementation are
    judged per batch by `validate` (whole frame up to `full_gx_max_rows`, else a `sample_rows` sample).

    `shared_runs`, when given, keeps each group's GX run for the next call with the same dict: a caller
    that validates one table's files a few at a time (to bound memory) pays for GX once per suite and
    schema instead of once per call. Reusing it is exact, since only schema results and evaluation
    errors are kept from it, and those are the same on any sample of batches with that schema and suite.
    A later call may pass a new suite that differs only in its datetime arguments (the same contract
    suite built at a later `now`, as when each group is judged at the moment it is validated): the run
    is reused for it too, and its exact checks take their arguments from the suite passed, never from
    the kept run's.
    """
    groups: dict[tuple, list[str]] = {}
    for name, (frame, suite) in batches.items():
        groups.setdefault(_group_key(frame, suite), []).append(name)
    outcomes: dict[str, ValidationOutcome] = {}
    runs = {} if shared_runs is None else shared_runs
    for key, names in groups.items():
        group = _validate_group(
            names,
            [batches[n] for n in names],
            shared_sample_rows=shared_sample_rows,
            full_gx_max_rows=full_gx_max_rows,
            sample_rows=sample_rows,
            runs=runs,
            dtypes=key[1],
        )
        outcomes.update(zip(names, group, strict=True))
    return {name: outcomes[name] for name in batches}


def _group_key(frame: pd.DataFrame, suite: gx.ExpectationSuite) -> tuple[int, tuple[tuple[str, str], ...]]:
    """Batches with equal keys have the same suite object and the same columns and dtypes, so one GX run serves
    them all. The suite is compared by identity: comparing expectations costs GX about 2 ms a batch, and
    equal suites that are different objects are merely validated apart."""
    return id(suite), tuple((str(name), str(dtype)) for name, dtype in frame.dtypes.items())


# Arguments GX adds to a result's copy of an expectation (which batch it ran on), not part of the suite.
_RUN_ARGUMENTS = frozenset({"batch_id", "result_format", "catch_exceptions"})


def _argument_shape(config: Any) -> tuple[str, str]:
    """An expectation's type and arguments with every datetime argument blanked (see `_run_key`)."""
    arguments = dict(config.kwargs).items()
    kwargs = {k: "<datetime>" if isinstance(v, datetime) else v for k, v in arguments if k not in _RUN_ARGUMENTS}
    return config.type, repr(sorted(kwargs.items()))


def _configs_by_shape(suite: gx.ExpectationSuite) -> dict[tuple[str, str], Any] | None:
    """Each expectation's configuration by its `_argument_shape`; None when two of them share a shape."""
    configs = {_argument_shape(e.configuration): e.configuration for e in suite.expectations}
    return configs if len(configs) == len(suite.expectations) else None


def _run_key(
    suite: gx.ExpectationSuite, configs: dict[tuple[str, str], Any] | None, dtypes: tuple[tuple[str, str], ...]
) -> tuple:
    """The key a shared GX run is kept under: one run serves the suite and every suite equal to it but for
    its datetime arguments (e.g. "not in the future" judged at another moment), on the same columns and
    dtypes. Such arguments never decide a schema result or whether GX can evaluate an expectation, which
    is all that is kept from the run. A suite with two expectations of one shape (`configs` None) is
    keyed by identity."""
    if configs is None:
        return "identity", id(suite), dtypes
    return "shape", suite.name, tuple(sorted(configs)), dtypes


def _validate_group(
    names: list[str],
    pairs: list[tuple[pd.DataFrame, gx.ExpectationSuite]],
    *,
    shared_sample_rows: int,
    full_gx_max_rows: int,
    sample_rows: int,
    runs: dict[tuple, SharedSampleRun],
    dtypes: tuple[tuple[str, str], ...],
) -> list[ValidationOutcome]:
    started = time.perf_counter()
    suite = pairs[0][1]
    batches = _Batches([frame for frame, _ in pairs])
    # GX: one run on every `step`-th row of the batches together, from the first (or the run an
    # earlier call made for the same suite and schema). Its results are kept for schema expectations
    # (the batches share their schema) and for expectations GX could not evaluate (an error is a
    # schema fact too); everything else is recomputed per batch.
    configs = _configs_by_shape(suite)
    key = _run_key(suite, configs, dtypes)
    run = runs.get(key)
    reused = run is not None
    if run is None:
        step = max(1, math.ceil(batches.total / shared_sample_rows))
        run = runs[key] = SharedSampleRun(
            _run_gx(batches.sample(step), suite), suite, step, batches.total, len(pairs)
        )
    result = run.result
    # A run kept from an equal suite built at another moment (keyed by shape, so `configs` is there):
    # each result's arguments are this suite's.
    own_configs = None if run.suite is suite else configs
    per_batch: list[list[CheckResult | None]] = [[] for _ in names]
    pending: list[int] = []  # result positions that only GX can judge, batch by batch
    for position, r in enumerate(result.results):
        config = r.expectation_config if own_configs is None else own_configs[_argument_shape(r.expectation_config)]
        kind, column, severity, kwargs = _config_parts(config)
        exact = _exact_function(kind, kwargs)
        if exact is None or _exception_message(r.exception_info) is not None:
            if kind in SCHEMA_EXPECTATIONS or _exception_message(r.exception_info) is not None:
                shared = _check_from_gx(r, BASIS_SAMPLE, config)
                for checks in per_batch:
                    checks.append(shared)
            else:
                pending.append(position)
                for checks in per_batch:
                    checks.append(None)
            continue
        base = _check_from_gx(r, BASIS_EXACT, config)
        for checks, (success, found) in zip(per_batch, _exact_per_batch(kind, kwargs, exact, batches), strict=True):
            checks.append(
                CheckResult(
                    kind, column, success, severity, base.expected, _observed_text(found, kind), BASIS_EXACT, base.notes
                )
            )
    shared_seconds = time.perf_counter() - started
    in_sample = np.zeros(len(pairs), dtype=np.int64) if reused else batches.rows_in_sample(run.step)
    outcomes = []
    for index, (frame, _) in enumerate(pairs):
        own_started = time.perf_counter()
        checks = per_batch[index]
        if pending:
            alone = validate(frame, suite, full_gx_max_rows=full_gx_max_rows, sample_rows=sample_rows)
            for position in pending:
                checks[position] = alone.checks[position]
        final = [c for c in checks if c is not None]
        rows = len(frame)
        share = rows / batches.total if batches.total else 1 / len(pairs)
        elapsed = shared_seconds * share + time.perf_counter() - own_started
        description = _describe_shared_sample(final, rows=rows, in_sample=int(in_sample[index]), run=run, reused=reused)
        outcomes.append(_outcome(suite.name, final, rows, elapsed, int(in_sample[index]) < rows, description))
    return outcomes


def _run_gx(frame: pd.DataFrame, suite: gx.ExpectationSuite) -> Any:
    """GX's result of `suite` on `frame`, through the process-wide ephemeral context (imported on first use)."""
    from quality._gx import run_lock, whole_frame_batch_definition

    with run_lock:
        batch = whole_frame_batch_definition().get_batch(batch_parameters={"dataframe": frame})
        return batch.validate(suite, result_format="SUMMARY")


def outcome_from_gx_result(result: Any, *, rows: int | None = None, elapsed_seconds: float = 0.0) -> ValidationOutcome:
    """A ValidationOutcome from a GX ExpectationSuiteValidationResult (e.g. one a notebook produced)."""
    checks = [_check_from_gx(r, BASIS_GX) for r in result.results]
    suite_name = str(getattr(result, "suite_name", None) or "suite")
    row_count = rows if rows is not None else _rows_from_results(result.results)
    return _outcome(suite_name, checks, row_count, elapsed_seconds, False, None)


def _outcome(
    suite_name: str,
    checks: list[CheckResult],
    rows: int,
    elapsed: float,
    sampled: bool,
    description: str | None,
) -> ValidationOutcome:
    failed = [Failure(c.expectation_type, c.column, c.observed, c.severity) for c in checks if not c.success]
    blocking = [f for f in failed if f.severity == "critical"]
    evaluated = len(checks)
    statistics = {
        "evaluated_expectations": evaluated,
        "successful_expectations": evaluated - len(failed),
        "unsuccessful_expectations": len(failed),
        "blocking_failures": len(blocking),
        "success_percent": 100.0 * (evaluated - len(failed)) / evaluated if evaluated else 100.0,
        "rows": rows,
    }
    return ValidationOutcome(
        suite_name=suite_name,
        success=not blocking,
        evaluated=evaluated,
        failed=failed,
        statistics=statistics,
        elapsed_seconds=elapsed,
        rows=rows,
        sampled=sampled,
        sample_description=description,
        checks=tuple(checks),
    )


def _rows_from_results(results: Sequence[Any]) -> int:
    for r in results:
        count = (r.result or {}).get("element_count")
        if count is not None:
            return int(count)
    return 0


# ---- reading GX results ----------------------------------------------------------------------

_NOT_ARGUMENTS = {"column", "column_list", "batch_id", "notes", "meta", "result_format", "catch_exceptions"}


def _config_parts(config: Any) -> tuple[str, str | None, str, dict[str, Any]]:
    kwargs = dict(config.kwargs)
    column = kwargs.get("column")
    if column is None and kwargs.get("column_list"):
        column = ", ".join(kwargs["column_list"])
    severity = getattr(config, "severity", "critical")
    severity = str(getattr(severity, "value", severity))
    return config.type, column, severity, kwargs


def _expected_text(kwargs: dict[str, Any]) -> str:
    parts = []
    for key, value in kwargs.items():
        if key in _NOT_ARGUMENTS or value is None or (key == "mostly" and value == 1):
            continue
        parts.append(f"{key}={_short(value)}")
    return ", ".join(parts)


def _short(value: Any, limit: int = 160) -> str:
    if isinstance(value, list | tuple | set | frozenset) and not isinstance(value, str):
        text = "[" + ", ".join(_short(v, 40) for v in list(value)[:12]) + (", ..." if len(value) > 12 else "") + "]"
    else:
        text = str(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _observed_text(result: dict[str, Any], kind: str = "") -> str:
    """Render a GX result dict (or the same shape from the exact path) as one human sentence."""
    if "unexpected_count" in result and result.get("unexpected_count") is not None:
        bad = int(result["unexpected_count"])
        total = result.get("element_count") or 0
        if kind == "expect_column_values_to_not_be_null":
            share = 100.0 * bad / total if total else 0.0
            return f"{bad:,} of {total:,} rows null ({share:.2f}%)"
        nonnull = total - int(result.get("missing_count") or 0) if "missing_count" in result else total
        share = result.get("unexpected_percent")
        share_text = f" ({share:.2f}%)" if share is not None else ""
        text = f"{bad:,} of {nonnull:,} values unexpected{share_text}"
        examples = result.get("partial_unexpected_list") or []
        if examples:
            text += f", e.g. {_short(_distinct(examples)[:EXAMPLES])}"
        return text
    if "observed_value" in result:
        text = f"observed {_short(result['observed_value'])}"
        mismatched = (result.get("details") or {}).get("mismatched")
        if mismatched:
            text += f"; mismatched {_short(mismatched)}"
        return text
    return _short(result) if result else ""


def _distinct(values: Sequence[Any]) -> list[Any]:
    seen: list[Any] = []
    for v in values:
        if v not in seen:
            seen.append(v)
    return seen


def _exception_message(info: dict[str, Any] | None) -> str | None:
    """The message of an exception GX caught while evaluating an expectation, if any.

    GX reports it either at the top level or, when a metric failed to resolve, keyed by metric id.
    """
    if not info:
        return None
    if info.get("raised_exception"):
        return str(info.get("exception_message"))
    nested = [
        str(v.get("exception_message")) for v in info.values() if isinstance(v, dict) and v.get("raised_exception")
    ]
    return "; ".join(dict.fromkeys(nested)) if nested else None


def _check_from_gx(r: Any, basis: str, config: Any = None) -> CheckResult:
    """A GX result as a CheckResult; `config` (default: the result's own) is the expectation it stands for."""
    config = r.expectation_config if config is None else config
    kind, column, severity, kwargs = _config_parts(config)
    error = _exception_message(r.exception_info)
    observed = f"error: {error}" if error is not None else _observed_text(r.result or {}, kind)
    notes = kwargs.get("notes") or getattr(config, "notes", None) or ""
    basis = BASIS_SCHEMA if basis == BASIS_SAMPLE and kind in SCHEMA_EXPECTATIONS else basis
    return CheckResult(kind, column, bool(r.success), severity, _expected_text(kwargs), observed, basis, str(notes))


# ---- exact aggregates over the whole frame (sampled path) -------------------------------------


def _exact_or_sample(r: Any, frame: pd.DataFrame) -> CheckResult:
    kind, column, severity, kwargs = _config_parts(r.expectation_config)
    exact = _exact_function(kind, kwargs)
    # A raised exception (e.g. a missing column) is a schema fact, true of every sample.
    if exact is None or _exception_message(r.exception_info) is not None:
        return _check_from_gx(r, BASIS_SAMPLE)
    success, result = exact(frame, kwargs)
    base = _check_from_gx(r, BASIS_EXACT)
    return CheckResult(
        kind, column, success, severity, base.expected, _observed_text(result, kind), BASIS_EXACT, base.notes
    )


ExactCheck = Callable[[pd.DataFrame, dict[str, Any]], tuple[bool, dict[str, Any]]]


def _exact_function(kind: str, kwargs: dict[str, Any]) -> ExactCheck | None:
    """The exact implementation of an expectation, or None when only GX can judge it.

    A pandas query `row_condition` (a pass-through filter, or a string with the pandas condition
    parser) selects rows the way GX's pandas engine does, with `DataFrame.query`, before the exact
    check runs on them. Other conditions are left to GX.
    """
    exact = _EXACT.get(kind)
    condition = kwargs.get("row_condition")
    if exact is None or not condition:
        return exact
    if isinstance(condition, dict) and condition.get("type") == "pass_through":
        query = str(condition["pass_through_filter"])
    elif isinstance(condition, str) and kwargs.get("condition_parser") == "pandas":
        query = condition
    else:
        return None

    def conditioned(frame: pd.DataFrame, arguments: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
        return exact(frame.query(query, parser="pandas"), arguments)

    return conditioned


class _Batches:
    """Several batches as one frame, each batch a contiguous run of rows, for checks grouped by batch."""

    def __init__(self, frames: list[pd.DataFrame]) -> None:
        self.frames = frames
        self.lengths = np.array([len(f) for f in frames], dtype=np.int64)
        self.ends = np.cumsum(self.lengths)
        self.starts = self.ends - self.lengths
        self.total = int(self.lengths.sum())
        # Arrow-backed columns concatenate as chunked arrays, without copying the values.
        self.combined = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)

    def counts(self, mask: np.ndarray) -> np.ndarray:
        """How many rows of each batch `mask` (one bool per combined row) marks."""
        return np.array(
            [np.count_nonzero(mask[start:end]) for start, end in zip(self.starts, self.ends, strict=True)],
            dtype=np.int64,
        )

    def batch_ids(self) -> np.ndarray:
        """The batch number of every combined row."""
        return np.repeat(np.arange(len(self.frames), dtype=np.int32), self.lengths)

    def sample(self, step: int) -> pd.DataFrame:
        """Every `step`-th row of the combined frame, from the first (taken per batch: cheaper than on chunks)."""
        parts = [frame.iloc[(-start) % step :: step] for frame, start in zip(self.frames, self.starts, strict=True)]
        return parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)

    def rows_in_sample(self, step: int) -> np.ndarray:
        """How many rows of each batch a systematic sample of every `step`-th combined row holds."""
        # Rows 0, step, 2*step, ... of the combined frame; count those in [start, end).
        return -(-self.ends // step) - (-(-self.starts // step))


def _exact_per_batch(
    kind: str, kwargs: dict[str, Any], exact: ExactCheck, batches: _Batches
) -> list[tuple[bool, dict[str, Any]]]:
    """`exact` on every batch: one vectorised pass over all rows grouped by batch where there is one.

    A batch the grouped pass finds an offending value in is recomputed on its own, so its result
    (counts and quoted examples) is exactly what `exact` says for that batch alone.
    """
    grouped = None if kwargs.get("row_condition") else _GROUPED.get(kind)
    if grouped is None:
        return [exact(frame, kwargs) for frame in batches.frames]
    return grouped(batches, kwargs, exact)


def _clean_map_result(total: int, domain: int) -> dict[str, Any]:
    # What _map_result says of a batch without an unexpected value.
    return {
        "element_count": total,
        "missing_count": total - domain,
        "unexpected_count": 0,
        "unexpected_percent": 0.0 if domain else None,
        "partial_unexpected_list": [],
    }


def _per_batch_or_clean(
    batches: _Batches, kwargs: dict[str, Any], exact: ExactCheck, unexpected: np.ndarray, domains: np.ndarray
) -> list[tuple[bool, dict[str, Any]]]:
    # Without an unexpected value a map check passes whatever `mostly` is.
    return [
        exact(frame, kwargs) if unexpected[i] else (True, _clean_map_result(len(frame), int(domains[i])))
        for i, frame in enumerate(batches.frames)
    ]


def _grouped_not_null(
    batches: _Batches, kwargs: dict[str, Any], exact: ExactCheck
) -> list[tuple[bool, dict[str, Any]]]:
    missing = batches.counts(_bool(batches.combined[kwargs["column"]].isna()).to_numpy())
    results = []
    for total, count in zip(batches.lengths.tolist(), missing.tolist(), strict=True):
        result = {
            "element_count": total,
            "unexpected_count": count,
            "unexpected_percent": 100.0 * count / total if total else None,
        }
        results.append((_mostly_success(total, count, kwargs.get("mostly", 1)), result))
    return results


def _grouped_column_map(condition: Callable[[pd.Series, dict[str, Any]], pd.Series]) -> Callable:
    """Grouped version of `_column_map(condition)`: the condition is evaluated once over all batches."""

    def run(batches: _Batches, kwargs: dict[str, Any], exact: ExactCheck) -> list[tuple[bool, dict[str, Any]]]:
        series = batches.combined[kwargs["column"]]
        present = _bool(series.notna()).to_numpy()
        domains = batches.counts(present)
        if condition is _matches:
            # A regex costs about ten times a hash of the value, and the regex columns (file digests,
            # currency codes) hold few distinct values: when every distinct value matches, no row fails.
            distinct = pd.Series(series.dropna().unique(), dtype=series.dtype)
            if bool(_bool(condition(distinct, kwargs)).all()):
                return _per_batch_or_clean(batches, kwargs, exact, np.zeros_like(domains), domains)
        unexpected = present & ~_bool(condition(series, kwargs)).to_numpy()
        return _per_batch_or_clean(batches, kwargs, exact, batches.counts(unexpected), domains)

    return run


def _grouped_uniqueness(batches: _Batches, kwargs: dict[str, Any], exact: ExactCheck) -> list[tuple[bool, dict]]:
    """Duplicates within each batch (a value repeated across batches is no duplicate), as `_unique` and
    `_compound_unique` define them: the same rows are left out, every copy counts."""
    columns = [kwargs["column"]] if "column" in kwargs else list(kwargs["column_list"])
    table = pa.Table.from_pandas(batches.combined[columns], preserve_index=False)
    if len(columns) == 1:
        keep = pc.is_valid(table.column(0))
    else:
        all_missing = pc.is_null(table.column(0))
        for name in columns[1:]:
            all_missing = pc.and_(all_missing, pc.is_null(table.column(name)))
        keep = pc.invert(all_missing)
    ids = batches.batch_ids()
    if len(columns) == 1 and _increasing_within_batches(table.column(0), ids):
        # No sort needed (e.g. _row_number, which ingestion writes 1, 2, 3 ... in every file).
        present = np.asarray(keep.to_numpy(zero_copy_only=False), dtype=bool)
        return _per_batch_or_clean(
            batches, kwargs, exact, np.zeros(len(batches.frames), dtype=np.int64), batches.counts(present)
        )
    table = table.append_column(_BATCH, pa.array(ids)).filter(keep)
    mask, ordered = _duplicate_mask(table, group=_BATCH)
    ids = ordered.column(_BATCH).to_numpy()
    size = len(batches.frames)
    unexpected = np.bincount(ids[mask], minlength=size)
    domains = np.bincount(ids, minlength=size)
    return _per_batch_or_clean(batches, kwargs, exact, unexpected, domains)


def _increasing_within_batches(column: pa.ChunkedArray, ids: np.ndarray) -> bool:
    """True when a numeric or temporal column without nulls strictly increases within every batch: then
    it has no duplicate in any batch, found with one vectorised comparison instead of a sort."""
    kind = column.type
    if column.null_count or not (pa.types.is_integer(kind) or pa.types.is_temporal(kind)):
        return False
    values = column.to_numpy()
    rises = values[1:] > values[:-1]
    rises |= ids[1:] != ids[:-1]  # a new batch may start lower
    return bool(rises.all())


# Name of the batch number column the grouped uniqueness check adds (not a lake column name).
_BATCH = "__nps_link_batch__"


def _mostly_success(domain: int, unexpected: int, mostly: float) -> bool:
    # GX: an empty domain passes; otherwise the expected share must reach `mostly`.
    return domain == 0 or (domain - unexpected) / domain >= mostly


def _map_result(series: pd.Series, unexpected: pd.Series, *, total: int, domain: int) -> dict[str, Any]:
    count = int(unexpected.sum())
    examples = series[unexpected].head(EXAMPLES * 20).drop_duplicates().head(EXAMPLES).tolist() if count else []
    return {
        "element_count": total,
        "missing_count": total - domain,
        "unexpected_count": count,
        "unexpected_percent": 100.0 * count / domain if domain else None,
        "partial_unexpected_list": examples,
    }


def _bool(mask: pd.Series) -> pd.Series:
    """A plain numpy bool mask from a comparison result that may hold NA (Arrow or nullable dtypes)."""
    return mask.fillna(False).astype(bool) if mask.dtype != bool else mask


def _column_map(condition: Callable[[pd.Series, dict[str, Any]], pd.Series]) -> Callable:
    """Exact version of a GX column map expectation: nulls are outside the domain, `mostly` applies."""

    def run(frame: pd.DataFrame, kwargs: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
        series = frame[kwargs["column"]]
        present = _bool(series.notna())
        domain = int(present.sum())
        unexpected = present & ~_bool(condition(series, kwargs))
        result = _map_result(series, unexpected, total=len(series), domain=domain)
        return _mostly_success(domain, result["unexpected_count"], kwargs.get("mostly", 1)), result

    return run


def _not_null(frame: pd.DataFrame, kwargs: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
    series = frame[kwargs["column"]]
    missing = _bool(series.isna())
    count = int(missing.sum())
    total = len(series)
    result = {
        "element_count": total,
        "unexpected_count": count,
        "unexpected_percent": 100.0 * count / total if total else None,
    }
    return _mostly_success(total, count, kwargs.get("mostly", 1)), result


def _in_bounds(series: pd.Series, kwargs: dict[str, Any]) -> pd.Series:
    ok = pd.Series(True, index=series.index)
    low, high = kwargs.get("min_value"), kwargs.get("max_value")
    if low is not None:
        ok &= _bool(series > low if kwargs.get("strict_min") else series >= low)
    if high is not None:
        ok &= _bool(series < high if kwargs.get("strict_max") else series <= high)
    return ok


def _in_set(series: pd.Series, kwargs: dict[str, Any]) -> pd.Series:
    return series.isin(list(kwargs["value_set"]))


def _matches(series: pd.Series, kwargs: dict[str, Any]) -> pd.Series:
    # GX tests `str.contains` (a search, not a full match) on the values as strings.
    strings = series if pd.api.types.is_string_dtype(series.dtype) else series.astype(str)
    return strings.str.contains(kwargs["regex"], regex=True)


def _duplicate_mask(table: pa.Table, *, group: str | None = None) -> tuple[np.ndarray, pa.Table]:
    """Which rows of `table` (sorted by all its columns) repeat another row; every copy is marked.

    Sorting and comparing neighbours is about three times faster than Arrow's hash aggregation on
    millions of distinct strings (0.8 s against 3.5 s for 5 M ids here), and uniqueness checks are
    the costliest part of the exact path. Nulls compare equal to nulls, as in pandas `duplicated`.
    With `group` (a column of batch numbers, ascending in `table`), only rows of the same group can
    repeat each other: the sort is on the other columns alone and stable, so copies within a group
    stay neighbours, and the neighbour comparison includes the group.
    """
    rows = table.num_rows
    if rows < 2:
        return np.zeros(rows, dtype=bool), table
    keys = [(n, "ascending") for n in table.column_names if n != group]
    ordered = table.take(pc.sort_indices(table, sort_keys=keys))
    same = np.ones(rows - 1, dtype=bool)
    for name in ordered.column_names:
        column = ordered.column(name)
        head, tail = column.slice(0, rows - 1), column.slice(1)
        equal = pc.fill_null(pc.equal(head, tail), False)
        both_null = pc.and_(pc.is_null(head), pc.is_null(tail))
        same &= pc.or_(equal, both_null).to_numpy(zero_copy_only=False)
    mask = np.zeros(rows, dtype=bool)
    mask[1:] |= same
    mask[:-1] |= same
    return mask, ordered


def _uniqueness_result(table: pa.Table, total: int, mostly: float) -> tuple[bool, dict[str, Any]]:
    mask, ordered = _duplicate_mask(table)
    count = int(mask.sum())
    domain = table.num_rows
    repeated = ordered.filter(pa.array(mask)).slice(0, EXAMPLES * 20).to_pylist()
    examples = _distinct([row if len(row) > 1 else next(iter(row.values())) for row in repeated])[:EXAMPLES]
    result = {
        "element_count": total,
        "missing_count": total - domain,
        "unexpected_count": count,
        "unexpected_percent": 100.0 * count / domain if domain else None,
        "partial_unexpected_list": examples,
    }
    return _mostly_success(domain, count, mostly), result


def _unique(frame: pd.DataFrame, kwargs: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
    # GX counts every copy of a duplicated value as unexpected; nulls are outside the domain.
    table = pa.Table.from_pandas(frame[[kwargs["column"]]], preserve_index=False)
    table = table.filter(pc.is_valid(table.column(0)))
    return _uniqueness_result(table, len(frame), kwargs.get("mostly", 1))


def _compound_unique(frame: pd.DataFrame, kwargs: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
    columns = list(kwargs["column_list"])
    table = pa.Table.from_pandas(frame[columns], preserve_index=False)
    # GX's default ignore_row_if="all_values_are_missing": rows missing every column are left out.
    all_missing = pc.is_null(table.column(0))
    for name in columns[1:]:
        all_missing = pc.and_(all_missing, pc.is_null(table.column(name)))
    table = table.filter(pc.invert(all_missing))
    return _uniqueness_result(table, len(frame), kwargs.get("mostly", 1))


def _aggregate(statistic: Callable[[pd.Series], Any]) -> Callable:
    """Exact version of a GX column aggregate expectation (observed value within min/max)."""

    def run(frame: pd.DataFrame, kwargs: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
        observed = statistic(frame[kwargs["column"]])
        if observed is None or (not isinstance(observed, str) and pd.isna(observed)):
            return False, {"observed_value": None}
        success = bool(_in_bounds(pd.Series([observed]), kwargs).iloc[0])
        return success, {"observed_value": observed}

    return run


def _row_count(frame: pd.DataFrame, kwargs: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
    observed = len(frame)
    return bool(_in_bounds(pd.Series([observed]), kwargs).iloc[0]), {"observed_value": observed}


_EXACT: dict[str, ExactCheck] = {
    "expect_column_values_to_not_be_null": _not_null,
    "expect_column_values_to_be_in_set": _column_map(_in_set),
    "expect_column_values_to_be_between": _column_map(_in_bounds),
    "expect_column_values_to_match_regex": _column_map(_matches),
    "expect_column_values_to_be_unique": _unique,
    "expect_compound_columns_to_be_unique": _compound_unique,
    "expect_column_max_to_be_between": _aggregate(lambda s: s.max()),
    "expect_column_min_to_be_between": _aggregate(lambda s: s.min()),
    "expect_column_unique_value_count_to_be_between": _aggregate(lambda s: int(s.nunique(dropna=True))),
    "expect_table_row_count_to_be_between": _row_count,
}


def _describe_sample(checks: list[CheckResult], *, rows: int, sampled_rows: int, step: int) -> str:
    exact = sorted({c.expectation_type for c in checks if c.basis == BASIS_EXACT})
    sample_only = [f"{c.expectation_type}({c.column})" for c in checks if c.basis == BASIS_SAMPLE]
    text = (
        f"GX validated a systematic sample of {sampled_rows:,} of {rows:,} rows (1 row in every {step}, from the "
        f"first); recomputed exactly over all rows: {', '.join(exact) or 'none'}; schema checks are exact on "
        f"any sample"
    )
    text += (
        f"; judged on the sample only: {', '.join(sample_only)}" if sample_only else "; none judged on the sample only"
    )
    return text


# Exact checks with a pass over all batches at once (grouped by batch); the others run per batch.
_GROUPED: dict[str, Callable[[_Batches, dict[str, Any], ExactCheck], list[tuple[bool, dict[str, Any]]]]] = {
    "expect_column_values_to_not_be_null": _grouped_not_null,
    "expect_column_values_to_be_in_set": _grouped_column_map(_in_set),
    "expect_column_values_to_be_between": _grouped_column_map(_in_bounds),
    "expect_column_values_to_match_regex": _grouped_column_map(_matches),
    "expect_column_values_to_be_unique": _grouped_uniqueness,
    "expect_compound_columns_to_be_unique": _grouped_uniqueness,
}


def _describe_shared_sample(
    checks: list[CheckResult], *, rows: int, in_sample: int, run: SharedSampleRun, reused: bool
) -> str:
    exact = sorted({c.expectation_type for c in checks if c.basis == BASIS_EXACT})
    by_gx = [c for c in checks if c.basis in (BASIS_SAMPLE, BASIS_GX)]
    sample_only = [f"{c.expectation_type}({c.column})" for c in by_gx if not c.observed.startswith("error: ")]
    errors = [f"{c.expectation_type}({c.column})" for c in by_gx if c.observed.startswith("error: ")]
    every = "every row" if run.step == 1 else f"1 row in every {run.step:,}, from the first"
    if reused:
        where = (f"of the {run.total:,} rows of {run.batches:,} earlier batch(es) with this schema and suite "
                 f"(none of this batch's {rows:,} rows)")
    else:
        where = (f"of the {run.total:,} rows of {run.batches:,} batch(es) validated together ({in_sample:,} of "
                 f"this batch's {rows:,} rows)")
    text = (
        f"GX validated {every} {where} for its schema checks, which are exact on any sample; recomputed exactly "
        f"over all {rows:,} rows of this batch: {', '.join(exact) or 'none'}"
    )
    text += (
        f"; judged by GX on this batch alone: {', '.join(sample_only)}" if sample_only else "; none judged otherwise"
    )
    if errors:
        text += f"; GX could not evaluate (on the batches' sample): {', '.join(errors)}"
    return text
