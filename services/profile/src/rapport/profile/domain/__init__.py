"""Profile state and how one event changes it: pure logic, no I/O.

Everything is in event time (``occurred_at``), so late and out-of-order
events land where they belong:

- counters, lifetime value and affinities are sums, so their order does not
  matter; affinities decay exponentially with a half-life, kept as a score
  valid at ``as_of`` (the newest event time seen) and rescaled when a newer
  event arrives;
- recent items and searches keep the newest ``N`` by ``occurred_at``;
- preferences and consent are last-writer-wins by ``occurred_at``;
- the session is the newest run of activity without a gap longer than the
  inactivity window.

Exactly-once effect: an event is skipped when its offset is at or below the
partition watermark (a redelivery after a crash) or its ``event_id`` is among
the recent ids (a client retry that reached Kafka twice). After an opt-out,
only consent events are applied.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from rapport.common.contracts import (
    FRUSTRATED_SEGMENT,
    FRUSTRATED_SENTIMENT_EWMA,
    ConsentView,
    ProfileView,
    SessionView,
    TrendingCategory,
    TrendingItem,
    TrendingView,
)
from rapport.common.events import ConsentEvent, Event
from rapport.common.scores import normalised, significant
from rapport.profile.domain.memory import (
    Heard,
    KnownFact,
    MemoryRules,
    Remembered,
    fact_views,
    learn,
    remembered_within,
)

RECENT_ITEMS = 20
RECENT_SEARCHES = 10
# Client retries that reach Kafka twice arrive close together (ingest deduplicates
# within its window); 64 ids cover them and keep the stored document small, which
# dominated the processor's cost at 256.
RECENT_EVENT_IDS = 64
SENTIMENT_ALPHA = 0.3
# Bandit feedback: at most this many (policy, arm) pairs per profile, names bounded.
MAX_FEEDBACK_ARMS = 32
MAX_ARM_NAME = 64
COLD_START_TOP = 10  # categories and items a cold-start default carries
GOOD_RATING = 4


class _State(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Affinity(_State):
    score: float
    as_of: datetime


class Seen(_State):
    value: str
    at: datetime
    category: str | None = None


class Session(_State):
    id: str
    started_at: datetime
    last_activity_at: datetime
    turns: int = 0
    last_intent: str | None = None
    sentiment_ewma: float | None = None


class Stamped(_State):
    value: Any
    at: datetime


class ArmFeedback(_State):
    """Explicit feedback on what an exploration arm showed: rating >= 4 is a success."""

    successes: int = 0
    failures: int = 0


class Profile(_State):
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
    cluster_id: int | None = Field(
        None, description="Nearest segment centroid, once a segmentation model assigns one."
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

    @property
    def personalization_allowed(self) -> bool:
        return self.consent is None or bool(self.consent.value)


@dataclass(frozen=True)
class Rules:
    half_life: timedelta = timedelta(days=7)
    session_gap: timedelta = timedelta(minutes=30)
    memory: MemoryRules = field(default_factory=MemoryRules)


class Outcome(Enum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"  # at or below the watermark, or a known event_id
    NOT_CONSENTED = "not_consented"


def decay(score: float, elapsed: timedelta, half_life: timedelta) -> float:
    return score * math.pow(0.5, elapsed / half_life)


def _add_affinity(
    profile: Profile, category: str, weight: float, at: datetime, rules: Rules
) -> None:
    current = profile.affinities.get(category)
    if current is None:
        profile.affinities[category] = Affinity(score=weight, as_of=at)
    elif at >= current.as_of:
        rescaled = decay(current.score, at - current.as_of, rules.half_life)
        profile.affinities[category] = Affinity(score=rescaled + weight, as_of=at)
    else:  # a late event counts for what it would be worth now
        late = decay(weight, current.as_of - at, rules.half_life)
        profile.affinities[category] = Affinity(score=current.score + late, as_of=current.as_of)


def _keep_newest(
    seen: list[Seen], value: str, at: datetime, limit: int, category: str | None = None
) -> list[Seen]:
    merged = [s for s in seen if s.value != value or s.at >= at]
    if not any(s.value == value for s in merged):
        merged.append(Seen(value=value, at=at, category=category))
    merged.sort(key=lambda s: (s.at, s.value), reverse=True)
    return merged[:limit]


# How much each kind of interaction says about a user's interest in a category.
AFFINITY_WEIGHTS = {
    "page_view": 0.2,
    "item_view": 1.0,
    "click": 1.5,
    "search": 1.0,
    "add_to_cart": 3.0,
    "purchase": 5.0,
    "preference": 4.0,
}


def _update_session(profile: Profile, event: Event, rules: Rules) -> None:
    at = event.occurred_at
    session = profile.session
    if session is None or at > session.last_activity_at + rules.session_gap:
        session = Session(
            id=event.session_id or f"{event.user_id}@{int(at.timestamp())}",
            started_at=at,
            last_activity_at=at,
        )
    elif at < session.started_at - rules.session_gap:
        return  # activity of an earlier session, arrived late
    else:
        session = session.model_copy(
            update={
                "started_at": min(session.started_at, at),
                "last_activity_at": max(session.last_activity_at, at),
            }
        )
    if event.type == "chat_message":
        attributes = event.attributes or {}
        intent = attributes.get("intent")
        sentiment = attributes.get("sentiment")
        updates: dict[str, Any] = {"turns": session.turns + 1}
        if isinstance(intent, str):
            updates["last_intent"] = intent
        if isinstance(sentiment, int | float) and not isinstance(sentiment, bool):
            previous = session.sentiment_ewma
            updates["sentiment_ewma"] = (
                float(sentiment)
                if previous is None
                else SENTIMENT_ALPHA * float(sentiment) + (1 - SENTIMENT_ALPHA) * previous
            )
        session = session.model_copy(update=updates)
    profile.session = session


def already_applied(profile: Profile, event: Event, *, partition: int, offset: int) -> bool:
    """The partition's watermark is past this record, or the event's id is a recent one
    (a client's retry under another offset): applying it again would change nothing."""
    return (
        offset <= profile.watermarks.get(str(partition), -1)
        or str(event.event_id) in profile.recent_event_ids
    )


def apply(
    profile: Profile,
    event: Event,
    *,
    partition: int,
    offset: int,
    rules: Rules,
    heard: Heard | None = None,
) -> Outcome:
    """Apply one event in place; the caller persists the profile if it changed.

    ``heard`` is a chat message as memory read it (:func:`~.memory.hear`); None when
    memory is off or the event is not a chat message.
    """
    if already_applied(profile, event, partition=partition, offset=offset):
        return Outcome.DUPLICATE
    mark = str(partition)
    event_id = str(event.event_id)
    profile.watermarks[mark] = offset
    profile.recent_event_ids = [*profile.recent_event_ids, event_id][-RECENT_EVENT_IDS:]
    if isinstance(event, ConsentEvent):
        if profile.consent is None or event.occurred_at >= profile.consent.at:
            profile.consent = Stamped(value=event.attributes.personalization, at=event.occurred_at)
        if not profile.personalization_allowed:  # opting out ends memory: nothing is kept
            profile.facts = {}
            profile.remembered = []
    elif not profile.personalization_allowed:
        return Outcome.NOT_CONSENTED
    else:
        _apply_activity(profile, event, rules)
        if heard is not None and rules.memory.enabled:
            profile.remembered = learn(profile.facts, profile.remembered, heard, rules.memory)
    profile.version += 1
    profile.updated_at = max(filter(None, (profile.updated_at, event.received_at)))
    return Outcome.APPLIED


def _apply_activity(profile: Profile, event: Event, rules: Rules) -> None:
    at = event.occurred_at
    profile.counters[event.type] = profile.counters.get(event.type, 0) + 1
    if event.category and event.type in AFFINITY_WEIGHTS:
        _add_affinity(profile, event.category, AFFINITY_WEIGHTS[event.type], at, rules)
    if event.item_id and event.type in ("item_view", "click", "add_to_cart", "purchase"):
        profile.recent_items = _keep_newest(
            profile.recent_items, event.item_id, at, RECENT_ITEMS, event.category
        )
    if event.type == "search" and event.query:
        profile.recent_searches = _keep_newest(
            profile.recent_searches, event.query, at, RECENT_SEARCHES
        )
    if event.type == "purchase" and event.value:
        profile.lifetime_value = round(profile.lifetime_value + event.value, 6)
    if event.type == "feedback" and event.rating is not None and event.attributes:
        _add_arm_feedback(profile, event.attributes, good=event.rating >= GOOD_RATING)
    if event.type == "preference" and event.attributes:
        for key, value in event.attributes.items():
            current = profile.preferences.get(key)
            if current is None or at >= current.at:
                profile.preferences[key] = Stamped(value=value, at=at)
    _update_session(profile, event, rules)


def arm_key(attributes: dict[str, Any]) -> str | None:
    """``policy/arm`` when a feedback event names the bandit arm it rates, else None."""
    policy, arm = attributes.get("policy"), attributes.get("arm")
    if not (isinstance(policy, str) and isinstance(arm, str)):
        return None
    if not (0 < len(policy) <= MAX_ARM_NAME and 0 < len(arm) <= MAX_ARM_NAME) or "/" in policy:
        return None
    return f"{policy}/{arm}"


def _add_arm_feedback(profile: Profile, attributes: dict[str, Any], *, good: bool) -> None:
    key = arm_key(attributes)
    if key is None or (key not in profile.feedback and len(profile.feedback) >= MAX_FEEDBACK_ARMS):
        return
    counts = profile.feedback.setdefault(key, ArmFeedback())
    if good:
        counts.successes += 1
    else:
        counts.failures += 1


def arm_totals(feedback: Iterable[dict[str, ArmFeedback]], policy: str) -> dict[str, ArmFeedback]:
    """Sum one policy's arm counts over many profiles."""
    prefix = f"{policy}/"
    totals: dict[str, ArmFeedback] = {}
    for per_user in feedback:
        for key, counts in per_user.items():
            if key.startswith(prefix):
                total = totals.setdefault(key.removeprefix(prefix), ArmFeedback())
                total.successes += counts.successes
                total.failures += counts.failures
    return totals


def segments(profile: Profile) -> list[str]:
    """Rule-based labels, derived from the state rather than stored beside it."""
    labels = []
    purchases = profile.counters.get("purchase", 0)
    if purchases:
        labels.append("buyer")
    if profile.lifetime_value >= 100:
        labels.append("high_value")
    views = profile.counters.get("item_view", 0) + profile.counters.get("click", 0)
    if views >= 10 and not purchases:
        labels.append("browser")
    if profile.counters.get("chat_message", 0) >= 5:
        labels.append("chatty")
    if profile.session and (profile.session.sentiment_ewma or 0) <= FRUSTRATED_SENTIMENT_EWMA:
        labels.append(FRUSTRATED_SEGMENT)
    return labels


def affinities_at(profile: Profile, now: datetime, rules: Rules) -> dict[str, float]:
    """Every affinity decayed to ``now``, strongest first.

    Ordered by the logarithm of the score, which never underflows: after a pause long
    enough to take scores below the smallest float, they still come out in order.
    """

    def log2_at(affinity: Affinity) -> float:
        if affinity.score <= 0:
            return -math.inf
        return math.log2(affinity.score) - max(now - affinity.as_of, timedelta(0)) / rules.half_life

    logs = {category: log2_at(a) for category, a in profile.affinities.items()}
    ranked = sorted(logs.items(), key=lambda kv: kv[1], reverse=True)
    return {category: math.pow(2.0, log2) for category, log2 in ranked}


class Trend(_State):
    item_id: str
    category: str | None
    weight: float = Field(description="Its votes' worth, relative to one vote cast at as_of.")


class TrendingPool(_State):
    """A tenant's most popular items, as of their newest vote.

    Weights are relative to the newest vote, not decayed to a clock: after any
    pause in traffic they keep their order and their ratios, and a read scales
    them to its own time with ``scale_at``.
    """

    as_of: datetime | None = None
    trends: list[Trend] = Field(default_factory=list)

    def scale_at(self, now: datetime, half_life: timedelta) -> float:
        """What one vote cast at ``as_of`` is worth at ``now``."""
        if self.as_of is None:
            return 0.0
        return decay(1.0, max(now - self.as_of, timedelta(0)), half_life)

    def category_weights(self) -> dict[str, float]:
        """Summed weight per category, strongest first (ties by name)."""
        totals: dict[str, float] = {}
        for trend in self.trends:
            if trend.category:
                totals[trend.category] = totals.get(trend.category, 0.0) + trend.weight
        return dict(sorted(totals.items(), key=lambda kv: (-kv[1], kv[0])))


def trending(
    recent: Sequence[list[Seen]], now: datetime, half_life: timedelta, limit: int
) -> TrendingPool:
    """Decayed popularity from every user's recent items: one vote per user and item,
    worth less the older it is than the newest vote. Derived from profiles, so it is
    exactly-once with them and an erased user's votes go with their profile.

    A vote dated after ``now`` (a client's clock ahead) counts as cast ``now``.
    """
    newest = max((min(seen.at, now) for items in recent for seen in items), default=None)
    if newest is None:
        return TrendingPool()
    weights: dict[str, float] = {}
    categories: dict[str, str | None] = {}
    for items in recent:
        for seen in items:
            age = newest - min(seen.at, now)
            weights[seen.value] = weights.get(seen.value, 0.0) + decay(1.0, age, half_life)
            categories[seen.value] = seen.category or categories.get(seen.value)
    ranked = sorted(weights.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
    return TrendingPool(
        as_of=newest,
        trends=[
            Trend(item_id=item, category=categories[item], weight=significant(weight))
            for item, weight in ranked
        ],
    )


# --- what the API answers (the models are rapport.common.contracts') ---


class ConsentChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    personalization: bool


class ConsentAccepted(BaseModel):
    user_id: str
    personalization: bool
    event_id: str


def cold_start(user_id: str, popular: TrendingPool) -> ProfileView:
    """An unknown user: what is popular, normalised so the top category scores 1.

    With no trending left (a new tenant, or every view erased) it is a plain default:
    no affinities and no popular items.
    """
    top_categories = dict(list(popular.category_weights().items())[:COLD_START_TOP])
    return ProfileView(
        user_id=user_id,
        known=False,
        version=0,
        source="default",
        consent=ConsentView(personalization=True),
        affinities=normalised(top_categories),
        popular_items=[trend.item_id for trend in popular.trends[:COLD_START_TOP]],
    )


def trending_view(
    pool: TrendingPool, now: datetime, half_life: timedelta, category: str | None, limit: int
) -> TrendingView:
    """The pool's weights decayed to ``now``."""
    scale = pool.scale_at(now, half_life)
    items = [t for t in pool.trends if category is None or t.category == category][:limit]
    return TrendingView(
        items=[
            TrendingItem(
                item_id=t.item_id, category=t.category, score=significant(t.weight * scale)
            )
            for t in items
        ],
        categories=[
            TrendingCategory(category=c, score=significant(weight * scale))
            for c, weight in pool.category_weights().items()
        ],
    )


def _memory_view(profile: Profile, now: datetime, rules: MemoryRules) -> dict[str, Any]:
    if not rules.enabled:
        return {}
    return {
        "facts": fact_views(profile.facts, now, rules),
        "remembered_messages": len(remembered_within(profile.remembered, now, rules)),
    }


def view(
    profile: Profile, user_id: str, source: Literal["cache", "store"], rules: Rules, now: datetime
) -> ProfileView:
    consent = ConsentView(
        personalization=profile.personalization_allowed,
        updated_at=profile.consent.at if profile.consent else None,
    )
    head = ProfileView(
        user_id=user_id,
        known=True,
        version=profile.version,
        source=source,
        updated_at=profile.updated_at,
        consent=consent,
        withheld=not consent.personalization,
    )
    if head.withheld:
        return head  # opted out: nothing personal leaves this service, whoever asks
    return head.model_copy(
        update={
            "counters": profile.counters,
            "affinities": {
                k: significant(v) for k, v in affinities_at(profile, now, rules).items()
            },
            "recent_items": [seen.value for seen in profile.recent_items],
            "recent_searches": [seen.value for seen in profile.recent_searches],
            "session": (
                SessionView.model_validate(profile.session, from_attributes=True)
                if profile.session
                else None
            ),
            "preferences": {key: stamped.value for key, stamped in profile.preferences.items()},
            "lifetime_value": profile.lifetime_value,
            "segments": segments(profile),
            "cluster_id": profile.cluster_id,
            **_memory_view(profile, now, rules.memory),
        }
    )
