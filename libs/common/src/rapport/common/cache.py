"""Redis through ``redis.asyncio`` (hiredis parses replies when installed).

Redis is a cache here: it may vanish at any time, so timeouts are short and
callers fall back to the source of truth on any :data:`REDIS_ERRORS`.
"""

from __future__ import annotations

from redis.asyncio import Redis
from redis.exceptions import RedisError

from rapport.common.settings import RedisSettings

# Any failure of the cache is a miss. RuntimeError: uvloop's, for a write on a transport
# the peer reset (redis-py lets it through; found by the chaos matrix's row 6).
REDIS_ERRORS: tuple[type[Exception], ...] = (RedisError, OSError, RuntimeError)


def create_redis(settings: RedisSettings, *, client_name: str) -> Redis:
    timeout_s = settings.redis_timeout_ms / 1000
    return Redis.from_url(
        settings.redis_url.get_secret_value(),
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        health_check_interval=30,
        client_name=client_name,
        decode_responses=False,
    )


async def ping_redis(client: Redis) -> None:
    await client.ping()
