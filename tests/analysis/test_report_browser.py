"""The leadership report opened in headless Chromium with the network off: it must render whole, alone.

Uses Debian's Chromium (`make setup-browser`) through the playwright package; playwright's own
browser download cannot work offline. Every request that is not the report file itself is
blocked and recorded, so a reference to anything outside fails the test rather than loading.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Route, sync_playwright

from analysis.report import ReportInputs, headline_numbers, render_report
from tests.analysis import report_fixtures as fx

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
CHARTS = ["nps-trend", "nps-segment", "nps-business-unit", "nps-touchpoint", "dose-score", "dose-repeat",
          "drivers", "revenue", "contact-timing", "handoff"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


class _Visit:
    """One page load of a report file, with every console error, blocked and failed request recorded."""

    def __init__(self, browser: Browser, path: Path, *, media: str = "screen", width: int = 1100) -> None:
        self.console_errors: list[str] = []
        self.blocked: list[str] = []
        self.failed: list[str] = []
        self.context = browser.new_context(viewport={"width": width, "height": 900})
        self.context.route("**/*", self._only_the_file)
        self.page: Page = self.context.new_page()
        self.page.on("console", lambda m: self.console_errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.console_errors.append(str(e)))
        self.page.on("requestfailed", lambda r: self.failed.append(r.url))
        self.page.emulate_media(media=media)  # type: ignore[arg-type]
        self.url = path.as_uri()
        self.page.goto(self.url, wait_until="load")

    def _only_the_file(self, route: Route) -> None:
        if route.request.url == self.url:
            route.continue_()
        else:
            self.blocked.append(route.request.url)
            route.abort()

    def close(self) -> None:
        self.context.close()


def _png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", header[16:24])


@pytest.mark.parametrize("lang", ["en", "ja"])
def test_report_in_chromium_offline_renders_every_chart_and_headline(browser: Browser, tmp_path: Path,
                                                                     lang: str) -> None:
    inputs = fx.make_inputs()
    report = tmp_path / f"leadership_report_{lang}.html"
    report.write_text(render_report(inputs, lang=lang), encoding="utf-8")
    visit = _Visit(browser, report)
    try:
        page = visit.page
        assert page.evaluate("document.documentElement.lang") == lang
        # The stylesheet as written: escaped quotes (&#34;) would void the font-family and fall back to serif.
        font = page.evaluate("getComputedStyle(document.body).fontFamily")
        assert font.startswith('system-ui, -apple-system, "Segoe UI"')
        assert page.locator("svg[data-chart]").evaluate_all("els => els.map(e => e.dataset.chart)") == CHARTS
        for chart in CHARTS:
            box = page.locator(f'svg[data-chart="{chart}"]').bounding_box()
            assert box is not None and box["width"] > 100 and box["height"] > 50, chart
        shown = page.locator("[data-headline]").evaluate_all(
            "els => Object.fromEntries(els.map(e => [e.dataset.headline, e.textContent]))"
        )
        expected = headline_numbers(inputs.link_effects)
        assert shown and {key: float(text) for key, text in shown.items()} == {k: expected[k] for k in shown}
        assert page.locator("section[data-section]").count() == 9
        screenshot = tmp_path / f"leadership_report_{lang}.png"
        page.screenshot(path=str(screenshot), full_page=True)
        width, height = _png_size(screenshot)
        assert width >= 1000 and height > 3000  # the whole report, not one screen of it
        assert visit.console_errors == []
        assert visit.failed == [] and visit.blocked == []
    finally:
        visit.close()


def test_report_in_chromium_print_media_keeps_charts_visible(browser: Browser, tmp_path: Path) -> None:
    report = tmp_path / "leadership_report.html"
    report.write_text(render_report(fx.make_inputs()), encoding="utf-8")
    visit = _Visit(browser, report, media="print")
    try:
        for chart in visit.page.locator("svg[data-chart]").all():
            box = chart.bounding_box()
            assert box is not None and box["width"] > 100 and box["height"] > 50
        pdf = visit.page.pdf(format="A4")
        assert pdf.startswith(b"%PDF") and len(pdf) > 10_000
        assert visit.console_errors == [] and visit.failed == [] and visit.blocked == []
    finally:
        visit.close()


# Every box whose right edge lies beyond the body's content box (the page's column), with its text.
OUTSIDE_THE_COLUMN_JS = """() => {
    const body = document.body.getBoundingClientRect();
    const right = body.right - parseFloat(getComputedStyle(document.body).paddingRight) + 0.5;
    return [...document.querySelectorAll("section *")]
        .filter(e => e.getBoundingClientRect().right > right)
        .map(e => e.tagName + ": " + e.textContent.slice(0, 60));
}"""


@pytest.mark.parametrize(("lang", "media", "width"), [("en", "screen", 1100), ("ja", "screen", 1100),
                                                      ("en", "print", 720), ("ja", "print", 720)])
def test_report_in_chromium_every_table_fits_the_column(browser: Browser, tmp_path: Path, lang: str, media: str,
                                                         width: int) -> None:
    """Nothing sticks out of the page's column on a desktop screen or an A4 page (720 px of text width).

    The data-quality table once listed every quarantine rule of a source in one cell: names such as
    `responded_at:not_in_future` cannot wrap, so the table grew past the column and its last column
    was cut off on screen and in print.
    """
    report = tmp_path / f"leadership_report_{lang}.html"
    report.write_text(render_report(fx.make_inputs(), lang=lang), encoding="utf-8")
    visit = _Visit(browser, report, media=media, width=width)
    try:
        assert visit.page.evaluate(OUTSIDE_THE_COLUMN_JS) == []
        assert visit.page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    finally:
        visit.close()


def test_report_in_chromium_on_a_phone_only_a_wide_table_scrolls_not_the_page(browser: Browser,
                                                                               tmp_path: Path) -> None:
    """At 390 px a table wider than the screen scrolls inside its own box; the page never scrolls sideways."""
    report = tmp_path / "leadership_report.html"
    report.write_text(render_report(fx.make_inputs()), encoding="utf-8")
    visit = _Visit(browser, report, width=390)
    try:
        page = visit.page
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        outside = page.evaluate(OUTSIDE_THE_COLUMN_JS.replace('"section *"', '"section *:not(.table-wrap *)"'))
        assert outside == []
        # The data-quality table is one that needs the room: it scrolls in its box rather than being cut.
        wraps = page.locator('section[data-section="quality"] .table-wrap')
        assert wraps.count() >= 1
        assert wraps.first.evaluate("e => e.scrollWidth > e.clientWidth && getComputedStyle(e).overflowX === 'auto'")
    finally:
        visit.close()


def test_report_in_chromium_no_inputs_shows_not_enough_data(browser: Browser, tmp_path: Path) -> None:
    report = tmp_path / "empty_report.html"
    report.write_text(render_report(ReportInputs(as_of=fx.AS_OF, run_id=fx.RUN_ID)), encoding="utf-8")
    visit = _Visit(browser, report)
    try:
        notes = visit.page.locator(".not-enough")
        assert notes.count() == 8
        assert all(text.startswith("Not enough data: ") for text in notes.all_inner_texts())
        assert visit.console_errors == [] and visit.failed == [] and visit.blocked == []
    finally:
        visit.close()
