"""Memory's reducer: last writer wins in event time, negations retract, bounds, forgetting."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from rapport.common.contracts import FactType
from rapport.common.events import ChatMessageEvent, ConsentEvent
from rapport.common.vectors import MessageVector
from rapport.profile.domain.facts import Assertion
from rapport.profile.domain.memory import (
    Heard,
    KnownFact,
    MemoryRules,
    Remembered,
    fact_id,
    fact_key,
    fact_views,
    forget,
    hear,
    learn,
)
from rapport.profile.domain.reducer import Outcome, apply
from rapport.profile.domain.state import Profile, Rules
from rapport.profile.domain.views import view

pytestmark = pytest.mark.unit

T0 = datetime.now(UTC).replace(microsecond=0)
VECTOR = MessageVector.of([0.6, 0.8], "encoder:1")


def heard(
    *assertions: tuple[FactType, str, bool],
    at: datetime = T0,
    event_id: str | None = None,
    vector: MessageVector | None = None,
) -> Heard:
    return Heard(
        event_id=event_id or str(uuid.uuid4()),
        at=at,
        text="...",
        assertions=tuple(Assertion(t, v, negated=n) for t, v, n in assertions),
        vector=vector,
    )


def live(facts: dict[str, KnownFact]) -> set[tuple[str, str]]:
    return {(f.type, f.value) for f in facts.values() if not f.retracted}


def test_single_valued_facts_are_replaced_by_a_newer_value() -> None:
    facts: dict[str, KnownFact] = {}
    learn(facts, [], heard(("location", "Berlin", False)), MemoryRules())
    learn(facts, [], heard(("location", "Lyon", False), at=T0 + timedelta(days=1)), MemoryRules())
    assert live(facts) == {("location", "Lyon")}


def test_an_older_message_arriving_late_does_not_overwrite_a_newer_fact() -> None:
    facts: dict[str, KnownFact] = {}
    learn(facts, [], heard(("budget", "80 EUR", False), at=T0), MemoryRules())
    learn(facts, [], heard(("budget", "50 EUR", False), at=T0 - timedelta(hours=1)), MemoryRules())
    assert live(facts) == {("budget", "80 EUR")}


def test_multi_valued_facts_accumulate_and_a_negation_retracts_one() -> None:
    facts: dict[str, KnownFact] = {}
    rules = MemoryRules()
    learn(facts, [], heard(("allergy", "peanuts", False), ("diet", "vegan", False)), rules)
    learn(facts, [], heard(("allergy", "shellfish", False), at=T0 + timedelta(1)), rules)
    assert live(facts) == {("allergy", "peanuts"), ("allergy", "shellfish"), ("diet", "vegan")}
    learn(facts, [], heard(("diet", "vegan", True), at=T0 + timedelta(2)), rules)
    assert live(facts) == {("allergy", "peanuts"), ("allergy", "shellfish")}
    # The message that stated it, delivered late, cannot bring it back.
    learn(facts, [], heard(("diet", "vegan", False), at=T0 + timedelta(hours=1)), rules)
    assert ("diet", "vegan") not in live(facts)
    # Saying it again, later, does.
    learn(facts, [], heard(("diet", "vegan", False), at=T0 + timedelta(3)), rules)
    assert ("diet", "vegan") in live(facts)


def test_a_negation_of_another_value_leaves_a_single_valued_fact_alone() -> None:
    facts: dict[str, KnownFact] = {}
    learn(facts, [], heard(("location", "Madrid", False)), MemoryRules())
    learn(facts, [], heard(("location", "Berlin", True), at=T0 + timedelta(1)), MemoryRules())
    assert live(facts) == {("location", "Madrid")}


def test_a_dislike_replaces_a_like_of_the_same_thing() -> None:
    facts: dict[str, KnownFact] = {}
    learn(facts, [], heard(("likes", "horror", False)), MemoryRules())
    learn(facts, [], heard(("dislikes", "horror", False), at=T0 + timedelta(1)), MemoryRules())
    assert live(facts) == {("dislikes", "horror")}
    assert fact_key("likes", "horror") == fact_key("dislikes", "horror")


def test_facts_and_messages_are_bounded_oldest_first() -> None:
    rules = MemoryRules(max_facts=3, max_messages=2, max_retracted=1)
    facts: dict[str, KnownFact] = {}
    remembered: list[Remembered] = []
    for day in range(5):
        message = heard(("owns", f"book {day}", False), at=T0 + timedelta(day), vector=VECTOR)
        remembered = learn(facts, remembered, message, rules)
    assert live(facts) == {("owns", "book 2"), ("owns", "book 3"), ("owns", "book 4")}
    assert [r.at for r in remembered] == [T0 + timedelta(3), T0 + timedelta(4)]
    for day in range(2):
        learn(facts, [], heard(("owns", f"book {day + 2}", True), at=T0 + timedelta(9)), rules)
    assert sum(f.retracted for f in facts.values()) == 1


def test_retention_drops_old_facts_and_messages() -> None:
    rules = MemoryRules(retention=timedelta(days=30))
    facts: dict[str, KnownFact] = {}
    remembered = learn(facts, [], heard(("diet", "keto", False), vector=VECTOR), rules)
    later = heard(("location", "Rome", False), at=T0 + timedelta(days=31), vector=VECTOR)
    remembered = learn(facts, remembered, later, rules)
    assert live(facts) == {("location", "Rome")}
    assert [r.memory_id for r in remembered] == [later.memory_id]
    assert [f.value for f in fact_views(facts, T0 + timedelta(days=62), rules)] == []


def test_a_message_without_a_vector_teaches_facts_but_is_not_remembered() -> None:
    facts: dict[str, KnownFact] = {}
    remembered = learn(facts, [], heard(("diet", "halal", False)), MemoryRules())
    assert remembered == []
    assert live(facts) == {("diet", "halal")}


def test_forgetting_a_fact_survives_a_replay_of_its_message() -> None:
    facts: dict[str, KnownFact] = {}
    message = heard(("household", "dog", False), vector=VECTOR)
    remembered = learn(facts, [], message, MemoryRules())
    [view_of_dog] = fact_views(facts, T0, MemoryRules())
    assert forget(facts, remembered, view_of_dog.memory_id) == remembered
    assert live(facts) == set()
    learn(facts, remembered, message, MemoryRules())  # the same event again
    assert live(facts) == set()
    assert forget(facts, remembered, view_of_dog.memory_id) is None
    assert forget(facts, remembered, message.memory_id) == []
    assert forget(facts, [], message.memory_id) is None
    assert view_of_dog.memory_id == fact_id(fact_key("household", "dog"))


def chat(text: str, at: datetime = T0, vector: MessageVector | None = None) -> ChatMessageEvent:
    return ChatMessageEvent(
        type="chat_message",
        event_id=uuid.uuid4(),
        user_id="u1",
        tenant="t",
        occurred_at=at,
        received_at=at,
        text=text,
        vector=vector,
    )


def test_hear_redacts_before_it_extracts() -> None:
    message = hear(chat("I'm vegetarian, write to me at jo@example.com", vector=VECTOR))
    assert "jo@example.com" not in message.text
    assert "[email]" in message.text
    assert Assertion("diet", "vegetarian") in message.assertions
    assert message.vector == VECTOR
    assert message.memory_id == f"m-{message.event_id}"


def test_the_reducer_learns_from_chat_and_opting_out_forgets_everything() -> None:
    profile = Profile(tenant="t", user_id="u1")
    rules = Rules()
    event = chat("I'm vegetarian.", vector=VECTOR)
    outcome = apply(profile, event, partition=0, offset=1, rules=rules, heard=hear(event))
    assert outcome is Outcome.APPLIED
    shown = view(profile, "u1", "store", rules, T0)
    assert [(f.type, f.value) for f in shown.facts] == [("diet", "vegetarian")]
    assert shown.remembered_messages == 1

    opt_out = ConsentEvent.model_validate(
        {
            "type": "consent",
            "event_id": str(uuid.uuid4()),
            "user_id": "u1",
            "tenant": "t",
            "occurred_at": T0 + timedelta(1),
            "received_at": T0 + timedelta(1),
            "attributes": {"personalization": False},
        }
    )
    apply(profile, opt_out, partition=0, offset=2, rules=rules)
    assert profile.facts == {}
    assert profile.remembered == []
    later = chat("I'm vegan.", at=T0 + timedelta(2), vector=VECTOR)
    outcome = apply(profile, later, partition=0, offset=3, rules=rules, heard=hear(later))
    assert outcome is Outcome.NOT_CONSENTED
    assert profile.facts == {}


def test_memory_off_shows_no_facts() -> None:
    profile = Profile(tenant="t", user_id="u1")
    event = chat("I'm vegetarian.")
    apply(profile, event, partition=0, offset=1, rules=Rules(), heard=hear(event))
    off = Rules(memory=MemoryRules(enabled=False))
    assert view(profile, "u1", "store", off, T0).facts == []
