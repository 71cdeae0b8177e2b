"""Draw one chunk of customers and everything that happens to them, vectorised with numpy.

Times are int64 seconds since the Unix epoch (UTC). Two parity tricks keep every measured window
free of ties, so SQL that reads `<` where we read `<=` still counts the same rows:
activities and ordinary orders sit on EVEN seconds, survey responses and first orders on ODD ones.
A window edge is always a response instant or a first order shifted by whole days (an even number
of seconds), so it is odd and never equals an activity or order time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from orchestration.lib.demo import pools
from orchestration.lib.demo.model import (
    DAY,
    DRIVERS,
    DRIVERS_ASKED,
    FX_TO_JPY,
    TOUCHPOINTS,
    PlantedModel,
    contacts_term,
    repeat_covariate_term,
    repeat_probability,
    score_from_latent,
)

KEY_SHIFT = 32  # key = customer << 32 | (t - KEY_ORIGIN): one sorted array answers every window query


@dataclass(frozen=True)
class Window:
    """The simulated time span: history [start, end) is delivered, [end, horizon_end) waits for append_day."""

    start: int
    end: int
    horizon_end: int

    @property
    def key_origin(self) -> int:
        # Window edges reach one year before an event (prior revenue); keep key offsets positive.
        return self.start - 400 * DAY


@dataclass
class Reps:
    """The CRM users: sales reps, account managers, support agents and their managers."""

    rep_id: np.ndarray
    name: np.ndarray
    email: np.ndarray
    team: np.ndarray  # index into model.TEAMS
    manager: np.ndarray  # index of the manager rep, -1 for a team head
    active: np.ndarray
    new_sales: np.ndarray  # indices of active non-manager reps per team, for assignment
    account_management: np.ndarray
    support: np.ndarray


@dataclass
class Chunk:
    """Every row drawn for one chunk of customers, as numpy columns; `cust` indexes the chunk's accounts."""

    first_customer: int  # 0-based global index of the chunk's first account
    accounts: dict[str, np.ndarray] = field(default_factory=dict)
    activities: dict[str, np.ndarray] = field(default_factory=dict)
    responses: dict[str, np.ndarray] = field(default_factory=dict)
    orders: dict[str, np.ndarray] = field(default_factory=dict)


