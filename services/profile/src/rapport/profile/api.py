"""Profile reads, consent and erasure. The tenant always comes from the API key."""

from __future__ import annotations

import contextlib
import logging
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from aiokafka import AIOKafkaProducer
from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from redis.asyncio import Redis
from uuid_utils.compat import uuid7

from rapport.common.app import state_dependency
from rapport.common.auth import SCOPE_PROFILES_READ, SCOPE_PROFILES_WRITE, ApiKey, require_scope
from rapport.common.cache import REDIS_ERRORS
from rapport.common.clock import Clock, utc_now
from rapport.common.events import (
    NO_SPACE_OR_CONTROL,
    ConsentAttributes,
    ConsentEventIn,
    encode_for_topic,
)
from rapport.common.problems import problem_responses
from rapport.common.scores import normalised, significant
from rapport.profile.domain import (
    Profile,
    Rules,
    Session,
    TrendingPool,
    affinities_at,
    arm_totals,
    segments,
    trending,
)
from rapport.profile.processor import SCHEMA_HEADER, cache_key
from rapport.profile.store import ProfileStore, profile_id

log = logging.getLogger(__name__)

TRENDING_CACHE_S = 30
TRENDING_POOL = 500  # items kept per tenant; filters and limits apply to these
COLD_START_TOP = 10  # categories and items a cold-start default carries

UserId = Annotated[str, Path(min_length=1, max_length=128, pattern=NO_SPACE_OR_CONTROL)]


class ConsentView(BaseModel):
    personalization: bool
    updated_at: datetime | None = None


class ProfileView(BaseModel):
    """What is known about a user now; ``known`` is false for a cold-start default."""

    user_id: str
    known: bool
    version: int
    source: Literal["cache", "store", "default"]
    updated_at: datetime | None = None
    consent: ConsentView
    withheld: bool = Field(
        False,
        description="True when the user opted out of personalization: what is stored about "
        "them (until an erasure) is not served, only their consent and version.",
    )
    counters: dict[str, int] = Field(default_factory=dict)
    affinities: dict[str, float] = Field(
        default_factory=dict, description="Category scores decayed to now, strongest first."
    )
    recent_items: list[str] = Field(default_factory=list)
    recent_searches: list[str] = Field(default_factory=list)
    session: Session | None = None
    preferences: dict[str, Any] = Field(default_factory=dict)
    lifetime_value: float = 0.0
    segments: list[str] = Field(default_factory=list)
    cluster_id: int | None = None
    popular_items: list[str] = Field(
        default_factory=list, description="For a cold-start default: what is trending now."
    )


class TrendingItem(BaseModel):
    item_id: str
    category: str | None
    score: float


class TrendingCategory(BaseModel):
    category: str
    score: float


class TrendingView(BaseModel):
    """Decayed popularity: one vote per user and recently seen item."""

    items: list[TrendingItem]
    categories: list[TrendingCategory]


class ArmCounts(BaseModel):
    successes: int
    failures: int


class FeedbackCounts(BaseModel):
    """Explicit feedback per bandit arm, summed over the tenant's profiles."""

    policy: str
    arms: dict[str, ArmCounts]


class ConsentChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    personalization: bool


class ConsentAccepted(BaseModel):
    user_id: str
    personalization: bool
    event_id: str


def trending_cache_key(tenant: str) -> str:
    """Where a tenant's trending pool is cached (length-prefixed: tenants may contain ':')."""
    return f"trending:{len(tenant)}:{tenant}"


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
            "session": profile.session,
            "preferences": {key: stamped.value for key, stamped in profile.preferences.items()},
            "lifetime_value": profile.lifetime_value,
            "segments": segments(profile),
            "cluster_id": profile.cluster_id,
        }
    )


