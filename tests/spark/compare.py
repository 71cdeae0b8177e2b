"""`make test-spark`: build the dbt project on DuckDB and on local Spark, and prove every mart equal.

    python -m tests.spark.compare [--customers N] [--seed S] [--reporting-tz ZONE ...] [--data-dir DIR] [--keep]

GIVEN demo sources (`generate_demo_data`) ingested into the Parquet lake as the pipeline does it
(`ingest_all` + `write_load_manifest`),
WHEN the same dbt project builds its seeds and models, full refresh, with the same vars, once on the
`duckdb` target and once on the `spark` target (dbt-spark `method: session`, pyspark in this process),
for each reporting time zone (default: Asia/Tokyo, a fixed offset, and America/New_York, with
daylight saving, so both paths of every month cut run),
THEN every table of schema `marts` (listed from DuckDB's information_schema, so a new mart is covered
without editing this file) is equal on both engines under the rules of `tests/spark/comparison.py`:
the same columns and kinds, row counts, grain keys (from each mart's unique test), NULL patterns,
strings, dates and timestamps exactly, numbers to 1e-9.

Prints one line per mart, every difference, and finally one summary line
(`spark-vs-duckdb: 10 marts x 2 builds, N rows, 0 differences`). Exit status: 0 equal, 1 any
difference, 2 a step failed (generation, ingestion, a dbt build, or Java missing).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from orchestration.lib.dbt import DBT_EXECUTABLE, DBT_PROJECT_DIR, dbt_vars
from orchestration.lib.settings import Settings
from tests.spark.comparison import Difference, TableComparison, compare_tables, grain_keys, summary_line

MARTS_SCHEMA = "marts"
# The S scale of issue 7. Spark's fixed costs dominate at this size: measured on two shared cores,
# 10,000 customers took 2 min 47 s for both zones and 2,000 took 2 min 37 s, so CI runs the full S.
DEFAULT_CUSTOMERS = 10000
DEFAULT_SEED = 7
# The product's zone (fixed offset: to_reporting_tz's arithmetic path) and one with daylight saving,
# which takes each engine's own time-zone conversion (duckdb__/spark__to_reporting_tz): both paths
# of every month cut are proven equal.
DEFAULT_ZONES = ("Asia/Tokyo", "America/New_York")


class StepFailed(RuntimeError):
    """A step before the comparison failed; the comparison cannot say anything."""


def _say(message: str, started: float) -> None:
    print(f"[{time.perf_counter() - started:6.1f} s] {message}", flush=True)


def prepare_lake(data_dir: Path, *, customers: int, seed: int) -> Settings:
    """Write demo landing files under `data_dir` and ingest them into its lake; return the run's settings."""
    from orchestration.lib.demo_data import generate_demo_data
    from orchestration.lib.ingest import ingest_all, write_load_manifest

    # Settings from defaults, not from this shell: both engines must see exactly the same vars.
    settings = Settings.from_env({}, data_dir=data_dir)
    generate_demo_data(settings.data_dir, customers=customers, seed=seed)
    ingest_all(settings)
    write_load_manifest(settings)
    return settings


def dbt_build_args(settings: Settings, target: str) -> list[str]:
    """The dbt arguments that build seeds and models on `target` (full refresh) for these settings.

    Data tests are not run here: `make test` runs them on DuckDB, and two of them read DuckDB's
    information_schema, which Spark's catalog does not have. Equality of the marts is the proof.
    """
    target_dir = settings.data_dir / "dbt" / target
    return [
        "build", "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR),
        "--target", target, "--target-path", str(target_dir), "--log-path", str(target_dir / "logs"),
        "--vars", json.dumps(dbt_vars(settings)),
        "--resource-type", "seed", "--resource-type", "model",
        # Incremental models (if any) are built whole on both engines, so neither compares a
        # partial update with a full build.
        "--full-refresh", "--quiet",
    ]


def dbt_env(settings: Settings) -> dict[str, str]:
    """The environment both dbt builds read: the data dir (lake and Spark dirs) and the DuckDB file."""
    return {"NPS_LINK_DATA_DIR": str(settings.data_dir), "DUCKDB_PATH": str(settings.build_db_path)}


