"""PerTurn: calls made in one event-loop turn share one flush."""

from __future__ import annotations

import asyncio

import pytest

from rapport.ingest.adapters.dedup import PerTurn

pytestmark = pytest.mark.unit


async def test_calls_in_one_turn_share_one_flush_and_each_gets_its_own_result() -> None:
    flushed: list[list[int]] = []

    async def double(items: list[int]) -> list[int]:
        flushed.append(items)
        return [2 * item for item in items]

    per_turn = PerTurn(double)
    assert await asyncio.gather(*(per_turn(i) for i in range(5))) == [0, 2, 4, 6, 8]
    assert flushed == [[0, 1, 2, 3, 4]]
    assert await per_turn(7) == 14  # a later turn: a flush of its own
    assert flushed[-1] == [7]


async def test_a_failed_flush_fails_every_caller_of_that_turn_only() -> None:
    async def refuse(items: list[int]) -> list[int]:
        if 0 in items:
            raise ConnectionError("redis went away")
        return items

    per_turn = PerTurn(refuse)
    results = await asyncio.gather(per_turn(0), per_turn(1), return_exceptions=True)
    assert [type(r) for r in results] == [ConnectionError, ConnectionError]
    assert await per_turn(2) == 2


async def test_a_caller_that_gives_up_does_not_break_the_others() -> None:
    release = asyncio.Event()

    async def slow(items: list[int]) -> list[int]:
        await release.wait()
        return items

    per_turn = PerTurn(slow)
    first = asyncio.ensure_future(per_turn(1))
    second = asyncio.ensure_future(per_turn(2))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    first.cancel()
    release.set()
    assert await second == 2
    assert first.cancelled()
