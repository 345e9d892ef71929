"""Admission in one Redis round trip: the key's rate limit, then event-id claims.

States of ``ingest:eid:<tenant>:<event_id>``:

- absent: never seen (or forgotten after the window): produce it;
- ``p`` (pending, short TTL): a request is producing it now, outcome unknown;
- ``d`` (done, the dedup window): the broker acknowledged it: a duplicate.

A claim is ``SET NX``. Only an acknowledged produce turns ``p`` into ``d``; a
failed one deletes the claim so a retry produces again. A produce that is
still in flight when its request gives up (503) keeps ``p`` until its outcome
is known, so a retry in the meantime is told to come back rather than being
acknowledged early (which could lose the event) or produced twice.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Generic, TypeVar

from redis.asyncio import Redis

# A Lua function that other scripts can include, so a service can rate-limit and do
# its own work in one round trip. Refill by elapsed time, take `cost` tokens if there
# are enough. Redis's own clock (TIME) keeps every replica of a service consistent.
RATE_LIMIT_LUA = """
local function take_tokens(key, rate, burst, cost)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
  local state = redis.call('HMGET', key, 'tokens', 'ts')
  local tokens = tonumber(state[1]) or burst
  local ts = tonumber(state[2]) or now
  tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
  local allowed = 0
  local wait = 0
  if tokens >= cost then
    tokens = tokens - cost
    allowed = 1
  else
    wait = (cost - tokens) / rate
  end
  redis.call('HSET', key, 'tokens', tostring(tokens), 'ts', tostring(now))
  redis.call('EXPIRE', key, math.ceil(burst / rate) + 1)
  return allowed, wait
end
"""


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    retry_after_s: float

    @property
    def retry_after_header(self) -> str:
        """Whole seconds, at least 1 (the header takes no fractions)."""
        return str(max(1, math.ceil(self.retry_after_s)))


# Every admission of one event-loop turn, in one call. ARGV[1] the pending TTL, then four
# per admission: rate, burst, cost, and how many event keys follow its bucket in KEYS.
# Each admission's reply: allowed, wait, then one state per event key; nothing is
# claimed for an admission its bucket refuses.
_ADMIT_LUA = (
    RATE_LIMIT_LUA
    + """
local out = {}
local k = 1
for a = 2, #ARGV, 4 do
  local bucket = KEYS[k]
  local count = tonumber(ARGV[a + 3])
  local allowed, wait = take_tokens(
    bucket, tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]))
  out[#out + 1] = allowed
  out[#out + 1] = tostring(wait)
  for i = k + 1, k + count do
    if allowed == 0 then
      out[#out + 1] = 'refused'
    elseif redis.call('SET', KEYS[i], 'p', 'NX', 'EX', ARGV[1]) then
      out[#out + 1] = 'new'
    else
      out[#out + 1] = redis.call('GET', KEYS[i]) or 'new'
    end
  end
  k = k + count + 1
end
return out
"""
)


_CONFIRM_LUA = """
for _, key in ipairs(KEYS) do
  redis.call('SET', key, 'd', 'EX', ARGV[1])
end
return #KEYS
"""

In = TypeVar("In")
Out = TypeVar("Out")


class PerTurn(Generic[In, Out]):
    """Calls made in the same event-loop turn share one round trip.

    Under load, requests parsed in one turn of the loop each need Redis; one script call
    for all of them costs a fraction of one each (the client's per-command work and a
    write syscall dominate). An idle service sends each alone, a turn later.
    """

    def __init__(self, flush: Callable[[list[In]], Awaitable[Sequence[Out]]]) -> None:
        self._flush = flush
        self._items: list[In] = []
        self._waiters: list[asyncio.Future[Out]] = []
        self._scheduled = False
        self._running: set[asyncio.Task[None]] = set()

    async def __call__(self, item: In) -> Out:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Out] = loop.create_future()
        self._items.append(item)
        self._waiters.append(waiter)
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._start)
        return await waiter

    def _start(self) -> None:
        items, waiters = self._items, self._waiters
        self._items, self._waiters = [], []
        self._scheduled = False
        task = asyncio.get_running_loop().create_task(self._run(items, waiters))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _run(self, items: list[In], waiters: list[asyncio.Future[Out]]) -> None:
        try:
            results = await self._flush(items)
        except Exception as exc:  # every waiting caller sees the failure
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(exc)
        else:
            for waiter, result in zip(waiters, results, strict=True):
                if not waiter.done():  # a caller that gave up (cancelled) is skipped
                    waiter.set_result(result)


class ClaimState(Enum):
    NEW = "new"  # claimed by this request: produce it
    PENDING = "p"  # another request is producing it
    DONE = "d"  # already acknowledged: a duplicate
    REFUSED = "refused"  # not looked at: the rate limit refused the request


@dataclass(frozen=True)
class Admission:
    rate: RateDecision
    states: list[ClaimState]


@dataclass(frozen=True)
class _Request:
    bucket: str
    rate: float
    burst: int
    cost: int
    event_keys: Sequence[str]


class AdmissionStore:
    def __init__(self, redis: Redis, *, window_s: int, pending_ttl_s: int) -> None:
        self._redis = redis
        self._admit_script = redis.register_script(_ADMIT_LUA)
        self._confirm_script = redis.register_script(_CONFIRM_LUA)
        self._window_s = window_s
        self._pending_ttl_s = pending_ttl_s
        self._admit = PerTurn(self._admit_all)
        self._confirm = PerTurn(self._confirm_all)

    @staticmethod
    def event_key(tenant: str, event_id: str) -> str:
        return f"ingest:eid:{tenant}:{event_id}"

    @staticmethod
    def bucket_key(key_id: str) -> str:
        return f"ingest:rate:{key_id}"

    async def admit(
        self, key_id: str, *, rate: float, burst: int, cost: int, event_keys: Sequence[str]
    ) -> Admission:
        """Charge ``cost`` tokens and, if allowed, claim every event key."""
        return await self._admit(_Request(self.bucket_key(key_id), rate, burst, cost, event_keys))

    async def _admit_all(self, requests: list[_Request]) -> list[Admission]:
        keys: list[str] = []
        args: list[float | int] = [self._pending_ttl_s]
        for request in requests:
            keys += [request.bucket, *request.event_keys]
            args += [request.rate, request.burst, request.cost, len(request.event_keys)]
        reply = await self._admit_script(keys=keys, args=args)
        admissions, at = [], 0
        for request in requests:
            decision = RateDecision(
                allowed=bool(int(reply[at])), retry_after_s=float(reply[at + 1])
            )
            states = reply[at + 2 : at + 2 + len(request.event_keys)]
            at += 2 + len(request.event_keys)
            admissions.append(
                Admission(
                    decision,
                    [ClaimState(s.decode() if isinstance(s, bytes) else s) for s in states],
                )
            )
        return admissions

    async def confirm(self, keys: Sequence[str]) -> None:
        """The broker acknowledged these: remember them for the dedup window.

        Requests that confirm in the same event-loop turn share one round trip;
        each still waits for it, so a duplicate sent right after a 202 is known.
        """
        if keys:
            await self._confirm(keys)

    async def _confirm_all(self, batches: list[Sequence[str]]) -> list[None]:
        await self._confirm_script(
            keys=[k for keys in batches for k in keys], args=[self._window_s]
        )
        return [None] * len(batches)

    async def release(self, keys: Sequence[str]) -> None:
        """These were not produced: let a retry claim them again."""
        if keys:
            await self._redis.delete(*keys)
