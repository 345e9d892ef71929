"""Publishing the profile read model in Redis (:mod:`rapport.common.published`).

profile is its only writer, from two kinds of places:

- the processor, after every batch: the new view, and what each user's recall set
  gained and lost (a *delta*, relative to the version the batch loaded);
- the API, which *republishes* a user whole from MongoDB and Milvus: a read that
  found nothing published, a recall that found the set incomplete, a forget.

One Lua script makes each write atomic and ordered by the profile's version: a late
writer (a batch that saved before a forget but publishes after it) never replaces a
newer view, and an erasure's tombstone cannot be overwritten by a batch in flight.
A delta applies only on top of the version it was computed from; otherwise (a write
was lost while Redis was away, or the keys expired) the recall set is marked
incomplete, and readers ask profile's recall API until a republish completes it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import NoScriptError

from rapport.common.cache import REDIS_ERRORS
from rapport.common.published import (
    ERASED_VERSION,
    RECALL_COMPLETE,
    RECALL_FIELD,
    RECALL_INCOMPLETE,
    VERSION_FIELD,
    VIEW_FIELD,
    PublishedView,
    RecallEntry,
    recall_key,
    view_key,
)
from rapport.profile.domain.state import Profile, Rules
from rapport.profile.domain.views import view

log = logging.getLogger(__name__)

# KEYS: the view hash, the recall hash.
# ARGV: mode, version, view JSON, TTL (s), then
#   delta:   base version (-1: a new profile), messages kept after it, n, n (id, packed)
#            pairs, ids to delete;
#   replace: recall complete ("1"/"0"), n, n (id, packed) pairs.
PUBLISH_LUA = """
local mode, version, ttl = ARGV[1], tonumber(ARGV[2]), ARGV[4]
local state = redis.call('HMGET', KEYS[1], 'version', 'recall')
local current = tonumber(state[1] or '-1')
if current > version then
  return 0
