"""The planted structural model of the demo data: every parameter, and the two equations.

`simulate` draws events from these parameters and `truth` computes the true effects from the same
functions, so the equations live in exactly one place. See the module docstring of
`orchestration.lib.demo_data` for the story behind each term.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from scipy.special import expit, ndtr

DAY = 86_400  # seconds
SEGMENTS: tuple[str, ...] = ("enterprise", "mid_market", "smb")
BUSINESS_UNITS: tuple[str, ...] = ("staffing", "media", "finance")
SURVEY_TYPES: tuple[str, ...] = ("relational", "transactional")
TOUCHPOINTS: tuple[str, ...] = ("onboarding", "placement", "support", "billing", "renewal", "delivery")
TEAMS: tuple[str, ...] = ("new_sales", "account_management", "support")
ACTIVITY_TYPES: tuple[str, ...] = ("call", "email", "meeting", "visit", "chat", "other")
DRIVERS: tuple[str, ...] = (
    "responsiveness",
    "expertise",
    "communication",
    "proactivity",
    "billing_accuracy",
    "onboarding_quality",
    "value_for_money",
)
# Items each survey asks: the relational survey asks the relationship items, a transactional one
# only what fits its touchpoint (as real CX programs keep surveys short).
DRIVERS_ASKED: dict[str, tuple[str, ...]] = {
    "relational": ("responsiveness", "expertise", "communication", "proactivity", "value_for_money"),
    "onboarding": ("onboarding_quality", "communication", "responsiveness"),
    "placement": ("expertise", "responsiveness"),
    "support": ("responsiveness", "expertise"),
    "billing": ("billing_accuracy", "communication"),
    "renewal": ("value_for_money", "proactivity"),
    "delivery": ("expertise", "communication"),
}
FX_TO_JPY: dict[str, float] = {"JPY": 1.0, "USD": 150.0}


@dataclass(frozen=True)
class PlantedModel:
    """Every number the demo data is drawn from; serialised into demo_truth.json["planted"]."""

    segment_share: tuple[float, ...] = (0.12, 0.33, 0.55)
    business_unit_share: tuple[float, ...] = (0.50, 0.27, 0.23)
    # Outbound contacts per month by segment: enterprise gets the most attention (the confounder).
    outbound_rate_by_segment: tuple[float, ...] = (3.0, 1.8, 1.0)
    outbound_rate_by_business_unit: tuple[float, ...] = (1.1, 0.9, 0.9)
    outbound_customer_gamma_shape: float = 8.0  # customer-level rate heterogeneity (CV 0.35)
    outbound_quarter_gamma_shape: float = 10.0  # 90-day blocks: reps' attention shifts over time (CV 0.32)
    inbound_rate_by_segment: tuple[float, ...] = (0.9, 0.6, 0.4)
    inbound_satisfaction_slope: float = -0.35  # unhappy customers call in more (log-rate per sd)
    first_week_contact_prob: tuple[float, ...] = (0.65, 0.40, 0.20)  # binomial(3, p) planted calls
    handoff_median_days: tuple[float, ...] = (6.0, 10.0, 15.0)
    handoff_max_days: float = 60.0
    # NPS latent = intercept + segment + business unit + survey type + contacts term + drivers
    #            + first-week term + hand-off term + noise; score = clip(round(latent), 0, 10).
    nps_intercept: float = 4.6
    nps_segment: tuple[float, ...] = (0.4, 0.1, -0.2)
    nps_business_unit: tuple[float, ...] = (0.0, -0.3, 0.2)
    nps_survey_type: tuple[float, ...] = (0.0, 0.35)
    a_contacts: float = 0.5  # score points per outbound contact/month, up to the knee
    contacts_knee: float = 10.0  # diminishing returns: above this, each extra contact/month is worth less
    a_contacts_above_knee: float = 0.25
    first_week_per_contact: float = 0.25  # per outbound contact in the 7 days after the first order
    handoff_per_day: float = -0.02  # per day from first order to first account-management contact
    nps_noise_sd: float = 1.3
    satisfaction_sd: float = 0.9  # customer-level, feeds every driver item
    response_mood_sd: float = 0.6  # response-level, feeds every driver item of that response
    driver_noise_sd: float = 1.3
    driver_center: float = 6.5
    driver_means: dict[str, float] = field(
        default_factory=lambda: {
            "responsiveness": 6.4,
            "expertise": 6.9,
            "communication": 6.6,
            "proactivity": 5.9,
            "billing_accuracy": 7.3,
            "onboarding_quality": 6.5,
            "value_for_money": 5.8,
        }
    )
    driver_weights: dict[str, float] = field(
        default_factory=lambda: {
            "responsiveness": 0.35,
            "expertise": 0.22,
            "value_for_money": 0.15,
            "communication": 0.10,
            "onboarding_quality": 0.08,
            "proactivity": 0.05,
            "billing_accuracy": 0.03,
        }
    )
    driver_ask_prob: float = 0.88  # an asked item is still skipped now and then
    # Repeat: logit P = c0(segment) + b*score + c*contacts_per_month + tenure + prior revenue.
    repeat_intercept: tuple[float, ...] = (-1.85, -2.15, -2.45)
    b_score: float = 0.24
    c_contacts: float = 0.2
    tenure_per_year: float = 0.12
    log_revenue_coef: float = 0.15  # per unit of ln(1 + revenue_prior_365d / 1e6 JPY)
    # Orders.
    order_median_jpy: tuple[float, ...] = (2_500_000.0, 600_000.0, 150_000.0)
    order_customer_sdlog: float = 0.5
    order_sdlog: float = 0.6
    base_orders_per_30d: tuple[float, ...] = (0.5, 0.3, 0.15)  # outside every repeat window
    extra_orders_in_window: float = 0.25  # Poisson mean of further orders in a repeat window
    usd_customer_share: float = 0.02
    credit_note_share: float = 0.02
    cancelled_share: float = 0.025
    refunded_share: float = 0.01
    # Surveys.
    relational_every_days: float = 182.0
    relational_response_rate: float = 0.7
    onboarding_response_rate: float = 0.55
    onboarding_survey_days: tuple[float, float] = (35.0, 60.0)  # after the first order
    event_surveys_per_year: dict[str, tuple[float, ...]] = field(
        default_factory=lambda: {
            # touchpoint -> invitations per year by business unit (staffing, media, finance)
            "placement": (0.9, 0.0, 0.0),
            "delivery": (0.0, 0.9, 0.0),
            "billing": (0.3, 0.3, 0.5),
            "renewal": (0.25, 0.25, 0.35),
        }
    )
    event_response_rate: float = 0.35
    support_survey_share: float = 0.12  # of inbound contacts that trigger a support survey
    support_response_rate: float = 0.4
    min_tenure_days_at_response: float = 45.0
    # Survey fatigue rule: at most two responses in any 92 days, and never two within 2 days.
    # It also keeps every repeat draw realisable with orders (see simulate.place_repeat_orders).
    fatigue_span_days: float = 92.0
    min_gap_days: float = 2.0
    contact_window_days: int = 90
    repeat_window_days: int = 90

    def to_json(self) -> dict:
        """The parameters as a JSON-ready dict, with the category labels each tuple is indexed by."""
        doc = asdict(self)
        doc["index_labels"] = {
            "segment": list(SEGMENTS),
            "business_unit": list(BUSINESS_UNITS),
            "survey_type": list(SURVEY_TYPES),
        }
        return doc


MODEL = PlantedModel()


def contacts_term(model: PlantedModel, cpm: np.ndarray) -> np.ndarray:
    """The contacts part of the NPS latent: linear up to the knee, a flatter slope above it."""
    below = np.minimum(cpm, model.contacts_knee)
    above = np.maximum(cpm - model.contacts_knee, 0.0)
    return model.a_contacts * below + model.a_contacts_above_knee * above


def score_from_latent(latent: np.ndarray) -> np.ndarray:
    """The observed 0..10 score of a latent value (noise already added)."""
    return np.clip(np.rint(latent), 0, 10).astype(np.int64)


def score_distribution(mean_latent: np.ndarray, noise_sd: float) -> np.ndarray:
    """P(score = k), k = 0..10, of clip(round(mean_latent + N(0, sd))): an (n, 11) array."""
    cuts = np.arange(0.5, 10.0, 1.0)  # 0.5 .. 9.5
    below = ndtr((cuts[None, :] - mean_latent[:, None]) / noise_sd)  # P(latent < cut)
    cdf = np.concatenate([below, np.ones((len(mean_latent), 1))], axis=1)
    return np.diff(cdf, axis=1, prepend=0.0)


def repeat_covariate_term(
    model: PlantedModel, segment: np.ndarray, tenure_days: np.ndarray, revenue_prior_365d: np.ndarray
) -> np.ndarray:
    """The part of the repeat logit that neither contacts nor score moves."""
    return (
        np.asarray(model.repeat_intercept)[segment]
        + model.tenure_per_year * tenure_days / 365.0
        + model.log_revenue_coef * np.log1p(np.maximum(revenue_prior_365d, 0.0) / 1e6)
    )


def repeat_probability(model: PlantedModel, covariate_term: np.ndarray, score, cpm) -> np.ndarray:
    """P(repeat_after = 1) given the covariate part of the logit, the score and contacts per month."""
    return expit(covariate_term + model.b_score * score + model.c_contacts * cpm)
