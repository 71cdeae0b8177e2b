"""Turn the report's input frames into the view of each section: texts, table rows and SVG charts.

Every builder takes the inputs and a translator and returns a `Section`. A builder never raises on
missing, empty or incomplete frames: it returns a section whose `reason` says what is missing, and
the template prints "not enough data: <reason>". Builders read only the columns they name, so a
stray column (a free-text comment, an e-mail address) in an input frame never reaches the page.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
from markupsafe import Markup, escape

from analysis.nps import nps_from_count_arrays
from analysis.report import svg
from analysis.report.i18n import label_for
from analysis.report.inputs import ReportInputs
from analysis.tables import KEY_DRIVER_EXCLUSIONS

Translate = Callable[..., str]

# Groups with fewer responses than this get a "small sample" flag: at n = 30 the NPS margin of error
# is already around ±30 points, too wide to act on a single group's number.
SMALL_N = 30
# The trend chart shows at most this many months, so labels stay legible on one page width.
TREND_MONTHS = 24
# How many months the breakdown pools, and how many recent months the list of significant changes covers.
WINDOW_MONTHS = 3
MAX_CHANGES_LISTED = 15
PROBABILITY_EFFECTS = ("b_path", "direct", "indirect", "total")
HEADLINE_EFFECTS = ("a_path", "b_path", "indirect", "total", "proportion_mediated")
# Currencies without minor units are shown without decimals.
ZERO_DECIMAL_CURRENCIES = frozenset({"JPY", "KRW", "VND", "CLP", "ISK", "HUF", "TWD"})


@dataclass
class Section:
    """One numbered part of the report: its key (stable, used by tests and CSS), title and content."""

    key: str
    title: str
    reason: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.reason is None


# ---- small formatting helpers (numbers are the same in every language) ----


def num(value: object) -> float | None:
    """A finite float, or None for missing, NaN or non-numeric values."""
    return float(value) if svg.is_number(value) else None  # type: ignore[arg-type]


def fmt(value: object, decimals: int = 1, *, signed: bool = False) -> str:
    """A number with fixed decimals (and a sign if asked); an en dash for missing values."""
    v = num(value)
    if v is None:
        return "–"
    v = round(v, decimals) + 0.0  # + 0.0 turns -0.0 into 0.0, so "-0.00" is never printed
    return f"{v:+.{decimals}f}" if signed else f"{v:.{decimals}f}"


def fmt_int(value: object) -> str:
    """A count with thousands separators; an en dash for missing values."""
    v = num(value)
    return "–" if v is None else f"{round(v):,}"


def fmt_money(value: object, currency: str) -> str:
    """An amount in the reporting currency, without decimals for currencies that have no minor unit."""
    v = num(value)
    if v is None:
        return "–"
    decimals = 0 if currency.upper() in ZERO_DECIMAL_CURRENCIES else 2
    return f"{v:,.{decimals}f}"


def fmt_compact(value: float) -> str:
    """A short axis label for large amounts: 1.5k, 2M, 3.2B."""
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:.3g}{suffix}"
    return f"{value:g}"


def missing_columns(frame: pd.DataFrame | None, columns: Iterable[str]) -> list[str]:
    """The required columns a frame lacks (all of them when the frame is None)."""
    if frame is None:
        return list(columns)
    return [c for c in columns if c not in frame.columns]


def frame_problem(frame: pd.DataFrame | None, table: str, columns: Sequence[str], t: Translate) -> str | None:
    """Why a frame cannot feed its section (no rows, missing columns), or None when it can."""
    if frame is None or frame.empty:
        return t("reason_no_rows", table=table)
    lacking = missing_columns(frame, columns)
    if lacking:
        return t("reason_missing_columns", table=table, columns=", ".join(lacking))
    return None


def text_value(value: object) -> str | None:
    """A data label as clean text, or None when it is missing or blank."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):  # type: ignore[arg-type]
        return None
    text = str(value).strip()
    return text or None


def month_key(values: pd.Series) -> pd.Series:
    """Month labels 'YYYY-MM' of a date/timestamp column (already cut in the reporting time zone by dbt)."""
    return pd.to_datetime(values).dt.strftime("%Y-%m")


def as_of_local(inputs: ReportInputs) -> datetime:
    """The run's cut-off in the reporting time zone (stored timestamps are naive UTC)."""
    as_of = inputs.as_of
    if as_of.tzinfo is None:
        as_of = as_of.replace(tzinfo=UTC)
    return as_of.astimezone(ZoneInfo(inputs.reporting_tz))


def shift_month(month: str, delta: int) -> str:
    """Add `delta` months to a 'YYYY-MM' label."""
    year, mon = (int(part) for part in month.split("-"))
    index = year * 12 + mon - 1 + delta
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def latest_full_month(inputs: ReportInputs) -> str:
    """The last month that had fully ended by the cut-off, in the reporting time zone."""
    # A cut-off at 23:59:59 on the last day of a month completes that month, hence the extra second.
    after = as_of_local(inputs) + timedelta(seconds=1)
    return shift_month(date(after.year, after.month, 1).strftime("%Y-%m"), -1)


# ---- (1) headline ----


