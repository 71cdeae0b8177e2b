"""Speed benchmark of `analysis.link.fit_link`: 1,000 bootstrap replicates on 2,000,000 rows.

Run from the repo root: `.venv/bin/python -m tests.bench.bench_link` (add `--rows N --boot B` to try
other sizes; `--no-write` to only print). It generates a synthetic survey frame shaped like
`marts.fct_survey_responses` (contacts per month -> 0-10 score -> repeat, ten covariate columns of which
four categorical, 4 responses per customer), times one clustered fit, and writes the figures to
`tests/bench/LINK_BENCHMARK.md`. The requirement is 60 s on the 2-core build machine. Not collected by
pytest (no `test_` prefix): it takes tens of seconds and several GB of memory.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.link import fit_link

FIGURES = Path(__file__).with_name("LINK_BENCHMARK.md")
REQUIRED_SECONDS = 60.0


def synthetic_frame(rows: int, seed: int = 1) -> pd.DataFrame:
    """A planted-effect frame: more contacts -> higher score -> more repeat purchases, with confounders."""
    rng = np.random.default_rng(seed)
    customers = max(rows // 4, 1)
    customer = rng.integers(0, customers, rows)
    segment = rng.choice(np.array(["enterprise", "mid_market", "smb", "consumer"]), customers)[customer]
    business_unit = rng.choice(np.array(["staffing", "payroll", "training", "recruiting", "consulting"]), rows)
    survey_type = rng.choice(np.array(["relationship", "transactional"]), rows, p=[0.4, 0.6])
    touchpoint = rng.choice(np.array(["onboarding", "delivery", "billing", "support", "renewal", "other"]), rows)
    tenure_years = rng.gamma(2.0, 1.5, rows)
    log_revenue = np.log1p(rng.lognormal(12.0, 1.2, rows))
    inbound = rng.poisson(0.8, rows).astype(float)
    exposure_days = rng.uniform(10, 90, rows)
    region_index = rng.normal(size=rows)
    product_lines = rng.poisson(1.5, rows).astype(float)
    seg_effect = pd.Series(segment).map({"enterprise": 0.6, "mid_market": 0.3, "smb": 0.0, "consumer": -0.3})
    contacts = rng.gamma(1.5 + seg_effect.to_numpy(), 1.0, rows)
    score = np.clip(
        6.5 + 0.35 * contacts - 0.4 * inbound + 0.1 * tenure_years + seg_effect.to_numpy()
        + rng.normal(0, 2.0, rows), 0, 10,
    ).round()
    eta = -2.2 + 0.25 * score + 0.05 * contacts + 0.1 * log_revenue - 0.1 * inbound
    repeat = (rng.random(rows) < 1 / (1 + np.exp(-eta))).astype(float)
    return pd.DataFrame({
        "customer_id": customer, "contacts_per_month": contacts, "nps_score": score, "repeat_after": repeat,
        "segment": segment, "business_unit": business_unit, "survey_type": survey_type,
        "touchpoint": touchpoint, "tenure_years": tenure_years, "log_revenue_prior_365d": log_revenue,
        "inbound_before": inbound, "exposure_days": exposure_days, "region_index": region_index,
        "product_lines": product_lines,
    })


COVARIATES = ("segment", "business_unit", "survey_type", "touchpoint", "tenure_years", "log_revenue_prior_365d",
              "inbound_before", "exposure_days", "region_index", "product_lines")


def _memory_gb() -> float:
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024**2
    return float("nan")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main(argv: list[str] | None = None) -> int:
    """Generate the frame, time one clustered `fit_link`, print and (by default) write the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--boot", type=int, default=1000)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    frame = synthetic_frame(args.rows)
    gen_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = fit_link(
        frame, exposure="contacts_per_month", mediator="nps_score", outcome="repeat_after",
        covariates=COVARIATES, outcome_kind="binary", n_boot=args.boot, seed=0, cluster="customer_id",
    )
    fit_seconds = time.perf_counter() - t0
    peak_rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB on Linux
    load = os.getloadavg()[0]
    verdict = "PASS" if fit_seconds <= REQUIRED_SECONDS else "FAIL"

    lines = [
        "# fit_link speed benchmark",
        "",
        "Written by `tests/bench/bench_link.py`; rerun it to refresh. Requirement: 1,000 bootstrap",
        f"replicates on 2,000,000 rows within {REQUIRED_SECONDS:.0f} s on the 2-core build machine.",
        "",
        "| figure | value |",
        "|---|---|",
        f"| date (UTC) | {datetime.now(UTC):%Y-%m-%d %H:%M} |",
        f"| machine | {os.cpu_count()} CPUs ({_cpu_model()}), {_memory_gb():.1f} GiB memory, "
        f"load average {load:.1f} at the end |",
        f"| python / numpy / pandas | {platform.python_version()} / {np.__version__} / {pd.__version__} |",
        f"| command | `.venv/bin/python -m tests.bench.bench_link"
        f"{'' if args.rows == 2_000_000 else f' --rows {args.rows}'}"
        f"{'' if args.boot == 1000 else f' --boot {args.boot}'}` |",
        f"| rows (n) | {args.rows:,} ({result.n_used:,} used, {result.n_clusters:,} customers) |",
        f"| covariate columns | {len(COVARIATES)} (4 categorical: "
        f"{len(result.outcome_coefficients) - 3} design columns) |",
        f"| bootstrap replicates (n_boot) | {args.boot} |",
        f"| fit_link seconds | **{fit_seconds:.1f}** ({verdict}) |",
        f"| data generation seconds (not in the fit) | {gen_seconds:.1f} |",
        f"| peak RSS of the process | {peak_rss_gb:.2f} GiB |",
        f"| method | {result.method} |",
        "",
        "Effects on the planted data (probability scale per +1 contact a month):",
        "",
        result.effects.to_markdown(floatfmt=".4f"),
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        FIGURES.write_text(text)
        print(f"wrote {FIGURES}", file=sys.stderr)
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    raise SystemExit(main())
