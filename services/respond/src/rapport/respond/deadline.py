"""A request's end-to-end budget: every outbound call gets what is left of it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from rapport.common.problems import FieldError, ProblemError

DEADLINE_HEADER = "X-Rapport-Deadline-Ms"


@dataclass
class Deadline:
    budget_s: float
    started: float = field(default_factory=time.perf_counter)

    @classmethod
    def of_ms(cls, ms: float) -> Deadline:
        return cls(ms / 1000)

    def elapsed_s(self) -> float:
        return time.perf_counter() - self.started

    def remaining_s(self, reserve_s: float = 0.0) -> float:
        """What is left, minus ``reserve_s`` kept for later stages; never negative."""
        return max(0.0, self.budget_s - self.elapsed_s() - reserve_s)


def parse_deadline_header(value: str | None, *, default_ms: int, max_ms: int) -> float:
    """The request's budget in ms: the header when it is a number in [1, max_ms], else 422."""
    if value is None:
        return float(default_ms)
    try:
        ms = float(value)
    except ValueError:
        ms = -1.0
    if not 1 <= ms <= max_ms:
        raise ProblemError(
            422,
            title="Invalid deadline",
            detail=f"{DEADLINE_HEADER} must be a number of milliseconds from 1 to {max_ms}.",
            slug="validation",
            errors=[FieldError(field=DEADLINE_HEADER, reason=f"not in [1, {max_ms}]")],
        )
    return ms
