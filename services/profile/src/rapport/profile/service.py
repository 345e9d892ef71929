"""Profile reads, trending, bandit feedback, consent and erasure: one method per operation.

The tenant always comes from the caller's API key (the routes pass it in).
"""

from __future__ import annotations

import contextlib
import logging
from datetime import timedelta

from aiokafka import AIOKafkaProducer
from pydantic import ValidationError
from redis.asyncio import Redis
from uuid_utils.compat import uuid7

from rapport.common.cache import REDIS_ERRORS
from rapport.common.clock import Clock, utc_now
from rapport.common.contracts import ArmCounts, FeedbackCounts, ProfileView, TrendingView
from rapport.common.events import SCHEMA_HEADER, ConsentAttributes, ConsentEventIn, encode_for_topic
from rapport.profile.adapters.store import (
    ProfileStore,
    cache_key,
    profile_id,
    trending_cache_key,
)
from rapport.profile.domain import (
    ConsentAccepted,
    Profile,
    Rules,
    TrendingPool,
    arm_totals,
    cold_start,
    trending,
    trending_view,
    view,
)

log = logging.getLogger(__name__)

TRENDING_CACHE_S = 30
TRENDING_POOL = 500  # items kept per tenant; filters and limits apply to these


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
            headers=[SCHEMA_HEADER],
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
