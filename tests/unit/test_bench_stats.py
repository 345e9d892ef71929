"""The benches' shared helpers: the one percentile, the histogram quantile, the stopwatch,
bounded options."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from bench.options import bounded, parser
from bench.stats import Stopwatch, histogram_quantile_ms, percentile, percentiles

pytestmark = pytest.mark.unit

INF = float("inf")


# ---- percentile: linear between the two closest ranks (numpy's default) ---------------


def test_a_percentile_interpolates_between_the_closest_ranks_as_numpy_does() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.5
    assert percentile(values, 99) == pytest.approx(99.01)
    assert percentile([3.0, 1.0, 2.0], 100) == 3.0
    assert percentile([7.0], 99) == 7.0
    rng = np.random.default_rng(3)
    sample = rng.exponential(10.0, 997).tolist()
    for q in (0, 25, 50, 90, 99, 99.9, 100):
        assert percentile(sample, q) == float(np.percentile(sample, q))


def test_a_percentile_of_nothing_is_nan_and_rounds_when_asked() -> None:
    assert math.isnan(percentile([], 50))
    assert percentile([1.0, 2.0], 50, digits=0) == 2.0  # 1.5 rounds to even
    assert percentile(np.array([0.123456]), 99, digits=3) == 0.123


def test_percentiles_name_each_figure_and_scale_round_and_add_the_largest() -> None:
    seconds = [0.010, 0.020, 0.030, 0.040]
    assert percentiles(seconds, scale=1000, maximum=True) == {
        "p50_ms": 25.0,
        "p99_ms": 39.7,
        "max_ms": 40.0,
    }
    assert percentiles([1.0, 2.0], (50, 90), prefix="complete_") == {
        "complete_p50_ms": 1.5,
        "complete_p90_ms": 1.9,
    }
    assert percentiles([5.0], (50,), suffix="") == {"p50": 5.0}


def test_percentiles_of_nothing_are_none_for_json() -> None:
    assert percentiles([], (50, 99), maximum=True) == {
        "p50_ms": None,
        "p99_ms": None,
        "max_ms": None,
    }


# ---- Prometheus' histogram_quantile -------------------------------------------------------


def test_a_quantile_interpolates_linearly_inside_its_bucket() -> None:
    buckets = {0.01: 10.0, 0.025: 50.0, 0.05: 90.0, 0.1: 100.0, INF: 100.0}
    # rank 50 is the top of the 0.025 bucket
    assert histogram_quantile_ms(buckets, 0.5) == 25.0
    # rank 30: halfway through (10, 50] -> halfway between 10 ms and 25 ms
    assert histogram_quantile_ms(buckets, 0.3) == 17.5
    # rank 99: 9/10 of the way through (90, 100] -> 50 + 0.9 * 50 ms
    assert histogram_quantile_ms(buckets, 0.99) == 95.0
    # the first bucket starts at zero
    assert histogram_quantile_ms(buckets, 0.05) == 5.0


def test_a_quantile_in_the_inf_bucket_gives_its_lower_bound_and_none_without_data() -> None:
    assert histogram_quantile_ms({0.1: 1.0, INF: 4.0}, 0.99) == 100.0
    assert histogram_quantile_ms({0.1: 0.0, INF: 0.0}, 0.5) is None
    assert histogram_quantile_ms({}, 0.5) is None


def test_a_quantile_between_two_scrapes_counts_only_the_new_observations() -> None:
    before = {0.01: 5.0, 0.025: 5.0, 0.05: 5.0, 0.1: 5.0, INF: 5.0}  # older observations
    after = {0.01: 15.0, 0.025: 55.0, 0.05: 95.0, 0.1: 105.0, INF: 105.0}
    assert histogram_quantile_ms(after, 0.5, since=before, digits=1) == 25.0
    assert histogram_quantile_ms(after, 0.99, since=before, digits=1) == 95.0
    assert histogram_quantile_ms(after, 0.05, since=before, digits=1) == 5.0
    assert histogram_quantile_ms(after, 0.5, since=after) is None
    assert histogram_quantile_ms({0.1: 1.0, INF: 4.0}, 0.99, since={}) == 100.0


# ---- the stopwatch and the options ----------------------------------------------------


def test_a_stopwatch_times_its_block_and_keeps_the_time_once_stopped() -> None:
    with Stopwatch() as took:
        time.sleep(0.01)
    first = took.seconds
    assert first >= 0.01
    time.sleep(0.005)
    assert took.seconds == first
    assert took.ms == first * 1000
    running = Stopwatch(time.perf_counter() - 1.0)
    assert running.seconds >= 1.0
    assert running.stop() == running.seconds


def test_options_are_bounded_and_described_by_the_docstring() -> None:
    assert bounded(500.0, 2.0, 60.0) == 60.0
    assert bounded(1, 5, 500) == 5
    assert bounded(40, 5, 500) == 40
    options = parser("One line\nwrapped.\n\nDetails.", seconds=8.0)
    assert options.description == "One line wrapped."
    assert options.parse_args([]).seconds == 8.0
    assert not hasattr(parser(None).parse_args([]), "seconds")
