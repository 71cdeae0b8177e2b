"""Incremental dbt runs give the same warehouse as a full refresh on the same inputs.

GIVEN demo sources for a few hundred customers, ingested into a lake and built once (full),
WHEN two more days are delivered, each ingested and built incrementally (the as_of cut-off moves
forward with them, accounts are created and reassigned, an accounts export older than the staged
versions arrives late, corrections move activities, responses and orders of the history to another
customer), and then the cut-off is moved back twice
(the second time past an orphan customer's every fact),
THEN after each of those, every staging, intermediate and marts relation equals, row for row, what
`dbt build --full-refresh` builds from scratch into another warehouse on the same lake.

Ingestion runs in-process (no Dagster) and dbt with the pipeline's vars, so the whole test stays near a minute.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from orchestration.lib.dbt import DBT_EXECUTABLE, DBT_PROJECT_DIR, dbt_vars
from orchestration.lib.demo_data import append_day, generate_demo_data
from orchestration.lib.ingest import ingest_all, write_load_manifest
from orchestration.lib.settings import Settings

CUSTOMERS = 300
SEED = 5
STALE_ACCOUNTS_FILE = "accounts_stale_export.csv"
# Corrections that move facts to another customer, per source: lake folder, key, the contract's
# columns of the file that corrects it, and the staged relation.
CORRECTED_SOURCES = (
    ("crm_activities", "activity_id",
     ("activity_id", "customer_id", "rep_id", "activity_type", "direction", "occurred_at", "duration_minutes"),
     "staging.stg_crm__activities"),
    ("survey_responses", "response_id",
     ("response_id", "survey_type", "customer_id", "touchpoint", "responded_at", "nps_score", "comment"),
     "staging.stg_survey__responses"),
    ("orders", "order_id",
     ("order_id", "customer_id", "ordered_at", "amount", "currency", "status", "product_line"),
     "staging.stg_billing__orders"),
)
# Bookkeeping of the incremental models (macros/incremental.sql): a row left untouched by an incremental
# run keeps the watermark and cut-off it was built with, which is the point, so they are not compared.
BOOKKEEPING = {"_input_seq", "_as_of_at", "_parameters"}
SCHEMAS = ("staging", "intermediate", "marts")
# Relations an incremental run updates only in part: rows the new days did not touch keep the older watermark
# (not int_customer_months_densified: a new as_of month rebuilds all of it, by design).
INCREMENTAL_BY_CUSTOMER = (
    "intermediate.int_responses_with_exposure",
    "marts.dim_customers",
    "marts.fct_survey_responses",
)


def _dbt(root: Path, db_path: Path, settings: Settings, *args: str, as_of: str | None = None) -> None:
    """`dbt build` of seeds and models (data tests run in the pipeline) on `db_path` over the lake.

    A separate process: the test's builds then share no dbt state with the pytest process (the
    pipeline runs dbt in its own process and closes dbt-duckdb's database after each build,
    orchestration/lib/dbt_runner.py; the SQL built is the same either way).
    """
    variables = dbt_vars(settings)
    if as_of is not None:
        variables["as_of"] = as_of
    env = {**os.environ, "NPS_LINK_DATA_DIR": str(settings.data_dir), "DUCKDB_PATH": str(db_path),
           "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    result = subprocess.run(
        [str(DBT_EXECUTABLE), "build", "--exclude-resource-type", "test", "--exclude-resource-type", "unit_test",
         *args, "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR),
         "--target-path", str(root / "target"), "--log-path", str(root / "logs"),
         "--vars", json.dumps(variables), "--quiet"],
        env=env, capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, f"dbt build {args} failed:\n{result.stdout[-3000:]}{result.stderr[-2000:]}"


def _ingest(settings: Settings) -> None:
    ingest_all(settings)
    write_load_manifest(settings)


def _relations(con: duckdb.DuckDBPyConnection, catalog: str) -> list[tuple[str, str]]:
    rows = con.execute(
        "select table_schema, table_name from information_schema.tables where table_catalog = ? "
        "and table_schema in ('staging', 'intermediate', 'marts') order by 1, 2",
        [catalog],
    ).fetchall()
    return [(schema, name) for schema, name in rows]


def _differences(incremental_db: Path, full_db: Path) -> dict[str, tuple[int, int, int]]:
    """Relations whose rows differ: name -> (rows only incremental, rows only full, total rows)."""
    con = duckdb.connect(str(incremental_db), read_only=True)
    con.execute(f"attach '{full_db}' as full_refresh (read_only)")
    catalog = con.execute("select current_database()").fetchone()[0]
    ours, theirs = _relations(con, catalog), _relations(con, "full_refresh")
    assert ours == theirs, "the two builds hold different relations"
    differing: dict[str, tuple[int, int, int]] = {}
    for schema, name in ours:
        columns = con.execute(
            "select column_name, data_type from information_schema.columns where table_catalog = ? "
            "and table_schema = ? and table_name = ? order by ordinal_position",
            [catalog, schema, name],
        ).fetchall()
        # Doubles are compared to 9 decimals: a sum may add the same values in another order.
        select = ", ".join(
            f"round({column}, 9)" if kind in ("DOUBLE", "FLOAT") else column
            for column, kind in columns if column not in BOOKKEEPING
        )
        only_ours = con.execute(
            f"select count(*) from (select {select} from {schema}.{name} "
            f"except all select {select} from full_refresh.{schema}.{name})"
        ).fetchone()[0]
        only_theirs = con.execute(
            f"select count(*) from (select {select} from full_refresh.{schema}.{name} "
            f"except all select {select} from {schema}.{name})"
        ).fetchone()[0]
        total = con.execute(f"select count(*) from {schema}.{name}").fetchone()[0]
        if only_ours or only_theirs:
            differing[f"{schema}.{name}"] = (only_ours, only_theirs, total)
    con.close()
    return differing


@pytest.fixture(scope="module")
def incremental_history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Settings, Path, dict]]:
    """A lake with the generated history plus two delivered days, built full once then incrementally twice.

    Also yields what the tests check the days did: the customers the unchanged roster's day rewrote,
    and the rep whose team the second day changed.
    """
    root = tmp_path_factory.mktemp("incremental")
    history: dict = {}
    settings = Settings.from_env({"NPS_LINK_PII_KEY": "test-key"}, data_dir=root / "data")
    generate_demo_data(settings.data_dir, customers=CUSTOMERS, seed=SEED)
    _ingest(settings)
    incremental_db = root / "incremental.duckdb"
    _dbt(root, incremental_db, settings)
    # Day one: the CRM re-exports the roster unchanged (rows in another order, so not the same bytes).
    append_day(settings.data_dir, seed=SEED)
    _deliver_roster(settings, "reps_reexport.csv", change_team_of=None)
    _ingest(settings)
    _dbt(root, incremental_db, settings)
    history["after_reexport"] = _customers_rewritten(incremental_db)
    # Day two: a rep who contacted customers after their first order moves to account management.
    append_day(settings.data_dir, seed=SEED)
    history["moved_rep"] = _rep_to_move(incremental_db)
    _deliver_roster(settings, "reps_team_change.csv", change_team_of=history["moved_rep"])
    history["stale_export"] = _deliver_stale_accounts(settings, STALE_ACCOUNTS_FILE)
    history["moved_facts"] = _deliver_corrections(settings)
    _ingest(settings)
    _dbt(root, incremental_db, settings)
    yield root, settings, incremental_db, history


def _customers_rewritten(db_path: Path) -> dict[str, int]:
    """dim_customers rows the last build wrote, of all rows, and of customers some rep contacted."""
    con = duckdb.connect(str(db_path), read_only=True)
    rewritten, total, contacted = con.execute(
        "select count(*) filter (where _input_seq = (select max(_input_seq) from marts.dim_customers)), "
        "count(*), count(*) filter (where customer_id in "
        "(select customer_id from staging.stg_crm__activities where rep_id is not null)) "
        "from marts.dim_customers"
    ).fetchone()
    con.close()
    return {"rewritten": rewritten, "total": total, "contacted_by_a_rep": contacted}


def _deliver_roster(settings: Settings, name: str, *, change_team_of: str | None) -> None:
    """Land a full roster export: the first roster's rows reversed, one rep's team changed if named."""
    landing = settings.data_dir / "landing" / "crm_reps"
    first = min(landing.glob("reps_*.csv"))
    with first.open(newline="", encoding="utf-8") as source:
        rows = list(csv.DictReader(source))
    for row in rows:
        if row["rep_id"] == change_team_of:
            row["team"] = "account_management"
    with (landing / name).open("w", newline="", encoding="utf-8") as target:
        writer = csv.DictWriter(target, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(reversed(rows))


def _deliver_stale_accounts(settings: Settings, name: str) -> dict[str, Any]:
    """Land an accounts export made before the deltas since: every account a delta updated, as it was.

    Those versions are older (updated_at) than the staged ones and must not replace them, though
    their delivery is the newest. One account not updated since comes with a later updated_at and
    another segment: that version must win. Returns the two kinds of customer_id.
    """
    landing = settings.data_dir / "landing" / "crm_accounts"
    with min(landing.glob("accounts_full_*.csv")).open(newline="", encoding="utf-8-sig") as source:
        exported = {row["customer_id"]: row for row in csv.DictReader(source)}
    updated_since: set[str] = set()
    for delta in landing.glob("accounts_delta_*.csv"):
        with delta.open(newline="", encoding="utf-8-sig") as source:
            updated_since.update(row["customer_id"] for row in csv.DictReader(source))
    stale = sorted(updated_since & exported.keys())
    newer = min(exported.keys() - updated_since)
    newer_row = dict(exported[newer])
    exported_at = datetime.fromisoformat(newer_row["updated_at"].rstrip("Z"))
    newer_row["updated_at"] = (exported_at + timedelta(days=1)).isoformat()
    newer_row["segment"] = "re-segmented"
    with (landing / name).open("w", newline="", encoding="utf-8") as target:
        writer = csv.DictWriter(target, fieldnames=list(newer_row))
        writer.writeheader()
        writer.writerows([exported[customer_id] for customer_id in stale] + [newer_row])
    return {"stale": stale, "newer": newer}


def _deliver_corrections(settings: Settings) -> dict[str, dict[str, str]]:
    """Land corrections that move facts of the history to another customer: activities, responses, orders.

    The customer a fact left must be rebuilt too (its contacts, scores, repeat and revenue lose the
    fact), though nothing new was delivered for it: staging keeps only the newest version, so the
    incremental models find it in the lake. A moved response also gets another score. Returns, per
    source, each moved key with the customer it now belongs to.
    """
    moved: dict[str, dict[str, str]] = {}
    for source, key, columns, _staged in CORRECTED_SOURCES:
        lake_file = min((settings.data_dir / "lake" / "raw" / source).glob("*.parquet"))
        history = pq.read_table(lake_file, columns=list(columns))
        # The lake holds naive UTC; the correction says so explicitly.
        history = pa.table({
            name: column.cast(pa.timestamp("us", tz="UTC")) if pa.types.is_timestamp(column.type) else column
            for name, column in zip(history.column_names, history.columns, strict=True)
        })
        customers = history.column("customer_id").to_pylist()
        rows = history.slice(0, 2).to_pylist()
        for row in rows:
            row["customer_id"] = next(c for c in reversed(customers) if c != row["customer_id"])
            if "nps_score" in row:
                row["nps_score"] = 10 - row["nps_score"]
        landing = settings.data_dir / "landing" / source / f"{source}_corrections_test.parquet"
        pq.write_table(pa.Table.from_pylist(rows, schema=history.schema), landing)
        moved[source] = {row[key]: row["customer_id"] for row in rows}
    return moved


def _rep_to_move(db_path: Path) -> str:
    """A rep not in account management who made an outbound contact after a customer's first order."""
    con = duckdb.connect(str(db_path), read_only=True)
    rep_id = con.execute(
        "select activities.rep_id from staging.stg_crm__activities as activities "
        "inner join marts.dim_customers as customers on customers.customer_id = activities.customer_id "
        "inner join staging.stg_crm__reps as reps on reps.rep_id = activities.rep_id "
        "where activities.direction = 'outbound' and activities.occurred_at >= customers.first_order_at "
        "and reps.team <> 'account_management' group by 1 order by count(*) desc, 1 limit 1"
    ).fetchone()[0]
    con.close()
    return rep_id