def _even_between(lo: np.ndarray, hi: np.ndarray, u: np.ndarray) -> np.ndarray:
    """An even second strictly inside (lo, hi), spread by u in [0, 1); callers ensure room for one."""
    first = lo + 1 + ((lo + 1) & 1)
    last = hi - 1 - ((hi - 1) & 1)
    count = np.maximum((last - first) // 2 + 1, 1)
    return first + 2 * np.minimum((u * count).astype(np.int64), count - 1)


def _odd(t: np.ndarray) -> np.ndarray:
    return t | 1


def _even(t: np.ndarray) -> np.ndarray:
    return t & ~np.int64(1)


def _has_even_between(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    first = lo + 1 + ((lo + 1) & 1)
    return first < hi


def _categorical(rng: np.random.Generator, probs: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """One draw per element of `rows` from the distribution probs[rows] (probs: (k, m))."""
    cum = np.cumsum(probs, axis=1)
    cum[:, -1] = 1.0
    u = rng.random(len(rows))
    return (u[:, None] >= cum[rows]).sum(axis=1)


def _rank_within(cust: np.ndarray) -> np.ndarray:
    """0-based position of each row within its customer's run (rows sorted by customer)."""
    n = len(cust)
    if n == 0:
        return np.zeros(0, np.int64)
    starts = np.flatnonzero(np.r_[True, cust[1:] != cust[:-1]])
    run_start = np.repeat(starts, np.diff(np.r_[starts, n]))
    return np.arange(n) - run_start


def make_reps(rng: np.random.Generator, customers: int) -> Reps:
    """The rep roster: about one rep per 150 accounts, teams with managers, Japanese names."""
    n = max(24, customers // 150)
    team = rng.choice(3, size=n, p=[0.30, 0.45, 0.25])
    team[:3] = [0, 1, 2]  # every team exists, even in a tiny demo
    team = np.sort(team, kind="stable")
    manager = np.full(n, -1, np.int64)
    is_manager = np.zeros(n, bool)
    for t in range(3):
        members = np.flatnonzero(team == t)
        head = members[0]
        n_mgr = max(1, int(np.ceil(len(members) / 8)))
        mgrs = members[1 : 1 + n_mgr] if len(members) > 1 + n_mgr else members[:1]
        is_manager[members[: 1 + n_mgr]] = True
        manager[mgrs] = head
        rest = members[1 + n_mgr :]
        manager[rest] = rng.choice(mgrs, size=len(rest))
        manager[head] = -1
    active = np.ones(n, bool)
    active[~is_manager] = rng.random(int((~is_manager).sum())) > 0.05
    fam = rng.integers(len(pools.FAMILY_NAMES), size=n)
    giv = rng.integers(len(pools.GIVEN_NAMES), size=n)
    rep_id = np.array([f"REP{i + 1:05d}" for i in range(n)], dtype=object)  # small: a few thousand
    name = np.array(
        [f"{pools.FAMILY_NAMES[f][0]} {pools.GIVEN_NAMES[g][0]}" for f, g in zip(fam, giv, strict=True)],
        dtype=object,
    )
    email = np.array(
        [
            f"{pools.GIVEN_NAMES[g][1]}.{pools.FAMILY_NAMES[f][1]}{i + 1}@example.co.jp"
            for i, (f, g) in enumerate(zip(fam, giv, strict=True))
        ],
        dtype=object,
    )
    assignable = active & ~is_manager
    for t in range(3):
        if not (assignable & (team == t)).any():  # a tiny roster: managers carry accounts too
            assignable |= team == t
    return Reps(
        rep_id=rep_id,
        name=name,
        email=email,
        team=team,
        manager=manager,
        active=active,
        new_sales=np.flatnonzero(assignable & (team == 0)),
        account_management=np.flatnonzero(assignable & (team == 1)),
        support=np.flatnonzero(assignable & (team == 2)),
    )


def _window_count(
    keys: np.ndarray, cust: np.ndarray, lo: np.ndarray, hi: np.ndarray, origin: int
) -> np.ndarray:
    """Rows of sorted `keys` with this customer and lo <= t < hi (edges never tie: parity)."""
    base = cust.astype(np.int64) << KEY_SHIFT
    return np.searchsorted(keys, base | (hi - origin)) - np.searchsorted(keys, base | (lo - origin))


def simulate_chunk(
    rng: np.random.Generator, model: PlantedModel, window: Window, reps: Reps, first_customer: int, n: int
) -> Chunk:
    """Draw `n` accounts (global indices first_customer..) with their activities, responses and orders."""
    chunk = Chunk(first_customer=first_customer)
    _draw_accounts(rng, model, window, reps, n, chunk)
    _draw_activities(rng, model, window, reps, chunk)
    _draw_responses(rng, model, window, chunk)
    _score_responses(rng, model, window, chunk)
    _draw_repeat_and_orders(rng, model, window, chunk)
    return chunk


def _draw_accounts(
    rng: np.random.Generator, model: PlantedModel, window: Window, reps: Reps, n: int, chunk: Chunk
) -> None:
    seg = rng.choice(3, size=n, p=model.segment_share)
    bu = rng.choice(3, size=n, p=model.business_unit_share)
    pref_w = np.array([w for _, w in pools.PREFECTURES])
    # Accounts arrive over the whole span with mild growth (density rising over time); the last ones
    # fall in the append_day horizon and are delivered as new accounts on those days.
    span = window.horizon_end - DAY - window.start
    created = window.start + (span * rng.random(n) ** (1 / 1.3)).astype(np.int64)
    first_order = _odd(created + (rng.uniform(0.5, 10.0, n) * DAY).astype(np.int64))
    handoff_days = np.clip(
        rng.lognormal(np.log(np.asarray(model.handoff_median_days)[seg]), 0.8), 0.2, model.handoff_max_days
    )
    handoff_at = _even(first_order + 1 + (handoff_days * DAY).astype(np.int64))
    sat = rng.normal(0.0, model.satisfaction_sd, n)
    chunk.accounts = {
        "segment": seg,
        "business_unit": bu,
        "industry": rng.integers(len(pools.INDUSTRIES), size=n),
        "region": rng.choice(len(pref_w), size=n, p=pref_w / pref_w.sum()),
        "created_at": created,
        "updated_at": created + (rng.random(n) * np.maximum(window.end - created, 0) * 0.9).astype(np.int64),
        "first_order_at": first_order,
        "handoff_at": handoff_at,
        "satisfaction": sat,
        "outbound_rate": np.asarray(model.outbound_rate_by_segment)[seg]
        * np.asarray(model.outbound_rate_by_business_unit)[bu]
        * rng.gamma(model.outbound_customer_gamma_shape, 1 / model.outbound_customer_gamma_shape, n),
        "inbound_rate": np.asarray(model.inbound_rate_by_segment)[seg]
        * np.exp(model.inbound_satisfaction_slope * sat / model.satisfaction_sd),
        "sales_rep": rng.choice(reps.new_sales, size=n),
        "owner_rep": rng.choice(reps.account_management, size=n),
        "is_usd": rng.random(n) < model.usd_customer_share,
        "size": rng.lognormal(0.0, model.order_customer_sdlog, n),
        "legal_form": rng.choice(3, size=n, p=[0.8, 0.12, 0.08]),
        "legal_form_first": rng.random(n) < 0.6,
        "stem": rng.integers(len(pools.COMPANY_STEMS), size=n),
        "word": rng.integers(len(pools.COMPANY_WORDS), size=n),
        "contact_family": rng.integers(len(pools.FAMILY_NAMES), size=n),
        "contact_given": rng.integers(len(pools.GIVEN_NAMES), size=n),
    }


def _draw_activities(
    rng: np.random.Generator, model: PlantedModel, window: Window, reps: Reps, chunk: Chunk
) -> None:
    acc = chunk.accounts
    n = len(acc["created_at"])
    created, end = acc["created_at"], window.horizon_end
    block = 90 * DAY
    # Background outbound: a Poisson process per customer whose rate shifts every 90 days.
    n_blocks = np.maximum(-(-(end - created) // block), 0)
    b_cust = np.repeat(np.arange(n), n_blocks)
    b_start = created[b_cust] + block * _rank_within(b_cust)
    b_len = np.minimum(block, end - b_start)
    mult = rng.gamma(model.outbound_quarter_gamma_shape, 1 / model.outbound_quarter_gamma_shape, len(b_cust))
    b_count = rng.poisson(acc["outbound_rate"][b_cust] * mult * b_len / (30 * DAY))
    bo = np.repeat(np.arange(len(b_cust)), b_count)
    out_cust = b_cust[bo]
    out_t = _even_between(b_start[bo] - 1, b_start[bo] + b_len[bo], rng.random(len(bo)))
    # Inbound: customers call in, more often when unhappy (a symptom, never the exposure).
    in_count = rng.poisson(acc["inbound_rate"] * np.maximum(end - created, 0) / (30 * DAY))
    in_cust = np.repeat(np.arange(n), in_count)
    in_t = _even_between(created[in_cust] - 1, np.full(len(in_cust), end), rng.random(len(in_cust)))
    # Planted first-week contacts after the first order, more likely for larger accounts.
    fw_count = rng.binomial(3, np.asarray(model.first_week_contact_prob)[acc["segment"]])
    fw_cust = np.repeat(np.arange(n), fw_count)
    fo = acc["first_order_at"][fw_cust]
    fw_t = _even_between(fo, fo + 7 * DAY, rng.random(len(fw_cust)))
    # The hand-off: the first account-management contact, a kickoff meeting or call.
    ho_cust = np.arange(n)
    ho_t = acc["handoff_at"]

    cust = np.concatenate([out_cust, fw_cust, ho_cust, in_cust])
    t = np.concatenate([out_t, fw_t, ho_t, in_t])
    kind = np.concatenate(
        [
            np.zeros(len(out_cust), np.int8),
            np.ones(len(fw_cust), np.int8),
            np.full(n, 2, np.int8),
            np.full(len(in_cust), 3, np.int8),
        ]
    )
    keep = t < end
    cust, t, kind = cust[keep], t[keep], kind[keep]
    order = np.lexsort((kind, t, cust))
    cust, t, kind = cust[order], t[order], kind[order]
    inbound = kind == 3

    seg = acc["segment"][cust]
    out_probs = np.array(
        [
            [0.28, 0.30, 0.18, 0.16, 0.02, 0.06],  # enterprise: more meetings and visits
            [0.34, 0.34, 0.13, 0.08, 0.04, 0.07],
            [0.36, 0.40, 0.08, 0.04, 0.05, 0.07],
            [0.40, 0.35, 0.02, 0.00, 0.18, 0.05],  # inbound
            [0.40, 0.00, 0.60, 0.00, 0.00, 0.00],  # hand-off kickoff
        ]
    )
    dist = np.where(inbound, 3, np.where(kind == 2, 4, seg))
    atype = _categorical(rng, out_probs, dist)
    median = np.array([8.0, 3.0, 45.0, 90.0, 12.0, 15.0])[atype]
    duration = np.rint(rng.lognormal(np.log(median), 0.5)).astype(np.float64)
    duration[rng.random(len(t)) < 0.06] = np.nan  # not every log has a duration

    handoff = acc["handoff_at"][cust]
    owner, sales = acc["owner_rep"][cust], acc["sales_rep"][cust]
    u = rng.random(len(t))
    # Before the hand-off only new-sales (outbound) and support (inbound) touch the account, so the
    # first account-management contact is exactly the planted hand-off.
    out_rep = np.where(t < handoff, sales, np.where(u < 0.85, owner, sales))
    support = reps.support[rng.integers(len(reps.support), size=len(t))]
    in_rep = np.where(u < 0.10, -1, np.where((t >= handoff) & (u > 0.70), owner, support))
    rep = np.where(inbound, in_rep, out_rep)
    rep = np.where(kind == 2, owner, rep)
    chunk.activities = {
        "cust": cust,
        "occurred_at": t,
        "inbound": inbound,
        "activity_type": atype,
        "duration_minutes": duration,
        "rep": rep.astype(np.int64),
    }


def _draw_responses(rng: np.random.Generator, model: PlantedModel, window: Window, chunk: Chunk) -> None:
    acc, act = chunk.accounts, chunk.activities
    n = len(acc["created_at"])
    created, end, bu = acc["created_at"], window.horizon_end, acc["business_unit"]
    parts: list[tuple[np.ndarray, np.ndarray, int]] = []  # (cust, time, touchpoint; -1 = relational)

    # Relational survey: every ~6 months from a first wave 2-6 months after the account opens.
    first = created + (rng.uniform(60, 180, n) * DAY).astype(np.int64)
    every = int(model.relational_every_days * DAY)
    waves = np.maximum(-(-(end - first) // every), 0)
    r_cust = np.repeat(np.arange(n), waves)
    r_t = (
        first[r_cust] + every * _rank_within(r_cust) + (rng.normal(0, 10, len(r_cust)) * DAY).astype(np.int64)
    )
    ok = rng.random(len(r_cust)) < model.relational_response_rate
    parts.append((r_cust[ok], r_t[ok] + (rng.uniform(0, 10, ok.sum()) * DAY).astype(np.int64), -1))
    # Onboarding survey after the first order.
    ok = rng.random(n) < model.onboarding_response_rate
    o_t = acc["first_order_at"] + (rng.uniform(*model.onboarding_survey_days, n) * DAY).astype(np.int64)
    parts.append((np.flatnonzero(ok), o_t[ok], TOUCHPOINTS.index("onboarding")))
    # Event surveys (placement, delivery, billing, renewal) at each business unit's own pace.
    life = np.maximum(end - created - 30 * DAY, 0)
    for tp, per_year in model.event_surveys_per_year.items():
        invites = rng.poisson(np.asarray(per_year)[bu] * life / (365 * DAY) * model.event_response_rate)
        e_cust = np.repeat(np.arange(n), invites)
        e_t = created[e_cust] + 30 * DAY + (rng.random(len(e_cust)) * life[e_cust]).astype(np.int64)
        parts.append((e_cust, e_t, TOUCHPOINTS.index(tp)))
    # Support survey a few days after some inbound contacts.
    inbound_idx = np.flatnonzero(act["inbound"])
    pick = rng.random(len(inbound_idx)) < model.support_survey_share * model.support_response_rate
    s_idx = inbound_idx[pick]
    s_t = act["occurred_at"][s_idx] + (rng.uniform(0.5, 3.0, len(s_idx)) * DAY).astype(np.int64)
    parts.append((act["cust"][s_idx], s_t, TOUCHPOINTS.index("support")))

    cust = np.concatenate([p[0] for p in parts])
    t = _odd(np.concatenate([p[1] for p in parts]))
    tp = np.concatenate([np.full(len(p[0]), p[2], np.int64) for p in parts])
    keep = (t >= created[cust] + int(model.min_tenure_days_at_response * DAY)) & (t < end)
    cust, t, tp = cust[keep], t[keep], tp[keep]
    order = np.lexsort((tp, t, cust))
    cust, t, tp = cust[order], t[order], tp[order]

    # Survey fatigue suppression, one rank at a time across all customers: a response is kept when it
    # is >= 2 days after the previous kept one and >= 92 days after the one before that.
    rank = _rank_within(cust)
    kept = np.zeros(len(t), bool)
    last1 = np.full(n, -(10**12), np.int64)
    last2 = np.full(n, -(10**12), np.int64)
    gap, span = int(model.min_gap_days * DAY), int(model.fatigue_span_days * DAY)
    for k in range(int(rank.max()) + 1 if len(rank) else 0):
        sel = np.flatnonzero(rank == k)
        c, tt = cust[sel], t[sel]
        ok = (tt - last1[c] >= gap) & (tt - last2[c] >= span)
        kept[sel[ok]] = True
        c, tt = c[ok], tt[ok]
        last2[c] = last1[c]
        last1[c] = tt
    chunk.responses = {"cust": cust[kept], "responded_at": t[kept], "touchpoint": tp[kept]}


def _score_responses(rng: np.random.Generator, model: PlantedModel, window: Window, chunk: Chunk) -> None:
    acc, act, res = chunk.accounts, chunk.activities, chunk.responses
    origin = window.key_origin
    out = ~act["inbound"]
    keys = (act["cust"][out].astype(np.int64) << KEY_SHIFT) | (act["occurred_at"][out] - origin)
    cust, r = res["cust"], res["responded_at"]
    m = len(r)
    # Exposure exactly as DESIGN.md: outbound in the 90 days before the response (instant excluded),
    # per 30 days of exposure, where exposure is capped by the account's age and floored at one day.
    contacts = _window_count(keys, cust, r - model.contact_window_days * DAY, r, origin)
    exposure_days = np.clip((r - acc["created_at"][cust]) / DAY, 1.0, float(model.contact_window_days))
    cpm = contacts / (exposure_days / 30.0)
    fo = acc["first_order_at"]
    first_week = _window_count(keys, np.arange(len(fo)), fo, fo + 7 * DAY, origin)
    handoff_days = (acc["handoff_at"] - fo) / DAY

    # Driver items first: a customer mood, a response mood and item noise; only some are asked.
    mood = acc["satisfaction"][cust] + rng.normal(0, model.response_mood_sd, m)
    tp = res["touchpoint"]
    drivers = np.empty((m, len(DRIVERS)), np.int64)
    asked = np.zeros((m, len(DRIVERS)), bool)
    # Which items each survey asks: row 0 = relational, row 1 + i = touchpoint i.
    asks = np.array([[d in DRIVERS_ASKED[k] for d in DRIVERS] for k in ("relational", *TOUCHPOINTS)])
    survey_row = tp + 1
    driver_part = np.zeros(m)
    for j, d in enumerate(DRIVERS):
        latent = model.driver_means[d] + mood + rng.normal(0, model.driver_noise_sd, m)
        drivers[:, j] = np.clip(np.rint(latent), 0, 10)
        asked[:, j] = asks[survey_row, j] & (rng.random(m) < model.driver_ask_prob)
        driver_part += model.driver_weights[d] * (drivers[:, j] - model.driver_center)

    survey_type = (tp >= 0).astype(np.int64)
    seg, bu = acc["segment"][cust], acc["business_unit"][cust]
    base = (
        model.nps_intercept
        + np.asarray(model.nps_segment)[seg]
        + np.asarray(model.nps_business_unit)[bu]
        + np.asarray(model.nps_survey_type)[survey_type]
    )
    timing = model.first_week_per_contact * first_week[cust] + model.handoff_per_day * handoff_days[cust]
    mean_latent = base + contacts_term(model, cpm) + driver_part + timing
    noise = rng.normal(0, model.nps_noise_sd, m)
    score = score_from_latent(mean_latent + noise)
    category = np.where(score >= 9, 0, np.where(score >= 7, 1, 2))  # promoter, passive, detractor
    comment_prob = np.array([0.45, 0.30, 0.60])[category]
    has_comment = rng.random(m) < comment_prob
    res.update(
        {
            "survey_type": survey_type,
            "contacts_before": contacts,
            "exposure_days": exposure_days,
            "contacts_per_month": cpm,
            "drivers": drivers,
            "drivers_asked": asked,
            "mean_latent": mean_latent,
            "noise": noise,
            "nps_score": score,
            "category": category,
            "comment": np.where(has_comment, rng.integers(0, 1 << 30, m), -1),
            "tenure_days": (r - acc["created_at"][cust]) / DAY,
            "respondent_is_contact": rng.random(m) < 0.8,
        }
    )
    acc["first_week_contacts"] = first_week
    acc["handoff_days"] = handoff_days


def _order_amounts(rng: np.random.Generator, model: PlantedModel, acc: dict, cust: np.ndarray) -> np.ndarray:
    """Order values in JPY, rounded to 1,000 yen."""
    jpy = np.asarray(model.order_median_jpy)[acc["segment"][cust]] * acc["size"][cust]
    jpy = jpy * rng.lognormal(0.0, model.order_sdlog, len(cust))
    return np.maximum(np.rint(jpy / 1000.0), 1.0) * 1000.0


class _OrderBook:
    """Completed orders known so far, queryable for revenue in a window before a time."""

    def __init__(self, origin: int) -> None:
        self.origin = origin
        self.parts: list[dict[str, np.ndarray]] = []

    def add(self, **cols: np.ndarray) -> None:
        self.parts.append(cols)

    def column(self, name: str) -> np.ndarray:
        return np.concatenate([p[name] for p in self.parts])

    def revenue_between(self, cust: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        keys = (self.column("cust").astype(np.int64) << KEY_SHIFT) | (self.column("t") - self.origin)
        order = np.argsort(keys, kind="stable")
        keys = keys[order]
        cum = np.r_[0.0, np.cumsum(self.column("jpy")[order])]
        base = cust.astype(np.int64) << KEY_SHIFT
        upper = np.searchsorted(keys, base | (hi - self.origin))
        return cum[upper] - cum[np.searchsorted(keys, base | (lo - self.origin))]


def _credit_notes(rng, model, book_cols: dict[str, np.ndarray], upper: np.ndarray) -> dict[str, np.ndarray]:
    """Credit notes (negative completed amounts) for a few orders, dated before the order's interval ends."""
    pick = (rng.random(len(book_cols["t"])) < model.credit_note_share) & _has_even_between(
        book_cols["t"], upper
    )
    t = _even_between(book_cols["t"][pick], upper[pick], rng.random(int(pick.sum())))
    share = rng.uniform(0.1, 0.5, int(pick.sum()))
    return {
        "cust": book_cols["cust"][pick],
        "t": t,
        "jpy": -np.rint(book_cols["jpy"][pick] * share / 1000.0) * 1000.0,
    }


def _draw_repeat_and_orders(
    rng: np.random.Generator, model: PlantedModel, window: Window, chunk: Chunk
) -> None:
    """Draw repeat for every response, then place orders so the measured repeat equals each draw.

    Rule: every completed order lies outside the window (r, r + 90 d] of every response drawn 0. With
    the fatigue rule (three consecutive responses span > 90 days) a response drawn 1 can always get an
    order in (max(r, r_prev + 90 d if prev drawn 0), min(r + 90 d, r_next)]; orders of a response are
    placed before the next response, so the prior-year revenue that the next draw depends on is known
    when it is drawn (ranks are processed in order across customers).
    """
    acc, res = chunk.accounts, chunk.responses
    n = len(acc["created_at"])
    seg = acc["segment"]
    window_s = model.repeat_window_days * DAY
    end = window.horizon_end
    cust, r = res["cust"], res["responded_at"]
    m = len(r)
    rank = _rank_within(cust)
    has_prev = rank > 0
    has_next = np.r_[cust[1:] == cust[:-1], False] if m else np.zeros(0, bool)
    r_next = np.where(has_next, np.r_[r[1:], 0], end + window_s) if m else r
    r_prev = np.r_[0, r[:-1]] if m else r

    book = _OrderBook(window.key_origin)
    fo = acc["first_order_at"]
    first_r = np.full(n, end, np.int64)
    first_idx = np.flatnonzero(rank == 0)
    first_r[cust[first_idx]] = r[first_idx]
    fo_cols = {"cust": np.arange(n), "t": fo, "jpy": _order_amounts(rng, model, acc, np.arange(n))}
    book.add(**fo_cols, first=np.ones(n, bool))
    # Base orders: between the first order and the first response, and in the gaps after a
    # response's 90-day window, i.e. outside every repeat window whatever the draws.
    gap_lo = np.r_[fo, r + window_s]
    gap_hi = np.r_[first_r, r_next]
    gap_cust = np.r_[np.arange(n), cust]
    gap_hi = np.minimum(gap_hi, end)
    room = _has_even_between(gap_lo, gap_hi)
    gap_lo, gap_hi, gap_cust = gap_lo[room], gap_hi[room], gap_cust[room]
    lam = np.asarray(model.base_orders_per_30d)[seg[gap_cust]] * (gap_hi - gap_lo) / (30 * DAY)
    g = np.repeat(np.arange(len(gap_cust)), rng.poisson(lam))
    base_cols = {"cust": gap_cust[g], "t": _even_between(gap_lo[g], gap_hi[g], rng.random(len(g)))}
    base_cols["jpy"] = _order_amounts(rng, model, acc, base_cols["cust"])
    book.add(**base_cols, first=np.zeros(len(g), bool))
    first_hi = np.minimum(first_r, end)
    uppers = [first_hi, gap_hi[g]]
    credit = [_credit_notes(rng, model, fo_cols, first_hi), _credit_notes(rng, model, base_cols, gap_hi[g])]
    for c in credit:
        book.add(**c, first=np.zeros(len(c["t"]), bool))

    repeat = np.zeros(m, bool)
    p_repeat = np.zeros(m)
    cov_term = np.zeros(m)
    prior_rev = np.zeros(m)
    for k in range(int(rank.max()) + 1 if m else 0):
        sel = np.flatnonzero(rank == k)
        c, rr = cust[sel], r[sel]
        prior = book.revenue_between(c, rr - 365 * DAY, rr)
        term = repeat_covariate_term(model, seg[c], res["tenure_days"][sel], prior)
        p = repeat_probability(model, term, res["nps_score"][sel], res["contacts_per_month"][sel])
        y = rng.random(len(sel)) < p
        repeat[sel], p_repeat[sel], cov_term[sel], prior_rev[sel] = y, p, term, prior
        hit = sel[y]
        lower = r[hit].copy()
        prev_zero = has_prev[hit] & ~repeat[np.maximum(hit - 1, 0)]
        lower[prev_zero] = np.maximum(lower[prev_zero], r_prev[hit][prev_zero] + window_s)
        upper = np.minimum(r[hit] + window_s, r_next[hit])
        n_orders = 1 + rng.poisson(model.extra_orders_in_window, len(hit))
        o = np.repeat(np.arange(len(hit)), n_orders)
        cols = {"cust": cust[hit][o], "t": _even_between(lower[o], upper[o], rng.random(len(o)))}
        cols["jpy"] = _order_amounts(rng, model, acc, cols["cust"])
        book.add(**cols, first=np.zeros(len(o), bool))
        uppers.append(upper[o])
        cn = _credit_notes(rng, model, cols, upper[o])
        book.add(**cn, first=np.zeros(len(cn["t"]), bool))
        credit.append(cn)

    o_cust, o_t, o_jpy = book.column("cust"), book.column("t"), book.column("jpy")
    is_first = book.column("first")
    is_credit = o_jpy < 0
    # Cancelled and refunded orders never count (not completed): any time after the first order.
    regular = np.flatnonzero(~is_credit)
    extra = regular[rng.random(len(regular)) < model.cancelled_share + model.refunded_share]
    x_cust = o_cust[extra]
    x_t = _even_between(fo[x_cust], np.full(len(x_cust), end), rng.random(len(x_cust)))
    cancelled_odds = model.cancelled_share / (model.cancelled_share + model.refunded_share)
    x_status = np.where(rng.random(len(extra)) < cancelled_odds, 1, 2)
    all_cust = np.r_[o_cust, x_cust]
    all_t = np.r_[o_t, x_t]
    all_jpy = np.r_[o_jpy, _order_amounts(rng, model, acc, x_cust)]
    status = np.r_[np.zeros(len(o_t), np.int64), x_status]
    credit_flag = np.r_[is_credit, np.zeros(len(x_t), bool)]
    first_flag = np.r_[is_first, np.zeros(len(x_t), bool)]
    keep = all_t < end
    order = np.lexsort((all_t[keep], all_cust[keep]))
    sel = np.flatnonzero(keep)[order]
    usd = acc["is_usd"][all_cust[sel]]
    amount = np.where(usd, np.round(all_jpy[sel] / FX_TO_JPY["USD"], 2), all_jpy[sel])
    bu = acc["business_unit"][all_cust[sel]]
    chunk.orders = {
        "cust": all_cust[sel],
        "ordered_at": all_t[sel],
        "amount": amount,
        "is_usd": usd,
        "status": status[sel],
        "is_credit_note": credit_flag[sel],
        "is_first": first_flag[sel],
        "product_line": bu * 3 + rng.integers(0, 3, len(sel)),
    }
    res.update(
        {
            "repeat": repeat,
            "p_repeat": p_repeat,
            "repeat_covariate_term": cov_term,
            "revenue_prior_365d": prior_rev,
        }
    )
