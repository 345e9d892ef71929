"""bench/knowledge.py's pure part: a quantile from two scrapes of a histogram."""

from __future__ import annotations

import math

import pytest

from bench.knowledge import bucket_quantile

pytestmark = pytest.mark.unit

INF = float("inf")


def test_a_quantile_interpolates_inside_its_bucket_between_two_scrapes() -> None:
    before = {0.01: 5.0, 0.025: 5.0, 0.05: 5.0, 0.1: 5.0, INF: 5.0}  # older observations
    after = {0.01: 15.0, 0.025: 55.0, 0.05: 95.0, 0.1: 105.0, INF: 105.0}
    assert bucket_quantile(before, after, 0.5) == 25.0
    assert bucket_quantile(before, after, 0.99) == 95.0
    assert bucket_quantile(before, after, 0.05) == 5.0


def test_no_new_observation_has_no_quantile_and_the_top_bucket_gives_its_floor() -> None:
    same = {0.1: 3.0, INF: 3.0}
    assert math.isnan(bucket_quantile(same, same, 0.5))
    assert bucket_quantile({}, {0.1: 1.0, INF: 4.0}, 0.99) == 100.0