def build_on_duckdb(settings: Settings) -> Path:
    """Build on the duckdb target in a child process; return the dbt target dir (with manifest.json).

    A child process, because dbt-duckdb keeps its database open inside the process that ran it and
    the comparison then needs its own read-only connection.
    """
    settings.warehouse_dir.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [str(DBT_EXECUTABLE), *dbt_build_args(settings, "duckdb")], env={**os.environ, **dbt_env(settings)},
        cwd=DBT_PROJECT_DIR, capture_output=True, text=True, check=False,
    )
    if done.returncode != 0:
        raise StepFailed(f"dbt build on duckdb failed:\n{done.stdout[-4000:]}{done.stderr[-4000:]}")
    return settings.data_dir / "dbt" / "duckdb"


def build_on_spark(settings: Settings) -> None:
    """Build on the spark target in this process, so its Spark session stays open to read the marts."""
    from dbt.cli.main import dbtRunner

    os.environ.update(dbt_env(settings))
    outcome = dbtRunner().invoke(dbt_build_args(settings, "spark"))
    if not outcome.success:
        failed = [
            f"{r.node.name}: {r.message}" for r in getattr(outcome.result, "results", None) or []
            if str(r.status) not in ("success", "pass")
        ]
        raise StepFailed(f"dbt build on spark failed: {'; '.join(failed) or outcome.exception}")


def quiet_spark_logs(conf_dir: Path) -> None:
    """Point Spark at a log4j2 configuration that prints errors only, unless SPARK_CONF_DIR is set.

    Spark's default prints every WARN, including a stack trace for each lake glob it resolves; the
    build's own errors still reach dbt's output.
    """
    if os.environ.get("SPARK_CONF_DIR"):
        return
    conf_dir.mkdir(parents=True, exist_ok=True)
    (conf_dir / "log4j2.properties").write_text(
        "rootLogger.level = error\n"
        "rootLogger.appenderRef.stderr.ref = console\n"
        "appender.console.type = Console\n"
        "appender.console.name = console\n"
        "appender.console.target = SYSTEM_ERR\n"
        "appender.console.layout.type = PatternLayout\n"
        "appender.console.layout.pattern = %d{HH:mm:ss} %p %c{1}: %m%n%ex\n"
        # As in Spark's own template: the Hive metastore logs "already exists" as an error for
        # every `create database if not exists` that finds the database.
        "logger.hms.name = org.apache.hadoop.hive.metastore.RetryingHMSHandler\n"
        "logger.hms.level = fatal\n"
    )
    os.environ["SPARK_CONF_DIR"] = str(conf_dir)


def duckdb_marts(db_path: Path) -> dict[str, pa.Table]:
    """Every table of schema marts in the DuckDB warehouse, by name, as Arrow tables."""
    con = duckdb.connect(str(db_path), read_only=True)
    try:
        names = [
            row[0] for row in con.execute(
                "select table_name from information_schema.tables where table_schema = ? order by table_name",
                [MARTS_SCHEMA],
            ).fetchall()
        ]
        return {name: con.sql(f'select * from {MARTS_SCHEMA}."{name}"').to_arrow_table() for name in names}
    finally:
        con.close()


def spark_marts() -> dict[str, pa.Table]:
    """Every table of database marts in the Spark session dbt-spark opened in this process."""
    from pyspark.sql import SparkSession

    # getOrCreate returns the session dbt-spark built (same catalog, same session time zone UTC).
    spark = SparkSession.builder.getOrCreate()
    listed = spark.sql(f"show tables in {MARTS_SCHEMA}").collect()
    names = sorted(row.tableName for row in listed if not row.isTemporary)
    return {name: spark.table(f"{MARTS_SCHEMA}.{name}").toArrow() for name in names}


def stop_spark() -> None:
    """Stop the Spark session dbt-spark left open (its JVM), so the process exits cleanly."""
    from pyspark.sql import SparkSession

    session = SparkSession.getActiveSession() or SparkSession.builder.getOrCreate()
    session.stop()


