"""Render the leadership report: one self-contained, offline HTML document in English or Japanese."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import jinja2
from markupsafe import Markup

from analysis.report.i18n import translator
from analysis.report.inputs import ReportInputs
from analysis.report.sections import as_of_local, build_sections

TEMPLATE_DIR = Path(__file__).with_name("templates")

# Defence in depth for the privacy promise (DESIGN.md "Personal data"): section builders read only
# named columns, but labels (segment names, file names, rejection reasons) come from delivered data,
# so anything that looks like an e-mail address or a URL is blanked in the finished document.
EMAIL_PATTERN = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
URL_PATTERN = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s<>\"']*|\bwww\.[^\s<>\"']+")


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=False,
        keep_trailing_newline=True,
    )


@cache
def _stylesheet() -> Markup:
    """report.css for the page's <style>, as it is: HTML escaping would turn its quotes into &#34;, which
    CSS does not decode, and drop every declaration with a quoted name (the report's font-family)."""
    css = (TEMPLATE_DIR / "report.css").read_text(encoding="utf-8")
    if "</" in css:
        raise ValueError("report.css may not contain '</': it would end the page's <style> element")
    return Markup(css)


def scrub(html: str, replacement: str) -> str:
    """Blank every e-mail address and URL in a text (the report must carry neither)."""
    return URL_PATTERN.sub(replacement, EMAIL_PATTERN.sub(replacement, html))


def render_report(inputs: ReportInputs, *, lang: str = "en") -> str:
    """Render the leadership report as one self-contained HTML document (inline CSS and SVG, no URLs).

    Sections follow DESIGN order: headline chain, NPS by month, breakdowns, dose-response, drivers,
    revenue, contact timing and hand-off, data quality, methods. A section whose inputs are missing
    or empty says "not enough data: <reason>" rather than failing. `lang` is "en" or "ja".
    """
    t = translator(lang)
    local = as_of_local(inputs)
    sections = build_sections(inputs, t, lang)
    template = _environment().get_template("report.html.j2")
    html = template.render(
        lang=lang,
        title=t("title"),
        meta=t("meta", as_of=local.strftime("%Y-%m-%d %H:%M"), tz=inputs.reporting_tz, run_id=inputs.run_id),
        run_id=inputs.run_id,
        css=_stylesheet(),
        sections=sections,
        t=t,
        not_enough_label=lambda reason: t("not_enough_data", reason=reason),
    )
    return scrub(html, t("redacted"))
