"""An experiment's report from its counts: the statistics, as pure logic (no I/O).

profile counts, per variant, the exposed users and those with each KPI within the
attribution window; :func:`analyse` turns the counts into the report. People read it while
the experiment runs, as often as they like, and stop when it shows something: the
differences therefore come with always-valid confidence sequences (mixture SPRT), whose
error rate holds under that peeking, where a fixed-horizon test's does not.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from scipy import integrate, stats

from rapport.common.experiments import (
    LOWER_IS_BETTER,
    Experiment,
    ExperimentReport,
    Interval,
    Kpi,
    KpiResult,
    SampleRatio,
    VariantResult,
)

ALPHA = 0.05  # the family's error rate: 95% intervals
SRM_THRESHOLD = 0.001
# A chi-square test on fewer users has too little to go on (and its approximation fails).
SRM_MIN_USERS = 100
# The confidence sequence treats each arm's rate as normal with a plug-in variance; that
# approximation is poor for small arms and for rates near 0 or 1, so no interval (and no
# significance) until each arm has this many users, conversions and non-conversions.
MIN_USERS = 100
MIN_OUTCOMES = 5
# Posterior mass cut from each tail before integrating (see probability_to_beat).
POSTERIOR_TAIL = 1e-15


@dataclass(frozen=True)
class VariantCounts:
    users: int  # exposed users of this variant
    conversions: Mapping[Kpi, int] = field(default_factory=dict)  # missing = 0

    def __post_init__(self) -> None:
        if self.users < 0:
            raise ValueError(f"users must be >= 0, not {self.users}")
        for kpi, converted in self.conversions.items():
            if not 0 <= converted <= self.users:
                raise ValueError(f"{kpi} conversions {converted} not within 0..{self.users}")

    def converted(self, kpi: Kpi) -> int:
        return self.conversions.get(kpi, 0)


NO_USERS = VariantCounts(users=0)


def enough_sample(conversions: int, users: int) -> bool:
    """Whether an arm is large enough for the sequence's normal approximation."""
    return users >= MIN_USERS and MIN_OUTCOMES <= conversions <= users - MIN_OUTCOMES


def confidence_sequence(
    conversions: int,
    users: int,
    control_conversions: int,
    control_users: int,
    *,
    effect_scale: float,
    alpha: float = ALPHA,
) -> Interval | None:
    """The 1 - alpha always-valid interval for rate minus the control's rate, or None.

    The normal-mixture mSPRT for a difference of two means (Johari, Pekelis, Walsh 2017,
    "Always valid inference"), with plug-in variance V and mixing variance tau^2: the set of
    differences it does not reject, difference +/- sqrt(V (V + tau^2) / tau^2 *
    (2 ln(1/alpha) + ln((V + tau^2) / V))). None before the minimum sample.
    """
    if not (
        enough_sample(conversions, users) and enough_sample(control_conversions, control_users)
    ):
        return None
    rate = conversions / users
    control_rate = control_conversions / control_users
    variance = rate * (1 - rate) / users + control_rate * (1 - control_rate) / control_users
    if variance <= 0.0:  # a rate of 0 or 1: no spread to build the interval from
        return None
    mixing = effect_scale**2
    half_width = math.sqrt(
        variance
        * (variance + mixing)
        / mixing
        * (2 * math.log(1 / alpha) + math.log((variance + mixing) / variance))
    )
    difference = rate - control_rate
    return (difference - half_width, difference + half_width)


def wilson_interval(conversions: int, users: int) -> Interval | None:
    if users == 0:
        return None
    interval = stats.binomtest(conversions, users).proportion_ci(
        confidence_level=1 - ALPHA, method="wilson"
    )
    return (float(interval.low), float(interval.high))


