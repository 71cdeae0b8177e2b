"""Hand-made, realistic inputs for the leadership report tests (shared by the pure and the browser tests).

The frames follow the column lists of docs/architecture.md. Counts are drawn from a seeded generator
and NPS values are computed from them with DESIGN.md's formula, so the numbers hang together the way
the pipeline's do. Some frames carry a stray `comment` column with an e-mail address on purpose: the
report must never show either.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from analysis.report import ReportInputs
from analysis.tables import wilson_interval

RUN_ID = "run-2025-06-30-a1b2c3"
# 2025-06-30 23:59:59 in Asia/Tokyo, stored as naive UTC like every warehouse timestamp.
AS_OF = datetime(2025, 6, 30, 14, 59, 59)
MONTHS = pd.date_range("2024-05-01", "2025-06-01", freq="MS")
SECRET_EMAIL = "hanako.yamada@example.co.jp"
SECRET_COMMENT = "Terrible support, call me back"

LINK_EFFECTS = {
    # effect: (estimate, ci_low, ci_high, p_value); a_path on the 0-10 score, the rest on the probability scale.
    "a_path": (0.5234, 0.4812, 0.5691, 1e-12),
    "b_path": (0.04103, 0.03597, 0.04611, 1e-9),
    "direct": (0.01121, 0.00402, 0.01833, 0.003),
    "indirect": (0.02147, 0.01871, 0.02422, 1e-8),
    "total": (0.03268, 0.02904, 0.03497, 1e-10),
    "proportion_mediated": (0.6570, 0.5821, 0.7311, None),
}


def _nps(promoters: int, passives: int, detractors: int) -> tuple[float, float | None]:
    n = promoters + passives + detractors
    p, d = promoters / n, detractors / n
    moe = 1.96 * 100 * math.sqrt((p + d - (p - d) ** 2) / n) if n >= 2 else None
    return 100 * (p - d), moe


def link_effects() -> pd.DataFrame:
    """The link model's effects as the analysis asset writes them."""
    rows = [
        {"run_id": RUN_ID, "as_of": AS_OF, "effect": effect, "estimate": est, "ci_low": lo, "ci_high": hi,
         "p_value": p, "n_responses": 4210, "n_customers": 1875, "exposure": "contacts_per_month",
         "mediator": "nps_score", "outcome": "repeat_after"}
        for effect, (est, lo, hi, p) in LINK_EFFECTS.items()
    ]
    return pd.DataFrame(rows)


def nps_by_period() -> pd.DataFrame:
    """Month x survey type x dimension NPS counts, with a stray comment column that must not leak."""
    rng = np.random.default_rng(7)
    groups: dict[str, list[tuple[str, int]]] = {
        "segment": [("enterprise", 90), ("mid_market", 120), ("smb", 150), ("consumer", 3)],
        "business_unit": [("staffing", 160), ("media", 110), ("finance", 98)],
    }
    touchpoints = [("onboarding", 40), ("placement", 70), ("support", 90), ("billing", 12)]
    rows: list[dict[str, Any]] = []
    for m, month in enumerate(MONTHS):
        for survey_type in ("relational", "transactional"):
            dims = dict(groups)
            if survey_type == "transactional":
                dims["touchpoint"] = touchpoints
            overall = np.zeros(3, dtype=int)
            for dimension, values in dims.items():
                for value, size in values:
                    # A slow upward drift plus a dip in 2025-02 gives the trend chart something to mark.
                    base = 0.42 + 0.006 * m - (0.12 if month.strftime("%Y-%m") == "2025-02" else 0)
                    n = max(2, int(rng.poisson(size)))
                    p = min(max(base + rng.normal(0, 0.03), 0.05), 0.9)
                    d = min(max(0.9 - p - 0.35 + rng.normal(0, 0.02), 0.03), 0.6)
                    counts = rng.multinomial(n, [p, 1 - p - d, d])
                    if dimension == "segment":
                        overall += counts
                    rows.append(_period_row(month, survey_type, dimension, value, counts))
            rows.append(_period_row(month, survey_type, "overall", "overall", overall))
    frame = pd.DataFrame(rows)
    frame["comment"] = f"{SECRET_COMMENT} at {SECRET_EMAIL}"
    return frame


