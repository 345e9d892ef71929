"""How one event changes a profile: pure logic, no I/O.

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

from datetime import datetime
from enum import Enum
from typing import Any

from rapport.common.events import ConsentEvent, Event, ExposureEvent
from rapport.profile.domain.experiments import Note, take_exposure, take_outcome
from rapport.profile.domain.memory import Heard, learn
from rapport.profile.domain.state import (
    Affinity,
    ArmFeedback,
    Profile,
    Rules,
    Seen,
    Session,
    Stamped,
    decay,
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
GOOD_RATING = 4


class Outcome(Enum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"  # at or below the watermark, or a known event_id
    NOT_CONSENTED = "not_consented"


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
    notes: list[Note] | None = None,
) -> Outcome:
    """Apply one event in place; the caller persists the profile if it changed.

    ``heard`` is a chat message as memory read it (:func:`~.memory.hear`); None when
    memory is off or the event is not a chat message. ``notes`` collects what the event
    did to experiments (enrolments, conversions, refused exposures).
    """
    notes = [] if notes is None else notes
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
            profile.experiments = {}  # nor counted in experiments
    elif not profile.personalization_allowed:
        return Outcome.NOT_CONSENTED
    elif isinstance(event, ExposureEvent):  # not activity: no counter, session or affinity
        take_exposure(profile, event, rules.experiments, notes)
    else:
        take_outcome(profile, event, notes)
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