def test_incremental_runs_after_new_days_equal_a_full_refresh(
    incremental_history: tuple[Path, Settings, Path, dict],
) -> None:
    root, settings, incremental_db, history = incremental_history
    full_db = root / "full_latest.duckdb"
    _dbt(root, full_db, settings, "--full-refresh")
    assert _differences(incremental_db, full_db) == {}
    # The comparison means something only if the incremental path ran: rows the new days did not
    # touch keep the older watermark.
    con = duckdb.connect(str(incremental_db), read_only=True)
    for relation in INCREMENTAL_BY_CUSTOMER:
        watermarks = con.execute(f"select count(distinct _input_seq) from {relation}").fetchone()[0]
        assert watermarks > 1, f"{relation} was rebuilt whole, not incrementally"
    # The new days reassign accounts to other reps: the incremental marts must carry the new owner.
    reassigned = con.execute(
        "select count(*) from marts.dim_customers as customers "
        "inner join staging.stg_crm__accounts as accounts on accounts.customer_id = customers.customer_id "
        "where accounts._delivery_seq > (select min(_input_seq) from marts.dim_customers) "
        "and accounts.created_at < (select min(_as_of_at) from marts.dim_customers)"
    ).fetchone()[0]
    # The moved rep's contacts now count as account management's: some customer's hand-off is one of them.
    handed_off_by_moved_rep = con.execute(
        "select count(*) from marts.dim_customers as customers "
        "inner join staging.stg_crm__activities as activities "
        "on activities.customer_id = customers.customer_id "
        "and activities.occurred_at = customers.first_account_management_contact_at "
        "where activities.rep_id = ?", [history["moved_rep"]]
    ).fetchone()[0]
    # The stale export was staged as a delivery, but only its one newer version replaced a staged one.
    stale_export = history["stale_export"]
    versions_kept = dict(con.execute(
        "select customer_id, _source_file like ? from staging.stg_crm__accounts where customer_id in "
        "(select unnest(?))", [f"%{STALE_ACCOUNTS_FILE}", [*stale_export["stale"], stale_export["newer"]]]
    ).fetchall())
    # The corrections reached staging: each moved fact belongs to its new customer.
    for source, key, _columns, staged in CORRECTED_SOURCES:
        moved = history["moved_facts"][source]
        now = dict(con.execute(
            f"select {key}, customer_id from {staged} where {key} in (select unnest(?))", [list(moved)]
        ).fetchall())
        assert now == moved, (source, now, moved)
    con.close()
    assert stale_export["stale"], "no account was updated since the first export: the stale case is not exercised"
    assert not any(versions_kept[customer_id] for customer_id in stale_export["stale"]), versions_kept
    assert versions_kept[stale_export["newer"]], "the stale export's one newer version did not win"
    assert reassigned > 0, "no account of the history was re-delivered: the reassignment case is not exercised"
    assert handed_off_by_moved_rep > 0, "the team change reached no customer's hand-off: the case is not exercised"
    # A roster delivered again unchanged rewrote only the customers the day's other deliveries touched,
    # not every customer a rep ever contacted.
    reexport = history["after_reexport"]
    assert 0 < reexport["rewritten"] < reexport["contacted_by_a_rep"] / 2, reexport