def _period_row(month: pd.Timestamp, survey_type: str, dimension: str, value: str, counts: Any) -> dict[str, Any]:
    promoters, passives, detractors = (int(c) for c in counts)
    nps, moe = _nps(promoters, passives, detractors)
    return {"period_month": month.date(), "survey_type": survey_type, "dimension": dimension,
            "dimension_value": value, "responses": promoters + passives + detractors, "promoters": promoters,
            "passives": passives, "detractors": detractors, "nps": nps, "nps_moe95": moe}


def nps_changes(period: pd.DataFrame | None = None) -> pd.DataFrame:
    """Month-on-month changes per group, with a simple two-sample test flagging the big moves."""
    period = nps_by_period() if period is None else period
    rows = []
    for (survey_type, dimension, value), group in period.groupby(["survey_type", "dimension", "dimension_value"]):
        group = group.sort_values("period_month")
        previous = None
        for r in group.to_dict("records"):
            if previous is not None:
                diff = r["nps"] - previous["nps"]
                se = math.sqrt(((r["nps_moe95"] or 0) / 1.96) ** 2 + ((previous["nps_moe95"] or 0) / 1.96) ** 2)
                z = diff / se if se > 0 else 0.0
                p_value = math.erfc(abs(z) / math.sqrt(2))
                rows.append({"run_id": RUN_ID, "as_of": AS_OF, "period_month": r["period_month"],
                             "survey_type": survey_type, "dimension": dimension, "dimension_value": value,
                             "nps": r["nps"], "prev_nps": previous["nps"], "diff": diff, "p_value": p_value})
            previous = r
    frame = pd.DataFrame(rows)
    # Benjamini-Hochberg within each month, as the pipeline's table does: one month is one family of tests.
    frame["p_value_bh"] = frame.groupby("period_month")["p_value"].transform(_benjamini_hochberg)
    frame["is_significant"] = frame["p_value_bh"] < 0.05
    return frame


def _benjamini_hochberg(p_values: pd.Series) -> pd.Series:
    order = np.argsort(p_values.to_numpy())
    ranked = p_values.to_numpy()[order] * len(p_values) / np.arange(1, len(p_values) + 1)
    adjusted = np.minimum.accumulate(ranked[::-1])[::-1].clip(max=1.0)
    result = np.empty_like(adjusted)
    result[order] = adjusted
    return pd.Series(result, index=p_values.index)


def dose_response() -> pd.DataFrame:
    """Mean score, NPS and repeat rate by contacts-per-month bin (rising with contacts)."""
    bins = [("0–1", 0.0, 1.0, 820, 6.41, 38, -12.2), ("1–2", 1.0, 2.0, 1310, 6.93, 52, 1.5),
            ("2–3", 2.0, 3.0, 1045, 7.44, 61, 14.9), ("3–4", 3.0, 4.0, 690, 7.81, 66, 24.3),
            ("4+", 4.0, None, 345, 8.02, 70, 31.0)]
    rows = []
    for label, low, high, n, mean, repeat_pct, nps in bins:
        repeat_n = int(n * 0.8)
        rate = repeat_pct / 100
        half = 1.96 * math.sqrt(rate * (1 - rate) / repeat_n)
        rows.append({"run_id": RUN_ID, "as_of": AS_OF, "bin_label": label, "bin_low": low, "bin_high": high,
                     "n": n, "mean_nps_score": mean, "mean_ci_low": mean - 0.12, "mean_ci_high": mean + 0.12,
                     "nps": nps, "nps_ci_low": nps - 5.5, "nps_ci_high": nps + 5.5, "repeat_n": repeat_n,
                     "repeat_rate": rate, "repeat_ci_low": rate - half, "repeat_ci_high": rate + half})
    return pd.DataFrame(rows)


