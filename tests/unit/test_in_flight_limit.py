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
