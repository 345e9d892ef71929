"""What the API answers, derived from the state (the models are rapport.common.contracts')."""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

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
from rapport.common.scores import normalised, significant
from rapport.profile.domain.memory import MemoryRules, fact_views, remembered_within
from rapport.profile.domain.state import Affinity, ArmFeedback, Profile, Rules
from rapport.profile.domain.trending import TrendingPool

COLD_START_TOP = 10  # categories and items a cold-start default carries


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


class ConsentChange(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # no coercion: the document's types only

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
            **_memory_view(profile, now, rules.memory),
        }
    )