def key_drivers() -> pd.DataFrame:
    """Relative-weight importance and mean rating of eight rated items, top five to improve marked."""
    items = [("responsiveness", 24.1, 6.2, 1), ("expertise", 18.3, 7.9, None), ("proactive_updates", 15.2, 5.8, 2),
             ("onboarding_quality", 11.7, 6.6, 3), ("pricing_clarity", 9.8, 5.9, 4), ("reporting", 8.4, 7.2, 5),
             ("account_manager_continuity", 7.6, 7.5, None), ("tooling", 4.9, 7.0, None)]
    rows = [{"run_id": RUN_ID, "as_of": AS_OF, "driver": d, "importance": imp, "raw_weight": imp / 100 * 0.48,
             "rank": i + 1, "mean_score": score, "n": 3900 - 40 * i, "improve_priority": prio, "n_fit": 2950,
             "excluded_reason": None, "excluded_rule": None}
            for i, (d, imp, score, prio) in enumerate(items)]
    # Two items without an importance, as analysis.tables.key_drivers leaves them: one a billing survey
    # asks on its own, one whose rule a later release may add (the report must still list it).
    rows += [{"run_id": RUN_ID, "as_of": AS_OF, "driver": d, "importance": None, "raw_weight": None, "rank": None,
              "mean_score": score, "n": n, "improve_priority": None, "n_fit": None, "excluded_reason": reason,
              "excluded_rule": rule}
             for d, score, n, rule, reason in [
                 ("billing_accuracy", 7.26, 734, "not_rated_together",
                  "no responses rate it together with the drivers already fitted (responsiveness, ...); min_n=50"),
                 ("website", 6.1, 410, "a_rule_of_a_later_release", "a reason of a later release")]]
    return pd.DataFrame(rows)


def nps_revenue() -> pd.DataFrame:
    """Revenue after a response by NPS category, plus the segment-month correlation row."""
    rows: list[dict[str, Any]] = [
        {"category": "promoter", "customers": 820, "responses": 1650, "revenue_after": 1_512_300_000.0,
         "revenue_after_mean": 916_545.0},
        {"category": "passive", "customers": 610, "responses": 1420, "revenue_after": 984_600_000.0,
         "revenue_after_mean": 693_380.0},
        {"category": "detractor", "customers": 445, "responses": 1140, "revenue_after": 512_900_000.0,
         "revenue_after_mean": 449_912.0},
        {"category": "correlation_segment_month", "corr": 0.412, "corr_ci_low": 0.188, "corr_ci_high": 0.596,
         "n_cells": 56, "corr_within_segment": 0.183, "corr_within_segment_ci_low": -0.097,
         "corr_within_segment_ci_high": 0.437, "n_segments": 4},
    ]
    frame = pd.DataFrame(rows)
    frame.insert(0, "as_of", AS_OF)
    frame.insert(0, "run_id", RUN_ID)
    return frame


def _group_table(bins: list[tuple[str, int, int, float, float, float, int]]) -> pd.DataFrame:
    """A contact_timing/handoff table; the repeat interval is Wilson's on round(rate x repeat_n) of repeat_n."""
    def wilson(rate: float, n: int) -> tuple[float, float]:
        low, high = wilson_interval([round(rate * n)], [n])
        return float(low[0]), float(high[0])

    return pd.DataFrame([
        {"run_id": RUN_ID, "as_of": AS_OF, "bin_label": label, "customers": customers, "responses": responses,
         "nps": nps, "nps_moe95": moe, "repeat_rate": repeat, "repeat_ci_low": wilson(repeat, repeat_n)[0],
         "repeat_ci_high": wilson(repeat, repeat_n)[1], "repeat_n": repeat_n}
        for label, customers, responses, nps, moe, repeat, repeat_n in bins
    ])


