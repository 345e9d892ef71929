import random

import pytest

from rapport.recommend.domain import ArmEvidence, ThompsonSampler, history_weights

pytestmark = pytest.mark.unit

TRUE_RATES = {"model": 0.30, "trending": 0.15, "discovery": 0.55}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_thompson_sampling_converges_to_the_best_arm(seed: int) -> None:
    """A simulated reward: each arm earns a good rating at its own hidden rate."""
    rng = random.Random(seed)
    sampler = ThompsonSampler(list(TRUE_RATES), rng=random.Random(seed + 100))
    counts = {arm: [0, 0] for arm in TRUE_RATES}
    chosen_late = []
    for round_ in range(3000):
        arm = sampler.choose()
        good = rng.random() < TRUE_RATES[arm]
        counts[arm][0 if good else 1] += 1
        sampler.update({a: ArmEvidence(s, f) for a, (s, f) in counts.items()})
        if round_ >= 2000:
            chosen_late.append(arm)
    share_best = chosen_late.count("discovery") / len(chosen_late)
    assert share_best > 0.9, counts
    # Every arm was tried: exploration happened before it settled.
    assert all(s + f >= 10 for s, f in counts.values()), counts
    assert max(sampler.expected(), key=sampler.expected().__getitem__) == "discovery"


def test_without_evidence_every_arm_is_chosen() -> None:
    sampler = ThompsonSampler(["a", "b", "c"], rng=random.Random(7))
    picks = {sampler.choose() for _ in range(200)}
    assert picks == {"a", "b", "c"}


def test_unknown_arms_in_counts_are_ignored_and_missing_ones_reset() -> None:
    sampler = ThompsonSampler(["a", "b"])
    sampler.update({"a": ArmEvidence(5, 1), "zzz": ArmEvidence(100, 0)})
    assert sampler.evidence == {"a": ArmEvidence(5, 1), "b": ArmEvidence()}


def test_a_bandit_needs_arms() -> None:
    with pytest.raises(ValueError, match="at least one arm"):
        ThompsonSampler([])


def test_history_weights_decay_from_the_newest() -> None:
    assert history_weights(3, 0.5) == [1.0, 0.5, 0.25]
    assert history_weights(0, 0.5) == []
