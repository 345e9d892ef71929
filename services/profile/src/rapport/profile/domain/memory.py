"""Memory: what a user says about themselves in chat, kept as typed facts and messages.

Pure logic. The processor calls :func:`hear` on each ``chat_message`` (PII is
redacted first, then facts are extracted from what is left), and the reducer
applies what was heard with :func:`learn`:

- a fact is keyed by what it is about: one budget, one location, one language,
  but as many diets, allergies, household members, owned things and tastes as
  the user names. A like and a dislike of the same thing share a key, so the
  newer replaces the older;
- the last writer wins in event time (``occurred_at``); at equal times the later
  offset wins, which is the order the reducer sees them in;
- a negation ("I'm not vegetarian any more") leaves a retracted fact behind, so
  an older message that arrives late cannot bring the fact back;
- facts and remembered messages are bounded per user, and dropped once older
  than the retention.

A remembered message is a reference here (id and time); its redacted text and
vector live in the vector store, written by the processor.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict

from rapport.common.contracts import FactType, MemoryFact
from rapport.common.events import ChatMessageEvent
from rapport.common.vectors import MessageVector
from rapport.profile.domain.facts import Assertion, DetectLanguage, extract
from rapport.profile.domain.pii import redact

# Ids say which kind of memory they name: f- a fact, m- a remembered message.
FACT_ID_PREFIX = "f-"
MESSAGE_ID_PREFIX = "m-"
MEMORY_ID_PATTERN = r"^[fm]-[0-9a-f-]{8,64}$"

# One value at a time: a new one replaces the old.
SINGLE_VALUED: frozenset[str] = frozenset({"budget", "location", "language"})
# A like and a dislike of one thing are one fact: the newer says which it is.
TASTES: frozenset[str] = frozenset({"likes", "dislikes"})


@dataclass(frozen=True)
class MemoryRules:
    enabled: bool = True
    max_facts: int = 64  # live facts per user; the oldest go first
    max_retracted: int = 64  # retractions kept so a late message cannot undo them
    max_messages: int = 200  # remembered messages per user; the oldest go first
    retention: timedelta = timedelta(days=365)


class _State(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KnownFact(_State):
    type: FactType
    value: str
    event_id: str
    at: datetime
    retracted: bool = False


class Remembered(_State):
    memory_id: str
    at: datetime


@dataclass(frozen=True)
class Heard:
    """One chat message as memory reads it: redacted text, the facts it states, its vector."""

    event_id: str
    at: datetime
    text: str
    assertions: tuple[Assertion, ...]
    vector: MessageVector | None

    @property
    def memory_id(self) -> str:
        return message_id(self.event_id)


def hear(event: ChatMessageEvent, *, detect_language: DetectLanguage | None = None) -> Heard:
    """``detect_language``: see :func:`~.facts.extract` (None: only a stated language)."""
    text = redact(event.text)
    attributes = event.attributes or {}
    intent = attributes.get("intent")
    assertions = extract(
        text,
        intent=intent if isinstance(intent, str) else None,
        detect_language=detect_language,
    )
    return Heard(str(event.event_id), event.occurred_at, text, tuple(assertions), event.vector)


def fact_key(fact_type: str, value: str) -> str:
    if fact_type in SINGLE_VALUED:
        return fact_type
    if fact_type in TASTES:
        return f"taste:{value}"
    return f"{fact_type}:{value}"


def fact_id(key: str) -> str:
    return FACT_ID_PREFIX + hashlib.sha256(key.encode()).hexdigest()[:16]


def message_id(event_id: str) -> str:
    return MESSAGE_ID_PREFIX + event_id


def learn(
    facts: dict[str, KnownFact],
    remembered: list[Remembered],
    heard: Heard,
    rules: MemoryRules,
) -> list[Remembered]:
    """Apply what one message said to ``facts`` (in place); the remembered messages after it."""
    for assertion in heard.assertions:
        _assert(facts, assertion, heard)
    _bound_facts(facts, heard.at - rules.retention, rules)
    if heard.vector is None:
        return remembered
    kept = [
        r
        for r in remembered
        if r.memory_id != heard.memory_id and r.at >= heard.at - rules.retention
    ]
    kept.append(Remembered(memory_id=heard.memory_id, at=heard.at))
    kept.sort(key=lambda r: (r.at, r.memory_id))
    return kept[-rules.max_messages :]


def _assert(facts: dict[str, KnownFact], assertion: Assertion, heard: Heard) -> None:
    key = fact_key(assertion.type, assertion.value)
    current = facts.get(key)
    if current is not None:
        if current.event_id == heard.event_id or heard.at < current.at:
            return  # this message again, or older than what is known: the newer stands
        if assertion.negated and current.value != assertion.value:
            return  # "I no longer live in Berlin" says nothing about living in Lyon
    facts[key] = KnownFact(
        type=assertion.type,
        value=assertion.value,
        event_id=heard.event_id,
        at=heard.at,
        retracted=assertion.negated,
    )


def _bound_facts(facts: dict[str, KnownFact], expired_before: datetime, rules: MemoryRules) -> None:
    for key in [k for k, f in facts.items() if f.at < expired_before]:
        del facts[key]
    for retracted, limit in ((False, rules.max_facts), (True, rules.max_retracted)):
        keys = [k for k, f in facts.items() if f.retracted is retracted]
        if len(keys) > limit:
            keys.sort(key=lambda k: (facts[k].at, k))
            for key in keys[: len(keys) - limit]:
                del facts[key]


def forget(
    facts: dict[str, KnownFact], remembered: list[Remembered], memory_id: str
) -> list[Remembered] | None:
    """Forget one fact or message by id; the remembered messages after it, or None when the
    id names nothing. A forgotten fact stays as a retraction, so a replay of the message
    that stated it does not bring it back."""
    if memory_id.startswith(MESSAGE_ID_PREFIX):
        kept = [r for r in remembered if r.memory_id != memory_id]
        return kept if len(kept) < len(remembered) else None
    for key, fact in facts.items():
        if not fact.retracted and fact_id(key) == memory_id:
            facts[key] = fact.model_copy(update={"retracted": True})
            return remembered
    return None


def fact_views(facts: dict[str, KnownFact], now: datetime, rules: MemoryRules) -> list[MemoryFact]:
    """The live facts within the retention, newest first."""
    live = [
        (key, fact)
        for key, fact in facts.items()
        if not fact.retracted and fact.at >= now - rules.retention
    ]
    live.sort(key=lambda kv: (kv[1].at, kv[0]), reverse=True)
    return [
        MemoryFact(
            memory_id=fact_id(key),
            type=fact.type,
            value=fact.value,
            event_id=fact.event_id,
            occurred_at=fact.at,
        )
        for key, fact in live
    ]


def remembered_within(
    remembered: list[Remembered], now: datetime, rules: MemoryRules
) -> list[Remembered]:
    return [r for r in remembered if r.at >= now - rules.retention]
