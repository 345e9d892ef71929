"""Redis as a cache of per-tenant aggregates: the trending pool and the feedback counts.

Both are computed from every profile of a tenant in MongoDB, so they are computed at
most once per ``ttl_s`` (``AGGREGATE_TTL_S``) and kept here. Redis is only a cache:
when it does not answer, or holds what another version wrote, the aggregate is
computed again.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from pydantic import BaseModel, ValidationError
from redis.asyncio import Redis

from rapport.common.cache import REDIS_ERRORS

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)

# How stale a tenant's trending pool or feedback counts may be.
AGGREGATE_TTL_S = 30


def trending_key(tenant: str) -> str:
    """Length-prefixed: tenants may contain ':'."""
    return f"trending:{len(tenant)}:{tenant}"


def feedback_key(tenant: str, policy: str) -> str:
    return f"feedback:{len(tenant)}:{tenant}:{policy}"


def experiment_key(tenant: str, name: str) -> str:
    return f"experiment:{len(tenant)}:{tenant}:{name}"


class AggregateCache:
    def __init__(self, redis: Redis, *, ttl_s: int = AGGREGATE_TTL_S) -> None:
        self.redis = redis
        self.ttl_s = ttl_s

    async def get_or_compute(
        self,
        key: str,
        model: type[M],
        compute: Callable[[], Awaitable[M]],
        *,
        ttl_s: int | None = None,
    ) -> M:
        cached = None
        with contextlib.suppress(*REDIS_ERRORS):
            cached = await self.redis.get(key)
        if cached is not None:
            try:
                return model.model_validate_json(cached)
            except ValidationError:  # written by another version: compute it again
                log.warning("cached aggregate unreadable: recomputed", extra={"key": key})
        value = await compute()
        with contextlib.suppress(*REDIS_ERRORS):
            await self.redis.set(key, value.model_dump_json(), ex=ttl_s or self.ttl_s)
        return value

    async def forget(self, keys: list[str]) -> None:
        """Best effort: a key left behind is at most its TTL old."""
        if keys:
            with contextlib.suppress(*REDIS_ERRORS):
                await self.redis.delete(*keys)
