"""Tests of the leadership report: content, order, languages, privacy, offline-ness and the file writer."""

from __future__ import annotations

import dataclasses
import itertools
import re
import xml.etree.ElementTree as ET
from datetime import date, datetime
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from analysis.report import ANALYSIS_TABLES, ReportInputs, headline_numbers, render_report, svg, write_report
from analysis.report.i18n import CATALOG, LANGUAGES, translator
from analysis.report.sections import latest_full_month
from tests.analysis import report_fixtures as fx

SECTION_ORDER = ["headline", "trend", "breakdown", "dose", "drivers", "revenue", "timing", "quality", "methods"]
HEADING_KEYS = ["h_headline", "h_trend", "h_breakdown", "h_dose", "h_drivers", "h_revenue", "h_timing",
                "h_quality", "h_methods"]


class _Page(HTMLParser):
    """Collects what the tests look at: section order, h2 texts, headline spans and SVG chart ids."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: list[str] = []
        self.headings: list[str] = []
        self.headline: dict[str, str] = {}
        self.charts: list[str] = []
        self._h2: list[str] | None = None
        self._span: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "section":
            self.sections.append(attributes["data-section"] or "")
        elif tag == "h2":
            self._h2 = []
        elif tag == "span" and attributes.get("data-headline"):
            self._span = attributes["data-headline"]
        elif tag == "svg":
            self.charts.append(attributes.get("data-chart") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "h2" and self._h2 is not None:
            self.headings.append("".join(self._h2).strip())
            self._h2 = None
        elif tag == "span":
            self._span = None

    def handle_data(self, data: str) -> None:
        if self._h2 is not None:
            self._h2.append(data)
        if self._span is not None:
            self.headline[self._span] = self.headline.get(self._span, "") + data


def parse(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    return page


@pytest.fixture(scope="module")
def inputs() -> ReportInputs:
    return fx.make_inputs()


@pytest.fixture(scope="module")
def html_en(inputs: ReportInputs) -> str:
    return render_report(inputs)


@pytest.fixture(scope="module")
def html_ja(inputs: ReportInputs) -> str:
    return render_report(inputs, lang="ja")


def empty_inputs() -> ReportInputs:
    return ReportInputs(as_of=fx.AS_OF, run_id=fx.RUN_ID)


# ---- structure and headline ----


def test_render_report_full_inputs_sections_in_design_order(html_en: str) -> None:
    page = parse(html_en)
    assert page.sections == SECTION_ORDER
    assert [h.split(" ", 1)[1] for h in page.headings] == [CATALOG[k]["en"] for k in HEADING_KEYS]
    assert "Not enough data" not in html_en


def test_render_report_full_inputs_every_chart_drawn(html_en: str) -> None:
    assert parse(html_en).charts == ["nps-trend", "nps-segment", "nps-business-unit", "nps-touchpoint",
                                     "dose-score", "dose-repeat", "drivers", "revenue", "contact-timing", "handoff"]


def test_render_report_headline_spans_equal_headline_numbers(inputs: ReportInputs, html_en: str) -> None:
    expected = headline_numbers(inputs.link_effects)
    shown = parse(html_en).headline
    keys = ["a_path", "a_path_ci_low", "a_path_ci_high", "b_path", "b_path_ci_low", "b_path_ci_high", "total",
            "total_ci_low", "total_ci_high", "proportion_mediated"]
    assert set(keys) <= set(shown)
    for key in keys:
        assert float(shown[key]) == expected[key], key
    # Printed with two decimals and a sign on the estimates, as the sentence promises.
    assert shown["a_path"] == "+0.52" and shown["b_path"] == "+4.10" and shown["total_ci_high"] == "3.50"


def test_headline_numbers_probability_effects_become_percentage_points() -> None:
    numbers = headline_numbers(fx.link_effects())
    assert numbers["a_path"] == 0.52  # 0-10 score points, not rescaled
    assert (numbers["b_path"], numbers["b_path_ci_low"], numbers["b_path_ci_high"]) == (4.10, 3.60, 4.61)
    assert (numbers["total"], numbers["indirect"], numbers["direct"]) == (3.27, 2.15, 1.12)
    assert numbers["proportion_mediated"] == 66 and isinstance(numbers["proportion_mediated"], int)
    assert (numbers["n_responses"], numbers["n_customers"]) == (4210, 1875)


def test_headline_numbers_missing_effect_raises_value_error() -> None:
    effects = fx.link_effects()
    with pytest.raises(ValueError, match="b_path"):
        headline_numbers(effects[effects["effect"] != "b_path"])


def test_headline_numbers_tiny_negative_estimate_prints_without_minus_zero() -> None:
    effects = fx.link_effects()
    effects.loc[effects["effect"] == "total", ["estimate", "ci_low"]] = [-0.00001, -0.004]
    numbers = headline_numbers(effects)
    assert numbers["total"] == 0.0 and str(numbers["total"]) == "0.0"


def test_render_report_total_interval_spans_zero_no_share_claimed() -> None:
    effects = fx.link_effects()
    effects.loc[effects["effect"] == "total", ["estimate", "ci_low", "ci_high"]] = [0.004, -0.002, 0.01]
    html = render_report(fx.make_inputs(link_effects=effects))
    assert 'data-headline="proportion_mediated"' not in html
    assert "cannot be pinned down" in html
    assert "contacts → repeat rate (total)" in html  # listed among the effects not distinguishable from zero


def test_render_report_states_the_share_through_the_score_with_its_interval(html_en: str, html_ja: str) -> None:
    for html in (html_en, html_ja):
        shown = parse(html).headline
        assert (shown["proportion_mediated"], shown["proportion_mediated_ci_low"],
                shown["proportion_mediated_ci_high"]) == ("66", "58", "73")
    assert re.search(r">66</span>% of it \(95% CI <span[^>]*>58</span>% to <span[^>]*>73</span>%\) through",
                     html_en)


@pytest.mark.parametrize("lang", ["en", "ja"])
def test_render_report_paths_in_opposite_directions_give_points_not_a_share(lang: str) -> None:
    """Indirect +2.15 and direct -3.00 points: indirect / total = 256%, which no reader can use."""
    # GIVEN a link whose direct effect runs against its indirect one
    effects = fx.link_effects()
    effects.loc[effects["effect"] == "direct", ["estimate", "ci_low", "ci_high"]] = [-0.0300, -0.0420, -0.0180]
    effects.loc[effects["effect"] == "total", ["estimate", "ci_low", "ci_high"]] = [-0.00853, -0.0160, -0.0011]
    effects.loc[effects["effect"] == "proportion_mediated", ["estimate", "ci_low", "ci_high"]] = [-2.517, -19.4, -1.2]
    # WHEN the report is rendered
    html = render_report(fx.make_inputs(link_effects=effects), lang=lang)
    # THEN the headline gives both parts in points with their intervals, and no share
    shown = parse(html).headline
    assert (shown["indirect"], shown["indirect_ci_low"], shown["indirect_ci_high"]) == ("+2.15", "1.87", "2.42")
    assert (shown["direct"], shown["direct_ci_low"], shown["direct_ci_high"]) == ("-3.00", "-4.20", "-1.80")
    assert "proportion_mediated" not in shown and "-252" not in html and "252%" not in html
    assert {"en": "pull in opposite directions", "ja": "両者は逆向き"}[lang] in html
    # AND with both parts the same way round the share is stated as before
    assert "proportion_mediated" in parse(render_report(fx.make_inputs(), lang=lang)).headline


def test_render_report_headline_says_what_the_estimate_does_not_rest_on(html_en: str) -> None:
    effects = fx.link_effects().assign(n_left_out=17, n_window_open=1230)
    for lang, texts in (("en", ("1,230 later responses whose 90-day window is still open", ": 17 responses")),
                        ("ja", ("回答1,230件は含みません", "回答17件"))):
        html = render_report(fx.make_inputs(link_effects=effects), lang=lang)
        assert all(text in html for text in texts), lang
    # A table from before the counts were stored (and a fit that left nothing out) says nothing of them.
    assert "window is still open" not in html_en and "Left out for a missing value" not in html_en


def test_render_report_interval_that_rounds_to_zero_but_excludes_it_is_not_called_uncertain() -> None:
    # 0.00004 to 0.00088 prints as "0.00 to 0.09" (percentage points); it still lies above zero.
    effects = fx.link_effects()
    effects.loc[effects["effect"] == "total", ["estimate", "ci_low", "ci_high"]] = [0.0005, 0.00004, 0.00088]
    effects.loc[effects["effect"] == "a_path", ["ci_low"]] = [0.004]
    html = render_report(fx.make_inputs(link_effects=effects))
    assert "cannot be pinned down" not in html
    assert "whose 95% interval includes zero" not in html


def _trend_svg(html: str) -> str:
    return html.split('data-chart="nps-trend"')[1].split("</svg>")[0]


@pytest.mark.parametrize("lang", LANGUAGES)
def test_render_report_trend_draws_a_month_of_few_responses_hollow_and_says_why(lang: str) -> None:
    # The last month's relational responses: one promoter, whose margin is NULL (n < 2), so no band.
    period = fx.nps_by_period()
    last = (period["period_month"] == fx.MONTHS[-1].date()) & (period["survey_type"] == "relational") & (
        period["dimension"] == "overall")
    period.loc[last, ["responses", "promoters", "passives", "detractors", "nps", "nps_moe95"]] = [1, 1, 0, 0, 100.0,
                                                                                                 None]
    chart = _trend_svg(render_report(fx.make_inputs(nps_by_period=period, nps_changes=None), lang=lang))
    hollow = re.findall(r'<(?:circle|rect|polygon)[^>]*fill="#ffffff"', chart)
    assert len(hollow) == 2  # the relational line's last point, and the legend's sample
    assert translator(lang)("legend_small_n", min_n=30) in chart
    full = _trend_svg(render_report(fx.make_inputs(), lang=lang))
    assert 'fill="#ffffff"' not in full and translator(lang)("legend_small_n", min_n=30) not in full


def test_render_report_trend_labels_the_month_the_cut_off_falls_in() -> None:
    inputs = dataclasses.replace(fx.make_inputs(), as_of=datetime(2025, 6, 15, 3, 0, 0))  # 12:00 in Tokyo
    html = render_report(inputs)
    assert ">2025-06*<" in _trend_svg(html)
    assert "* 2025-06 is still in progress: its figures cover responses up to the cut-off, 2025-06-15." in html
    full = render_report(fx.make_inputs())
    assert "still in progress" not in full and ">2025-06<" in _trend_svg(full)


# ---- languages ----


def test_catalog_every_text_has_every_language() -> None:
    for key, texts in CATALOG.items():
        assert set(texts) == set(LANGUAGES), key
        assert all(texts[lang].strip() for lang in LANGUAGES), key


def test_render_report_japanese_headings_translated(html_ja: str) -> None:
    page = parse(html_ja)
    assert page.sections == SECTION_ORDER
    assert [h.split(" ", 1)[1] for h in page.headings] == [CATALOG[k]["ja"] for k in HEADING_KEYS]
    assert '<html lang="ja">' in html_ja
    for english in ("Methods and caveats", "Not enough data", "Significant month-on-month", "Mean rating",
                    "Rejected files", "Outbound contacts per month"):
        assert english not in html_ja


def test_render_report_japanese_numbers_equal_english(html_en: str, html_ja: str) -> None:
    assert parse(html_ja).headline == parse(html_en).headline


def test_render_report_unknown_language_raises_value_error(inputs: ReportInputs) -> None:
    with pytest.raises(ValueError, match="unsupported report language"):
        render_report(inputs, lang="fr")


# ---- offline and private ----


@pytest.mark.parametrize("lang", LANGUAGES)
def test_render_report_output_references_nothing_outside(inputs: ReportInputs, lang: str) -> None:
    html = render_report(inputs, lang=lang)
    for needle in ("http", "//", "url(", "<script", "<link", "<img", "<iframe", "@import", "src=", "href="):
        assert needle not in html.lower(), needle


def test_render_report_stray_comment_and_email_never_shown(inputs: ReportInputs, html_en: str,
                                                           html_ja: str) -> None:
    # The fixtures put a comment column with an e-mail address in two frames, and an address in a reason.
    assert "comment" in inputs.nps_by_period.columns and "comment" in inputs.load_audit.columns
    for html in (html_en, html_ja):
        assert fx.SECRET_EMAIL not in html
        assert fx.SECRET_COMMENT not in html
        assert not re.search(r"[\w.+-]+@[\w-]+\.[\w.]+", html)
    assert "(sent by [redacted])" in html_en


def test_render_report_email_or_url_in_a_group_label_is_blanked() -> None:
    period = fx.nps_by_period()
    period.loc[period["dimension_value"] == "smb", "dimension_value"] = "ops@corp.example.com"
    period.loc[period["dimension_value"] == "media", "dimension_value"] = "see https://intranet.example/x"
    html = render_report(fx.make_inputs(nps_by_period=period))
    assert "ops@corp" not in html and "intranet.example" not in html and "http" not in html


def test_render_report_does_not_modify_its_inputs(inputs: ReportInputs) -> None:
    before = {name: getattr(inputs, name).copy() for name in (*ANALYSIS_TABLES, "nps_by_period", "load_audit")}
    render_report(inputs)
    for name, frame in before.items():
        pd.testing.assert_frame_equal(getattr(inputs, name), frame)


# ---- missing data ----


@pytest.mark.parametrize("lang", LANGUAGES)
def test_render_report_no_inputs_every_data_section_says_not_enough_data(lang: str) -> None:
    html = render_report(empty_inputs(), lang=lang)
    page = parse(html)
    assert page.sections == SECTION_ORDER
    assert page.charts == []
    label = CATALOG["not_enough_data"][lang].split("{")[0]
    assert html.count('class="not-enough"') == 8  # every section but the methods
    assert html.count(label) == 8


def test_render_report_empty_frames_say_not_enough_data_naming_the_table() -> None:
    empty = {name: pd.DataFrame() for name in (*ANALYSIS_TABLES, "nps_by_period", "load_audit")}
    html = render_report(fx.make_inputs(**empty))
    assert "Not enough data: the table analysis.link_effects has no rows in this run." in html
    assert "Not enough data: the table marts.load_audit has no rows in this run." in html


def test_render_report_missing_column_says_which() -> None:
    dose = fx.dose_response().drop(columns=["repeat_ci_high"])
    html = render_report(fx.make_inputs(dose_response=dose))
    assert "Not enough data: the table analysis.dose_response lacks the columns repeat_ci_high." in html
    assert 'data-chart="dose-score"' not in html
    assert 'data-chart="drivers"' in html  # other sections are unaffected


def test_render_report_missing_headline_effect_says_which() -> None:
    effects = fx.link_effects()
    html = render_report(fx.make_inputs(link_effects=effects[effects["effect"] != "indirect"]))
    assert "Not enough data: the link model did not report the effects indirect." in html


def test_render_report_all_nan_values_do_not_crash() -> None:
    timing = fx.contact_timing()
    timing[["nps", "nps_moe95", "repeat_rate"]] = float("nan")
    drivers = fx.key_drivers().assign(importance=float("nan"))
    html = render_report(fx.make_inputs(contact_timing=timing, key_drivers=drivers))
    assert "analysis.key_drivers has no rows" in html
    assert 'data-chart="handoff"' in html and 'data-chart="contact-timing"' not in html


# ---- section content ----


@pytest.mark.parametrize("lang", ["en", "ja"])
def test_render_report_timing_repeat_rate_has_its_interval_and_is_flagged_on_known_outcomes(lang: str) -> None:
    """A bin with many responses but few closed repeat windows: a firm NPS, an uncertain repeat rate."""
    # GIVEN a hand-off bin of 930 responses of which only 12 have a known repeat outcome
    handoff = fx.handoff()
    handoff.loc[2, ["repeat_rate", "repeat_ci_low", "repeat_ci_high", "repeat_n"]] = [0.5, 0.254, 0.746, 12]
    t = translator(lang)
    # WHEN the report is rendered
    html = render_report(fx.make_inputs(handoff=handoff), lang=lang)
    # THEN that bin shows its repeat interval and the few-outcomes flag, not the small-sample one
    row = re.search(r"<tr[^>]*><td>[^<]*</td><td class=\"r\">402</td>.*?</tr>", html, re.S)
    assert row is not None
    assert "50.0 (25.4 – 74.6)" in row.group(0)
    assert t("flag_few_outcomes") in row.group(0) and t("flag_small_n") not in row.group(0)
    assert t("timing_few_outcomes", min_n=30) in html
    # AND a bin with many known outcomes carries no flag, but its interval
    first = re.search(r"<tr[^>]*><td>[^<]*</td><td class=\"r\">702</td>.*?</tr>", html, re.S)
    assert first is not None and "<td></td>" in first.group(0)
    assert re.search(r"60\.0 \(5\d\.\d – 6\d\.\d\)", first.group(0))


@pytest.mark.parametrize("lang", ["en", "ja"])
def test_render_report_drivers_warn_when_the_items_explain_little_of_the_score(lang: str) -> None:
    """Importance is a share of R-squared and sums to 100% however weak the fit: a review's items that
    explained 0.6% of the score still showed one at 58.7% and first to improve."""
    # GIVEN key drivers whose items explain 4.8% of the score's variation
    weak = fx.key_drivers()
    weak["raw_weight"] = weak["raw_weight"] / 10
    html = render_report(fx.make_inputs(key_drivers=weak), lang=lang)
    drivers = html[html.index('id="s-drivers"'):html.index('id="s-revenue"')]
    t = translator(lang)
    # THEN the section says so, and that the ranking says little
    assert t("drivers_fit", r2="4.8") in drivers
    assert t("drivers_weak_fit") in drivers


@pytest.mark.parametrize("lang", ["en", "ja"])
def test_render_report_drivers_list_every_item_not_ranked_with_why_and_the_fit_they_rest_on(lang: str) -> None:
    # GIVEN key drivers of eight ranked items fitted on 2,950 responses, and two items not ranked
    html = render_report(fx.make_inputs(), lang=lang)
    drivers = html[html.index('id="s-drivers"'):html.index('id="s-revenue"')]
    t = translator(lang)
    # THEN the section says on how many responses the ranking rests
    assert t("drivers_basis", n_fit="2,950", k="8") in drivers
    # AND how much of the score the items explain together (R-squared, the sum of the raw weights)
    assert t("drivers_fit", r2="48.0") in drivers and t("drivers_weak_fit") not in drivers
    # AND lists each item without an importance, with its rating and why, in the report's language
    assert t("drivers_not_ranked") in drivers
    assert t("drivers_not_ranked_item", driver="billing accuracy", score="7.26", n="734",
             why=t("why_not_rated_together")) in drivers
    assert t("drivers_not_ranked_item", driver="website", score="6.10", n="410", why=t("why_unknown")) in drivers
    # AND the analysis' English detail is not what a reader is shown
    assert "min_n=50" not in drivers


def test_render_report_drivers_of_a_table_from_before_the_exclusion_columns_still_render() -> None:
    drivers = fx.key_drivers().drop(columns=["n_fit", "excluded_reason", "excluded_rule"])
    html = render_report(fx.make_inputs(key_drivers=drivers))
    section = html[html.index('id="s-drivers"'):html.index('id="s-revenue"')]
    assert 'data-chart="drivers"' in section and "Importance comes from" not in section
    assert "billing accuracy (mean rating 7.26, n = 734): the reason is in analysis.key_drivers" in section


def test_every_key_driver_exclusion_rule_has_words_in_both_languages() -> None:
    from analysis.tables import KEY_DRIVER_EXCLUSIONS

    missing = [(rule, lang) for rule in KEY_DRIVER_EXCLUSIONS for lang in LANGUAGES
               if not CATALOG.get(f"why_{rule}", {}).get(lang, "").strip()]
    assert missing == []


def test_render_report_small_groups_flagged(html_en: str) -> None:
    # 'consumer' (about 18 responses over three months) and the 24-response 'no hand-off' group.
    assert re.search(r'<tr class="small-n"><td>consumer</td>', html_en)
    assert "no hand-off †" in html_en
    assert "NPS ranges from -9.3 (&gt; 30 days) to 18.4 (≤ 7 days)" in html_en  # small group left out


def test_render_report_breakdown_pools_last_three_full_months(html_en: str) -> None:
    assert "Months covered: 2025-04 to 2025-06" in html_en


def test_render_report_mid_month_cutoff_excludes_the_partial_month() -> None:
    html = render_report(fx.make_inputs(as_of=datetime(2025, 6, 15, 3, 0, 0)))
    assert "Months covered: 2025-03 to 2025-05" in html


def test_latest_full_month_uses_reporting_time_zone() -> None:
    # 2025-06-30 15:00 UTC is already 2025-07-01 00:00 in Tokyo: June is complete there, not in UTC.
    tokyo = fx.make_inputs(as_of=datetime(2025, 6, 30, 15, 0, 0))
    utc = fx.make_inputs(as_of=datetime(2025, 6, 30, 15, 0, 0), reporting_tz="UTC")
    assert (latest_full_month(tokyo), latest_full_month(utc)) == ("2025-06", "2025-05")


def test_render_report_lists_significant_recent_changes_with_adjusted_p(inputs: ReportInputs,
                                                                       html_en: str) -> None:
    changes = inputs.nps_changes
    months = pd.to_datetime(changes["period_month"]).dt.strftime("%Y-%m")
    flagged = changes[changes["is_significant"] & months.isin(["2025-04", "2025-05", "2025-06"])]
    assert len(flagged) > 0  # the fixture must exercise the list
    section = html_en.split('data-section="trend"')[1].split("</section>")[0]
    listed = re.findall(r"<tr><td>(\d{4}-\d{2})</td>", section)
    assert len(listed) == min(len(flagged), 15)
    assert listed == sorted(listed, reverse=True)
    assert "p-value (adjusted)" in section
    assert "Benjamini–Hochberg" in html_en


def test_render_report_data_quality_counts_and_rejected_file(html_en: str) -> None:
    assert "survey/responses_broken.csv" in html_en
    assert "required column customer_id missing" in html_en
    # The duplicate activities file counts as a file only: 1,900 + 48,210 + 4,730 + 12,880 rows read.
    assert "<td class=\"r\">67,720</td>" in html_en


def _quarantine_rows(html: str) -> list[list[str]]:
    """The cells of the report's 'why rows were quarantined' table, row by row."""
    table = html.split('<table class="quarantine">')[1].split("</table>")[0]
    return [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", table)[1:]]


def test_render_report_data_quality_says_why_rows_were_quarantined_per_source_and_column(html_en: str,
                                                                                        html_ja: str) -> None:
    rows = _quarantine_rows(html_en)
    assert rows[:4] == [
        ["crm_accounts", "created_at", "in the future", "1"],
        ["crm_accounts", "created_at", "not a valid value of the column&#39;s type", "1"],
        ["crm_accounts", "segment", "not one of the allowed values", "1"],
        ["crm_activities", "occurred_at", "not a valid value of the column&#39;s type", "100"],
    ]
    assert ["survey_responses", "nps_score", "outside the allowed range", "9"] in rows
    assert ["survey_responses", "comment", "value too long", "1"] in rows
    assert ["survey_responses", "customer_id", "required value missing", "1"] in rows
    # Every rule of every file counted once; per source, most rows first.
    assert sum(int(r[3].replace(",", "")) for r in rows) == 3 + 108 + 15
    assert [r[3] for r in rows if r[0] == "crm_activities"] == ["100", "5", "2", "1"]
    assert ["survey_responses", "nps_score", "許容範囲外", "9"] in _quarantine_rows(html_ja)


def test_render_report_data_quality_rule_of_an_unknown_kind_or_a_column_with_a_colon(inputs: ReportInputs) -> None:
    audit = inputs.load_audit.copy()
    audit["rule_counts"] = ['{"driver_a:b:range": 2}', '{"legacy_rule": 4}', "{}", "{}", "not json", None]
    html = render_report(dataclasses.replace(inputs, load_audit=audit))
    assert _quarantine_rows(html) == [
        ["crm_accounts", "driver_a:b", "outside the allowed range", "2"],
        ["crm_activities", "–", "legacy_rule", "4"],
    ]


@pytest.mark.parametrize(("lang", "words"),
                         [("en", "key repeated within the file"), ("ja", "同じファイル内でキーが重複")])
def test_render_report_data_quality_words_a_key_repeated_within_a_file(inputs: ReportInputs, lang: str,
                                                                       words: str) -> None:
    audit = inputs.load_audit.copy()
    audit["rule_counts"] = ['{"response_id:unique_in_file": 3}', "{}", "{}", "{}", "{}", "{}"]
    html = render_report(dataclasses.replace(inputs, load_audit=audit), lang=lang)
    assert _quarantine_rows(html) == [["crm_accounts", "response_id", words, "3"]]


@pytest.mark.parametrize("lang", LANGUAGES)
def test_render_report_data_quality_counts_no_rows_for_a_rejected_file_and_says_why(inputs: ReportInputs,
                                                                                   lang: str) -> None:
    """A refused file's rows are never read: a column of its rows showed 0 as if it had been empty."""
    html = render_report(inputs, lang=lang)
    assert "Rows in rejected files" not in html and "却下ファイルの行数" not in html
    assert CATALOG["rejected_note"][lang] in html
    # Without a refused file there is nothing to explain.
    audit = inputs.load_audit[inputs.load_audit["status"] != "rejected"]
    assert CATALOG["rejected_note"][lang] not in render_report(dataclasses.replace(inputs, load_audit=audit), lang=lang)


def test_render_report_data_quality_without_quarantined_rows_says_so(inputs: ReportInputs) -> None:
    audit = inputs.load_audit.assign(rule_counts="{}", rows_quarantined=0)
    html = render_report(dataclasses.replace(inputs, load_audit=audit))
    assert '<table class="quarantine">' not in html
    assert "No row was quarantined." in html


def test_render_report_revenue_and_correlation(html_en: str) -> None:
    assert "1,512,300,000" in html_en
    assert "r = 0.41 (95% CI 0.19 to 0.60)" in html_en
    # The pooled r stands beside the one within segments, which is what a segment's NPS moving says.
    assert "Comparing each of the 4 segments only with its own other months, r = 0.18 (95% CI -0.10 to 0.44)" in html_en


def test_render_report_correlation_within_segments_absent_or_undefined() -> None:
    frame = fx.nps_revenue()
    corr = frame["category"] == "correlation_segment_month"
    frame.loc[corr, ["corr_within_segment", "corr_within_segment_ci_low", "corr_within_segment_ci_high"]] = None
    assert "too few months per segment" in render_report(fx.make_inputs(nps_revenue=frame))
    # A table written before the within figure existed: the pooled sentence alone, no error.
    older = render_report(fx.make_inputs(nps_revenue=fx.nps_revenue().drop(
        columns=["corr_within_segment", "corr_within_segment_ci_low", "corr_within_segment_ci_high", "n_segments"])))
    assert "r = 0.41 (95% CI 0.19 to 0.60)" in older and "only with its own other months" not in older


@pytest.mark.parametrize("lang", LANGUAGES)
def test_render_report_revenue_mean_shows_the_responses_it_rests_on_and_flags_a_few(lang: str) -> None:
    # 1,650 promoter responses, but only 12 whose 365-day window has closed: the mean rests on those 12.
    frame = fx.nps_revenue()
    frame["revenue_responses"] = frame["category"].map({"promoter": 12, "passive": 900, "detractor": 700})
    html = render_report(fx.make_inputs(nps_revenue=frame), lang=lang)
    revenue = html.split('data-section="revenue"')[1].split("</section>")[0]
    cells = [re.findall(r"<td[^>]*>([^<]*)</td>", row) for row in re.findall(r"<tr><td>.*?</tr>", revenue, re.S)]
    assert [c[3] for c in cells] == ["12", "900", "700"]
    assert cells[0][5].endswith(" †") and not cells[1][5].endswith("†") and not cells[2][5].endswith("†")
    assert CATALOG["col_revenue_responses"][lang] in revenue
    assert translator(lang)("revenue_observed_note", days=365, min_n=30) in revenue


@pytest.mark.parametrize("lang", LANGUAGES)
def test_render_report_revenue_mean_has_its_interval_clustered_by_customer(lang: str) -> None:
    frame = fx.nps_revenue()
    frame["revenue_after_mean_ci_low"] = frame["category"].map({"promoter": 850_100.4, "passive": 640_000.0})
    frame["revenue_after_mean_ci_high"] = frame["category"].map({"promoter": 983_000.0, "passive": 746_760.0})
    html = render_report(fx.make_inputs(nps_revenue=frame), lang=lang)
    revenue = html.split('data-section="revenue"')[1].split("</section>")[0]
    cells = [re.findall(r"<td[^>]*>([^<]*)</td>", row) for row in re.findall(r"<tr><td>.*?</tr>", revenue, re.S)]
    # The detractors' mean rests on one customer here: no interval.
    assert [c[6] for c in cells] == ["850,100 – 983,000", "640,000 – 746,760", "–"]
    assert CATALOG["col_revenue_mean_ci"][lang] in revenue and CATALOG["revenue_interval_note"][lang] in revenue
    # A table from before the interval existed: the column says "–" and the note is not there.
    old = render_report(fx.make_inputs(nps_revenue=fx.nps_revenue()), lang=lang)
    assert CATALOG["revenue_interval_note"][lang] not in old


def test_render_report_methods_name_the_covariates(html_en: str) -> None:
    # Names the catalog does not know are shown with spaces for underscores.
    assert "Adjusted for: segment, business unit, tenure days, revenue prior 365d, inbound before." in html_en


@pytest.mark.parametrize("lang", LANGUAGES)
def test_render_report_methods_name_every_covariate_of_the_link_model_in_words(inputs: ReportInputs,
                                                                               lang: str) -> None:
    """The pipeline's covariates reach leadership as words, not column names such as handoff_days_filled."""
    from orchestration.defs.analysis.assets import LINK_COVARIATES

    assert all(f"cov_{c}" in CATALOG for c in LINK_COVARIATES)
    html = render_report(dataclasses.replace(inputs, covariates=LINK_COVARIATES), lang=lang)
    methods = html.split('data-section="methods"')[1]
    for covariate in LINK_COVARIATES:
        assert CATALOG[f"cov_{covariate}"][lang] in methods
    assert not any(covariate in methods for covariate in LINK_COVARIATES if "_" in covariate)


# ---- SVG helpers ----


def _parse_svg(markup: str) -> ET.Element:
    root = ET.fromstring(str(markup))
    assert root.tag == "svg" and root.get("data-chart")
    return root


def test_line_chart_gaps_and_marks_valid_xml() -> None:
    chart = svg.line_chart(
        chart_id="t", title="A & <B>", x_labels=["2025-01", "2025-02", "2025-03"],
        series=[svg.LineSeries("all", [10.0, None, 30.0], [5.0, None, 20.0], [15.0, None, 40.0]),
                svg.LineSeries("x", [float("nan"), 12.0, 14.0])],
        x_label="Month", y_label="NPS", marks=[svg.PointMark(series=0, x_index=2, up=True)], mark_label="sig",
    )
    root = _parse_svg(chart)
    assert root.find("title").text == "A & <B>"
    paths = [p.get("d") for p in root.iter("path")]
    # The missing middle month breaks the first line into two single points (two M commands, no L).
    assert paths[0].count("M") == 2 and "L" not in paths[0]
    assert paths[1].count("M") == 1 and paths[1].count("L") == 1
    assert any(poly.get("fill") == "#c62828" for poly in root.iter("polygon"))


def test_interval_forest_scatter_bar_charts_valid_xml() -> None:
    items = [svg.Interval("a<1", 1.0, 0.5, 1.5), svg.Interval("b", None), svg.Interval("c", 2.0, 1.0, 3.0, True)]
    charts = [
        svg.interval_chart(chart_id="i", title="t", items=items, x_label="x", y_label="y"),
        svg.forest_chart(chart_id="f", title="t", items=items, x_label="x", reference=0.0),
        svg.scatter_chart(chart_id="s", title="t", points=[svg.ScatterPoint(1, 2, "p&q"),
                                                           svg.ScatterPoint(3, 1, "重要", True)],
                          x_label="x", y_label="y"),
        svg.bar_chart(chart_id="b", title="t", labels=["x", "y"], values=[5.0, None], x_label="v",
                      value_format=str),
    ]
    for chart in charts:
        root = _parse_svg(chart)
        assert float(root.get("width")) > 0 and float(root.get("height")) > 0
    assert "† " not in "".join(ET.fromstring(str(charts[0])).itertext())  # only the forest chart marks flags
    assert "c †" in "".join(ET.fromstring(str(charts[1])).itertext())


def test_chart_helpers_no_finite_value_raise_value_error() -> None:
    with pytest.raises(ValueError):
        svg.interval_chart(chart_id="i", title="t", items=[svg.Interval("a", None)], x_label="x", y_label="y")
    with pytest.raises(ValueError):
        svg.line_chart(chart_id="l", title="t", x_labels=["a"], series=[svg.LineSeries("s", [None])],
                       x_label="x", y_label="y")
    with pytest.raises(ValueError, match="2 values for 1"):
        svg.line_chart(chart_id="l", title="t", x_labels=["a"], series=[svg.LineSeries("s", [1.0, 2.0])],
                       x_label="x", y_label="y")


@pytest.mark.parametrize(("low", "high"), [(0.0, 1.0), (-37.2, 81.9), (6.41, 8.02), (5.0, 5.0), (0.0, 1.5e9)])
def test_nice_ticks_cover_range_with_even_round_steps(low: float, high: float) -> None:
    ticks = svg.nice_ticks(low, high)
    assert ticks[0] <= low and ticks[-1] >= high
    steps = {round(b - a, 9) for a, b in itertools.pairwise(ticks)}
    assert len(steps) == 1
    mantissa = f"{steps.pop():e}".split("e")[0]
    assert float(mantissa) in (1.0, 2.0, 2.5, 5.0)
    assert 3 <= len(ticks) <= 8


def test_text_width_counts_wide_characters_double() -> None:
    assert svg.text_width("重要", 10) == pytest.approx(20)
    assert svg.text_width("ab", 10) == pytest.approx(11.6)


# ---- write_report ----


def test_write_report_latest_and_dated_copies_with_csvs(inputs: ReportInputs, html_en: str, tmp_path: Path) -> None:
    tables = inputs.analysis_tables()
    paths = write_report(html_en, tmp_path, as_of=date(2025, 6, 30), tables=tables)
    assert paths.latest_html == tmp_path / "leadership_report.html"
    assert paths.dated_html == tmp_path / "2025-06-30" / "leadership_report.html"
    assert paths.latest_html.read_text(encoding="utf-8") == html_en == paths.dated_html.read_text(encoding="utf-8")
    assert set(paths.latest_csv) == set(paths.dated_csv) == set(ANALYSIS_TABLES)
    for name in ANALYSIS_TABLES:
        assert paths.latest_csv[name] == tmp_path / f"{name}.csv"
        assert paths.dated_csv[name] == tmp_path / "2025-06-30" / f"{name}.csv"
        assert len(pd.read_csv(paths.dated_csv[name])) == len(tables[name])
    assert not list(tmp_path.rglob("*.tmp"))


def test_write_report_second_day_keeps_history_and_replaces_latest(tmp_path: Path) -> None:
    write_report("<p>day one</p>", tmp_path, as_of=date(2025, 6, 29), tables={})
    write_report("<p>day two</p>", tmp_path, as_of=date(2025, 6, 30), tables={})
    assert (tmp_path / "2025-06-29" / "leadership_report.html").read_text(encoding="utf-8") == "<p>day one</p>"
    assert (tmp_path / "leadership_report.html").read_text(encoding="utf-8") == "<p>day two</p>"


def test_write_report_of_a_look_back_writes_the_dated_copy_only(tmp_path: Path) -> None:
    table = {"link_effects": pd.DataFrame({"effect": ["total"], "estimate": [0.05]})}
    write_report("<p>September</p>", tmp_path, as_of=date(2026, 9, 29), tables=table)
    # A run for 2026-06-30 after September's: its own dated folder, the latest report stays September's.
    june = {"link_effects": pd.DataFrame({"effect": ["total"], "estimate": [0.02]})}
    paths = write_report("<p>June</p>", tmp_path, as_of=date(2026, 6, 30), tables=june, latest=False)
    assert paths.dated_html.read_text(encoding="utf-8") == "<p>June</p>"
    assert "0.02" in (tmp_path / "2026-06-30" / "link_effects.csv").read_text(encoding="utf-8")
    assert (tmp_path / "leadership_report.html").read_text(encoding="utf-8") == "<p>September</p>"
    assert "0.05" in (tmp_path / "link_effects.csv").read_text(encoding="utf-8")
    assert paths.latest_csv == {}


def test_write_report_drops_the_csv_of_a_table_this_report_has_not(tmp_path: Path) -> None:
    day = date(2025, 6, 30)
    both = {"key_drivers": pd.DataFrame({"driver": ["a"]}), "link_effects": pd.DataFrame({"effect": ["total"]})}
    write_report("<p>first run</p>", tmp_path, as_of=day, tables=both)
    (tmp_path / "notes.txt").write_text("not a table", encoding="utf-8")

    # A rerun of the day in which the drivers had not enough data: no drivers table.
    paths = write_report("<p>second run</p>", tmp_path, as_of=day, tables={"link_effects": both["link_effects"]})

    for folder in (tmp_path, tmp_path / day.isoformat()):
        assert sorted(p.name for p in folder.glob("*.csv")) == ["link_effects.csv"]
    assert set(paths.latest_csv) == {"link_effects"}
    assert (tmp_path / "notes.txt").exists()


def test_write_report_private_columns_left_out_of_csv(tmp_path: Path) -> None:
    frame = pd.DataFrame({"driver": ["x"], "importance": [1.0], "comment": [fx.SECRET_COMMENT],
                          "email": [fx.SECRET_EMAIL]})
    paths = write_report("<p></p>", tmp_path, as_of=date(2025, 6, 30), tables={"key_drivers": frame})
    text = paths.latest_csv["key_drivers"].read_text(encoding="utf-8")
    assert text.splitlines()[0] == "driver,importance"
    assert fx.SECRET_EMAIL not in text


def test_write_report_path_like_table_name_raises_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="plain lowercase identifier"):
        write_report("<p></p>", tmp_path, as_of=date(2025, 6, 30), tables={"../escape": pd.DataFrame()})
    assert not list(tmp_path.iterdir())


def test_render_report_ignores_the_marts_pre_pooled_all_survey_type_rows(inputs: ReportInputs) -> None:
    # marts.nps_by_period carries survey_type 'all' besides each type; pooled with them, every
    # response would count twice (doubled n, too-small margin of error) and the trend would show
    # the same line twice.
    period = fx.nps_by_period()
    counts = ["responses", "promoters", "passives", "detractors"]
    all_rows = period.groupby(["period_month", "dimension", "dimension_value"], as_index=False)[counts].sum()
    all_rows["survey_type"] = "all"
    all_rows["nps"] = 100 * (all_rows["promoters"] - all_rows["detractors"]) / all_rows["responses"]
    all_rows["nps_moe95"] = 1.0
    with_all = pd.concat([period, all_rows.reindex(columns=period.columns)], ignore_index=True)
    plain = render_report(fx.make_inputs(nps_by_period=period))
    assert render_report(fx.make_inputs(nps_by_period=with_all)) == plain
