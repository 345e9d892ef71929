"""The admission limit respond and recommend shed load with."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Gauge

from rapport.common.limits import InFlightLimit

pytestmark = pytest.mark.unit


def test_past_the_limit_callers_are_turned_away_and_a_leaver_frees_a_place() -> None:
    limit = InFlightLimit(2)
    with limit.admit() as first, limit.admit() as second:
        assert (first, second) == (True, True)
        with limit.admit() as third:
            assert third is False
            assert limit.inside == 2, "a caller turned away does not count"
    with limit.admit() as again:
        assert again is True
    assert limit.inside == 0


def test_a_failure_inside_still_frees_the_place() -> None:
    limit = InFlightLimit(1)
    with pytest.raises(RuntimeError), limit.admit():
        raise RuntimeError("dependency failed")
    assert limit.inside == 0


def test_the_gauge_reports_how_many_are_inside() -> None:
    registry = CollectorRegistry()
    gauge = Gauge("t_in_flight", "inside", registry=registry)
    limit = InFlightLimit(3, gauge)
    with limit.admit(), limit.admit():
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


def test_admitting_feeds_the_latency_back_and_the_gauge_shows_the_limit() -> None:
    clock = Clock()
    registry = CollectorRegistry()
    gauge = Gauge("t_limit", "limit", registry=registry)
    limit = InFlightLimit(10, target_s=0.04, clock=clock, limit_gauge=gauge)
    with limit.admit() as admitted:
        assert admitted
        clock.now += 0.5  # a slow dependency
    assert registry.get_sample_value("t_limit") == 9

    def late_failure() -> None:
        with limit.admit():
            clock.now += 0.5
            raise RuntimeError("a failure that was late too")

    with pytest.raises(RuntimeError):
        late_failure()
    assert registry.get_sample_value("t_limit") == 8
