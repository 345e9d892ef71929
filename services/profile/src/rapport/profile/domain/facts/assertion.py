"""What the extractor yields: one typed fact, stated or retracted."""

from __future__ import annotations

from dataclasses import dataclass

from rapport.common.contracts import FactType


@dataclass(frozen=True, slots=True)
class Assertion:
    type: FactType
    value: str
    negated: bool = False  # True: the user retracts this fact
