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