def headline_numbers(link_effects: pd.DataFrame) -> dict[str, float | int]:
    """The exact numbers the report's headline sentence prints, from the link model's effects table.

    Keys: `<effect>`, `<effect>_ci_low`, `<effect>_ci_high` for a_path (points of the 0-10 score per
    extra contact a month) and b_path, direct, indirect, total (percentage points of repeat rate:
    the model's probability-scale effects times 100), all rounded to two decimals;
    `proportion_mediated` (+ CI) in percent, rounded to a whole number; `n_responses` and
    `n_customers` when the table has them. Raises ValueError when an effect the headline needs is
    missing or not a finite number.
    """
    lacking = missing_columns(link_effects, ("effect", "estimate", "ci_low", "ci_high"))
    if lacking:
        raise ValueError(f"link_effects lacks columns {lacking}")
    rows = {str(r["effect"]): r for r in link_effects.to_dict("records")}
    absent = [e for e in HEADLINE_EFFECTS if e not in rows or num(rows[e]["estimate"]) is None]
    if absent:
        raise ValueError(f"link_effects has no finite estimate for {absent}")
    numbers: dict[str, float | int] = {}
    for effect in ("a_path", *PROBABILITY_EFFECTS, "proportion_mediated"):
        if effect not in rows:
            continue
        scale, decimals = (1.0, 2) if effect == "a_path" else (100.0, 2)
        if effect == "proportion_mediated":
            decimals = 0
        for suffix, column in (("", "estimate"), ("_ci_low", "ci_low"), ("_ci_high", "ci_high")):
            value = num(rows[effect][column])
            if value is None:
                continue
            rounded = round(value * scale, decimals) + 0.0
            numbers[effect + suffix] = int(rounded) if decimals == 0 else rounded
    for count in ("n_responses", "n_customers", "n_left_out", "n_window_open"):
        if count in link_effects.columns:
            value = num(link_effects[count].max())
            if value is not None:
                numbers[count] = int(value)
    return numbers


def _headline_span(key: str, numbers: dict[str, float | int], *, signed: bool = False) -> Markup:
    value = numbers.get(key)
    if value is None:
        return Markup('<span class="num">–</span>')
    text = str(value) if isinstance(value, int) else fmt(value, 2, signed=signed)
    return Markup('<span class="num" data-headline="{}">{}</span>').format(key, text)


def interval_excludes_zero(link_effects: pd.DataFrame, effect: str) -> bool:
    """Whether `effect`'s 95% interval in analysis.link_effects lies wholly above or below zero.

    Judged on the stored figures, not the rounded ones the sentence shows: an interval of 0.00004 to
    0.00088 prints as "0.00 to 0.09" and still excludes zero.
    """
    rows = link_effects[link_effects["effect"] == effect]
    if rows.empty:
        return False
    low, high = num(rows["ci_low"].iloc[0]), num(rows["ci_high"].iloc[0])
    return low is not None and high is not None and (low > 0 or high < 0)


def build_headline(inputs: ReportInputs, t: Translate) -> Section:
    """Section 1: the chain contacts -> score -> repeat rate in one sentence, with its intervals."""
    section = Section("headline", t("h_headline"))
    frame = inputs.link_effects
    section.reason = frame_problem(frame, "analysis.link_effects", ("effect", "estimate", "ci_low", "ci_high"), t)
    if section.reason:
        return section
    assert frame is not None
    estimates = {str(e): num(v) for e, v in zip(frame["effect"], frame["estimate"], strict=True)}
    absent = [e for e in HEADLINE_EFFECTS if estimates.get(e) is None]
    if absent:
        section.reason = t("reason_missing_effects", effects=", ".join(absent))
        return section
    numbers = headline_numbers(frame)
    spans = {key: _headline_span(key, numbers) for key in numbers}
    total_excludes_zero = interval_excludes_zero(frame, "total")
    indirect, direct = estimates.get("indirect"), estimates.get("direct")
    if indirect is not None and direct is not None and indirect * direct < 0:
        # Paths pulling in opposite directions make indirect / total fall outside 0-100% (a share of
        # "250%" or "-40%" reads as nonsense or as a sign error): the two parts are given in points.
        share = Markup(escape(t("headline_share_opposite", i="{i}", i_lo="{i_lo}", i_hi="{i_hi}", d="{d}",
                                d_lo="{d_lo}", d_hi="{d_hi}"))).format(
            i=_headline_span("indirect", numbers, signed=True),
            i_lo=_headline_span("indirect_ci_low", numbers),
            i_hi=_headline_span("indirect_ci_high", numbers),
            d=_headline_span("direct", numbers, signed=True),
            d_lo=_headline_span("direct_ci_low", numbers),
            d_hi=_headline_span("direct_ci_high", numbers),
        )
    elif total_excludes_zero and {"proportion_mediated_ci_low", "proportion_mediated_ci_high"} <= numbers.keys():
        # The share's own interval is often wide (a small total in the denominator): it is stated with it.
        share = Markup(escape(t("headline_share_ci", pm="{pm}", pm_lo="{pm_lo}", pm_hi="{pm_hi}"))).format(
            pm=_headline_span("proportion_mediated", numbers),
            pm_lo=_headline_span("proportion_mediated_ci_low", numbers),
            pm_hi=_headline_span("proportion_mediated_ci_high", numbers),
        )
    elif total_excludes_zero:
        share = Markup(escape(t("headline_share", pm="{pm}"))).format(
            pm=_headline_span("proportion_mediated", numbers)
        )
    else:
        share = Markup(escape(t("headline_share_unclear")))
    sentence = Markup(escape(t("headline_sentence", a="{a}", a_lo="{a_lo}", a_hi="{a_hi}", b="{b}",
                                b_lo="{b_lo}", b_hi="{b_hi}", t="{t}", t_lo="{t_lo}", t_hi="{t_hi}",
                                share="{share}", rw=inputs.repeat_window_days))).format(
        a=_headline_span("a_path", numbers, signed=True),
        a_lo=spans.get("a_path_ci_low", "–"),
        a_hi=spans.get("a_path_ci_high", "–"),
        b=_headline_span("b_path", numbers, signed=True),
        b_lo=spans.get("b_path_ci_low", "–"),
        b_hi=spans.get("b_path_ci_high", "–"),
        t=_headline_span("total", numbers, signed=True),
        t_lo=spans.get("total_ci_low", "–"),
        t_hi=spans.get("total_ci_high", "–"),
        share=share,
    )
    n_responses = inputs.n_responses if inputs.n_responses is not None else numbers.get("n_responses")
    n_customers = inputs.n_customers if inputs.n_customers is not None else numbers.get("n_customers")
    uncertain = [t(f"effect_{e}") for e in ("a_path", "b_path", "total", "indirect")
                 if not interval_excludes_zero(frame, e)]
    basis = None
    if n_responses is not None:
        basis = t("headline_basis", n_responses=fmt_int(n_responses), n_customers=fmt_int(n_customers),
                  rw=inputs.repeat_window_days)
        # What the estimate does not rest on, so a reader can judge how far it carries.
        if numbers.get("n_window_open"):
            basis += " " + t("headline_window_open", n=fmt_int(numbers["n_window_open"]), rw=inputs.repeat_window_days)
        if numbers.get("n_left_out"):
            basis += " " + t("headline_left_out", n=fmt_int(numbers["n_left_out"]))
    section.data = {
        "sentence": sentence,
        "basis": basis,
        "uncertain": t("headline_uncertain", effects=t("list_sep").join(uncertain)) if uncertain else None,
        "numbers": numbers,
    }
    return section