def contact_timing() -> pd.DataFrame:
    """NPS and repeat rate by outbound contacts in the first week after the first order."""
    return _group_table([("0", 610, 1240, -4.8, 5.4, 0.41, 990), ("1", 520, 1180, 6.2, 5.6, 0.50, 940),
                         ("2–3", 540, 1310, 15.7, 5.2, 0.58, 1050), ("4+", 205, 480, 21.3, 8.5, 0.63, 380)])


def handoff() -> pd.DataFrame:
    """NPS and repeat rate by days from first order to the first account-management contact."""
    return _group_table([("≤ 7 days", 702, 1560, 18.4, 4.9, 0.60, 1250),
                         ("8–30 days", 688, 1530, 6.1, 5.1, 0.52, 1220),
                         ("> 30 days", 402, 930, -9.3, 6.7, 0.43, 740),
                         ("no hand-off", 21, 24, -20.8, 37.2, 0.35, 20)])


def load_audit() -> pd.DataFrame:
    """One row per delivered file: loaded, duplicate and rejected files, with quarantine rule counts."""
    rows = [
        ("crm_accounts", "crm/accounts_2025-06-30.csv", "loaded", None, 1900, 1897, 3,
         {"created_at:not_in_future": 1, "created_at:type": 1, "segment:enum": 1}),
        ("crm_activities", "crm/activities_2025-06.jsonl", "loaded", None, 48210, 48102, 108,
         {"occurred_at:type": 100, "direction:enum": 5, "duration_minutes:range": 2, "occurred_at:not_in_future": 1}),
        ("crm_activities", "crm/activities_2025-06.jsonl.bak", "duplicate", "same sha256 as an earlier delivery",
         48210, 0, 0, {}),
        ("survey_responses", "survey/responses_2025-06.csv", "loaded", None, 4420, 4405, 15,
         {"nps_score:range": 9, "responded_at:type": 3, "responded_at:not_in_future": 1, "comment:max_length": 1,
          "customer_id:required": 1}),
        ("survey_responses", "survey/responses_broken.csv", "rejected",
         f"required column customer_id missing (sent by {SECRET_EMAIL})", 310, 0, 0, {}),
        ("orders", "billing/orders_2025-06.parquet", "loaded", None, 12880, 12880, 0, {}),
    ]
    frame = pd.DataFrame([
        {"source": s, "file": f, "sha256": f"{i:064x}", "size_bytes": 1000 + i, "delivery_seq": i + 1,
         "file_format": f.rsplit(".", 1)[-1], "encoding": "utf-8", "rows_read": read, "rows_loaded": loaded,
         "rows_quarantined": quarantined, "status": status, "reason": reason, "rule_counts": json.dumps(rules),
         "extra_columns": "[]", "missing_optional_columns": "[]", "loaded_at": AS_OF}
        for i, (s, f, status, reason, read, loaded, quarantined, rules) in enumerate(rows)
    ])
    frame["comment"] = SECRET_COMMENT
    return frame


def make_inputs(**overrides: Any) -> ReportInputs:
    """A complete, realistic ReportInputs; keyword arguments replace fields (e.g. a frame with None)."""
    period = nps_by_period()
    fields: dict[str, Any] = {
        "as_of": AS_OF,
        "run_id": RUN_ID,
        "link_effects": link_effects(),
        "nps_by_period": period,
        "nps_changes": nps_changes(period),
        "dose_response": dose_response(),
        "key_drivers": key_drivers(),
        "nps_revenue": nps_revenue(),
        "contact_timing": contact_timing(),
        "handoff": handoff(),
        "load_audit": load_audit(),
        "reporting_tz": "Asia/Tokyo",
        "reporting_currency": "JPY",
        "covariates": ("segment", "business_unit", "tenure_days", "revenue_prior_365d", "inbound_before"),
    }
    fields.update(overrides)
    return ReportInputs(**fields)
