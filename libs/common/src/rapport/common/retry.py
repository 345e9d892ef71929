"""Retry policies (tenacity), for idempotent calls only.

A retried call may run twice. Use these for reads, pings, upserts keyed by an
id, and produces whose duplicates are absorbed by event ids; never for
``$inc`` without a guard, or anything else that is not safe to repeat.
"""

from __future__ import annotations

import asyncio

import aiohttp
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError
from pymongo.errors import AutoReconnect, NetworkTimeout
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    ConnectionError,
    asyncio.TimeoutError,
    aiohttp.ClientConnectionError,
    KafkaConnectionError,
    KafkaTimeoutError,
    AutoReconnect,
    NetworkTimeout,
    RedisConnectionError,
    RedisTimeoutError,
)


def idempotent_retry(
    *,
    attempts: int = 3,
    max_delay_s: float = 2.0,
    initial_wait_s: float = 0.02,
    max_wait_s: float = 0.5,
    retry_on: tuple[type[BaseException], ...] = TRANSIENT_ERRORS,
) -> AsyncRetrying:
    """Full-jitter exponential backoff, bounded in attempts and total time.

    Usage::

        async for attempt in idempotent_retry():
            with attempt:
                await client.get(...)
    """
    return AsyncRetrying(
        stop=stop_after_attempt(attempts) | stop_after_delay(max_delay_s),
        wait=wait_random_exponential(multiplier=initial_wait_s, max=max_wait_s),
        retry=retry_if_exception_type(retry_on),
        reraise=True,
    )


# A pooled keep-alive connection that the server (or a restarted pod) closed as
# the request went out: disconnected before an answer, or reset while writing
# (aiohttp reports a failed body write as ClientOSError).
STALE_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    aiohttp.ServerDisconnectedError,
    aiohttp.ClientConnectionResetError,
    aiohttp.ClientOSError,
)


def stale_connection_retry() -> AsyncRetrying:
    """An immediate second attempt, on a fresh connection, after a stale pooled one.

    For side-effect-free POSTs on a hot path (aiohttp already does this for
    idempotent methods): no backoff (the caller's deadline bounds both
    attempts), and no retry of timeouts or HTTP errors.
    """
    return AsyncRetrying(
        stop=stop_after_attempt(2),
        retry=retry_if_exception_type(STALE_CONNECTION_ERRORS),
        reraise=True,
    )