def test_incremental_run_with_an_earlier_cut_off_equals_a_full_refresh(
    incremental_history: tuple[Path, Settings, Path, dict],
) -> None:
    # Builds on the incremental warehouse of the fixture; the other test only reads it, so the order
    # of the two does not matter.
    root, settings, incremental_db, _history = incremental_history
    latest = _scalar(incremental_db, "select as_of_at from intermediate.int_run_parameters")
    # Twelve days back: censoring windows reopen, orders and responses leave the cut-off, and
    # the as_of month may change.
    _move_cut_off(root, settings, incremental_db, latest - timedelta(days=12), "earlier")

    # Back again, to just before the first fact of the orphan (a customer without an account) whose
    # first fact is the latest: it has no fact up to that cut-off, so it must leave dim_customers.
    # The incremental build writes it as a tombstone that its post-hook deletes (no account leaves,
    # so nothing else lowers the count of orphans).
    orphans_before = _scalar(incremental_db, ORPHANS_SQL)
    newest_orphan_start = _scalar(incremental_db, ORPHAN_FIRST_FACTS_SQL)
    _move_cut_off(root, settings, incremental_db, newest_orphan_start - timedelta(seconds=1), "before_orphan")
    orphans_after = _scalar(incremental_db, ORPHANS_SQL)
    assert orphans_after < orphans_before, (orphans_before, orphans_after)