def compare_marts(
    left: dict[str, pa.Table], right: dict[str, pa.Table], keys: dict[str, tuple[str, ...]]
) -> tuple[list[TableComparison], list[Difference]]:
    """Compare every DuckDB mart with Spark's; marts missing on either side are differences too."""
    comparisons = [compare_tables(name, table, right[name], keys.get(name, ())) for name, table in left.items()
                   if name in right]
    missing = [Difference(name, "mart missing on spark", 1) for name in left if name not in right]
    missing += [Difference(name, "mart only on spark", 1) for name in right if name not in left]
    return comparisons, missing


def report(comparisons: Sequence[TableComparison], extra: Sequence[Difference]) -> None:
    """Print one line per mart and every difference found."""
    for comparison in comparisons:
        print(f"  {comparison.table:<26} {comparison.rows_left:>9,} rows  {comparison.columns:>2} columns  "
              f"key ({', '.join(comparison.keys)})  {comparison.difference_count:,} differences")
        for difference in comparison.differences:
            print(f"    - {difference.describe()}")
    for difference in extra:
        print(f"  - {difference.describe()}")


def run(data_dir: Path, *, customers: int, seed: int, zones: Sequence[str]) -> int:
    """The whole check on `data_dir` (created or reused), once per reporting time zone; the exit status."""
    started = time.perf_counter()
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        raise StepFailed("no Java found (PATH or JAVA_HOME): local Spark needs a JDK 17 or 21")
    # Spark binds its driver to the machine's address by default; loopback keeps it off the network
    # and avoids the reverse-lookup warning on hosts without a resolvable name.
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    for stale in (data_dir / "spark", data_dir / "dbt", data_dir / "warehouse"):
        shutil.rmtree(stale, ignore_errors=True)

    try:
        lake_settings = prepare_lake(data_dir, customers=customers, seed=seed)
    except Exception as exc:
        raise StepFailed(f"demo sources or ingestion failed: {exc!r}") from exc
    _say(f"demo sources for {customers:,} customers (seed {seed}) ingested into {lake_settings.lake_dir}", started)
    quiet_spark_logs(data_dir / "spark" / "conf")

    comparisons: list[TableComparison] = []
    extra: list[Difference] = []
    for zone in zones:
        # The lake does not depend on the reporting zone (ingestion reads source_tz), only the models do.
        settings = replace(lake_settings, reporting_tz=zone)
        duckdb_target = build_on_duckdb(settings)
        _say(f"{zone}: dbt seeds and models built on DuckDB", started)
        build_on_spark(settings)
        _say(f"{zone}: dbt seeds and models built on Spark", started)
        manifest: dict[str, Any] = json.loads((duckdb_target / "manifest.json").read_text())
        # Read right after this zone's builds: the next zone's builds replace both engines' marts.
        zone_comparisons, zone_extra = compare_marts(
            duckdb_marts(settings.build_db_path), spark_marts(), grain_keys(manifest)
        )
        _say(f"{zone}: marts read from both engines and compared", started)
        report(zone_comparisons, zone_extra)
        comparisons += zone_comparisons
        extra += zone_extra

    stop_spark()
    print(summary_line(comparisons, extra, runs=len(zones)), flush=True)
    differences = sum(c.difference_count for c in comparisons) + sum(d.count for d in extra)
    return 0 if differences == 0 and comparisons else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point (`python -m tests.spark.compare`)."""
    parser = argparse.ArgumentParser(prog="python -m tests.spark.compare", description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=DEFAULT_CUSTOMERS, help="demo scale (issue's S: 10000)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--reporting-tz", action="append", dest="zones", metavar="ZONE",
                        help=f"build and compare with this reporting time zone (repeatable; default: "
                             f"{' and '.join(DEFAULT_ZONES)})")
    parser.add_argument("--data-dir", type=Path, help="work here (replaced); default: a new temporary dir")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data dir for inspection")
    args = parser.parse_args(argv)

    data_dir = (args.data_dir or Path(tempfile.mkdtemp(prefix="nps-link-spark-")) / "data").resolve()
    if args.keep or args.data_dir:
        print(f"data dir: {data_dir} (kept)")
    try:
        return run(data_dir, customers=args.customers, seed=args.seed, zones=args.zones or DEFAULT_ZONES)
    except StepFailed as failure:
        print(f"spark-vs-duckdb: not compared: {failure}", file=sys.stderr)
        return 2
    finally:
        if args.data_dir is None and not args.keep:
            shutil.rmtree(data_dir.parent, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
