"""The benches' one percentile, one histogram quantile and one stopwatch.

- :func:`percentile`: numpy's default (linear between the two closest ranks, R's type 7,
  Excel's PERCENTILE.INC); :func:`percentiles` names a few of them for a results row
  (``p50_ms``, ``p99_ms``, ...), None where there are no values (JSON has no NaN).
- :func:`histogram_quantile_ms`: Prometheus' ``histogram_quantile`` over a service's own
  histogram (cumulative bucket counts), for figures only the service can observe.
- :class:`Stopwatch`: wall time from ``time.perf_counter``, for one call or a whole run.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType

import numpy as np


def percentile(values: Iterable[float], q: float, *, digits: int | None = None) -> float:
    """The ``q``-th percentile (0-100) of ``values``, linear between the two closest ranks
    (``numpy.percentile``'s default), rounded to ``digits``; NaN when there are none."""
    array = np.fromiter(values, dtype=np.float64)
    if array.size == 0:
        return math.nan
    value = float(np.percentile(array, q))
    return value if digits is None else round(value, digits)


def percentiles(
    values: Iterable[float],
    qs: Sequence[float] = (50, 99),
    *,
    digits: int = 2,
    scale: float = 1.0,
    maximum: bool = False,
    prefix: str = "",
    suffix: str = "_ms",
) -> dict[str, float | None]:
    """:func:`percentile` at each of ``qs`` (and the largest value with ``maximum``) of
    ``values`` times ``scale`` (1000: seconds to ms), keyed ``{prefix}p{q}{suffix}``
    (``{prefix}max{suffix}``); None for each when there are no values."""
    scaled = [float(value) * scale for value in values]
    out: dict[str, float | None] = {
        f"{prefix}p{q:g}{suffix}": percentile(scaled, q, digits=digits) if scaled else None
        for q in qs
    }
    if maximum:
        out[f"{prefix}max{suffix}"] = round(max(scaled), digits) if scaled else None
    return out


def histogram_quantile_ms(
    buckets: Mapping[float, float],
    q: float,
    *,
    since: Mapping[float, float] | None = None,
    digits: int = 2,
) -> float | None:
    """Prometheus' ``histogram_quantile`` (linear inside the bucket), in ms: ``buckets``
    are cumulative counts by upper bound in seconds, ``since`` the same histogram at an
    earlier scrape (its observations are taken off first). A quantile in the +Inf bucket
    gives that bucket's lower bound; None when there is no observation."""
    earlier = since or {}
    bounds = sorted(buckets)
    counts = [buckets[bound] - earlier.get(bound, 0.0) for bound in bounds]
    if not bounds or counts[-1] <= 0:
        return None
    rank = q * counts[-1]
    lower, below = 0.0, 0.0
    for bound, cumulative in zip(bounds, counts, strict=True):
        if cumulative >= rank:
            if math.isinf(bound):
                return round(lower * 1000, digits)
            inside = cumulative - below
            share = (rank - below) / inside if inside > 0 else 1.0
            return round((lower + (bound - lower) * share) * 1000, digits)
        lower, below = bound, cumulative
    return round(lower * 1000, digits)


class Stopwatch:
    """Wall time (``time.perf_counter``) from ``started`` (default: now; entering a
    ``with`` block restarts it) until the block exits, or until now while it runs::

        with Stopwatch() as took:
            await call()
        latencies.append(took.ms)
    """

    def __init__(self, started: float | None = None) -> None:
        self.started = time.perf_counter() if started is None else started
        self.stopped: float | None = None

    def __enter__(self) -> Stopwatch:
        self.started = time.perf_counter()
        self.stopped = None
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> float:
        """Stops the watch (the time stays what it is now); the seconds it ran."""
        self.stopped = time.perf_counter()
        return self.seconds

    @property
    def seconds(self) -> float:
        end = time.perf_counter() if self.stopped is None else self.stopped
        return end - self.started

    @property
    def ms(self) -> float:
        return self.seconds * 1000
