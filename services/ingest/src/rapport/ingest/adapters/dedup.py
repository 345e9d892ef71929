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
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from redis.asyncio import Redis

from rapport.common.limits import RATE_LIMIT_LUA, RateDecision

# KEYS[1] the key's token bucket, KEYS[2..] the event ids.
# ARGV rate, burst, cost, pending TTL. Nothing is claimed when the bucket says no.
_ADMIT_LUA = (
    RATE_LIMIT_LUA
    + """
local allowed, wait = take_tokens(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]))
local out = {allowed, tostring(wait)}
if allowed == 0 then
  return out
end
for i = 2, #KEYS do
  if redis.call('SET', KEYS[i], 'p', 'NX', 'EX', ARGV[4]) then
    out[i + 1] = 'new'
  else
    out[i + 1] = redis.call('GET', KEYS[i]) or 'new'
  end
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


class ClaimState(Enum):
    NEW = "new"  # claimed by this request: produce it
    PENDING = "p"  # another request is producing it
    DONE = "d"  # already acknowledged: a duplicate


@dataclass(frozen=True)
class Admission:
    rate: RateDecision
    states: list[ClaimState]


class AdmissionStore:
    def __init__(self, redis: Redis, *, window_s: int, pending_ttl_s: int) -> None:
        self._redis = redis
        self._admit = redis.register_script(_ADMIT_LUA)
        self._confirm = redis.register_script(_CONFIRM_LUA)
        self._window_s = window_s
        self._pending_ttl_s = pending_ttl_s
        self._to_confirm: list[str] = []
        self._confirm_waiters: list[asyncio.Future[None]] = []
        self._flush_scheduled = False
        self._flushes: set[asyncio.Task[None]] = set()

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
        reply = await self._admit(
            keys=[self.bucket_key(key_id), *event_keys],
            args=[rate, burst, cost, self._pending_ttl_s],
        )
        decision = RateDecision(allowed=bool(int(reply[0])), retry_after_s=float(reply[1]))
        states = [ClaimState(s.decode() if isinstance(s, bytes) else s) for s in reply[2:]]
        return Admission(decision, states)

    async def confirm(self, keys: Sequence[str]) -> None:
        """The broker acknowledged these: remember them for the dedup window.

        Requests that confirm in the same event-loop turn share one round trip;
        each still waits for it, so a duplicate sent right after a 202 is known.
        """
        if not keys:
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._to_confirm.extend(keys)
        self._confirm_waiters.append(waiter)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._start_flush)
        await waiter

    def _start_flush(self) -> None:
        keys, waiters = self._to_confirm, self._confirm_waiters
        self._to_confirm, self._confirm_waiters = [], []
        self._flush_scheduled = False
        task = asyncio.get_running_loop().create_task(self._flush(keys, waiters))
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def _flush(self, keys: list[str], waiters: list[asyncio.Future[None]]) -> None:
        try:
            await self._confirm(keys=keys, args=[self._window_s])
        except Exception as exc:  # every waiting request sees the failure
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(exc)
        else:
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    async def release(self, keys: Sequence[str]) -> None:
        """These were not produced: let a retry claim them again."""
        if keys:
            await self._redis.delete(*keys)
