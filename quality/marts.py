"""Mart-level expectations that row rules cannot catch: volume anomalies, implausible jumps, explosions.

Each function is pure: it takes a pandas frame read from a mart and returns a `MartOutcome` with a
verdict, a severity and a message that names the day, month or customer, what was observed and
what was expected. They judge only the latest period(s): older periods were judged on the runs
that first saw them, and re-flagging history every morning would teach people to ignore the check.
The contact explosion also judges the earlier months that received activities since the last
publish (the caller picks them; `months_outcome` combines the verdicts): those are periods no run
has judged yet.

Severity: 'warn' when the data may well be right and a person should look before leadership reads
it (a campaign can triple responses; NPS can really move); 'error' when the pattern is almost
always a defect that distorts the headline model (see `contact_explosion_outcome`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import pandas as pd

from analysis.nps import compare_counts

WARN = "warn"
ERROR = "error"

# Scale factor that makes the median absolute deviation estimate a normal standard deviation.
MAD_TO_SD = 1.4826


@dataclass(frozen=True)
class MartOutcome:
    """Verdict of one mart-level expectation."""

    check: str
    success: bool
    severity: str  # WARN or ERROR: what a failure means for the run
    message: str
    details: dict[str, Any] = field(default_factory=dict)


# ---- (a) daily response volume -------------------------------------------------------------------


def daily_volume_outcome(
    daily: pd.DataFrame,
    *,
    day_column: str = "day",
    count_column: str = "responses",
    through: date | None = None,
    judge_days: int = 1,
    window_days: int = 28,
    min_history_days: int = 14,
    max_robust_z: float = 5.0,
    min_ratio: float = 3.0,
) -> MartOutcome:
    """Flag a day whose response count is far outside the trailing `window_days`-day median.

    `daily` has one row per day (several rows of a day, e.g. one per survey type, are summed);
    days missing between the first day and the day judged count as zero responses, and a day after
    the last one with any responses is compared with the window before that last day (a stopped
    feed stays a drop however long it lasts). Only the last
    `judge_days` days up to `through` (default: the last day in the frame) are judged; pass the
    last *complete* day as `through`, since a day still collecting responses is low by nature.

    A day is flagged when both hold, so that neither a noisy small series nor a tiny wobble of a
    flat large one raises an alarm:
    - robust z-score |x - median| / scale > `max_robust_z` (5), where scale = max(1.4826 x MAD,
      sqrt(median), 1): the MAD of the trailing window, floored by the Poisson noise of a count
      (a series that was exactly flat has MAD 0);
    - ratio x / median >= `min_ratio` (3x, a spike) or <= 1 / `min_ratio` (a drop to a third).
    Days with fewer than `min_history_days` days of history before them are not judged.
    """
    name = "daily_volume"
    if daily.empty:
        return MartOutcome(name, True, WARN, "no daily responses to judge")
    days = pd.to_datetime(daily[day_column]).dt.normalize()
    counts = daily[count_column].astype(float).groupby(days).sum()
    last = pd.Timestamp(through) if through is not None else counts.index.max()
    # Up to `through` even past the last day with responses: a feed that stopped while the other
    # sources went on (as_of moves with them) shows as days of zero, not as its last good day.
    calendar = pd.date_range(counts.index.min(), max(counts.index.max(), last), freq="D")
    series = counts.reindex(calendar, fill_value=0.0)
    series = series[series.index <= last]
    # Such days are judged against the window before the feed stopped: within two weeks the zeros
    # would be the trailing median, and an outage that lasts would pass as normal.
    active = counts[counts > 0]
    stopped_after = active.index.max() if len(active) else None

    findings: list[str] = []
    judged: list[dict[str, Any]] = []
    skipped: list[str] = []
    for day in series.index[-judge_days:]:
        silent = stopped_after is not None and day > stopped_after
        end = stopped_after + pd.Timedelta(days=1) if silent else day
        history = series[(series.index < end) & (series.index >= end - pd.Timedelta(days=window_days))]
        if len(history) < min_history_days:
            skipped.append(f"{day.date()} ({len(history)} days of history, {min_history_days} needed)")
            continue
        observed = float(series[day])
        median = float(history.median())
        mad = float((history - median).abs().median())
        scale = max(MAD_TO_SD * mad, math.sqrt(median), 1.0)
        z = (observed - median) / scale
        ratio = observed / median if median > 0 else math.inf if observed > 0 else 1.0
        spike = z > max_robust_z and ratio >= min_ratio
        drop = z < -max_robust_z and ratio <= 1 / min_ratio
        row = {"day": str(day.date()), "responses": observed, "median": median, "robust_z": z, "ratio": ratio}
        judged.append(row)
        baseline = (
            f"the {window_days}-day median before the last responses on {stopped_after.date()}" if silent
            else f"trailing {window_days}-day median"
        )
        text = (
            f"{day.date()}: {observed:,.0f} responses vs {baseline} {median:,.0f} "
            f"(robust z {z:+.1f}, {_ratio(ratio)})"
        )
        if spike or drop:
            findings.append(f"{text}: {'spike' if spike else 'drop'}")
        else:
            judged[-1]["text"] = text

    details = {"judged": judged, "not_judged": skipped}
    if findings:
        return MartOutcome(name, False, WARN, "; ".join(findings), details)
    if not judged:
        return MartOutcome(name, True, WARN, "not judged: " + "; ".join(skipped), details)
    within = "; ".join(r["text"] for r in judged)
    return MartOutcome(name, True, WARN, f"within the expected range: {within}", details)


def _ratio(ratio: float) -> str:
    return "no baseline" if math.isinf(ratio) else f"{ratio:.1f}x"


# ---- (b) month-over-month jumps --------------------------------------------------------------------


def nps_jump_outcome(
    nps_by_period: pd.DataFrame,
    *,
    dimension: str = "overall",
    min_n: int = 30,
    alpha: float = 0.001,
    min_points: float = 3.0,
) -> MartOutcome:
    """Flag a latest-month NPS that differs from the previous month by more than sampling error explains.

    `nps_by_period` is marts.nps_by_period (period_month, survey_type, dimension, dimension_value,
    promoters, passives, detractors, ...). For each survey type, the latest month of `dimension`
    rows is compared with the calendar month before it using `analysis.nps.compare_counts` (Wald
    two-sample z test). Flagged when p < `alpha` and |diff| >= `min_points` NPS points. alpha is
    0.001 rather than 0.05 because the check runs every day for every survey type and a warning
    must be rare enough to be read; `min_points` keeps a huge sample from flagging a real but
    immaterial drift. If both months are unanimous (standard error 0), any difference of at least
    `min_points` is beyond sampling error.

    Judged only with at least `min_n` responses in each month: the latest month is the one still
    collecting (up to as_of), and its first few responses are often unanimous, which leaves the Wald
    test a standard error of the other month alone. A survey type without responses in the frame's
    latest month (discontinued, or paused) is not judged again: its last month was judged when it
    was the latest.
    """
    name = "nps_jump"
    rows = nps_by_period[nps_by_period["dimension"] == dimension]
    if rows.empty:
        return MartOutcome(name, True, WARN, f"no {dimension!r} rows in nps_by_period")
    counts = (
        rows.assign(period=_months(rows["period_month"]))
        .groupby(["survey_type", "period"])[["promoters", "passives", "detractors"]]
        .sum()
    )
    findings: list[str] = []
    notes: list[str] = []
    details: dict[str, Any] = {}
    newest = counts.index.get_level_values("period").max()
    for survey_type, frame in counts.groupby(level="survey_type"):
        by_period = frame.droplevel("survey_type")
        latest = by_period.index.max()
        if latest < newest:
            notes.append(f"{survey_type}: no responses in {newest} (the last in {latest}, judged then)")
            continue
        previous = latest - 1
        if previous not in by_period.index:
            notes.append(f"{survey_type}: no {previous} data to compare {latest} with")
            continue
        a = tuple(int(v) for v in by_period.loc[latest])
        b = tuple(int(v) for v in by_period.loc[previous])
        if sum(a) < max(min_n, 2) or sum(b) < max(min_n, 2):
            notes.append(
                f"{survey_type}: too few responses to judge ({sum(a)} in {latest}, {sum(b)} in {previous}; "
                f"{min_n} needed in each)"
            )
            continue
        result = compare_counts(a, b)
        nps_a, nps_b = _nps(a), _nps(b)
        unanimous_change = math.isnan(result.p_value) and result.se == 0 and result.diff != 0
        beyond = unanimous_change or (not math.isnan(result.p_value) and result.p_value < alpha)
        text = (
            f"{survey_type} NPS {latest}: {nps_a:+.1f} (n={sum(a):,}) vs {previous}: {nps_b:+.1f} "
            f"(n={sum(b):,}), diff {result.diff:+.1f} points, p={_p(result.p_value)}"
        )
        details[str(survey_type)] = {
            "latest": str(latest),
            "previous": str(previous),
            "diff": result.diff,
            "se": result.se,
            "z": result.z,
            "p_value": result.p_value,
        }
        if beyond and abs(result.diff) >= min_points:
            findings.append(f"{text}: beyond sampling error (alpha {alpha})")
        else:
            notes.append(f"{text}: within sampling error")
    return _jump_outcome(name, findings, notes, details)


def pooled_two_proportion_p_value(x_a: int, n_a: int, x_b: int, n_b: int) -> float:
    """Two-sided p-value of the pooled two-proportion z test of x_a / n_a against x_b / n_b.

    z = (x_a / n_a - x_b / n_b) / sqrt(p (1 - p) (1 / n_a + 1 / n_b)) with the pooled p = (x_a + x_b)
    / (n_a + n_b), and p-value = 2 P(Z > |z|): statsmodels' `proportions_ztest` with its defaults, to
    the last digits (tests/quality/test_marts.py). Written out because importing statsmodels' test
    imports scipy.stats, 0.7 s of every run's check, and nothing else in a run needs it. NaN when
    the pooled proportion is 0 or 1 (no variation: the caller decides what that means).
    """
    pooled = (x_a + x_b) / (n_a + n_b)
    se = math.sqrt(pooled * (1.0 - pooled) * (1.0 / n_a + 1.0 / n_b))
    if se == 0:
        return math.nan
    z = (x_a / n_a - x_b / n_b) / se
    return math.erfc(abs(z) / math.sqrt(2.0))


def repeat_rate_jump_outcome(
    repeat_by_period: pd.DataFrame,
    *,
    period_column: str = "period_month",
    n_column: str = "repeat_n",
    repeats_column: str = "repeats",
    min_n: int = 30,
    alpha: float = 0.001,
    min_points: float = 3.0,
) -> MartOutcome:
    """Flag a repeat rate that moved between the two latest judged months beyond sampling error.

    `repeat_by_period`: one row per response month (rows of a month are summed) with `n_column`
    = responses whose repeat_after is known (not censored) and `repeats_column` = how many of them
    repeated, e.g. from marts.fct_survey_responses grouped by reporting month. Recent months are
    mostly censored (their repeat window has not ended), so the two latest months with at least
    `min_n` known outcomes are compared, with a pooled two-proportion z test
    (`pooled_two_proportion_p_value`, statsmodels' `proportions_ztest`). Flagged when p < `alpha`
    and the rates differ by at least `min_points` percentage points (same reasoning as
    `nps_jump_outcome`).
    """
    name = "repeat_rate_jump"
    frame = (
        repeat_by_period.assign(period=_months(repeat_by_period[period_column]))
        .groupby("period")[[n_column, repeats_column]]
        .sum()
    )
    judged = frame[frame[n_column] >= min_n].sort_index()
    if len(judged) < 2:
        return MartOutcome(name, True, WARN, f"fewer than two months with at least {min_n} known repeat outcomes")
    (previous, before), (latest, after) = list(judged.iloc[-2:].iterrows())
    n_a, x_a = int(after[n_column]), int(after[repeats_column])
    n_b, x_b = int(before[n_column]), int(before[repeats_column])
    rate_a, rate_b = x_a / n_a, x_b / n_b
    diff = 100.0 * (rate_a - rate_b)
    # Both months all-repeat or none-repeat: nothing moved (and the pooled test has no variance).
    nothing_moved = x_a + x_b in (0, n_a + n_b)
    p_value = 1.0 if nothing_moved else pooled_two_proportion_p_value(x_a, n_a, x_b, n_b)
    text = (
        f"repeat rate {latest}: {rate_a:.1%} (n={n_a:,}) vs {previous}: {rate_b:.1%} (n={n_b:,}), "
        f"diff {diff:+.1f} points, p={_p(p_value)}"
    )
    details = {"latest": str(latest), "previous": str(previous), "diff_points": diff, "p_value": p_value}
    if p_value < alpha and abs(diff) >= min_points:
        return _jump_outcome(name, [f"{text}: beyond sampling error (alpha {alpha})"], [], details)
    return _jump_outcome(name, [], [f"{text}: within sampling error"], details)


def _jump_outcome(name: str, findings: list[str], notes: list[str], details: dict[str, Any]) -> MartOutcome:
    if findings:
        return MartOutcome(name, False, WARN, "; ".join(findings + notes), details)
    return MartOutcome(name, True, WARN, "; ".join(notes) or "nothing to compare", details)


def _months(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values).dt.to_period("M")


def _nps(counts: tuple[int, ...]) -> float:
    promoters, _, detractors = counts
    return 100.0 * (promoters - detractors) / sum(counts)


def _p(p_value: float) -> str:
    if math.isnan(p_value):
        return "n/a"
    return "<0.0001" if p_value < 1e-4 else f"{p_value:.4f}"


# ---- (c) contact explosions ---------------------------------------------------------------------


# The rule's parameters, shared by the pandas path and the SQL aggregate so the two cannot drift.
EXPLOSION_RATIO = 10.0
EXPLOSION_MIN_CONTACTS = 50
EXPLOSION_TRAILING_MONTHS = 6
EXPLOSION_MIN_HISTORY_MONTHS = 3


def contact_explosion_outcome(
    customer_months: pd.DataFrame,
    *,
    ratio: float = EXPLOSION_RATIO,
    min_contacts: int = EXPLOSION_MIN_CONTACTS,
    trailing_months: int = EXPLOSION_TRAILING_MONTHS,
    min_history_months: int = EXPLOSION_MIN_HISTORY_MONTHS,
    material_share: float = 0.2,
) -> MartOutcome:
    """Flag customers whose contacts in the latest month exploded against their own trailing median.

    `customer_months` is marts.fct_customer_months (customer_id, month, contacts; dense from each
    customer's first month, so quiet months are zeros). A customer is flagged when, in the latest
    month, contacts > `ratio` (10) x max(trailing median, 1) over the previous `trailing_months`
    (6) months AND contacts >= `min_contacts` (50, more than two a working day). Both, because a
    customer going from 1 to 12 contacts is a busy month, and a key account with 60 every month is
    normal. Customers with fewer than `min_history_months` months before the latest have no
    baseline and are not judged.

    Such bursts are nearly always a logging loop or a re-imported batch, and contacts are the
    exposure of the headline model. Severity is 'error' when the flagged customers hold more than
    `material_share` (20%) of the month's contacts (the model's input is materially distorted),
    else 'warn'. On a warehouse, `contact_explosion_sql` computes the same aggregate in the database
    and `contact_explosion_from_aggregate` judges it, without reading the panel into memory.
    """
    if customer_months.empty:
        return contact_explosion_from_aggregate(None, 0, 0.0, pd.DataFrame(columns=["customer_id", "latest", "median"]))
    frame = customer_months.assign(period=_months(customer_months["month"]))
    latest = frame["period"].max()
    current = frame[frame["period"] == latest].groupby("customer_id")["contacts"].sum()
    window = frame[(frame["period"] < latest) & (frame["period"] >= latest - trailing_months)]
    history = window.groupby("customer_id")["contacts"].agg(["median", "size"])
    judged = history[history["size"] >= min_history_months].join(current.rename("latest"), how="inner")
    baseline = judged["median"].clip(lower=1.0)
    flagged = judged[(judged["latest"] > ratio * baseline) & (judged["latest"] >= min_contacts)]
    return contact_explosion_from_aggregate(
        latest.start_time.date(), len(judged), float(current.sum()),
        flagged.rename_axis("customer_id").reset_index()[["customer_id", "latest", "median"]],
        ratio=ratio, min_contacts=min_contacts, trailing_months=trailing_months, material_share=material_share,
    )


def contact_explosion_sql(
    relation: str,
    *,
    ratio: float = EXPLOSION_RATIO,
    min_contacts: int = EXPLOSION_MIN_CONTACTS,
    trailing_months: int = EXPLOSION_TRAILING_MONTHS,
    min_history_months: int = EXPLOSION_MIN_HISTORY_MONTHS,
) -> tuple[str, str]:
    """DuckDB queries of `contact_explosion_outcome`'s aggregate over `relation` (customer_id, month, contacts).

    The first returns one row: the latest month, the customers judged and the latest month's contacts;
    the second the flagged customers (customer_id, latest, median). Both take the latest month (the
    first day of the relation's latest month, or NULL for an empty relation) as their only parameter. Medians
    are DuckDB's `median` (the mean of the two middle values, as pandas'), over the same rows.

    Only a customer with at least `min_contacts` in the latest month can be flagged, so the medians
    (a sort per customer) are taken for those few alone, and the totals are one grouping by
    customer, not a median per customer and a join: at a million customers the two queries took 1.5
    CPU-s instead of 2.3 (one thread, the benchmark's warehouse).
    """
    common = f"""
        with latest_month as (
            select cast(? as date) as latest_month
        ),

        months as (
            select customer_id, date_trunc('month', cast(month as date)) as period, contacts
            from {relation}, latest_month
            -- A superset the scan can prune on; the period filter below is the rule's window.
            where month >= latest_month - interval {int(trailing_months) + 1} month
              and date_trunc('month', cast(month as date)) >= latest_month - interval {int(trailing_months)} month
        ),

        current_month as (
            select customer_id, sum(contacts) as latest
            from months, latest_month
            where period = latest_month
            group by customer_id
        ),
        """
    # One grouping for both figures: the customers judged (a latest month and enough history) and the
    # latest month's contacts.
    totals = common + f"""
        per_customer as (
            select
                customer_id,
                count(*) filter (where period = latest_month) as latest_rows,
                sum(contacts) filter (where period = latest_month) as latest,
                count(*) filter (where period < latest_month) as history_months
            from months, latest_month
            group by customer_id
        )

        select (select latest_month from latest_month) as latest_month,
               (select count(*) from per_customer
                where latest_rows > 0 and history_months >= {int(min_history_months)}) as customers_judged,
               (select coalesce(sum(latest), 0) from per_customer) as total_contacts
        """
    flagged = common + f"""
        candidates as (
            select customer_id, latest
            from current_month
            where latest >= {int(min_contacts)}
        ),

        history as (
            select months.customer_id, median(months.contacts) as median, count(*) as months
            from months, latest_month
            where months.period < latest_month.latest_month
              and months.customer_id in (select customer_id from candidates)
            group by months.customer_id
        )

        select candidates.customer_id, candidates.latest, history.median
        from candidates
        inner join history on history.customer_id = candidates.customer_id
        where history.months >= {int(min_history_months)}
          and candidates.latest > {float(ratio)} * greatest(history.median, 1.0)
        """
    return totals, flagged


def contact_explosion_from_aggregate(
    latest_month: date | None,
    customers_judged: int,
    total_contacts: float,
    flagged: pd.DataFrame,
    *,
    ratio: float = EXPLOSION_RATIO,
    min_contacts: int = EXPLOSION_MIN_CONTACTS,
    trailing_months: int = EXPLOSION_TRAILING_MONTHS,
    material_share: float = 0.2,
) -> MartOutcome:
    """The verdict of `contact_explosion_outcome` from its aggregate (see there for the rule).

    `flagged` holds the flagged customers (customer_id, latest, median); `latest_month` None means
    there were no customer months at all.
    """
    name = "contact_explosion"
    if latest_month is None:
        return MartOutcome(name, True, WARN, "no customer months to judge")
    latest = pd.Period(latest_month, freq="M")
    # Largest first; ties by customer id, so the message is the same whichever engine aggregated.
    flagged = (
        flagged.assign(latest=flagged["latest"].astype(float), median=flagged["median"].astype(float))
        .sort_values(["latest", "customer_id"], ascending=[False, True])
        .set_index("customer_id")
    )
    share = float(flagged["latest"].sum()) / total_contacts if total_contacts else 0.0
    details = {
        "month": str(latest),
        "customers_judged": int(customers_judged),
        "flagged": [
            {"customer_id": str(c), "contacts": float(r["latest"]), "trailing_median": float(r["median"])}
            for c, r in flagged.iterrows()
        ],
        "flagged_share_of_contacts": share,
    }
    if flagged.empty:
        message = (
            f"{latest}: no customer above {ratio:g}x their trailing {trailing_months}-month median "
            f"and {min_contacts} contacts ({int(customers_judged):,} customers judged)"
        )
        return MartOutcome(name, True, WARN, message, details)
    listed = "; ".join(
        f"{c}: {r['latest']:,.0f} contacts in {latest} vs trailing median {r['median']:,.1f}"
        for c, r in flagged.head(5).iterrows()
    )
    more = f" (+{len(flagged) - 5} more)" if len(flagged) > 5 else ""
    severity = ERROR if share > material_share else WARN
    message = (
        f"{len(flagged)} customer(s) with a contact explosion (> {ratio:g}x trailing median and >= "
        f"{min_contacts} contacts), {share:.0%} of {latest} contacts: {listed}{more}"
    )
    return MartOutcome(name, False, severity, message, details)


def accepted_outcome(outcome: MartOutcome, accepted: str) -> MartOutcome:
    """A blocking failure a person accepted (`accepted` says who, when and why): reported, no longer blocking."""
    if outcome.success or outcome.severity != ERROR:
        return outcome
    return MartOutcome(outcome.check, False, WARN, f"accepted ({accepted}): {outcome.message}",
                       {**outcome.details, "accepted": accepted})


def months_outcome(outcomes: list[MartOutcome]) -> MartOutcome:
    """One verdict over a check's outcomes for several months (oldest first): the failures, else the latest.

    Blocking (ERROR) when any month's failure is; the message gives every failing month's.
    """
    if not outcomes:
        raise ValueError("no months judged")
    failed = [o for o in outcomes if not o.success]
    if not failed:
        latest = outcomes[-1]
        others = [o.details.get("month") for o in outcomes[:-1] if o.details.get("month")]
        also = f" (also judged, with deliveries since the last publish: {', '.join(others)})" if others else ""
        return MartOutcome(latest.check, True, latest.severity, latest.message + also,
                           {**latest.details, "months_judged": [o.details.get("month") for o in outcomes]})
    severity = ERROR if any(o.severity == ERROR for o in failed) else WARN
    return MartOutcome(failed[0].check, False, severity, " | ".join(o.message for o in failed),
                       {"months": [o.details for o in outcomes]})