class ProfileService:
    def __init__(
        self,
        *,
        store: ProfileStore,
        redis: Redis,
        producer: AIOKafkaProducer,
        rules: Rules,
        events_topic: str,
        changes_topic: str,
        cache_ttl_s: int,
        trending_half_life: timedelta = timedelta(hours=24),
        clock: Clock = utc_now,
    ) -> None:
        self.store = store
        self.redis = redis
        self.producer = producer
        self.rules = rules
        self.events_topic = events_topic
        self.changes_topic = changes_topic
        self.cache_ttl_s = cache_ttl_s
        self.trending_half_life = trending_half_life
        self.clock = clock

    async def read(self, tenant: str, user_id: str) -> ProfileView:
        """Redis first; on a miss (or no Redis) MongoDB, then backfill the cache."""
        pid = profile_id(tenant, user_id)
        try:
            cached = await self.redis.get(cache_key(pid))
        except REDIS_ERRORS:
            cached = None
            log.warning("redis unavailable: profile read from MongoDB")
        if cached is not None:
            hot = Profile.model_validate_json(cached)
            return view(hot, user_id, "cache", self.rules, self.clock())
        profile = (await self.store.load([pid])).get(pid)
        if profile is None:
            return cold_start(user_id, await self.trending_pool(tenant))
        with contextlib.suppress(*REDIS_ERRORS):  # the cache may vanish; MongoDB answered
            await self.redis.set(cache_key(pid), profile.model_dump_json(), ex=self.cache_ttl_s)
        return view(profile, user_id, "store", self.rules, self.clock())

    async def trending(
        self, tenant: str, category: str | None = None, limit: int = 20
    ) -> TrendingView:
        pool = await self.trending_pool(tenant)
        return trending_view(pool, self.clock(), self.trending_half_life, category, limit)

    async def trending_pool(self, tenant: str) -> TrendingPool:
        """Computed from the tenant's profiles at most every TRENDING_CACHE_S, then cached."""
        key = trending_cache_key(tenant)
        cached = None
        with contextlib.suppress(*REDIS_ERRORS):
            cached = await self.redis.get(key)
        if cached is not None:
            try:
                return TrendingPool.model_validate_json(cached)
            except ValidationError:  # written by another version: recompute it
                log.warning("cached trending pool unreadable: recomputed")
        recent = await self.store.recent_items(tenant)
        pool = trending(recent, self.clock(), self.trending_half_life, TRENDING_POOL)
        with contextlib.suppress(*REDIS_ERRORS):
            await self.redis.set(key, pool.model_dump_json(), ex=TRENDING_CACHE_S)
        return pool

    async def feedback_counts(self, tenant: str, policy: str) -> FeedbackCounts:
        """Summed from the tenant's profiles at most every TRENDING_CACHE_S, like trending."""
        key = f"feedback:{len(tenant)}:{tenant}:{policy}"
        cached = None
        with contextlib.suppress(*REDIS_ERRORS):
            cached = await self.redis.get(key)
        if cached is not None:
            return FeedbackCounts.model_validate_json(cached)
        totals = arm_totals(await self.store.feedback(tenant), policy)
        counts = FeedbackCounts(
            policy=policy,
            arms={arm: ArmCounts(**c.model_dump()) for arm, c in sorted(totals.items())},
        )
        with contextlib.suppress(*REDIS_ERRORS):
            await self.redis.set(key, counts.model_dump_json(), ex=TRENDING_CACHE_S)
        return counts

    async def change_consent(self, tenant: str, user_id: str, allowed: bool) -> ConsentAccepted:
        """A consent event on the user's partition, so it is ordered with their activity."""
        now = self.clock()
        event_id = uuid7()
        submitted = ConsentEventIn(
            type="consent",
            user_id=user_id,
            occurred_at=now,
            source="profile-api",
            attributes=ConsentAttributes(personalization=allowed),
        )
        value = encode_for_topic(submitted, event_id=event_id, received_at=now, tenant=tenant)
        await self.producer.send_and_wait(
            self.events_topic,
            key=user_id.encode(),
            value=value,
            headers=[(SCHEMA_HEADER, b"event.v1")],
        )
        return ConsentAccepted(user_id=user_id, personalization=allowed, event_id=str(event_id))

    async def erase(self, tenant: str, user_id: str) -> None:
        """Marker first (so nothing in flight can bring the user back), then every copy."""
        pid = profile_id(tenant, user_id)
        await self.store.erase(pid, self.clock())
        try:
            await self.redis.delete(cache_key(pid))
        except REDIS_ERRORS:
            log.warning("redis unavailable: cached profile expires by its TTL")
        await self.producer.send_and_wait(self.changes_topic, key=pid.encode(), value=None)


Reader = Annotated[ApiKey, Depends(require_scope(SCOPE_PROFILES_READ))]
Writer = Annotated[ApiKey, Depends(require_scope(SCOPE_PROFILES_WRITE))]
Service = Annotated[ProfileService, Depends(state_dependency("profiles", ProfileService))]

router = APIRouter(tags=["profiles"])


@router.get(
    "/v1/profiles/{user_id}",
    response_model=ProfileView,
    summary="What is known about a user now",
    responses=problem_responses(401, 403, 422),
)
async def get_profile(user_id: UserId, caller: Reader, service: Service) -> ProfileView:
    return await service.read(caller.tenant, user_id)


@router.get(
    "/v1/trending",
    response_model=TrendingView,
    summary="What is popular now, overall and by category",
    description="One vote per user for each item in their recent items, decayed by age. "
    "Recomputed from the profiles at most every 30 s.",
    responses=problem_responses(401, 403, 422),
)
async def get_trending(
    caller: Reader,
    service: Service,
    category: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> TrendingView:
    return await service.trending(caller.tenant, category, limit)


@router.get(
    "/v1/feedback/arms",
    response_model=FeedbackCounts,
    summary="Feedback counts per exploration arm (the bandit's evidence)",
    description="`feedback` events whose `attributes` name a `policy` and an `arm` count as a "
    "success when `rating` >= 4, else a failure; each event once. Summed over the tenant's "
    "profiles at most every 30 s.",
    responses=problem_responses(401, 403, 422),
)
async def get_feedback_arms(
    caller: Reader,
    service: Service,
    policy: Annotated[str, Query(min_length=1, max_length=64, pattern=r"^[^/\s]+$")],
) -> FeedbackCounts:
    return await service.feedback_counts(caller.tenant, policy)


@router.put(
    "/v1/profiles/{user_id}/consent",
    status_code=202,
    response_model=ConsentAccepted,
    summary="Opt in or out of personalization",
    description="Recorded as a `consent` event, ordered with the user's activity. After an "
    "opt-out only consent changes are applied to the profile.",
    responses=problem_responses(401, 403, 422),
)
async def put_consent(
    user_id: UserId, body: ConsentChange, caller: Writer, service: Service
) -> ConsentAccepted:
    return await service.change_consent(caller.tenant, user_id, body.personalization)


@router.delete(
    "/v1/profiles/{user_id}",
    status_code=204,
    summary="Erase a user everywhere",
    description="Removes the profile from MongoDB and Redis, publishes a tombstone on "
    "`rapport.profile-changes.v1`, and keeps an erasure marker so a replay of the user's "
    "older events never brings the profile back. Idempotent.",
    responses=problem_responses(401, 403, 422),
)
async def delete_profile(user_id: UserId, caller: Writer, service: Service) -> Response:
    await service.erase(caller.tenant, user_id)
    return Response(status_code=204)