def probability_to_beat(
    conversions: int,
    users: int,
    control_conversions: int,
    control_users: int,
    *,
    lower_is_better: bool = False,
) -> float | None:
    """P(rate > control's rate) under independent Beta(1, 1) priors (< when lower is better).

    The integral of the variant's posterior density times the control's posterior CDF, by
    scipy's quad. Over all of [0, 1] quad's samples miss a posterior as narrow as a million
    users' (it returned 1.7e-197 where the answer is 0.12), so it integrates over the
    variant's posterior less POSTERIOR_TAIL of each tail. Measured against 4 million seeded
    Monte Carlo draws on 12 cases (from 1 to a million users per arm, rates 0 to 1) it
    agreed within 2 standard errors, in 1 to 10 ms.
    """
    if users == 0 or control_users == 0:
        return None
    variant = stats.beta(1 + conversions, 1 + users - conversions)
    control = stats.beta(1 + control_conversions, 1 + control_users - control_conversions)
    control_below = control.sf if lower_is_better else control.cdf
    value, _error = integrate.quad(
        lambda x: variant.pdf(x) * control_below(x),
        variant.ppf(POSTERIOR_TAIL),
        variant.isf(POSTERIOR_TAIL),
        limit=200,
    )
    return min(max(float(value), 0.0), 1.0)


def sample_ratio(experiment: Experiment, users: Mapping[str, int]) -> SampleRatio:
    """Chi-square of the users per variant against the weights; no p-value on too few."""
    total = sum(users.get(v.name, 0) for v in experiment.variants)
    if total < SRM_MIN_USERS:
        return SampleRatio(p_value=None, mismatch=False, threshold=SRM_THRESHOLD)
    shares = experiment.shares()
    observed = [users.get(v.name, 0) for v in experiment.variants]
    expected = [shares[v.name] * total for v in experiment.variants]
    p_value = float(stats.chisquare(observed, expected).pvalue)
    return SampleRatio(p_value=p_value, mismatch=p_value < SRM_THRESHOLD, threshold=SRM_THRESHOLD)


def _rate(conversions: int, users: int) -> float | None:
    return conversions / users if users else None


def _kpi_result(
    experiment: Experiment,
    kpi: Kpi,
    role: Literal["primary", "guardrail"],
    arms: Sequence[tuple[str, VariantCounts]],
    alpha: float,
) -> KpiResult:
    lower_is_better = kpi in LOWER_IS_BETTER
    shares = experiment.shares()
    _, control = arms[0]
    control_conversions = control.converted(kpi)
    control_rate = _rate(control_conversions, control.users)
    results: list[VariantResult] = []
    for index, (name, arm) in enumerate(arms):
        conversions = arm.converted(kpi)
        rate = _rate(conversions, arm.users)
        result = VariantResult(
            variant=name,
            expected_share=shares[name],
            users=arm.users,
            conversions=conversions,
            rate=rate,
            rate_interval=wilson_interval(conversions, arm.users),
        )
        if index > 0:
            difference = None if rate is None or control_rate is None else rate - control_rate
            interval = confidence_sequence(
                conversions,
                arm.users,
                control_conversions,
                control.users,
                effect_scale=experiment.effect_scale,
                alpha=alpha,
            )
            result = result.model_copy(
                update={
                    "difference": difference,
                    "difference_interval": interval,
                    "lift": (
                        difference / control_rate
                        if difference is not None and control_rate
                        else None
                    ),
                    "lift_interval": (
                        (interval[0] / control_rate, interval[1] / control_rate)
                        if interval is not None and control_rate
                        else None
                    ),
                    "probability_to_beat_control": probability_to_beat(
                        conversions,
                        arm.users,
                        control_conversions,
                        control.users,
                        lower_is_better=lower_is_better,
                    ),
                    "significant": interval is not None and (interval[0] > 0 or interval[1] < 0),
                }
            )
        results.append(result)
    return KpiResult(kpi=kpi, role=role, lower_is_better=lower_is_better, variants=results)


def _points(difference: float) -> str:
    """A difference in rate as percentage points, one decimal unless that hides it."""
    points = difference * 100
    return f"{points:+.1f}" if abs(points) >= 0.1 or points == 0 else f"{points:+.2f}"


def _findings(kpis: Sequence[KpiResult]) -> list[str]:
    """What the significant comparisons say: wins and losses on the primary, harm elsewhere."""
    found: list[str] = []
    for result in kpis:
        for variant in result.variants[1:]:
            interval = variant.difference_interval
            if not variant.significant or interval is None or variant.difference is None:
                continue
            better = (interval[1] < 0) if result.lower_is_better else (interval[0] > 0)
            if better and result.role == "primary":
                found.append(
                    f"`{variant.variant}` beats control on {result.kpi}: "
                    f"{_points(variant.difference)} points (95% always-valid interval "
                    f"{_points(interval[0])} to {_points(interval[1])})"
                )
            elif not better:
                role = " (guardrail)" if result.role == "guardrail" else ""
                found.append(f"`{variant.variant}` is worse than control on {result.kpi}{role}")
    return found


