"""Decayed scores on the way out of a service.

Scores that decay exponentially get tiny after a pause in traffic: 2^-30 after
30 half-lives. Rounding them to a fixed number of *decimals* turns them into
0.0, which loses their order and makes the largest one a zero divisor. These
helpers round to significant digits and normalise without dividing by zero.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TypeVar

K = TypeVar("K")

SIGNIFICANT_DIGITS = 6


def significant(value: float, digits: int = SIGNIFICANT_DIGITS) -> float:
    """``value`` to ``digits`` significant digits: 1.234567e-19 -> 1.23457e-19, never 0.0."""
    return float(f"{value:.{digits}g}")


def normalised(scores: Mapping[K, float]) -> dict[K, float]:
    """Every score divided by the largest, so the top one is 1.0 (in the mapping's order).

    Empty when no score is positive and finite: there is nothing to scale against.
    """
    top = max(scores.values(), default=0.0)
    if not (top > 0 and math.isfinite(top)):
        return {}
    return {key: significant(score / top) for key, score in scores.items()}
