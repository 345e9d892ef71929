"""Redis through ``redis.asyncio`` (hiredis parses replies when installed).

Redis is a cache here: it may vanish at any time, so timeouts are short and
callers fall back to the source of truth on any :data:`REDIS_ERRORS`.
"""

from __future__ import annotations

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from rapport.common.settings import RedisSettings

REDIS_ERRORS: tuple[type[Exception], ...] = (RedisConnectionError, RedisTimeoutError, OSError)


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
