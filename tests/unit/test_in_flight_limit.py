"""The admission limit respond and recommend shed load with (and queue for, briefly)."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry, Gauge

from rapport.common.limits import InFlightLimit

pytestmark = pytest.mark.unit


async def test_past_the_limit_callers_are_turned_away_and_a_leaver_frees_a_place() -> None:
    limit = InFlightLimit(2)
    async with limit.wait_for_place(0) as first, limit.wait_for_place(0) as second:
        assert (first.admitted, second.admitted) == (True, True)
        async with limit.wait_for_place(0) as third:
            assert third.admitted is False
            assert limit.inside == 2, "a caller turned away does not count"
    async with limit.wait_for_place(0) as again:
        assert again.admitted is True
    assert limit.inside == 0


async def test_a_failure_inside_still_frees_the_place() -> None:
    limit = InFlightLimit(1)
    with pytest.raises(RuntimeError):
        async with limit.wait_for_place(0):
            raise RuntimeError("dependency failed")
    assert limit.inside == 0


async def test_the_gauge_reports_how_many_are_inside() -> None:
    registry = CollectorRegistry()
    gauge = Gauge("t_in_flight", "inside", registry=registry)
    limit = InFlightLimit(3, gauge)
    async with limit.wait_for_place(0), limit.wait_for_place(0):
        assert registry.get_sample_value("t_in_flight") == 2
    assert registry.get_sample_value("t_in_flight") == 0


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_static_limit_never_moves() -> None:
    limit = InFlightLimit(4)
    for _ in range(50):
        limit.observe(10.0, in_use=4)
        limit.overloaded()
    assert limit.limit == 4


def test_late_calls_lower_the_limit_once_per_target_window_down_to_the_floor() -> None:
    clock = Clock()
    limit = InFlightLimit(20, target_s=0.04, floor=2, clock=clock)
    for _ in range(5):  # five late answers at the same moment: one signal
        limit.observe(0.1, in_use=20)
    assert limit.limit == pytest.approx(18)
    clock.now += 0.04
    limit.observe(0.1, in_use=18)
    assert limit.limit == pytest.approx(16.2)
    for _ in range(200):
        clock.now += 0.04
        limit.overloaded()
    assert limit.limit == 2, "never below the floor"


def test_fast_calls_raise_the_limit_only_while_it_is_in_use_and_never_past_the_start() -> None:
    clock = Clock()
    limit = InFlightLimit(16, target_s=0.04, clock=clock)
    limit.overloaded()
    assert int(limit.limit) == 14
    for _ in range(100):  # fast, but one caller of fourteen places: no evidence more would do
        limit.observe(0.001, in_use=1)
    assert int(limit.limit) == 14
    for _ in range(30):  # about one place per limit's worth of fast, busy calls
        limit.observe(0.001, in_use=14)
    assert int(limit.limit) == 16
    for _ in range(1000):
        limit.observe(0.001, in_use=16)
    assert limit.limit == 16


async def test_admitting_feeds_the_latency_back_and_the_gauge_shows_the_limit() -> None:
    clock = Clock()
    registry = CollectorRegistry()
    gauge = Gauge("t_limit", "limit", registry=registry)
    limit = InFlightLimit(10, target_s=0.04, clock=clock, limit_gauge=gauge)
    async with limit.wait_for_place(0) as ticket:
        assert ticket.admitted
        clock.now += 0.5  # a slow dependency
    assert registry.get_sample_value("t_limit") == 9

    async def late_failure() -> None:
        async with limit.wait_for_place(0):
            clock.now += 0.5
            raise RuntimeError("a failure that was late too")

    with pytest.raises(RuntimeError):
        await late_failure()
    assert registry.get_sample_value("t_limit") == 8


async def test_a_caller_waits_for_a_place_and_gets_the_one_a_leaver_frees() -> None:
    limit = InFlightLimit(1)
    inside = asyncio.Event()
    leave = asyncio.Event()

    async def first() -> None:
        async with limit.wait_for_place(0.0) as ticket:
            assert ticket.admitted
            inside.set()
            await leave.wait()

    holder = asyncio.create_task(first())
    await inside.wait()
    waiting = asyncio.create_task(_enter(limit, 1.0))
    await asyncio.sleep(0.01)
    assert (len(limit.waiters), limit.inside) == (1, 1)
    leave.set()
    assert await waiting == (True, 1), "the place passed on: still one inside, now the waiter"
    await holder
    assert (limit.inside, len(limit.waiters)) == (0, 0)


async def _enter(limit: InFlightLimit, wait_s: float) -> tuple[bool, int]:
    async with limit.wait_for_place(wait_s) as ticket:
        return ticket.admitted, limit.inside


async def test_a_caller_that_waits_too_long_is_shed_and_counts_nowhere() -> None:
    limit = InFlightLimit(1)
    async with limit.wait_for_place(0.0) as ticket:
        assert ticket.admitted
        admitted, _ = await _enter(limit, 0.02)
        assert admitted is False
        assert (limit.inside, len(limit.waiters)) == (1, 0)
    assert limit.inside == 0


async def test_a_short_queue_is_first_in_first_out_and_a_stale_one_serves_the_newest() -> None:
    clock = Clock()
    limit = InFlightLimit(1, lifo_after_s=0.005, clock=clock)
    order: list[str] = []

    async def waiter(name: str) -> None:
        async with limit.wait_for_place(10.0) as ticket:
            assert ticket.admitted
            order.append(name)

    for congested in (False, True):
        order.clear()
        async with limit.wait_for_place(0.0):
            tasks = []
            for name in ("a", "b", "c"):
                tasks.append(asyncio.create_task(waiter(name)))
                await asyncio.sleep(0)
            if congested:
                clock.now += 0.01  # the oldest has waited past lifo_after_s
        await asyncio.gather(*tasks)
        assert order == (["c", "b", "a"] if congested else ["a", "b", "c"])
    assert limit.inside == 0


async def test_a_cancelled_waiter_gives_back_a_place_it_was_handed() -> None:
    limit = InFlightLimit(1)
    async with limit.wait_for_place(0.0):
        waiting = asyncio.create_task(_enter(limit, 1.0))
        await asyncio.sleep(0.01)
    # The place was handed over; cancel the waiter before it runs.
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert limit.inside == 0, "the place went back"


async def test_slowness_that_is_not_evidence_does_not_lower_the_limit() -> None:
    clock = Clock()
    limit = InFlightLimit(10, target_s=0.04, clock=clock)
    async with limit.wait_for_place(0.0) as ticket:
        clock.now += 0.5  # a dependency timed out: its slowness, not ours
        ticket.evidence = False
    assert limit.limit == 10
    async with limit.wait_for_place(0.0):
        clock.now += 0.5
    assert limit.limit == 9
