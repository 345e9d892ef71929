"""Pure decisions: how history is weighted, and Thompson sampling over a few arms.

Bandit: from explicit feedback counts.

Each arm's chance of a good rating has a Beta(1 + successes, 1 + failures)
posterior; every choice draws once from each and takes the best draw. An arm
with little evidence draws widely, so it keeps being tried until the evidence
settles it; a clearly better arm wins almost every draw. The counts come from
the profile service (``GET /v1/feedback/arms``), which sums `feedback` events
exactly once, so every replica of this service learns from the same evidence.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class ArmEvidence:
    successes: int = 0
    failures: int = 0


class ThompsonSampler:
    def __init__(self, arms: Sequence[str], rng: random.Random | None = None) -> None:
        if not arms:
            raise ValueError("a bandit needs at least one arm")
        self.arms = tuple(arms)
        self.rng = rng or random.Random()  # noqa: S311 - sampling, not secrets
        self.evidence: dict[str, ArmEvidence] = {arm: ArmEvidence() for arm in self.arms}

    def update(self, counts: Mapping[str, ArmEvidence]) -> None:
        """Replace the evidence with fresh totals; arms not listed have none yet."""
        self.evidence = {arm: counts.get(arm, ArmEvidence()) for arm in self.arms}

    def choose(self) -> str:
        draws = {
            arm: self.rng.betavariate(1 + ev.successes, 1 + ev.failures)
            for arm, ev in self.evidence.items()
        }
        return max(draws, key=draws.__getitem__)

    def expected(self) -> dict[str, float]:
        """Posterior mean success rate per arm (for logs and the README)."""
        return {
            arm: (1 + ev.successes) / (2 + ev.successes + ev.failures)
            for arm, ev in self.evidence.items()
        }


def history_weights(count: int, decay: float) -> list[float]:
    """The newest item weighs 1, each older one ``decay`` times the previous."""
    return [decay**i for i in range(count)]