def _verdict(
    experiment: Experiment,
    kpis: Sequence[KpiResult],
    ratio: SampleRatio,
    status: Literal["scheduled", "running", "stopped"],
    total_users: int,
) -> str:
    if ratio.mismatch:
        return f"sample ratio mismatch (p={ratio.p_value:.2g}): do not trust these figures"
    findings = _findings(kpis)
    if findings:
        return "; ".join(findings)
    if total_users == 0:
        if status == "scheduled":
            return f"not started: starts at {experiment.start.isoformat()}"
        return "no exposed users yet"
    primary = kpis[0]
    if all(v.difference_interval is None for v in primary.variants[1:]):
        return (
            f"too few users to compare yet ({total_users} users): each arm needs "
            f"{MIN_USERS} users and {MIN_OUTCOMES} with and without {primary.kpi}"
        )
    return f"no difference found{' yet' if status != 'stopped' else ''} ({total_users} users)"


def _method(experiment: Experiment, treatments: int) -> str:
    bonferroni = (
        f" With {treatments} treatments each sequence is at {1 - ALPHA / treatments:.1%}, "
        f"alpha {ALPHA:g}/{treatments} (Bonferroni), so that together they hold at "
        f"{1 - ALPHA:.0%}."
        if treatments > 1
        else ""
    )
    return (
        f"Rates come with {1 - ALPHA:.0%} Wilson intervals. Each difference from the control "
        f"comes with a {1 - ALPHA:.0%} always-valid confidence sequence from the normal-mixture "
        "sequential probability ratio test (Johari, Pekelis and Walsh 2017, 'Always valid "
        f"inference'), with plug-in variance and mixing scale {experiment.effect_scale:g} "
        "(the experiment's effect_scale): it stays valid when the report is read at any time, "
        "as often as wanted, and the experiment is stopped on what it shows, which a "
        "fixed-horizon test and the Beta probability to beat the control are not. A "
        "difference is significant when its sequence excludes zero; none is given until each "
        f"arm has {MIN_USERS} users and {MIN_OUTCOMES} conversions and non-conversions, as the "
        f"sequence rests on a normal approximation.{bonferroni} Each KPI is tested on its "
        "own; a guardrail is flagged when a variant is significantly worse on it. Lift "
        "intervals divide the difference's by the control's rate, treating that rate as "
        "known. The probability to beat the control (Beta(1, 1) priors, integrated "
        "numerically) describes the data; it is not the decision. The users' split is checked "
        f"against the weights with a chi-square test (mismatch when p < {SRM_THRESHOLD:g})."
    )


def analyse(
    experiment: Experiment, counts: Mapping[str, VariantCounts], at: datetime
) -> ExperimentReport:
    """The report: one KpiResult per KPI (primary first), variants in order, control first.

    A variant missing from ``counts`` has no users; names that are not the experiment's
    variants are ignored.
    """
    treatments = len(experiment.variants) - 1
    arms = [(v.name, counts.get(v.name, NO_USERS)) for v in experiment.variants]
    alpha = ALPHA / treatments
    kpis = [
        _kpi_result(experiment, kpi, "primary" if index == 0 else "guardrail", arms, alpha)
        for index, kpi in enumerate(experiment.kpis)
    ]
    ratio = sample_ratio(experiment, {name: arm.users for name, arm in arms})
    status = experiment.status(at)
    total_users = sum(arm.users for _, arm in arms)
    return ExperimentReport(
        name=experiment.name,
        description=experiment.description,
        status=status,
        start=experiment.start,
        stop=experiment.stop,
        control=experiment.control.name,
        attribution_window_hours=experiment.attribution_window_hours,
        kpis=kpis,
        sample_ratio=ratio,
        verdict=_verdict(experiment, kpis, ratio, status, total_users),
        method=_method(experiment, treatments),
    )
