"""Mart-level checks as Dagster asset checks: a planted anomaly fails with the right severity."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import duckdb
import pytest

from orchestration.defs.quality import checks
from orchestration.lib.publish import failed_blocking_checks, record_blocking_check
from orchestration.lib.resources import NpsLinkResource
from orchestration.lib.run_lock import pipeline_run_lock


@pytest.fixture
def build_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> duckdb.DuckDBPyConnection:
    monkeypatch.setenv("NPS_LINK_DATA_DIR", str(tmp_path))
    (tmp_path / "warehouse").mkdir()
    con = duckdb.connect(str(tmp_path / "warehouse" / "build.duckdb"))
    con.execute("create schema marts")
    yield con
    con.close()


def _build_path() -> Path:
    return NpsLinkResource().settings().build_db_path


def _run(check: dg.AssetChecksDefinition) -> dg.AssetCheckResult:
    nps_link = NpsLinkResource()
    with pipeline_run_lock(nps_link.settings().warehouse_dir) as lock_file:  # the run lock, as a run holds it
        return check(dg.build_asset_check_context(resources={"nps_link": nps_link, "warehouse_writer": lock_file}))


def test_contact_explosion_of_most_contacts_fails_with_error_severity(build_db: duckdb.DuckDBPyConnection) -> None:
    # 40 quiet customers with 2 contacts a month; in the latest month one of them logs 900.
    build_db.execute(
        """
        create table marts.fct_customer_months as
        select 'C' || c as customer_id, (date '2026-01-01' + to_months(m))::date as month,
               case when c = 1 and m = 8 then 900 else 2 end as contacts
        from range(40) as cs(c), range(9) as ms(m)
        """
    )
    build_db.close()
    result = _run(checks.contact_count_explosion)
    assert not result.passed
    assert result.severity == dg.AssetCheckSeverity.ERROR
    assert "C1" in result.metadata["message"].value
    # Left beside the build warehouse, so that a publish materialised alone refuses these marts.
    assert failed_blocking_checks(_build_path()) == {"contact_count_explosion": result.metadata["message"].value}


def test_steady_contacts_pass(build_db: duckdb.DuckDBPyConnection) -> None:
    build_db.execute(
        """
        create table marts.fct_customer_months as
        select 'C' || c as customer_id, (date '2026-01-01' + to_months(m))::date as month, 3 as contacts
        from range(40) as cs(c), range(9) as ms(m)
        """
    )
    build_db.close()
    # The marker an earlier build's explosion left goes once the check passes on this one.
    record_blocking_check(_build_path(), "contact_count_explosion", blocks=True, message="C1: 900 contacts")
    assert _run(checks.contact_count_explosion).passed
    assert failed_blocking_checks(_build_path()) == {}


def _published_watermark(input_seq: int, db: Path | None = None) -> None:
    """A published warehouse (or `db`) whose build staged deliveries up to `input_seq`."""
    from orchestration.lib.warehouse import RUN_PARAMETER_VARS

    published = db or NpsLinkResource().settings().published_db_path
    con = duckdb.connect(str(published))
    con.execute("create schema intermediate")
    columns = ", ".join(f"null as {name}" for name in RUN_PARAMETER_VARS)
    con.execute(f"create table intermediate.int_run_parameters as select {input_seq} as input_seq, "
                f"timestamp '2026-10-20' as as_of_at, timestamp '2026-10-20' as latest_event_at, {columns}")
    con.close()


def test_contact_explosion_in_a_month_delivered_since_the_last_publish_blocks_until_accepted(
        build_db: duckdb.DuckDBPyConnection) -> None:
    """Before, only the newest month was judged: a batch re-imported into September passed in October."""
    from orchestration.lib.mart_acceptance import accept_month

    build_db.execute(
        """
        create table marts.fct_customer_months as
        select 'C' || c as customer_id, (date '2026-01-01' + to_months(m))::date as month,
               case when c = 1 and m = 8 then 900 else 2 end as contacts
        from range(40) as cs(c), range(10) as ms(m)
        """
    )
    # September's burst arrived in delivery 12, after the published build's watermark (10); October's in 5.
    build_db.execute("create schema staging")
    build_db.execute("create table staging.stg_crm__activities as select * from (values "
                     "(timestamp '2026-09-14 23:00:00', 12), (timestamp '2026-10-02 01:00:00', 5)) "
                     "as t(occurred_at, _delivery_seq)")
    build_db.close()
    assert _run(checks.contact_count_explosion).passed  # no published build: the latest month alone, as before
    _published_watermark(10)
    result = _run(checks.contact_count_explosion)
    assert not result.passed and result.severity == dg.AssetCheckSeverity.ERROR
    message = result.metadata["message"].value
    assert message.startswith("1 customer(s) with a contact explosion") and "C1: 900 contacts in 2026-09" in message
    assert "contact_count_explosion" in failed_blocking_checks(_build_path())

    accept_month(NpsLinkResource().settings().quality_dir, "2026-09", note="a call campaign", accepted_by="aiko",
                 through_delivery_seq=12)
    accepted = _run(checks.contact_count_explosion)
    assert not accepted.passed and accepted.severity == dg.AssetCheckSeverity.WARN  # still shown, no longer blocking
    assert accepted.metadata["message"].value.startswith("accepted (by aiko at ")
    assert "a call campaign" in accepted.metadata["message"].value
    assert failed_blocking_checks(_build_path()) == {}
    # Another delivery into September after the acceptance is judged afresh: blocking again.
    con = duckdb.connect(str(_build_path()))
    con.execute("insert into staging.stg_crm__activities values (timestamp '2026-09-20 09:00:00', 14)")
    con.close()
    assert _run(checks.contact_count_explosion).severity == dg.AssetCheckSeverity.ERROR


def test_nps_jump_beyond_sampling_error_is_flagged_as_warning(build_db: duckdb.DuckDBPyConnection) -> None:
    # August: NPS +20 on 1,000 responses; September: NPS -30 on 1,000 responses.
    build_db.execute(
        """
        create table marts.nps_by_period as
        select * from (values
            (date '2026-08-01', 'relational', 'overall', 'all', 1000, 400, 400, 200),
            (date '2026-09-01', 'relational', 'overall', 'all', 1000, 200, 300, 500),
            (date '2026-09-01', 'all', 'overall', 'all', 1000, 200, 300, 500)
        ) as t(period_month, survey_type, dimension, dimension_value, responses, promoters, passives, detractors)
        """
    )
    build_db.close()
    result = _run(checks.nps_month_on_month_jump)
    assert not result.passed
    assert result.severity == dg.AssetCheckSeverity.WARN
    assert failed_blocking_checks(_build_path()) == {}  # a warning does not hold the publish
    assert "2026-09" in result.metadata["message"].value


def test_nps_link_accept_contact_explosion_records_the_month_with_its_reason(tmp_path: Path) -> None:
    from orchestration.lib.mart_acceptance import accepted_months
    from orchestration.lib.settings import Settings
    from tests.conftest import run_cli

    settings = Settings(data_dir=tmp_path)
    bad = run_cli(tmp_path, "accept", "--contact-explosion", "2026-13", "--note", "x", "--data-dir", str(tmp_path))
    assert bad.returncode == 2 and "'2026-13' is not a month (YYYY-MM)" in bad.stderr
    bare = run_cli(tmp_path, "accept", "--contact-explosion", "2026-09", "--data-dir", str(tmp_path))
    assert bare.returncode == 2 and "--note" in bare.stderr
    # Not a month the last build blocked on: nothing to accept (a month accepted in advance waves anything through).
    settings.warehouse_dir.mkdir(parents=True)
    _published_watermark(12, settings.build_db_path)
    record_blocking_check(settings.build_db_path, "contact_count_explosion", blocks=True,
                          message="1 customer(s) with a contact explosion ..., 61% of 2026-09 contacts: C1: 900 ...")
    early = run_cli(tmp_path, "accept", "--contact-explosion", "2026-10", "--note", "x", "--data-dir", str(tmp_path))
    assert early.returncode == 2 and "did not block on '2026-10'; nothing to accept (it blocked on: 1 customer" in (
        early.stderr)
    done = run_cli(tmp_path, "accept", "--contact-explosion", "2026-09", "--note", "a call campaign",
                   "--data-dir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("accepted the contact explosion of 2026-09")
    accepted = accepted_months(settings.quality_dir)["2026-09"]
    assert (accepted.note, accepted.through_delivery_seq) == ("a call campaign", 12)  # what that build staged
