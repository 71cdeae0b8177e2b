"""Data docs of a run: one self-contained HTML page of every validation, under <data_dir>/quality/.

GX's own data docs renderer was considered first and not used: its page templates load Bootstrap,
jQuery, bootstrap-table and Font Awesome from public CDNs (cdnjs, unpkg, maxcdn, jsdelivr), and
GX does not ship those files, so offline (how this pipeline runs) its pages lose their layout and
their tables' scripts; it also needs a file-mode context with stores on disk. This module renders
the same facts from `ValidationOutcome` (GX results are converted first) with inline CSS and no
script or remote reference, so the page works from a file:// URL, an e-mail attachment or an
air-gapped machine.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from quality.validate import ValidationOutcome, outcome_from_gx_result

LATEST = "latest"

_TEMPLATE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }} - {{ run_id }}</title>
<style>
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem; color: #1d232a; }
h1 { font-size: 1.5rem; margin-bottom: .2rem; } h2 { font-size: 1.15rem; margin-top: 2.2rem; }
.meta { color: #5b6570; margin-bottom: 1.2rem; }
table { border-collapse: collapse; width: 100%; margin: .6rem 0 1rem; }
th, td { text-align: left; padding: .35rem .5rem; border-bottom: 1px solid #e3e7eb; vertical-align: top; }
th { background: #f4f6f8; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.badge { display: inline-block; padding: .05rem .5rem; border-radius: .6rem; font-size: .8rem; font-weight: 600; }
.pass { background: #e3f5e8; color: #14632d; } .fail { background: #fde4e4; color: #9b1c1c; }
.warn { background: #fff3d6; color: #7a5200; }
.note { background: #f4f6f8; padding: .5rem .7rem; border-left: 3px solid #9aa5b1; margin: .5rem 0; }
code { font-size: .85rem; }
</style>
</head>
<body>
<h1>{{ title }}</h1>
<div class="meta">run <code>{{ run_id }}</code> &middot; written {{ written_at }} UTC &middot;
{% if all_passed %}<span class="badge pass">all blocking expectations met</span>
{% else %}<span class="badge fail">{{ failing }} of {{ outcomes|length }} validations failed</span>{% endif %}</div>
<table>
<tr><th>batch</th><th>suite</th><th>status</th><th class="num">rows</th><th class="num">expectations</th>
<th class="num">failed</th><th class="num">blocking</th><th class="num">seconds</th><th>sampled</th></tr>
{% for key, o in outcomes %}
<tr><td><a href="#{{ anchors[key] }}">{{ key }}</a></td><td>{{ o.suite_name }}</td>
<td>{{ badge(o.success, o.failed|length) }}</td><td class="num">{{ "{:,}".format(o.rows) }}</td>
<td class="num">{{ o.evaluated }}</td><td class="num">{{ o.failed|length }}</td>
<td class="num">{{ o.blocking|length }}</td><td class="num">{{ "%.2f"|format(o.elapsed_seconds) }}</td>
<td>{{ "yes" if o.sampled else "no" }}</td></tr>
{% endfor %}
</table>
{% for key, o in outcomes %}
<h2 id="{{ anchors[key] }}">{{ key }} {{ badge(o.success, o.failed|length) }}</h2>
<div class="meta">suite <code>{{ o.suite_name }}</code> &middot; {{ "{:,}".format(o.rows) }} rows &middot;
{{ o.evaluated }} expectations &middot; {{ "%.1f"|format(o.statistics.get("success_percent", 0)) }}% met</div>
{% if o.sample_description %}<div class="note">{{ o.sample_description }}</div>{% endif %}
<table>
<tr><th>status</th><th>severity</th><th>expectation</th><th>column</th><th>expected</th><th>observed</th>
<th>basis</th></tr>
{% for c in ordered(o.checks) %}
<tr><td>{{ badge(c.success, 0, c.severity) }}</td><td>{{ c.severity }}</td>
<td><code>{{ c.expectation_type }}</code>{% if c.notes %}<br><small>{{ c.notes }}</small>{% endif %}</td>
<td>{{ c.column or "" }}</td><td><code>{{ c.expected }}</code></td><td>{{ c.observed }}</td><td>{{ c.basis }}</td></tr>
{% endfor %}
</table>
{% endfor %}
</body>
</html>
"""


def _badge(success: bool, failures: int = 0, severity: str = "critical") -> Any:
    if success and failures:
        text, css = "passed with warnings", "warn"
    elif success:
        text, css = "passed", "pass"
    elif severity != "critical":
        text, css = "warning", "warn"
    else:
        text, css = "failed", "fail"
    return Markup(f'<span class="badge {css}">{text}</span>')


def _ordered(checks: Any) -> list[Any]:
    # Failures first (blocking before warnings), then the suite's own order.
    return sorted(checks, key=lambda c: (c.success, c.severity != "critical"))


_ENV = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
_ENV.globals.update(badge=_badge, ordered=_ordered)


def _safe_run_id(run_id: str) -> str:
    # The run id becomes a folder name: keep it to one harmless path segment.
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", run_id).strip(".")
    if not cleaned or cleaned == LATEST:
        raise ValueError(f"run_id {run_id!r} cannot name a data docs folder")
    return cleaned


def render_data_docs(
    outcomes: Mapping[str, ValidationOutcome | Any], *, run_id: str, title: str = "nps-link data quality"
) -> str:
    """The HTML text of the data docs page for `outcomes` (batch name -> outcome or GX result)."""
    converted = [
        (key, value if isinstance(value, ValidationOutcome) else outcome_from_gx_result(value))
        for key, value in outcomes.items()
    ]
    anchors = {key: f"b{i}-" + re.sub(r"[^A-Za-z0-9_-]", "-", key) for i, (key, _) in enumerate(converted)}
    return _ENV.from_string(_TEMPLATE).render(
        title=title,
        run_id=run_id,
        written_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S"),
        outcomes=converted,
        anchors=anchors,
        all_passed=all(o.success for _, o in converted),
        failing=sum(not o.success for _, o in converted),
    )


def write_data_docs(
    outcomes: Mapping[str, ValidationOutcome | Any],
    out_dir: Path,
    *,
    run_id: str | None = None,
    title: str = "nps-link data quality",
) -> Path:
    """Write the run's data docs to `out_dir/<run_id>/index.html` and `out_dir/latest/index.html`.

    `out_dir` is `<data_dir>/quality` (Settings.quality_dir); `outcomes` maps a batch name (e.g.
    "crm_activities/2025-06-01.csv") to its ValidationOutcome or GX validation result. `run_id`
    defaults to the UTC time of writing. Both files are replaced atomically, so a reader never
    opens a half-written page. Returns the path of the run's page.
    """
    run = _safe_run_id(run_id or datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"))
    page = render_data_docs(outcomes, run_id=run, title=title)
    run_page = Path(out_dir) / run / "index.html"
    for target in (run_page, Path(out_dir) / LATEST / "index.html"):
        _atomic_write(target, page)
    return run_page


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