def _move_cut_off(root: Path, settings: Settings, incremental_db: Path, as_of: datetime, name: str) -> None:
    """Build the incremental warehouse with cut-off `as_of`, and a full refresh with it; they must be equal."""
    as_of_text = as_of.replace(microsecond=0).isoformat(sep=" ")
    _dbt(root, incremental_db, settings, as_of=as_of_text)
    full_db = root / f"full_{name}.duckdb"
    _dbt(root, full_db, settings, "--full-refresh", as_of=as_of_text)
    assert _differences(incremental_db, full_db) == {}


def _scalar(db_path: Path, sql: str) -> Any:
    """The one value `sql` returns from the warehouse at `db_path`."""
    con = duckdb.connect(str(db_path), read_only=True)
    try:
        return con.execute(sql).fetchone()[0]
    finally:
        con.close()


ORPHANS_SQL = "select count(*) from marts.dim_customers where is_orphan"

# The latest of the orphans' first facts (activities, responses, orders).
ORPHAN_FIRST_FACTS_SQL = """
    select max(first_fact_at) from (
        select customer_id, min(fact_at) as first_fact_at
        from (
            select customer_id, occurred_at as fact_at from staging.stg_crm__activities
            union all
            select customer_id, responded_at from staging.stg_survey__responses
            union all
            select customer_id, ordered_at from staging.stg_billing__orders
        )
        where customer_id in (select customer_id from marts.dim_customers where is_orphan)
        group by customer_id
    )
"""

