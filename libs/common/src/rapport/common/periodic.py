"""Background work repeated on an interval, from a service's lifespan."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


async def run_every(
    interval_s: float,
    work: Callable[[], Awaitable[None]],
    *,
    failure: str,
    wait_first: bool = False,
) -> None:
    """Await ``work`` every ``interval_s`` until cancelled. A failure is logged as
    ``failure`` and the next round tries again: a store that is away must not end the
    loop. ``wait_first``: the first round comes after one interval, not at once."""
    if wait_first:
        await asyncio.sleep(interval_s)
    while True:
        try:
            await work()
        except Exception as exc:
            log.warning(failure, extra={"error": str(exc)[:200]})
        await asyncio.sleep(interval_s)
