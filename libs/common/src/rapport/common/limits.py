"""Admission: how many requests a process works on at once (:class:`InFlightLimit`)."""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from prometheus_client import Gauge


@dataclass
class Ticket:
    """One caller's place (:meth:`InFlightLimit.wait_for_place`).

    ``evidence``: whether this call's latency says anything about overload. A caller whose
    dependency timed out or failed sets it False: that slowness is the dependency's, which
    degradation handles, and backing off for it would only shed healthy work.
    """

    admitted: bool
    waited_s: float = 0.0
    evidence: bool = True


@dataclass(eq=False)
class _Waiter:
    since: float
    granted: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class InFlightLimit:
    """At most ``limit`` callers of one process inside at once; the rest wait a bounded
    time for a place (:meth:`wait_for_place`; no time: turned away at once), never
    queued without bound (load shedding in front of a deadline-bound dependency).

    Waiting callers get places first in, first out while the queue is short-lived; once the
    oldest has waited ``lifo_after_s``, newest first (adaptive LIFO, as in Facebook's
    "Fail at scale"): under overload the freshest caller still has the budget to finish,
    and the stalest runs out of time waiting and is shed, instead of every caller
    finishing late.

    With ``target_s`` the limit starts at ``limit`` and follows the latency it observes
    (AIMD, the rule of Netflix's concurrency-limits ``AIMDLimit``), between ``floor`` and
    that start:

    - a call that finishes within ``target_s`` while at least half the limit is in use
      adds ``1 / limit`` (about one more place per limit's worth of fast calls);
    - a call slower than ``target_s`` (or ``overloaded()``, from a caller that learns of
      the overload another way) multiplies the limit by ``backoff``, at most once per
      ``target_s``: the calls that were late together are one signal, not a collapse to
      the floor.

    A static limit is a guess that is right for one box and one load; this one settles
    where the dependency still answers in time. ``gauge`` reports how many are inside,
    ``limit_gauge`` the current limit.
    """

    def __init__(
        self,
        limit: int,
        gauge: Gauge | None = None,
        *,
        target_s: float | None = None,
        floor: int = 1,
        backoff: float = 0.9,
        limit_gauge: Gauge | None = None,
        waiting_gauge: Gauge | None = None,
        lifo_after_s: float = 0.005,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ceiling = limit
        self.floor = max(1, min(floor, limit))
        self.limit = float(limit)
        self.target_s = target_s
        self.backoff = backoff
        self.inside = 0
        self.lifo_after_s = lifo_after_s
        self.clock = clock
        self.waiters: deque[_Waiter] = deque()
        self._last_decrease = -math.inf
        if gauge is not None:
            gauge.set_function(lambda: self.inside)
        if limit_gauge is not None:
            limit_gauge.set_function(lambda: int(self.limit))
        if waiting_gauge is not None:
            waiting_gauge.set_function(lambda: len(self.waiters))

    @asynccontextmanager
    async def wait_for_place(self, wait_s: float) -> AsyncIterator[Ticket]:
        """``async with limit.wait_for_place(s) as ticket:`` a place at once, or within
        ``wait_s``, or ``ticket.admitted`` is False (and the caller sheds)."""
        started = self.clock()
        if not self.waiters and self.inside < int(self.limit):
            self.inside += 1
        elif wait_s <= 0 or not await self._wait(wait_s, started):
            yield Ticket(False, self.clock() - started)
            return
        entered = self.clock()
        ticket = Ticket(True, entered - started)
        try:
            yield ticket
        finally:
            in_use = self.inside
            if ticket.evidence:
                self.observe(self.clock() - entered, in_use=in_use)
            self._pass_on()

    async def _wait(self, wait_s: float, since: float) -> bool:
        """True once a leaving caller handed this one its place (``inside`` unchanged)."""
        waiter = _Waiter(since)
        self.waiters.append(waiter)
        try:
            async with asyncio.timeout(wait_s):
                await waiter.granted
            return True
        except BaseException as exc:  # out of time, or the caller went away
            if waiter.granted.done() and not waiter.granted.cancelled():
                self._pass_on()  # handed over as the wait ended: not ours to keep
            if isinstance(exc, TimeoutError):
                return False
            raise
        finally:
            if waiter in self.waiters:
                self.waiters.remove(waiter)

    def _pass_on(self) -> None:
        """A place is free: hand it to a waiter while the limit allows, else give it up."""
        while self.waiters and self.inside <= int(self.limit):
            oldest = self.waiters[0]
            congested = self.clock() - oldest.since >= self.lifo_after_s
            waiter = self.waiters.pop() if congested else self.waiters.popleft()
            if not waiter.granted.done():
                waiter.granted.set_result(None)
                return
        self.inside -= 1

    def observe(self, latency_s: float, *, in_use: int) -> None:
        """One admitted call's latency, with how many were inside when it finished."""
        if self.target_s is None:
            return
        if latency_s > self.target_s:
            self.overloaded()
        elif in_use * 2 >= self.limit:
            self.limit = min(float(self.ceiling), self.limit + 1 / self.limit)

    def overloaded(self) -> None:
        """The dependency is past its capacity (late, or turned a call away): back off."""
        if self.target_s is None:
            return
        now = self.clock()
        if now - self._last_decrease >= self.target_s:
            self._last_decrease = now
            self.limit = max(float(self.floor), self.limit * self.backoff)
