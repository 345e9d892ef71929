"""The profile reducer: event-time semantics, exactly-once effect, consent."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from rapport.common.events import Event, parse_event
from rapport.profile.adapters.store import from_document, to_document
from rapport.profile.domain.reducer import (
    MAX_FEEDBACK_ARMS,
    RECENT_ITEMS,
    Outcome,
    already_applied,
    apply,
)
from rapport.profile.domain.state import ArmFeedback, Profile, Rules
from rapport.profile.domain.trending import TrendingPool, trending
from rapport.profile.domain.views import (
    affinities_at,
    arm_totals,
    cold_start,
    segments,
    trending_view,
)

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
RULES = Rules(half_life=timedelta(days=7), session_gap=timedelta(minutes=30))


def make(type_: str, at: datetime, **fields: Any) -> Event:
    return parse_event(
        {
            "event_id": str(uuid4()),
            "type": type_,
            "user_id": "u-1",
            "tenant": "acme",
            "occurred_at": at.isoformat(),
            "received_at": (at + timedelta(seconds=1)).isoformat(),
            **fields,
        }
    )


def fresh() -> Profile:
    return Profile(tenant="acme", user_id="u-1")


def run(events: list[Event], profile: Profile | None = None, start: int = 0) -> Profile:
    profile = profile or fresh()
    for offset, event in enumerate(events, start=start):
        apply(profile, event, partition=0, offset=offset, rules=RULES)
    return profile


event_kinds = st.sampled_from(
    [
        ("item_view", {"item_id": "m-1", "category": "drama"}),
        ("item_view", {"item_id": "m-2", "category": "comedy"}),
        ("click", {"item_id": "m-3", "category": "drama"}),
        ("purchase", {"item_id": "m-2", "category": "comedy", "value": 12.5}),
        ("search", {"query": "space", "category": "scifi"}),
        ("search", {"query": "boots"}),
        ("preference", {"attributes": {"language": "fr"}}),
        ("preference", {"attributes": {"language": "de"}}),
        ("page_view", {}),
    ]
)
timed_events = st.lists(
    st.tuples(event_kinds, st.integers(min_value=0, max_value=60 * 24 * 30)),
    min_size=1,
    max_size=40,
)


def comparable(profile: Profile) -> dict[str, Any]:
    """The parts of the state that must not depend on arrival order."""
    return {
        "counters": profile.counters,
        "affinities": {
            k: round(v, 9)
            for k, v in affinities_at(profile, T0 + timedelta(days=60), RULES).items()
        },
        "recent_items": [(s.value, s.at) for s in profile.recent_items],
        "recent_searches": [(s.value, s.at) for s in profile.recent_searches],
        "preferences": {k: (v.value, v.at) for k, v in profile.preferences.items()},
        "lifetime_value": profile.lifetime_value,
        "version": profile.version,
    }


@settings(max_examples=150, deadline=None)
@given(timed_events, st.randoms(use_true_random=False))
def test_arrival_order_does_not_change_the_event_time_result(
    spec: list[tuple[tuple[str, dict[str, Any]], int]], rnd: random.Random
) -> None:
    # Distinct minutes, so last-writer-wins has one winner whatever the order.
    seen: set[int] = set()
    events = []
    for (type_, fields), minute in spec:
        if minute not in seen:
            seen.add(minute)
            events.append(make(type_, T0 + timedelta(minutes=minute), **fields))
    shuffled = list(events)
    rnd.shuffle(shuffled)
    in_order, out_of_order = run(events), run(shuffled)
    assert comparable(in_order) == comparable(out_of_order)
    later = T0 + timedelta(days=60)
    assert affinities_at(out_of_order, later, RULES) == pytest.approx(
        affinities_at(in_order, later, RULES), rel=1e-9
    )


def test_redelivery_and_client_retries_apply_once() -> None:
    view = make("item_view", T0, item_id="m-1", category="drama")
    profile = fresh()
    assert apply(profile, view, partition=0, offset=5, rules=RULES) is Outcome.APPLIED
    before = profile.model_dump()
    # The same record again (a consumer restarted before committing).
    assert apply(profile, view, partition=0, offset=5, rules=RULES) is Outcome.DUPLICATE
    # An older offset of the partition.
    assert apply(profile, make("click", T0, item_id="m-9"), partition=0, offset=3, rules=RULES) is (
        Outcome.DUPLICATE
    )
    # The same event_id produced twice (a client retry), at a later offset.
    assert apply(profile, view, partition=0, offset=9, rules=RULES) is Outcome.DUPLICATE
    after = profile.model_dump()
    after["watermarks"] = before["watermarks"]
    assert after == before
    assert profile.counters == {"item_view": 1}


def test_already_applied_says_what_apply_would_skip_and_changes_nothing() -> None:
    view = make("item_view", T0, item_id="m-1", category="drama")
    profile = fresh()
    assert not already_applied(profile, view, partition=0, offset=5)
    apply(profile, view, partition=0, offset=5, rules=RULES)
    before = profile.model_dump()
    assert already_applied(profile, view, partition=0, offset=5)  # the record again
    assert already_applied(profile, view, partition=0, offset=9)  # the id again, later
    older = make("click", T0, item_id="m-9")
    assert already_applied(profile, older, partition=0, offset=3)  # behind the watermark
    assert not already_applied(profile, older, partition=1, offset=3)  # another partition
    assert profile.model_dump() == before


def test_affinity_halves_every_half_life() -> None:
    profile = run([make("purchase", T0, item_id="m-1", category="drama", value=3.0)])
    now = T0 + RULES.half_life * 2
    assert affinities_at(profile, now, RULES)["drama"] == pytest.approx(5.0 / 4)


def test_a_late_event_counts_for_what_it_is_worth_in_event_time() -> None:
    early = make("item_view", T0, item_id="m-1", category="drama")
    late = make("item_view", T0 + RULES.half_life, item_id="m-2", category="drama")
    profile = run([late, early])  # the older event arrives second
    assert profile.affinities["drama"].as_of == late.occurred_at
    assert profile.affinities["drama"].score == pytest.approx(1.0 + 0.5)
    assert [s.value for s in profile.recent_items] == ["m-2", "m-1"]


def test_recent_items_are_bounded_newest_first() -> None:
    events = [make("item_view", T0 + timedelta(minutes=i), item_id=f"m-{i}") for i in range(50)]
    profile = run(events)
    assert len(profile.recent_items) == RECENT_ITEMS
    assert profile.recent_items[0].value == "m-49"
    assert profile.recent_items[-1].value == f"m-{50 - RECENT_ITEMS}"


def test_after_opt_out_only_consent_is_applied() -> None:
    profile = run(
        [
            make("item_view", T0, item_id="m-1"),
            make("consent", T0 + timedelta(minutes=1), attributes={"personalization": False}),
            make("item_view", T0 + timedelta(minutes=2), item_id="m-2"),
        ]
    )
    assert profile.counters == {"item_view": 1}
    assert profile.personalization_allowed is False
    outcome = apply(
        profile,
        make("purchase", T0 + timedelta(minutes=3), item_id="m-3", value=9.0),
        partition=0,
        offset=10,
        rules=RULES,
    )
    assert outcome is Outcome.NOT_CONSENTED
    assert profile.lifetime_value == 0
    # An older opt-in that arrives late does not override the newer opt-out.
    stale = make("consent", T0 - timedelta(days=1), attributes={"personalization": True})
    apply(profile, stale, partition=0, offset=11, rules=RULES)
    assert profile.personalization_allowed is False
    opt_in = make("consent", T0 + timedelta(minutes=5), attributes={"personalization": True})
    apply(profile, opt_in, partition=0, offset=12, rules=RULES)
    apply(
        profile,
        make("item_view", T0 + timedelta(minutes=6), item_id="m-4"),
        partition=0,
        offset=13,
        rules=RULES,
    )
    assert profile.counters == {"item_view": 2}


def test_sessions_follow_the_inactivity_window() -> None:
    chat = [
        make("chat_message", T0 + timedelta(minutes=m), text="hi", attributes=attrs)
        for m, attrs in [
            (0, {"intent": "greeting", "sentiment": 0.5}),
            (10, {"intent": "refund", "sentiment": -1.0}),
        ]
    ]
    profile = run(chat)
    assert profile.session is not None
    first_id = profile.session.id
    assert profile.session.turns == 2
    assert profile.session.last_intent == "refund"
    assert profile.session.sentiment_ewma == pytest.approx(0.3 * -1.0 + 0.7 * 0.5)
    # A late event from well before the session does not move it.
    run([make("page_view", T0 - timedelta(hours=3))], profile, start=2)
    assert profile.session.started_at == T0
    # More than the gap later: a new session.
    run([make("page_view", T0 + timedelta(hours=2))], profile, start=3)
    assert profile.session.id != first_id
    assert profile.session.turns == 0


def test_segments_are_derived_from_state() -> None:
    views = [make("item_view", T0 + timedelta(minutes=i), item_id=f"m-{i}") for i in range(10)]
    assert segments(run(views)) == ["browser"]
    buyer = run([make("purchase", T0, item_id="m-1", value=150.0)])
    assert segments(buyer) == ["buyer", "high_value"]


def test_trending_is_one_decayed_vote_per_user_and_item() -> None:
    now = T0 + timedelta(days=1)
    users = [
        run([make("item_view", now, item_id="m-1", category="drama")]),
        run([make("item_view", now, item_id="m-1", category="drama")] * 1),
        run([make("item_view", now - timedelta(days=1), item_id="m-2", category="comedy")]),
        run([make("click", now, item_id="m-3")]),
    ]
    pool = trending([u.recent_items for u in users], now, timedelta(days=1), limit=10)
    assert pool.as_of == now
    assert [(t.item_id, t.category, t.weight) for t in pool.trends] == [
        ("m-1", "drama", 2.0),
        ("m-3", None, 1.0),
        ("m-2", "comedy", 0.5),
    ]
    assert pool.category_weights() == {"drama": 2.0, "comedy": 0.5}
    assert len(trending([u.recent_items for u in users], now, timedelta(days=1), 1).trends) == 1


def test_a_vote_from_a_clock_ahead_counts_as_cast_now() -> None:
    now = T0 + timedelta(days=1)
    users = [
        run([make("item_view", now + timedelta(days=3), item_id="m-1", category="drama")]),
        run([make("item_view", now, item_id="m-2", category="comedy")]),
    ]
    pool = trending([u.recent_items for u in users], now, timedelta(days=1), limit=10)
    assert pool.as_of == now
    assert [t.weight for t in pool.trends] == [1.0, 1.0]


def stale_pool(half_life: timedelta) -> TrendingPool:
    """Three votes for m-1 (drama), one for m-2 (comedy) a half-life older, one for m-3."""
    at = T0
    users = [run([make("item_view", at, item_id="m-1", category="drama")]) for _ in range(3)]
    users.append(run([make("item_view", at - half_life, item_id="m-2", category="comedy")]))
    users.append(run([make("item_view", at - 2 * half_life, item_id="m-3")]))
    return trending([u.recent_items for u in users], at, half_life, limit=10)


@pytest.mark.parametrize("half_life", [timedelta(hours=1), timedelta(days=1)])
@pytest.mark.parametrize("days", [0, 60, 365])
def test_cold_start_and_trending_keep_their_order_after_any_pause(
    half_life: timedelta, days: int
) -> None:
    """365 days at a 1 h half-life is 2^-8760: below the smallest float, and still in order."""
    pool = stale_pool(half_life)
    later = T0 + timedelta(days=days)
    default = cold_start("new", pool)
    assert default.affinities == {"drama": 1.0, "comedy": pytest.approx(1 / 6, rel=1e-5)}
    assert default.popular_items == ["m-1", "m-2", "m-3"]

    popular = trending_view(pool, later, half_life, category=None, limit=10)
    assert [i.item_id for i in popular.items] == ["m-1", "m-2", "m-3"]
    assert [c.category for c in popular.categories] == ["drama", "comedy"]
    fraction = 0.5 ** (timedelta(days=days) / half_life)  # 0.0 where it underflows
    assert [i.score for i in popular.items] == pytest.approx(
        [3 * fraction, 0.5 * fraction, 0.25 * fraction], rel=1e-5, abs=0
    )


def test_with_nothing_trending_the_cold_start_default_is_plain() -> None:
    default = cold_start("new", TrendingPool())
    assert (default.known, default.affinities, default.popular_items) == (False, {}, [])
    assert trending([], T0, timedelta(days=1), limit=10) == TrendingPool()
    empty = trending_view(TrendingPool(), T0, timedelta(days=1), category=None, limit=10)
    assert (empty.items, empty.categories) == ([], [])


def test_cold_start_survives_category_weights_that_underflowed() -> None:
    """The newest vote has no category; the categorised ones are 2,000 half-lives older."""
    half_life = timedelta(hours=1)
    users = [
        run([make("click", T0, item_id="m-new")]),
        run([make("item_view", T0 - 2000 * half_life, item_id="m-old", category="drama")]),
    ]
    pool = trending([u.recent_items for u in users], T0, half_life, limit=10)
    assert pool.category_weights() == {"drama": 0.0}
    default = cold_start("new", pool)
    assert default.affinities == {}
    assert default.popular_items == ["m-new", "m-old"]


def test_affinities_keep_their_order_below_the_smallest_float() -> None:
    profile = run(
        [
            make("item_view", T0, item_id="m-1", category="comedy"),
            make("purchase", T0, item_id="m-2", category="drama", value=1.0),
        ]
    )
    for days in (60, 365):
        decayed = affinities_at(profile, T0 + timedelta(days=days), RULES)
        assert list(decayed) == ["drama", "comedy"]
        assert decayed["drama"] == pytest.approx(5 * 0.5 ** (days / 7), rel=1e-9, abs=0)
        assert decayed["drama"] > 0
    hourly = Rules(half_life=timedelta(hours=1))
    underflowed = affinities_at(profile, T0 + timedelta(days=365), hourly)
    assert underflowed == {"drama": 0.0, "comedy": 0.0}
    assert list(underflowed) == ["drama", "comedy"]


def test_feedback_on_a_bandit_arm_counts_once_and_sums_per_policy() -> None:
    arm = {"policy": "explore_slot", "arm": "trending"}
    good = make("feedback", T0, rating=5, item_id="m-1", attributes=arm)
    events = [
        good,
        make("feedback", T0, rating=2, item_id="m-2", attributes=arm),
        make("feedback", T0, rating=4, attributes={"policy": "tone", "arm": "concise"}),
        make("feedback", T0, rating=5),  # names no arm: not bandit evidence
        make("feedback", T0, rating=5, attributes={"policy": "a/b", "arm": "x"}),
    ]
    profile = run(events)
    assert apply(profile, good, partition=0, offset=99, rules=RULES) is Outcome.DUPLICATE
    assert profile.feedback == {
        "explore_slot/trending": ArmFeedback(successes=1, failures=1),
        "tone/concise": ArmFeedback(successes=1, failures=0),
    }
    other = run([make("feedback", T0, rating=1, attributes=arm)])
    totals = arm_totals([profile.feedback, other.feedback], "explore_slot")
    assert totals == {"trending": ArmFeedback(successes=1, failures=2)}


def test_feedback_arms_per_profile_are_bounded() -> None:
    events = [
        make("feedback", T0, rating=5, attributes={"policy": "p", "arm": f"arm-{i}"})
        for i in range(MAX_FEEDBACK_ARMS + 5)
    ]
    assert len(run(events).feedback) == MAX_FEEDBACK_ARMS


def test_a_profile_stored_with_a_retired_field_still_loads() -> None:
    profile = Profile(tenant="acme", user_id="u1", lifetime_value=3.0)
    stored = to_document(profile) | {"cluster_id": None}  # as written before API 2.0.0
    assert from_document(stored) == profile
    with pytest.raises(ValidationError, match="not_a_field"):
        from_document(to_document(profile) | {"not_a_field": 1})
