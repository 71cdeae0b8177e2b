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

    def __init__(self, browser: Browser, path: Path, *, media: str = "screen") -> None:
        self.console_errors: list[str] = []
        self.blocked: list[str] = []
        self.failed: list[str] = []
        self.context = browser.new_context(viewport={"width": 1100, "height": 900})
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
