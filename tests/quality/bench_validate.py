"""Benchmark of `quality.validate` on large crm_activities batches (not collected by pytest).

Run: `.venv/bin/python -m tests.quality.bench_validate [--no-whole-frame] 1000000 5000000 20000000`. For each size it
times GX on the whole frame (sizes up to 5 M only: beyond that GX needs most of the machine's
memory) and the default path (whole frame up to 200 k rows, sample + exact aggregates above).

`--files N`: instead, split each size into N files (as one run delivers them) and time `validate`
per file (what ingestion did before) against `validate_batches` on all N (what it does now).
"""

from __future__ import annotations

import sys
import time
from datetime import datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from orchestration.lib.lake import lake_schema
from quality.suites import suite_for
from quality.validate import lake_frame, validate, validate_batches

LOADED_AT = datetime(2025, 6, 1)


def activities_table(rows: int, seed: int = 0) -> pa.Table:
    """A valid crm_activities lake batch of `rows` rows with realistic cardinalities and null rates."""
    rng = np.random.default_rng(seed)

    def ids(prefix: str, values: np.ndarray) -> pa.Array:
        return pc.binary_join_element_wise(prefix, pc.cast(pa.array(values), pa.string()), "")

    rep = ids("R", rng.integers(0, 500, rows))
    rep = pc.if_else(pa.array(rng.random(rows) < 0.1), pa.scalar(None, pa.string()), rep)
    types = pa.array(["call", "email", "meeting", "visit", "chat", "other"])
    directions = pa.array(["outbound", "inbound"])
    minutes = rng.random(rows) * 60
    columns = {
        "activity_id": ids("A", np.arange(rows)),
        "customer_id": ids("C", rng.integers(0, 200_000, rows)),
        "rep_id": rep,
        "activity_type": types.take(pa.array(rng.integers(0, 6, rows))),
        "direction": directions.take(pa.array(rng.integers(0, 2, rows))),
        "occurred_at": pa.array(
            (np.datetime64("2023-01-01") + rng.integers(0, 60 * 24 * 800, rows).astype("timedelta64[m]")).astype(
                "datetime64[us]"
            ),
            pa.timestamp("us"),
        ),
        "duration_minutes": pa.array(np.where(rng.random(rows) < 0.3, np.nan, minutes), from_pandas=True),
        "_source_file": pa.array(np.full(rows, "crm_activities/big.csv", dtype=object), pa.string()),
        "_file_sha256": pa.array(np.full(rows, "f" * 64, dtype=object), pa.string()),
        "_row_number": pa.array(np.arange(1, rows + 1)),
        "_delivery_seq": pa.array(np.full(rows, 7)),
        "_loaded_at": pa.array(np.full(rows, np.datetime64(LOADED_AT, "us"))),
    }
    return pa.Table.from_pydict(columns, schema=lake_schema("crm_activities"))


def main(sizes: list[int], *, whole_frame: bool = True) -> None:
    """Print the timings of each size (GX on the whole frame only when `whole_frame` and <= 5 M rows)."""
    suite = suite_for("crm_activities", now=LOADED_AT)
    for rows in sizes:
        frame = lake_frame(activities_table(rows))
        if whole_frame and rows <= 5_000_000:
            started = time.perf_counter()
            full = validate(frame, suite, full_gx_max_rows=rows)
            print(
                f"{rows:>11,} rows  GX whole frame      {time.perf_counter() - started:6.1f} s  success={full.success}"
            )
        started = time.perf_counter()
        outcome = validate(frame, suite)
        print(
            f"{rows:>11,} rows  default path        {time.perf_counter() - started:6.1f} s  "
            f"success={outcome.success} sampled={outcome.sampled}"
        )
        del frame


def main_files(sizes: list[int], files: int) -> None:
    """Print, for each size split into `files` files, the time of one `validate` per file and of `validate_batches`."""
    suite = suite_for("crm_activities", now=LOADED_AT)
    for rows in sizes:
        per_file = rows // files
        frames = {f"file {i}": lake_frame(activities_table(per_file, seed=i)) for i in range(files)}
        started = time.perf_counter()
        alone = [validate(frame, suite) for frame in frames.values()]
        print(
            f"{rows:>11,} rows in {files} files  validate per file   {time.perf_counter() - started:6.1f} s  "
            f"success={all(o.success for o in alone)}"
        )
        started = time.perf_counter()
        together = validate_batches({name: (frame, suite) for name, frame in frames.items()})
        print(
            f"{rows:>11,} rows in {files} files  validate_batches    {time.perf_counter() - started:6.1f} s  "
            f"success={all(o.success for o in together.values())}"
        )
        del frames


if __name__ == "__main__":
    argv = sys.argv[1:]
    files = int(argv[argv.index("--files") + 1]) if "--files" in argv else None
    if files is not None:
        del argv[argv.index("--files") : argv.index("--files") + 2]
    args = [a for a in argv if a != "--no-whole-frame"]
    if files is not None:
        main_files([int(a) for a in args] or [1_000_000, 5_000_000], files)
    else:
        main([int(a) for a in args] or [1_000_000, 5_000_000, 20_000_000], whole_frame="--no-whole-frame" not in argv)
