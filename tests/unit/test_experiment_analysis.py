"""The experiment report's statistics: error rates under peeking, coverage, power, the report.

The simulations draw each run's users in blocks of 100 per arm (a binomial per block, then
cumulative sums: the same counts as drawing user by user) from seeded generators, so
they are deterministic and take well under a second.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from scipy import stats

from rapport.common.experiments import Experiment, Kpi
from rapport.profile.domain.analysis import (
    ALPHA,
    SRM_THRESHOLD,
    VariantCounts,
    analyse,
    confidence_sequence,
    probability_to_beat,
)

pytestmark = pytest.mark.unit

EFFECT_SCALE = 0.02
READ_EVERY = 100  # users per arm between two reads of the report


def _experiment(variants: int = 2, weights: list[float] | None = None, **extra: Any) -> Experiment:
    now = datetime.now(UTC)
    names = ["control", "b", "c", "d"][:variants]
    tones = [None, "concise", "empathetic", "neutral"]
    return Experiment.model_validate(
        {
            "name": "checkout-tone",
            "description": "does a concise tone sell more?",
            "variants": [
                {
                    "name": name,
                    "weight": weights[index] if weights else 1,
                    "changes": {"tone": tones[index]} if tones[index] else {},
                }
                for index, name in enumerate(names)
            ],
            "start": now - timedelta(days=3),
            "stop": now + timedelta(days=4),
            "primary_kpi": "purchase",
            "guardrail_kpis": ["negative_feedback"],
            "effect_scale": EFFECT_SCALE,
            **extra,
        }
    )


def _cumulative(rng: np.random.Generator, rate: float, runs: int, reads: int) -> Any:
    """Conversions after each read: runs x reads, READ_EVERY more users per read."""
    return rng.binomial(READ_EVERY, rate, size=(runs, reads)).cumsum(axis=1)


def _excludes_zero(interval: tuple[float, float] | None) -> bool:
    return interval is not None and (interval[0] > 0 or interval[1] < 0)


# ---- the confidence sequence: error rate under peeking, coverage, power ----------------


def test_peeking_at_an_a_a_test_rarely_finds_a_difference_where_a_naive_test_often_does() -> None:
    rng = np.random.default_rng(30_1)
    runs, reads, rate = 2000, 40, 0.10  # 4,000 users per arm, read every 100
    treated = _cumulative(rng, rate, runs, reads)
    control = _cumulative(rng, rate, runs, reads)
    users = READ_EVERY * np.arange(1, reads + 1)

    sequential = sum(
        any(
            _excludes_zero(
                confidence_sequence(
                    int(treated[run, read]),
                    int(users[read]),
                    int(control[run, read]),
                    int(users[read]),
                    effect_scale=EFFECT_SCALE,
                )
            )
            for read in range(reads)
        )
        for run in range(runs)
    )
    # The naive reading: a fixed-horizon 95% z-test, as if each read were the last.
    treated_rate, control_rate = treated / users, control / users
    standard_error = np.sqrt(
        treated_rate * (1 - treated_rate) / users + control_rate * (1 - control_rate) / users
    )
    z = (treated_rate - control_rate) / standard_error
    naive = int(np.any(np.abs(z) > stats.norm.ppf(1 - ALPHA / 2), axis=1).sum())

    # Measured: 0.014 sequential, 0.30 naive (the naive test read once, at the end: 0.045).
    # The sequence's guarantee is <= 0.05 however many reads; the estimate's standard error
    # is about 0.003, so 0.05 needs no Monte Carlo margin.
    assert sequential / runs <= ALPHA
    assert naive / runs > 3 * ALPHA


def test_the_sequence_covers_the_true_difference_at_every_read_and_finds_a_real_lift() -> None:
    rng = np.random.default_rng(30_2)
    runs, reads = 1000, 120  # 12,000 users per arm, read every 100
    true_difference = 0.12 - 0.10
    treated = _cumulative(rng, 0.12, runs, reads)
    control = _cumulative(rng, 0.10, runs, reads)
    users = READ_EVERY * np.arange(1, reads + 1)

    covered = found = 0
    for run in range(runs):
        intervals = [
            confidence_sequence(
                int(treated[run, read]),
                int(users[read]),
                int(control[run, read]),
                int(users[read]),
                effect_scale=EFFECT_SCALE,
            )
            for read in range(reads)
        ]
        read_intervals = [i for i in intervals if i is not None]
        covered += all(low <= true_difference <= high for low, high in read_intervals)
        found += any(low > 0 for low, _high in read_intervals)

    # Measured: 0.981 of runs cover the true difference at every one of their 120 reads (the
    # guarantee, time-uniform, is 0.95); 0.982 find the lift by 12,000 users per arm (0.97
    # at the last read; half of them by 3,900 users per arm).
    assert covered / runs >= 1 - ALPHA
    assert found / runs >= 0.9


def test_the_sequence_is_where_the_mixture_likelihood_ratio_reaches_one_over_alpha() -> None:
    interval = confidence_sequence(1200, 10_000, 1000, 10_000, effect_scale=EFFECT_SCALE)
    assert interval is not None
    rate, control_rate = 0.12, 0.10
    variance = rate * (1 - rate) / 10_000 + control_rate * (1 - control_rate) / 10_000
    mixing = EFFECT_SCALE**2
    for bound in interval:
        # Johari et al.'s normal-mixture likelihood ratio of the observed difference
        # against a true difference equal to the bound.
        ratio = math.sqrt(variance / (variance + mixing)) * math.exp(
            mixing * (rate - control_rate - bound) ** 2 / (2 * variance * (variance + mixing))
        )
        assert ratio == pytest.approx(1 / ALPHA)


@pytest.mark.parametrize(
    ("conversions", "users"),
    [(10, 99), (4, 1000), (996, 1000), (0, 0)],
    ids=["too-few-users", "too-few-conversions", "too-few-non-conversions", "no-users"],
)
def test_no_sequence_before_the_minimum_sample(conversions: int, users: int) -> None:
    assert confidence_sequence(conversions, users, 100, 1000, effect_scale=EFFECT_SCALE) is None
    assert confidence_sequence(100, 1000, conversions, users, effect_scale=EFFECT_SCALE) is None


# ---- the report ------------------------------------------------------------------------


def test_the_report_of_a_clear_winner() -> None:
    experiment = _experiment()
    counts = {
        "control": VariantCounts(10_000, {Kpi.PURCHASE: 1000, Kpi.NEGATIVE_FEEDBACK: 200}),
        "b": VariantCounts(10_000, {Kpi.PURCHASE: 1250, Kpi.NEGATIVE_FEEDBACK: 210}),
    }
    report = analyse(experiment, counts, datetime.now(UTC))

    assert (report.name, report.status, report.control) == ("checkout-tone", "running", "control")
    assert (report.start, report.stop) == (experiment.start, experiment.stop)
    assert report.attribution_window_hours == experiment.attribution_window_hours
    assert [(k.kpi, k.role, k.lower_is_better) for k in report.kpis] == [
        (Kpi.PURCHASE, "primary", False),
        (Kpi.NEGATIVE_FEEDBACK, "guardrail", True),
    ]
    purchase = report.kpis[0]
    control, treated = purchase.variants
    assert [control.variant, treated.variant] == ["control", "b"]
    assert (control.expected_share, control.users, control.conversions) == (0.5, 10_000, 1000)
    assert control.rate == 0.1
    assert control.rate_interval is not None
    wilson = stats.binomtest(1000, 10_000).proportion_ci(method="wilson")
    assert control.rate_interval == pytest.approx((wilson.low, wilson.high))
    assert (control.difference, control.difference_interval, control.lift) == (None, None, None)
    assert (control.lift_interval, control.probability_to_beat_control) == (None, None)
    assert not control.significant

    assert treated.rate == 0.125
    assert treated.difference == pytest.approx(0.025)
    assert treated.difference_interval == confidence_sequence(
        1250, 10_000, 1000, 10_000, effect_scale=EFFECT_SCALE
    )
    assert treated.difference_interval is not None
    low, high = treated.difference_interval
    assert 0 < low < 0.025 < high
    assert treated.lift == pytest.approx(0.25)
    assert treated.lift_interval == pytest.approx((low / 0.1, high / 0.1))
    assert treated.probability_to_beat_control is not None
    assert treated.probability_to_beat_control > 0.99
    assert treated.significant

    assert not report.kpis[1].variants[1].significant  # 2.0% against 2.1%: nothing found
    assert report.sample_ratio.p_value == pytest.approx(1.0)
    assert not report.sample_ratio.mismatch
    assert report.sample_ratio.threshold == SRM_THRESHOLD
    assert report.verdict == (
        f"`b` beats control on purchase: +2.5 points (95% always-valid interval "
        f"{low * 100:+.1f} to {high * 100:+.1f})"
    )
    assert "always-valid" in report.method
    assert "Bonferroni" not in report.method


def test_equal_counts_give_an_even_chance_and_no_difference() -> None:
    counts = {name: VariantCounts(5000, {Kpi.PURCHASE: 500}) for name in ("control", "b")}
    report = analyse(_experiment(), counts, datetime.now(UTC))

    treated = report.kpis[0].variants[1]
    assert treated.probability_to_beat_control == pytest.approx(0.5, abs=1e-6)
    assert treated.difference == 0
    assert not treated.significant
    assert report.verdict == "no difference found yet (10000 users)"


def test_the_probability_to_beat_matches_a_monte_carlo_estimate() -> None:
    rng = np.random.default_rng(30_3)
    draws = 1_000_000
    for conversions, users, control_conversions, control_users in [
        (130, 1000, 100, 1000),
        (5, 20, 1, 3),
        (100_000, 1_000_000, 100_500, 1_000_000),  # narrower than quad sees over [0, 1]
    ]:
        variant = rng.beta(1 + conversions, 1 + users - conversions, draws)
        control = rng.beta(1 + control_conversions, 1 + control_users - control_conversions, draws)
        estimate = float(np.mean(variant > control))
        # 5 standard errors: the Monte Carlo's noise, not the integral's, sets the margin.
        margin = 5 * math.sqrt(estimate * (1 - estimate) / draws)
        integral = probability_to_beat(conversions, users, control_conversions, control_users)
        assert integral == pytest.approx(estimate, abs=margin)
        lower = probability_to_beat(
            conversions, users, control_conversions, control_users, lower_is_better=True
        )
        assert lower == pytest.approx(1 - estimate, abs=margin)


def test_a_variant_worse_on_a_lower_is_better_guardrail_is_flagged() -> None:
    counts = {
        "control": VariantCounts(10_000, {Kpi.PURCHASE: 1000, Kpi.NEGATIVE_FEEDBACK: 200}),
        "b": VariantCounts(10_000, {Kpi.PURCHASE: 1010, Kpi.NEGATIVE_FEEDBACK: 400}),
    }
    report = analyse(_experiment(), counts, datetime.now(UTC))

    guardrail = report.kpis[1]
    treated = guardrail.variants[1]
    assert guardrail.lower_is_better
    assert treated.significant
    assert treated.difference_interval is not None
    assert treated.difference_interval[0] > 0
    assert treated.probability_to_beat_control is not None
    assert treated.probability_to_beat_control < 0.01  # P(its rate < control's)
    assert report.verdict == "`b` is worse than control on negative_feedback (guardrail)"


def test_a_lower_is_better_primary_is_won_by_going_down() -> None:
    experiment = _experiment(primary_kpi="negative_feedback", guardrail_kpis=[])
    counts = {
        "control": VariantCounts(10_000, {Kpi.NEGATIVE_FEEDBACK: 400}),
        "b": VariantCounts(10_000, {Kpi.NEGATIVE_FEEDBACK: 200}),
    }
    report = analyse(experiment, counts, datetime.now(UTC))

    assert report.verdict.startswith("`b` beats control on negative_feedback: -2.0 points")
    assert report.kpis[0].variants[1].probability_to_beat_control == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("treated_users", "mismatch"), [(1200, True), (1010, False)], ids=["1200", "1010"]
)
def test_sample_ratio_mismatch(treated_users: int, mismatch: bool) -> None:
    counts = {
        "control": VariantCounts(1000, {Kpi.PURCHASE: 100}),
        "b": VariantCounts(treated_users, {Kpi.PURCHASE: 200}),
    }
    report = analyse(_experiment(), counts, datetime.now(UTC))

    expected = stats.chisquare([1000, treated_users]).pvalue
    assert report.sample_ratio.p_value == pytest.approx(expected)
    assert report.sample_ratio.mismatch is mismatch
    assert report.verdict.startswith("sample ratio mismatch (p=") is mismatch
    if mismatch:
        assert report.verdict.endswith("do not trust these figures")


def test_sample_ratio_follows_the_weights() -> None:
    experiment = _experiment(weights=[3, 1])
    counts = {"control": VariantCounts(3000), "b": VariantCounts(1000)}
    report = analyse(experiment, counts, datetime.now(UTC))

    assert [v.expected_share for v in report.kpis[0].variants] == [0.75, 0.25]
    assert report.sample_ratio.p_value == pytest.approx(1.0)


def test_variants_without_users_have_no_rates() -> None:
    counts = {"control": VariantCounts(40, {Kpi.PURCHASE: 4})}  # b has no users yet
    report = analyse(_experiment(), counts, datetime.now(UTC))

    treated = report.kpis[0].variants[1]
    assert (treated.users, treated.conversions, treated.rate, treated.rate_interval) == (
        0,
        0,
        None,
        None,
    )
    assert (treated.difference, treated.difference_interval, treated.lift) == (None, None, None)
    assert treated.probability_to_beat_control is None
    assert not treated.significant
    assert report.sample_ratio.p_value is None  # 40 users: too few to test the split
    assert not report.sample_ratio.mismatch
    assert report.verdict.startswith("too few users to compare yet (40 users)")


def test_a_scheduled_experiment_says_when_it_starts() -> None:
    experiment = _experiment()
    report = analyse(experiment, {}, experiment.start - timedelta(hours=1))

    assert report.status == "scheduled"
    assert report.verdict == f"not started: starts at {experiment.start.isoformat()}"
    assert all(v.rate is None for kpi in report.kpis for v in kpi.variants)


def test_a_control_with_no_conversions_has_no_lift() -> None:
    counts = {
        "control": VariantCounts(1000),
        "b": VariantCounts(1000, {Kpi.PURCHASE: 10}),
    }
    treated = analyse(_experiment(), counts, datetime.now(UTC)).kpis[0].variants[1]

    assert treated.difference == pytest.approx(0.01)
    assert (treated.lift, treated.lift_interval) == (None, None)


def test_several_treatments_share_the_error_rate() -> None:
    counts = {
        "control": VariantCounts(10_000, {Kpi.PURCHASE: 1000}),
        "b": VariantCounts(10_000, {Kpi.PURCHASE: 1140}),
    }
    two = analyse(_experiment(), counts, datetime.now(UTC))
    three = analyse(
        _experiment(variants=3),
        {**counts, "c": VariantCounts(10_000, {Kpi.PURCHASE: 1000})},
        datetime.now(UTC),
    )

    alone, shared = two.kpis[0].variants[1], three.kpis[0].variants[1]
    assert shared.difference_interval == confidence_sequence(
        1140, 10_000, 1000, 10_000, effect_scale=EFFECT_SCALE, alpha=ALPHA / 2
    )
    assert alone.difference_interval is not None
    assert shared.difference_interval is not None
    assert shared.difference_interval[0] < alone.difference_interval[0]
    assert alone.significant  # 1.4 points is found against one comparison...
    assert not shared.significant  # ...but not when the 5% is shared by two
    assert [v.variant for v in three.kpis[0].variants] == ["control", "b", "c"]
    assert "Bonferroni" in three.method
    assert "0.05/2" in three.method


def test_counts_must_be_consistent() -> None:
    with pytest.raises(ValueError, match="not within"):
        VariantCounts(10, {Kpi.PURCHASE: 11})
    with pytest.raises(ValueError, match="users"):
        VariantCounts(-1)
