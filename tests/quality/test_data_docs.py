"""Data docs: one self-contained page per run, plus latest, with nothing fetched from the network."""

from __future__ import annotations

import re

import pytest

from quality._gx import whole_frame_batch_definition
from quality.data_docs import write_data_docs
from quality.suites import suite_for
from quality.validate import validate
from tests.quality.conftest import LOADED_AT

REMOTE = re.compile(r"""(src|href)\s*=\s*["']?(https?:)?//""", re.IGNORECASE)


def test_write_data_docs_writes_run_and_latest_pages_without_remote_references(tmp_path, good_batch):
    bad = validate(
        good_batch("orders", changes={2: {"status": "<script>alert(1)</script>"}}), suite_for("orders", now=LOADED_AT)
    )
    good = validate(good_batch("crm_reps"), suite_for("crm_reps", now=LOADED_AT))
    page = write_data_docs({"orders/2025-06-01.csv": bad, "crm_reps/reps.csv": good}, tmp_path, run_id="run-42")

    assert page == tmp_path / "run-42" / "index.html"
    html = page.read_text(encoding="utf-8")
    assert (tmp_path / "latest" / "index.html").read_text(encoding="utf-8") == html
    assert "http://" not in html and "https://" not in html
    assert not REMOTE.search(html)
    assert "<script" not in html  # the planted value is escaped, and the page needs no script
    assert "&lt;script&gt;" in html
    assert "orders/2025-06-01.csv" in html and "crm_reps/reps.csv" in html
    assert "expect_column_values_to_be_in_set" in html and "status" in html
    assert "1 of 2 validations failed" in html


def test_write_data_docs_accepts_gx_results_and_replaces_latest(tmp_path, good_batch):
    result = (
        whole_frame_batch_definition()
        .get_batch(batch_parameters={"dataframe": good_batch("crm_activities")})
        .validate(suite_for("crm_activities", now=LOADED_AT), result_format="SUMMARY")
    )
    write_data_docs({"first": result}, tmp_path, run_id="r1")
    write_data_docs({"second": result}, tmp_path, run_id="r2")
    latest = (tmp_path / "latest" / "index.html").read_text(encoding="utf-8")
    assert "second" in latest and ">first<" not in latest
    assert (tmp_path / "r1" / "index.html").exists()
    assert "all blocking expectations met" in latest
    assert not list(tmp_path.rglob("*.tmp"))


@pytest.mark.parametrize("run_id", ["latest", "..", "..."])
def test_write_data_docs_unusable_run_id_raises(tmp_path, run_id):
    with pytest.raises(ValueError, match="cannot name"):
        write_data_docs({}, tmp_path, run_id=run_id)


def test_write_data_docs_run_id_with_path_separators_stays_inside_out_dir(tmp_path):
    page = write_data_docs({}, tmp_path, run_id="../../etc/x")
    assert page.parent.parent == tmp_path
