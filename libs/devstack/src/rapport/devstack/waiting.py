"""Polling for a condition that other processes make true, for tests and the harnesses."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable


async def wait_until(
    check: Callable[[], Awaitable[bool]],
    timeout_s: float,
    *,
    interval_s: float = 0.1,
    retry_on: tuple[type[BaseException], ...] = (),
) -> float | None:
    """Seconds until ``check`` holds, or None if it never did within ``timeout_s``.

    Exceptions in ``retry_on`` count as "not yet" (a server mid-restart).
    """
    started = time.monotonic()
    while True:
        with contextlib.suppress(*retry_on):
            if await check():
                return time.monotonic() - started
        if time.monotonic() - started >= timeout_s:
            return None
        await asyncio.sleep(interval_s)


async def eventually(
    check: Callable[[], Awaitable[bool]], timeout_s: float = 30, *, interval_s: float = 0.1
) -> float:
    """Like :func:`wait_until`, but a timeout fails the test that waits."""
    waited = await wait_until(check, timeout_s, interval_s=interval_s)
    if waited is None:
        raise AssertionError(f"condition not reached in {timeout_s:g} s")
    return waited