end
local complete = '0'
local first
if mode == 'delta' then
  local n = tonumber(ARGV[7])
  first = 8
  if tonumber(ARGV[6]) == 0 then
    redis.call('DEL', KEYS[2])
    complete = '1'
  elseif current == tonumber(ARGV[5]) and (state[2] == '1' or current == -1) then
    if n > 0 then
      redis.call('HSET', KEYS[2], unpack(ARGV, first, first + 2 * n - 1))
    end
    if #ARGV >= first + 2 * n then
      redis.call('HDEL', KEYS[2], unpack(ARGV, first + 2 * n, #ARGV))
    end
    complete = '1'
  else
    redis.call('DEL', KEYS[2])
  end
else
  complete = ARGV[5]
  redis.call('DEL', KEYS[2])
  local n = tonumber(ARGV[6])
  if n > 0 then
    redis.call('HSET', KEYS[2], unpack(ARGV, 7, 6 + 2 * n))
  end
end
redis.call('HSET', KEYS[1], 'version', ARGV[2], 'view', ARGV[3], 'recall', complete)
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('EXPIRE', KEYS[2], ttl)
return 1
"""


@dataclass
class RecallChanges:
    """What one user's recall set gained and lost in a batch, since ``base_version``."""

    base_version: int
    added: list[RecallEntry] = field(default_factory=list)
    dropped: set[str] = field(default_factory=set)


Arg = bytes | str | int


class Publisher:
    def __init__(self, redis: Redis, rules: Rules, ttl_s: int) -> None:
        self.redis = redis
        self.rules = rules
        self.ttl_s = ttl_s
        self.script = redis.register_script(PUBLISH_LUA)

    def record(self, profile: Profile, now: datetime) -> bytes:
        published = PublishedView(
            view=view(profile, profile.user_id, "cache", self.rules, now),
            as_of=now,
            half_life_s=self.rules.half_life.total_seconds(),
            memory_retention_s=self.rules.memory.retention.total_seconds(),
        )
        return published.model_dump_json().encode()

    def _head(self, mode: str, profile: Profile, now: datetime) -> list[Arg]:
        return [mode, profile.version, self.record(profile, now), self.ttl_s]

    def delta_args(self, profile: Profile, now: datetime, changes: RecallChanges) -> list[Arg]:
        added = {e.memory_id: e for e in changes.added}
        args = self._head("delta", profile, now)
        args += [changes.base_version, len(profile.remembered), len(added)]
        for memory_id, entry in added.items():
            args += [memory_id, entry.pack()]
        return args + sorted(changes.dropped - set(added))

    def replace_args(
        self, profile: Profile, now: datetime, entries: Sequence[RecallEntry] | None
    ) -> list[Arg]:
        """``entries`` None: the recall set could not be read, so it is marked incomplete."""
        complete = RECALL_COMPLETE if entries is not None else RECALL_INCOMPLETE
        args = [*self._head("replace", profile, now), complete, len(entries or ())]
        for entry in entries or ():
            args += [entry.memory_id, entry.pack()]
        return args

    def queue(self, pipe: Pipeline, pid: str, args: list[Arg]) -> None:
        """Buffered in ``pipe``. By its hash: redis-py's pipelined Script asks the server
        whether the script is loaded on every execute, a round trip per batch."""
        pipe.evalsha(self.script.sha, 2, view_key(pid), recall_key(pid), *args)

    async def publish_batch(
        self,
        profiles: dict[str, Profile],
        changes: dict[str, RecallChanges],
        now: datetime,
    ) -> None:
        """Every changed profile of a batch in one pipeline; best effort (Redis may vanish:
        readers then ask the profile service, which reads MongoDB)."""
        if not profiles:
            return
        try:
            for attempt in (1, 2):
                try:
                    async with self.redis.pipeline(transaction=False) as pipe:
                        for pid, profile in profiles.items():
                            delta = changes.get(pid) or RecallChanges(base_version=-2)  # unknown
                            self.queue(pipe, pid, self.delta_args(profile, now, delta))
                        await pipe.execute()
                    break
                except NoScriptError:  # a new or flushed Redis: load it, then once more
                    if attempt == 2:
                        raise
                    await self.redis.script_load(PUBLISH_LUA)
        except REDIS_ERRORS:
            log.warning("redis unavailable: profiles not published (reads fall back to MongoDB)")

    async def replace(
        self,
        pid: str,
        profile: Profile,
        now: datetime,
        entries: Sequence[RecallEntry] | None,
    ) -> bool:
        """One user, whole (unless a newer version is published meanwhile); False when
        Redis could not be written."""
        try:
            await self.script(
                keys=[view_key(pid), recall_key(pid)],
                args=self.replace_args(profile, now, entries),
            )
        except REDIS_ERRORS:
            log.warning("redis unavailable: profile not published")
            return False
        return True

    async def recall_complete(self, pid: str) -> bool:
        """Whether readers have the user's whole recall set (True when Redis cannot say:
        a republish could not be written either)."""
        try:
            return await self.redis.hget(view_key(pid), RECALL_FIELD) == RECALL_COMPLETE
        except REDIS_ERRORS:
            return True

    async def erase(self, pids: Iterable[str]) -> bool:
        """A tombstone no batch in flight can overwrite, and no recall set; False when
        Redis could not be written."""
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                for pid in pids:
                    pipe.hset(
                        view_key(pid),
                        mapping={
                            VERSION_FIELD: ERASED_VERSION,
                            VIEW_FIELD: b"",
                            RECALL_FIELD: RECALL_COMPLETE,
                        },
                    )
                    pipe.expire(view_key(pid), self.ttl_s)
                    pipe.delete(recall_key(pid))
                await pipe.execute()
        except REDIS_ERRORS:
            log.warning("redis unavailable: tombstone not written")
            return False
        return True
