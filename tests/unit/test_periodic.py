"""run_every: background work on an interval that a failure does not end."""

from __future__ import annotations

import asyncio
import logging

import pytest

from rapport.common.periodic import run_every

pytestmark = pytest.mark.unit


async def test_a_failed_round_is_logged_and_the_next_one_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rounds: list[int] = []
    third = asyncio.Event()

    async def work() -> None:
        rounds.append(len(rounds))
        if len(rounds) == 1:
            raise ConnectionError("the store is away")
        if len(rounds) == 3:
            third.set()

    with caplog.at_level(logging.WARNING, logger="rapport.common.periodic"):
        loop = asyncio.create_task(run_every(0.001, work, failure="work not done"))
        await asyncio.wait_for(third.wait(), 5)
        loop.cancel()
    assert rounds[:3] == [0, 1, 2]
    (failed,) = [r for r in caplog.records if r.getMessage() == "work not done"]
    assert failed.error == "the store is away"  # type: ignore[attr-defined]


@pytest.mark.parametrize(("wait_first", "rounds_at_once"), [(False, 1), (True, 0)])
async def test_the_first_round_comes_at_once_unless_asked_to_wait(
    wait_first: bool, rounds_at_once: int
) -> None:
    rounds: list[None] = []

    async def work() -> None:
        rounds.append(None)

    loop = asyncio.create_task(run_every(60, work, failure="-", wait_first=wait_first))
    for _ in range(5):  # let the task run until it sleeps
        await asyncio.sleep(0)
    loop.cancel()
    assert len(rounds) == rounds_at_once