# ---- (2) NPS by month ----

_PERIOD_COLUMNS = ("period_month", "survey_type", "dimension", "dimension_value", "responses", "promoters",
                   "passives", "detractors", "nps", "nps_moe95")


# marts.nps_by_period also carries survey_type 'all' (every survey type together). The report pools the
# individual types from counts itself, so those rows are set aside: pooled with them, every response
# would count twice (same NPS, but doubled n and a too-small margin of error).
ALL_SURVEY_TYPES = "all"


def _per_survey_type(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of individual survey types, without the mart's pre-pooled 'all' rows."""
    return frame[frame["survey_type"].map(text_value) != ALL_SURVEY_TYPES]


def _pooled(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Sum response counts over the other columns and recompute NPS and its margin from the counts."""
    counts = ["promoters", "passives", "detractors"]
    pooled = frame.groupby(by, dropna=True)[counts].sum().reset_index()
    pooled[counts] = pooled[counts].apply(pd.to_numeric, errors="coerce").fillna(0)
    figures = nps_from_count_arrays(pooled["promoters"], pooled["passives"], pooled["detractors"])
    pooled["responses"] = figures["n"]
    pooled["nps"] = figures["nps"]
    pooled["nps_moe95"] = figures["moe95"]
    return pooled


def _band(nps: object, moe: object) -> tuple[float | None, float | None]:
    n, m = num(nps), num(moe)
    if n is None or m is None:
        return None, None
    return max(n - m, -100.0), min(n + m, 100.0)


def build_trend(inputs: ReportInputs, t: Translate, lang: str) -> Section:
    """Section 2: monthly NPS, all surveys and per survey type, with margin bands and significant changes."""
    section = Section("trend", t("h_trend"))
    frame = inputs.nps_by_period
    section.reason = frame_problem(frame, "marts.nps_by_period", _PERIOD_COLUMNS, t)
    if section.reason:
        return section
    assert frame is not None
    overall = _per_survey_type(frame[frame["dimension"] == "overall"]).copy()
    if overall.empty:
        section.reason = t("reason_no_overall_rows", table="marts.nps_by_period")
        return section
    overall["month"] = month_key(overall["period_month"])
    months = sorted(overall["month"].dropna().unique())[-TREND_MONTHS:]
    overall = overall[overall["month"].isin(months)]
    survey_types = sorted({s for s in (text_value(v) for v in overall["survey_type"]) if s})
    # Pool survey types from counts (never average NPS values): one line for all surveys.
    pooled = _pooled(overall, ["month"]).set_index("month")
    series = [_line_series(t("series_all"), pooled, months)]
    if len(survey_types) > 1:
        for survey_type in survey_types:
            rows = overall[overall["survey_type"] == survey_type].set_index("month")
            rows = rows[~rows.index.duplicated(keep="last")]
            series.append(_line_series(label_for(lang, "survey", survey_type), rows, months))
    marks, changes = _significant_changes(inputs.nps_changes, months, survey_types, t, lang)
    # A month the cut-off falls in is not over: its label says so, and a note says to what day.
    full = latest_full_month(inputs)
    labels = [f"{m}*" if m > full else m for m in months]
    partial = None
    if months and months[-1] > full:
        partial = t("trend_partial_month", month=months[-1], day=as_of_local(inputs).strftime("%Y-%m-%d"))
    section.data = {
        "intro": t("trend_intro"),
        "chart": svg.line_chart(chart_id="nps-trend", title=t("h_trend"), x_labels=labels, series=series,
                                x_label=t("axis_month"), y_label=t("axis_nps"), marks=marks,
                                mark_label=t("legend_significant"),
                                flag_label=t("legend_small_n", min_n=SMALL_N), y_clamp=(-100, 100)),
        "partial": partial,
        "changes": changes,
    }
    return section


def _line_series(name: str, rows: pd.DataFrame, months: Sequence[str]) -> svg.LineSeries:
    """One trend line; a month with fewer than SMALL_N responses is flagged (drawn hollow).

    Without the flag a month of one response, whose margin is NULL (n < 2) and so has no band, would
    look the most certain point of the chart.
    """
    values, lows, highs, flagged = [], [], [], []
    for month in months:
        if month in rows.index:
            nps, moe = rows.at[month, "nps"], rows.at[month, "nps_moe95"]
            low, high = _band(nps, moe)
            values.append(num(nps))
            flagged.append((num(rows.at[month, "responses"]) or 0) < SMALL_N)
        else:
            low = high = None
            values.append(None)
            flagged.append(False)
        lows.append(low)
        highs.append(high)
    return svg.LineSeries(name=name, values=values, low=lows, high=highs, flagged=flagged)


def _significant_changes(changes: pd.DataFrame | None, months: Sequence[str], survey_types: Sequence[str],
                         t: Translate, lang: str) -> tuple[list[svg.PointMark], dict[str, Any]]:
    columns = ("period_month", "survey_type", "dimension", "dimension_value", "nps", "prev_nps", "diff",
               "p_value", "is_significant")
    reason = frame_problem(changes, "analysis.nps_changes", columns, t)
    if reason:
        return [], {"reason": reason}
    assert changes is not None
    frame = changes.copy()
    frame["month"] = month_key(frame["period_month"])
    frame = frame[frame["is_significant"].map(lambda v: v is True or (num(v) or 0) == 1)]
    marks = []
    shown_months = list(months)
    for row in frame[frame["dimension"] == "overall"].to_dict("records"):
        if row["month"] not in shown_months or num(row["diff"]) is None:
            continue
        survey_type = text_value(row["survey_type"])
        # Series 0 pools all survey types; a change of one survey type marks that type's own line.
        index = survey_types.index(survey_type) + 1 if survey_type in survey_types and len(survey_types) > 1 else 0
        marks.append(svg.PointMark(series=index, x_index=shown_months.index(row["month"]), up=row["diff"] > 0))
    all_months = sorted(month_key(changes["period_month"]).dropna().unique())
    recent = set(all_months[-WINDOW_MONTHS:])
    # Show the multiplicity-adjusted p-value when the table has it: that is the one the flag is based on.
    p_column = "p_value_bh" if "p_value_bh" in frame.columns else "p_value"
    listed = frame[frame["month"].isin(recent)].sort_values(["month", p_column], ascending=[False, True])
    rows = [
        {
            "month": r["month"],
            "survey_type": label_for(lang, "survey", text_value(r["survey_type"]) or "–"),
            "dimension": label_for(lang, "dim", text_value(r["dimension"]) or "–"),
            "value": t("dim_overall") if r["dimension"] == "overall" else text_value(r["dimension_value"]) or "–",
            "nps": fmt(r["nps"]),
            "prev_nps": fmt(r["prev_nps"]),
            "diff": fmt(r["diff"], signed=True),
            "p_value": _fmt_p(r[p_column]),
        }
        for r in listed.head(MAX_CHANGES_LISTED).to_dict("records")
    ]
    return marks, {"rows": rows, "reason": None, "adjusted": p_column == "p_value_bh"}


def _fmt_p(value: object) -> str:
    v = num(value)
    if v is None:
        return "–"
    # Three significant digits, so a p-value just under 0.05 never prints as "0.050".
    return "< 0.001" if v < 0.001 else f"{v:.3g}"


# ---- (3) NPS by segment, business unit and touchpoint ----


def build_breakdown(inputs: ReportInputs, t: Translate, lang: str) -> Section:
    """Section 3: NPS per segment, business unit and touchpoint over the last three full months."""
    section = Section("breakdown", t("h_breakdown"))
    frame = inputs.nps_by_period
    section.reason = frame_problem(frame, "marts.nps_by_period", _PERIOD_COLUMNS, t)
    if section.reason:
        return section
    assert frame is not None
    frame = _per_survey_type(frame).copy()
    frame["month"] = month_key(frame["period_month"])
    end = latest_full_month(inputs)
    window = [shift_month(end, -k) for k in range(WINDOW_MONTHS - 1, -1, -1)]
    intro_key = "breakdown_window"
    if not frame["month"].isin(window).any():
        # Data that stops before the cut-off (a late delivery) still gets a breakdown, labelled as such.
        months = sorted(frame["month"].dropna().unique())
        window = months[-WINDOW_MONTHS:]
        intro_key = "breakdown_window_fallback"
    in_window = frame[frame["month"].isin(window)]
    overall = _pooled(in_window[in_window["dimension"] == "overall"], ["dimension"])
    reference = num(overall["nps"].iloc[0]) if not overall.empty else None
    groups = []
    for dimension in ("segment", "business_unit", "touchpoint"):
        title = t(f"dim_{dimension}")
        rows = in_window[in_window["dimension"] == dimension].copy()
        rows["dimension_value"] = [text_value(v) for v in rows["dimension_value"]]
        rows = rows.dropna(subset=["dimension_value"])
        if rows.empty:
            groups.append({"title": title, "reason": t("reason_no_dimension_rows", dimension=title)})
            continue
        pooled = _pooled(rows, ["dimension_value"]).sort_values("responses", ascending=False)
        table, items = [], []
        for r in pooled.to_dict("records"):
            small = r["responses"] < SMALL_N
            low, high = _band(r["nps"], r["nps_moe95"])
            items.append(svg.Interval(label=r["dimension_value"], estimate=num(r["nps"]), low=low, high=high,
                                      flagged=small))
            table.append({"value": r["dimension_value"], "n": fmt_int(r["responses"]), "nps": fmt(r["nps"]),
                          "moe": fmt(r["nps_moe95"]), "flag": t("flag_small_n") if small else ""})
        groups.append({
            "title": title,
            "reason": None,
            "rows": table,
            "chart": svg.forest_chart(chart_id=f"nps-{dimension.replace('_', '-')}", title=title, items=items,
                                      x_label=t("axis_nps_moe"), x_clamp=(-100, 100), reference=reference),
        })
    section.data = {
        "intro": t(intro_key, start=window[0], end=window[-1]),
        "groups": groups,
        "small_n_note": t("breakdown_small_n", min_n=SMALL_N),
    }
    return section


# ---- (4) dose-response ----

_DOSE_COLUMNS = ("bin_label", "n", "mean_nps_score", "mean_ci_low", "mean_ci_high", "nps", "nps_ci_low",
                 "nps_ci_high", "repeat_n", "repeat_rate", "repeat_ci_low", "repeat_ci_high")


def _ordered(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    """Bins in their natural order when the table gives a lower bound, else as delivered."""
    return frame.sort_values(column, kind="stable") if column in frame.columns else frame


def _pct(value: object) -> float | None:
    v = num(value)
    return None if v is None else 100 * v


def build_dose(inputs: ReportInputs, t: Translate) -> Section:
    """Section 4: mean score and repeat rate by contacts-per-month bin, with confidence intervals."""
    section = Section("dose", t("h_dose"))
    frame = inputs.dose_response
    section.reason = frame_problem(frame, "analysis.dose_response", _DOSE_COLUMNS, t)
    if section.reason:
        return section
    assert frame is not None
    frame = _ordered(frame, "bin_low")
    labels = [text_value(v) or "–" for v in frame["bin_label"]]
    records = frame.to_dict("records")
    score_items = [svg.Interval(label=lab, estimate=num(r["mean_nps_score"]), low=num(r["mean_ci_low"]),
                                high=num(r["mean_ci_high"]), flagged=(num(r["n"]) or 0) < SMALL_N)
                   for lab, r in zip(labels, records, strict=True)]
    repeat_items = [svg.Interval(label=lab, estimate=_pct(r["repeat_rate"]), low=_pct(r["repeat_ci_low"]),
                                 high=_pct(r["repeat_ci_high"]), flagged=(num(r["repeat_n"]) or 0) < SMALL_N)
                    for lab, r in zip(labels, records, strict=True)]
    charts = []
    if any(i.estimate is not None for i in score_items):
        charts.append(svg.interval_chart(chart_id="dose-score", title=t("axis_mean_score"), items=score_items,
                                         x_label=t("axis_contacts_bin"), y_label=t("axis_mean_score"),
                                         y_clamp=(0, 10)))
    if any(i.estimate is not None for i in repeat_items):
        charts.append(svg.interval_chart(chart_id="dose-repeat", title=t("axis_repeat_pct"), items=repeat_items,
                                         x_label=t("axis_contacts_bin"), y_label=t("axis_repeat_pct"),
                                         y_clamp=(0, 100)))
    if not charts:
        section.reason = t("reason_no_rows", table="analysis.dose_response")
        return section
    rows = [
        {
            "bin": lab,
            "n": fmt_int(r["n"]),
            "mean": f"{fmt(r['mean_nps_score'], 2)} ({fmt(r['mean_ci_low'], 2)} – {fmt(r['mean_ci_high'], 2)})",
            "nps": f"{fmt(r['nps'])} ({fmt(r['nps_ci_low'])} – {fmt(r['nps_ci_high'])})",
            "repeat": f"{fmt(_pct(r['repeat_rate']))} ({fmt(_pct(r['repeat_ci_low']))} – "
                      f"{fmt(_pct(r['repeat_ci_high']))})",
            "repeat_n": fmt_int(r["repeat_n"]),
        }
        for lab, r in zip(labels, records, strict=True)
    ]
    section.data = {"intro": t("dose_intro", cw=inputs.contact_window_days), "charts": charts, "rows": rows}
    return section


# ---- (5) key drivers ----


def _driver_label(value: object) -> str:
    text = text_value(value) or "–"
    return text.removeprefix("driver_").replace("_", " ")


def build_drivers(inputs: ReportInputs, t: Translate) -> Section:
    """Section 5: importance x performance of the rated items, and the top five to improve."""
    section = Section("drivers", t("h_drivers"))
    frame = inputs.key_drivers
    section.reason = frame_problem(frame, "analysis.key_drivers", ("driver", "importance", "mean_score", "n"), t)
    if section.reason:
        return section
    assert frame is not None
    has_priority = "improve_priority" in frame.columns and frame["improve_priority"].map(num).notna().any()
    points, top = [], []
    for r in frame.to_dict("records"):
        label = _driver_label(r["driver"])
        priority = num(r["improve_priority"]) if has_priority else None
        if num(r["importance"]) is not None and num(r["mean_score"]) is not None:
            points.append(svg.ScatterPoint(x=float(r["importance"]), y=float(r["mean_score"]), label=label,
                                           highlight=priority is not None))
        if priority is not None:
            top.append((priority, t("drivers_item", driver=label, importance=fmt(r["importance"]),
                                    score=fmt(r["mean_score"], 2), n=fmt_int(r["n"]))))
    if not points:
        section.reason = t("reason_no_rows", table="analysis.key_drivers")
        return section
    section.data = {
        "intro": t("drivers_intro"),
        "chart": svg.scatter_chart(chart_id="drivers", title=t("h_drivers"), points=points,
                                   x_label=t("axis_importance"), y_label=t("axis_performance")),
        "top": [text for _, text in sorted(top)[:5]],
        "no_priority": None if top else t("drivers_no_priority"),
        "basis": _drivers_basis(frame, len(points), t),
        "not_ranked": _drivers_not_ranked(frame, t),
    }
    return section


# Below this share of the score's variation explained, the ranking of the items is mostly noise:
# importance is a share of R-squared, so it sums to 100% however little the items explain.
WEAK_DRIVER_FIT = 0.10


def _drivers_basis(frame: pd.DataFrame, ranked: int, t: Translate) -> str | None:
    """On how many responses the ranked items' importance rests, and how much of the score they explain.

    None for a table without n_fit. The explained share (R-squared, the sum of the raw weights) is
    said every time, with a caution when it is below WEAK_DRIVER_FIT.
    """
    if "n_fit" not in frame.columns:
        return None
    ranked_rows = frame.loc[frame["importance"].map(num).notna()]
    fitted = [n for n in ranked_rows["n_fit"].map(num) if n is not None]
    if not fitted:
        return None
    basis = t("drivers_basis", n_fit=fmt_int(max(fitted)), k=fmt_int(ranked))
    weights = [w for w in ranked_rows.get("raw_weight", pd.Series(dtype=float)).map(num) if w is not None]
    if weights:
        r_squared = sum(weights)
        basis += " " + t("drivers_fit", r2=fmt(100 * r_squared))
        if r_squared < WEAK_DRIVER_FIT:
            basis += " " + t("drivers_weak_fit")
    return basis


def _drivers_not_ranked(frame: pd.DataFrame, t: Translate) -> list[str]:
    """The items without an importance, each with its rating and why it has none, in words.

    The chart shows only ranked items; without this list an item the survey asks would silently
    be missing from the report (typically one a transactional survey asks on its own).
    """
    items = []
    for r in frame.loc[frame["importance"].map(num).isna()].to_dict("records"):
        rule = text_value(r.get("excluded_rule"))
        why = f"why_{rule}" if rule in KEY_DRIVER_EXCLUSIONS else "why_unknown"
        items.append(t("drivers_not_ranked_item", driver=_driver_label(r["driver"]), score=fmt(r["mean_score"], 2),
                       n=fmt_int(r["n"]), why=t(why)))
    return items


# ---- (6) NPS and revenue ----

CATEGORIES = ("promoter", "passive", "detractor")
CORRELATION_CATEGORY = "correlation_segment_month"


def _within_segment_text(corr_row: dict[str, Any], t: Translate) -> str | None:
    """The within-segment correlation in words, or None for a table from before it was computed.

    The pooled r counts segments that differ in both NPS and revenue; a reader who takes it as
    "raise a segment's NPS and its revenue follows" needs the within-segment figure beside it.
    """
    within = num(corr_row.get("corr_within_segment"))
    if within is None:
        if num(corr_row.get("n_segments")) is None:
            return None
        return t("revenue_corr_within_none")
    low, high = num(corr_row.get("corr_within_segment_ci_low")), num(corr_row.get("corr_within_segment_ci_high"))
    return t("revenue_corr_within", n_segments=fmt_int(corr_row["n_segments"]), corr=fmt(within, 2),
             lo=fmt(low, 2), hi=fmt(high, 2))


def build_revenue(inputs: ReportInputs, t: Translate, lang: str) -> Section:
    """Section 6: revenue after a response by NPS category, and the NPS-revenue correlation."""
    section = Section("revenue", t("h_revenue"))
    frame = inputs.nps_revenue
    currency = inputs.reporting_currency
    section.reason = frame_problem(
        frame, "analysis.nps_revenue", ("category", "customers", "responses", "revenue_after", "revenue_after_mean"), t
    )
    if section.reason:
        return section
    assert frame is not None
    by_category = {text_value(r["category"]): r for r in frame.to_dict("records")}
    present = [c for c in CATEGORIES if c in by_category]
    if not present:
        section.reason = t("reason_no_rows", table="analysis.nps_revenue")
        return section
    labels = [label_for(lang, "cat", c) for c in present]
    means = [num(by_category[c]["revenue_after_mean"]) for c in present]
    chart = None
    if any(m is not None for m in means):
        chart = svg.bar_chart(chart_id="revenue", title=t("h_revenue"), labels=labels, values=means,
                              x_label=t("axis_revenue_mean", currency=currency), value_format=fmt_compact)
    # The mean rests on the responses whose revenue window has closed, not on every response: the table
    # shows that n beside the mean and flags a small one (a table from before the column shows "–").
    observed = {c: num(by_category[c].get("revenue_responses")) for c in present}
    interval = {c: (num(by_category[c].get("revenue_after_mean_ci_low")),
                    num(by_category[c].get("revenue_after_mean_ci_high"))) for c in present}
    rows = [
        {
            "category": label,
            "customers": fmt_int(by_category[c]["customers"]),
            "responses": fmt_int(by_category[c]["responses"]),
            "revenue_responses": fmt_int(observed[c]) if observed[c] is not None else "–",
            "revenue_after": fmt_money(by_category[c]["revenue_after"], currency),
            "revenue_mean": fmt_money(by_category[c]["revenue_after_mean"], currency),
            # A table from before the interval existed, or a mean from one customer, shows "–".
            "revenue_mean_ci": (f"{fmt_money(interval[c][0], currency)} – {fmt_money(interval[c][1], currency)}"
                                if None not in interval[c] else "–"),
            "flag": " †" if observed[c] is not None and observed[c] < SMALL_N else "",
        }
        for c, label in zip(present, labels, strict=True)
    ]
    correlation: dict[str, str | None] = {"text": None, "note": None,
                                          "reason": t("reason_no_correlation", table="analysis.nps_revenue")}
    corr_row = by_category.get(CORRELATION_CATEGORY)
    if corr_row is not None and not missing_columns(frame, ("corr", "corr_ci_low", "corr_ci_high", "n_cells")):
        corr, low, high = num(corr_row["corr"]), num(corr_row["corr_ci_low"]), num(corr_row["corr_ci_high"])
        if corr is not None:
            correlation = {
                "text": t("revenue_corr", n_cells=fmt_int(corr_row["n_cells"]), corr=fmt(corr, 2),
                          lo=fmt(low, 2), hi=fmt(high, 2)),
                "note": t("revenue_corr_zero") if low is not None and high is not None and low <= 0 <= high
                else None,
                "within": _within_segment_text(corr_row, t),
                "reason": None,
            }
    section.data = {
        "intro": t("revenue_intro", days=inputs.revenue_window_days, currency=currency),
        "chart": chart,
        "rows": rows,
        "observed_note": t("revenue_observed_note", days=inputs.revenue_window_days, min_n=SMALL_N),
        "interval_note": t("revenue_interval_note") if any(None not in interval[c] for c in present) else None,
        "correlation": correlation,
        "currency": currency,
    }
    return section


# ---- (7) contact timing and hand-off ----

_GROUP_COLUMNS = ("bin_label", "customers", "responses", "nps", "nps_moe95", "repeat_rate", "repeat_ci_low",
                  "repeat_ci_high", "repeat_n")


def _group_block(frame: pd.DataFrame | None, table: str, chart_id: str, title: str, t: Translate,
                 lang: str) -> dict[str, Any]:
    reason = frame_problem(frame, table, _GROUP_COLUMNS, t)
    if reason:
        return {"title": title, "reason": reason}
    assert frame is not None
    frame = _ordered(frame, "bin_low")
    items, rows, bands = [], [], []
    for r in frame.to_dict("records"):
        label = label_for(lang, "bin", text_value(r["bin_label"]) or "–")
        small = (num(r["responses"]) or 0) < SMALL_N
        # Repeat windows still open leave fewer known outcomes than responses: flagged on their own count.
        rate = num(r["repeat_rate"])
        few_outcomes = rate is not None and (num(r["repeat_n"]) or 0) < SMALL_N
        low, high = _band(r["nps"], r["nps_moe95"])
        items.append(svg.Interval(label=label, estimate=num(r["nps"]), low=low, high=high, flagged=small))
        repeat = fmt(_pct(rate))
        if rate is not None:
            repeat += f" ({fmt(_pct(r['repeat_ci_low']))} – {fmt(_pct(r['repeat_ci_high']))})"
        flags = [t("flag_small_n")] * small + [t("flag_few_outcomes")] * few_outcomes
        rows.append({"group": label, "customers": fmt_int(r["customers"]), "responses": fmt_int(r["responses"]),
                     "nps": fmt(r["nps"]), "moe": fmt(r["nps_moe95"]), "repeat_rate": repeat,
                     "repeat_n": fmt_int(r["repeat_n"]), "flag": t("list_sep").join(flags)})
        # Small groups stay in the chart and table but not in the finding: their NPS is mostly noise.
        if not small and num(r["nps"]) is not None and low is not None and high is not None:
            bands.append((float(r["nps"]), low, high, label))
    if not any(i.estimate is not None for i in items):
        return {"title": title, "reason": t("reason_no_rows", table=table)}
    finding = None
    if len(bands) >= 2:
        lowest, highest = min(bands), max(bands)
        overlap = lowest[2] >= highest[1]
        finding = t("group_finding", low=fmt(lowest[0]), low_label=lowest[3], high=fmt(highest[0]),
                    high_label=highest[3], overlap=t("finding_overlap" if overlap else "finding_separate"))
    return {
        "title": title,
        "reason": None,
        "rows": rows,
        "finding": finding,
        "chart": svg.forest_chart(chart_id=chart_id, title=title, items=items, x_label=t("axis_nps_moe"),
                                  x_clamp=(-100, 100)),
    }


def build_timing(inputs: ReportInputs, t: Translate, lang: str) -> Section:
    """Section 7: NPS and repeat rate by first-week contact count and by hand-off delay."""
    section = Section("timing", t("h_timing"))
    blocks = [
        _group_block(inputs.contact_timing, "analysis.contact_timing", "contact-timing", t("timing_title"), t, lang),
        _group_block(inputs.handoff, "analysis.handoff", "handoff", t("handoff_title"), t, lang),
    ]
    if all(b["reason"] for b in blocks):
        section.reason = " ".join(b["reason"] for b in blocks)
        return section
    section.data = {"blocks": blocks, "small_n_note": t("breakdown_small_n", min_n=SMALL_N),
                    "few_outcomes_note": t("timing_few_outcomes", min_n=SMALL_N)}
    return section


# ---- (8) data quality ----


def _rule_counts(values: Iterable[object]) -> dict[str, int]:
    """Sum the per-file JSON objects {rule: quarantined rows}; unreadable entries are skipped."""
    totals: dict[str, int] = {}
    for raw in values:
        text = text_value(raw)
        if not text:
            continue
        try:
            parsed = json.loads(text)
        except ValueError:
            continue
        if isinstance(parsed, dict):
            for rule, count in parsed.items():
                if svg.is_number(count):
                    totals[str(rule)] = totals.get(str(rule), 0) + int(count)
    return totals


def _quarantine_reasons(frame: pd.DataFrame, lang: str) -> list[dict[str, str]]:
    """One row per source x column x rule with its quarantined rows: most rows first within a source.

    Ingestion names a rule `<column>:<kind>` (`orchestration.lib.ingest.rules`); the kind is shown in
    words, the column as delivered (a column name may itself hold a colon, so the kind is after the
    last one). A rule of no known kind is shown whole.
    """
    reasons = []
    for source, files in frame.groupby("source", sort=True):
        for rule, count in sorted(_rule_counts(files["rule_counts"]).items(), key=lambda kv: (-kv[1], kv[0])):
            column, _, kind = rule.rpartition(":")
            reasons.append({
                "source": str(source),
                "column": column or "–",
                "rule": label_for(lang, "rule", kind) if column else rule,
                "rows": fmt_int(count),
            })
    return reasons


def build_quality(inputs: ReportInputs, t: Translate, lang: str) -> Section:
    """Section 8: files and rows loaded, quarantined and rejected per source, and why rows and files were refused."""
    section = Section("quality", t("h_quality"))
    frame = inputs.load_audit
    columns = ("source", "file", "status", "reason", "rows_read", "rows_loaded", "rows_quarantined")
    section.reason = frame_problem(frame, "marts.load_audit", columns, t)
    if section.reason:
        return section
    assert frame is not None
    frame = frame.copy()
    for column in ("rows_read", "rows_loaded", "rows_quarantined"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce").fillna(0)
    frame["status"] = [text_value(v) or "" for v in frame["status"]]
    frame["source"] = [text_value(v) or "–" for v in frame["source"]]
    # A duplicate delivery is skipped before its rows are read into the lake, so it counts as a file only.
    frame.loc[frame["status"] == "duplicate", ["rows_read", "rows_loaded", "rows_quarantined"]] = 0
    rows = []
    for source, files in [*frame.groupby("source", sort=True), (t("total"), frame)]:
        rejected = files[files["status"] == "rejected"]
        rows.append({
            "source": source,
            "files": fmt_int(len(files)),
            "loaded": fmt_int((files["status"] == "loaded").sum()),
            "duplicate": fmt_int((files["status"] == "duplicate").sum()),
            "rejected": fmt_int(len(rejected)),
            "rows_read": fmt_int(files["rows_read"].sum()),
            "rows_loaded": fmt_int(files["rows_loaded"].sum()),
            "rows_quarantined": fmt_int(files["rows_quarantined"].sum()),
        })
    rows_read = float(frame["rows_read"].sum())
    rejected_files = [
        {"source": r["source"], "file": text_value(r["file"]) or "–", "reason": text_value(r["reason"]) or "–"}
        for r in frame[frame["status"] == "rejected"].sort_values(["source", "file"]).to_dict("records")
    ]
    section.data = {
        "intro": t("quality_intro"),
        "rows": rows,
        "share": t("quarantine_share", share=fmt(100 * float(frame["rows_quarantined"].sum()) / rows_read, 2))
        if rows_read > 0 else None,
        "quarantined": _quarantine_reasons(frame, lang) if "rule_counts" in frame.columns else [],
        "rejected": rejected_files,
    }
    return section


# ---- (9) methods and caveats ----


def _covariate_label(lang: str, covariate: str) -> str:
    """A covariate in words: the catalog's label of a known one, else its name with spaces."""
    label = label_for(lang, "cov", covariate)
    return label.replace("_", " ") if label == covariate else label


def build_methods(inputs: ReportInputs, t: Translate, lang: str) -> Section:
    """Section 9: what the numbers can and cannot say, in plain words."""
    section = Section("methods", t("h_methods"))
    covariates = [c for c in (text_value(v) for v in inputs.covariates) if c]
    adjusted = (t("m_adjusted", covariates=t("list_sep").join(_covariate_label(lang, c) for c in covariates))
                if covariates else t("m_adjusted_none"))
    rw = inputs.repeat_window_days
    adjusted_p = inputs.nps_changes is not None and "p_value_bh" in inputs.nps_changes.columns
    multiple = "m_multiple_bh" if adjusted_p else "m_multiple"
    section.data = {
        "paragraphs": [t("m_observational"), adjusted, t("m_mediation", rw=rw), t("m_censoring", rw=rw),
                       t("m_bootstrap"), t("m_significance"), t(multiple), t("m_privacy")],
    }
    return section


def build_sections(inputs: ReportInputs, t: Translate, lang: str) -> list[Section]:
    """All nine sections in report order."""
    return [
        build_headline(inputs, t),
        build_trend(inputs, t, lang),
        build_breakdown(inputs, t, lang),
        build_dose(inputs, t),
        build_drivers(inputs, t),
        build_revenue(inputs, t, lang),
        build_timing(inputs, t, lang),
        build_quality(inputs, t, lang),
        build_methods(inputs, t, lang),
    ]
