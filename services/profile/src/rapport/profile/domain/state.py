"""One user's profile as stored in MongoDB and cached in Redis, and the rules over it.

Pure data, no I/O: :mod:`.reducer` changes a profile one event at a time, and
:mod:`.views` derives what the API answers from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from rapport.common.experiments import NO_EXPERIMENTS, ExperimentFile
from rapport.profile.domain.memory import KnownFact, MemoryRules, Remembered


class StateModel(BaseModel):
    """A stored model: a field it does not know is an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid")


class Affinity(StateModel):
    score: float
    as_of: datetime


class Seen(StateModel):
    value: str
    at: datetime
    category: str | None = None


class Session(StateModel):
    id: str
    started_at: datetime
    last_activity_at: datetime
    turns: int = 0
    last_intent: str | None = None
    sentiment_ewma: float | None = None


class Stamped(StateModel):
    value: Any
    at: datetime


class ArmFeedback(StateModel):
    """Explicit feedback on what an exploration arm showed: rating >= 4 is a success."""

    successes: int = 0
    failures: int = 0


class Enrollment(StateModel):
    """A user in an experiment: the variant, the first exposure and, per KPI, the seconds
    from it to the user's first such outcome."""

    variant: str
    exposed_at: datetime
    outcomes: dict[str, float] = Field(default_factory=dict)


class Profile(StateModel):
    """One user's state, as stored in MongoDB and cached in Redis."""

    tenant: str
    user_id: str
    version: int = 0
    updated_at: datetime | None = None
    counters: dict[str, int] = Field(default_factory=dict)
    affinities: dict[str, Affinity] = Field(default_factory=dict)
    recent_items: list[Seen] = Field(default_factory=list)
    recent_searches: list[Seen] = Field(default_factory=list)
    session: Session | None = None
    preferences: dict[str, Stamped] = Field(default_factory=dict)
    consent: Stamped | None = None
    lifetime_value: float = 0.0
    feedback: dict[str, ArmFeedback] = Field(
        default_factory=dict, description='Per "policy/arm": feedback on what it showed.'
    )
    watermarks: dict[str, int] = Field(default_factory=dict)
    recent_event_ids: list[str] = Field(default_factory=list)
    facts: dict[str, KnownFact] = Field(
        default_factory=dict, description="Memory: what the user said about themselves."
    )
    remembered: list[Remembered] = Field(
        default_factory=list,
        description="Memory: the user's messages kept for recall, oldest first.",
    )
    experiments: dict[str, Enrollment] = Field(
        default_factory=dict, description="Experiments the user was exposed to, by name."
    )

    @property
    def personalization_allowed(self) -> bool:
        return self.consent is None or bool(self.consent.value)


@dataclass(frozen=True)
class Rules:
    half_life: timedelta = timedelta(days=7)
    session_gap: timedelta = timedelta(minutes=30)
    memory: MemoryRules = field(default_factory=MemoryRules)
    experiments: ExperimentFile = NO_EXPERIMENTS


def decay(score: float, elapsed: timedelta, half_life: timedelta) -> float:
    return score * math.pow(0.5, elapsed / half_life)
