"""The profile read model in Redis: what profile publishes for the reply path to read.

profile is the only writer. On every change it publishes, per user (keys named by a
digest of the profile id, so no user id is in a key's name):

- ``rapport:view:v1:<digest>``: a hash. ``view`` is a :class:`PublishedView` (the
  user's :class:`~rapport.common.contracts.ProfileView` as of its write, JSON);
  ``version`` the profile's version, so a late writer never replaces a newer view;
  ``recall`` is ``1`` when the recall set below is complete, ``0`` when a write to it
  was lost (readers then use profile's recall API). An erasure leaves a tombstone (an
  empty ``view`` at :data:`ERASED_VERSION`) that no write replaces until it expires;
- ``rapport:recall:v1:<digest>``: a hash of the messages memory keeps for recall, one
  field per message id, each a packed :class:`RecallEntry` (the redacted text and its
  vector quantized to int8).

respond and recommend read them the way Feast's feature server reads its online
store: one round trip, no hop through the profile service. Both keys carry the same
TTL and are refreshed together, so they live and vanish together; a reader that finds
no view asks profile's HTTP API (``GET /v1/profiles/{user_id}``), which reads MongoDB
and publishes again. Redis is a cache: nothing here is the source of truth.

The profile id (:func:`~rapport.common.profiles.profile_id`) is built from the tenant
of the caller's API key, so no read crosses tenants. An opted-out user's view is
withheld (consent and version only) and their recall set is empty; an erased user has
only the tombstone, which holds nothing of theirs.
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import numpy as np
from prometheus_client import Counter
from pydantic import Field, ValidationError
from redis.asyncio import Redis

from rapport.common.cache import REDIS_ERRORS
from rapport.common.contracts import Contract, ProfileView, RecalledMessage
from rapport.common.profiles import ProfileClient, profile_id
from rapport.common.scores import significant

VIEW_PREFIX = "rapport:view:v1:"
RECALL_PREFIX = "rapport:recall:v1:"
VIEW_FIELD = b"view"
VERSION_FIELD = b"version"
RECALL_FIELD = b"recall"
RECALL_COMPLETE = b"1"
RECALL_INCOMPLETE = b"0"
ERASED_VERSION = 2**62  # above any profile's version


def _key(prefix: str, pid: str) -> bytes:
    """By a digest of the profile id: no user id is in a key's name (an erasure's tombstone
    included), and every profile id has keys of one length."""
    return (prefix + hashlib.sha256(pid.encode()).hexdigest()[:32]).encode()


def view_key(pid: str) -> bytes:
    return _key(VIEW_PREFIX, pid)


def recall_key(pid: str) -> bytes:
    return _key(RECALL_PREFIX, pid)


class PublishedView(Contract):
    """A user's view as profile computed it at ``as_of``; :meth:`at` brings it to now."""

    view: ProfileView
    as_of: datetime
    half_life_s: float = Field(gt=0, description="Of the affinities' exponential decay.")
    memory_retention_s: float = Field(
        gt=0, description="Remembered messages older than this are not recalled."
    )

    def at(self, now: datetime) -> ProfileView:
        """The view with its affinities decayed from ``as_of`` to ``now`` (log domain, so
        long pauses keep their order); everything else is as published."""
        view = self.view
        elapsed = max((now - self.as_of).total_seconds(), 0.0)
        if not view.affinities or elapsed == 0.0:
            return view
        halvings = elapsed / self.half_life_s
        decayed = {
            category: significant(math.pow(2.0, math.log2(score) - halvings)) if score > 0 else 0.0
            for category, score in view.affinities.items()
        }
        return view.model_copy(update={"affinities": decayed})


# at_ms, scale, len(encoder), dimension; then the encoder id, the int8 vector, the text.
_ENTRY_HEAD = struct.Struct("<qfHH")


@dataclass(frozen=True)
class RecallEntry:
    """One remembered message as the recall set keeps it."""

    memory_id: str
    at_ms: int
    encoder: str
    text: str
    scale: float  # the vector is scale * codes
    codes: np.ndarray[Any, np.dtype[np.int8]]

    @classmethod
    def of(
        cls, memory_id: str, at: datetime, encoder: str, text: str, vector: Iterable[float]
    ) -> RecallEntry:
        """Symmetric int8 quantization: a unit vector's cosine keeps ~3 decimals."""
        values = np.asarray(list(vector), dtype=np.float32)
        top = float(np.abs(values).max()) if values.size else 0.0
        scale = top / 127.0 if top > 0 else 1.0
        codes = np.clip(np.rint(values / scale), -127, 127).astype(np.int8)
        return cls(memory_id, int(at.timestamp() * 1000), encoder, text, scale, codes)

    def pack(self) -> bytes:
        encoder = self.encoder.encode()
        head = _ENTRY_HEAD.pack(self.at_ms, self.scale, len(encoder), self.codes.size)
        return head + encoder + self.codes.tobytes() + self.text.encode()

    @classmethod
    def unpack(cls, memory_id: str, packed: bytes) -> RecallEntry:
        at_ms, scale, encoder_len, dimension = _ENTRY_HEAD.unpack_from(packed)
        start = _ENTRY_HEAD.size
        encoder = packed[start : start + encoder_len].decode()
        start += encoder_len
        codes = np.frombuffer(packed, dtype=np.int8, count=dimension, offset=start)
        text = packed[start + dimension :].decode()
        return cls(memory_id, at_ms, encoder, text, scale, codes)


def nearest(
    entries: Iterable[RecallEntry],
    query: np.ndarray[Any, np.dtype[np.float32]],
    *,
    encoder: str,
    not_before: datetime,
    k: int,
    min_score: float,
) -> list[RecalledMessage]:
    """The ``k`` entries most similar to ``query`` (cosine: every vector is unit length),
    of its own encoder and within the retention, at least ``min_score``; best first."""
    cutoff_ms = int(not_before.timestamp() * 1000)
    usable = [
        e
        for e in entries
        if e.encoder == encoder and e.at_ms >= cutoff_ms and e.codes.size == query.size
    ]
    if not usable:
        return []
    codes = np.stack([e.codes for e in usable]).astype(np.float32)
    scales = np.asarray([e.scale for e in usable], dtype=np.float32)
    scores = (codes @ query) * scales
    order = np.argsort(-scores, kind="stable")[:k]
    return [
        RecalledMessage(
            memory_id=usable[i].memory_id,
            text=usable[i].text,
            occurred_at=datetime.fromtimestamp(usable[i].at_ms / 1000, UTC),
            score=round(float(scores[i]), 4),
        )
        for i in order
        if scores[i] >= min_score
    ]


@dataclass(frozen=True)
class Published:
    """What one read found: the view (None: not published, ask profile's API) and the
    recall set (None when not asked for, or incomplete: ask profile's recall API)."""

    view: PublishedView | None
    recall: list[RecallEntry] | None = None


class PublishedProfiles:
    """The reader: a user's published view, and their recall set, in one round trip.

    Raises the Redis client's errors (:data:`~rapport.common.cache.REDIS_ERRORS`) and
    pydantic's ValidationError for a view this version cannot read; callers fall back to
    profile's HTTP API on either.
    """

    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def read(self, tenant: str, user_id: str, *, recall: bool = False) -> Published:
        pid = profile_id(tenant, user_id)
        if not recall:
            raw = await self.redis.hget(view_key(pid), VIEW_FIELD)
            return Published(PublishedView.model_validate_json(raw) if raw else None)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hmget(view_key(pid), [VIEW_FIELD, RECALL_FIELD])
            pipe.hgetall(recall_key(pid))
            (raw, complete), fields = await pipe.execute()
        if not raw:  # not published, or erased
            return Published(None)
        entries = None
        if complete == RECALL_COMPLETE:
            try:
                entries = recall_entries(fields)
            except (struct.error, ValueError):  # written by another version: the recall API
                entries = None
        return Published(PublishedView.model_validate_json(raw), entries)


def recall_entries(fields: Mapping[bytes, bytes]) -> list[RecallEntry]:
    return [RecallEntry.unpack(memory_id.decode(), packed) for memory_id, packed in fields.items()]


@dataclass(frozen=True)
class ProfileRead:
    """A profile as the reply path found it, and where."""

    view: ProfileView
    source: Literal["published", "api"]
    # The recall set when asked for and complete; None: use profile's recall API.
    recall: list[RecallEntry] | None = None
    memory_retention_s: float | None = None

    def recall_not_before(self, now: datetime) -> datetime | None:
        if self.memory_retention_s is None:
            return None
        return now - timedelta(seconds=self.memory_retention_s)


class ProfileReader:
    """A user's view for the reply path: the published one (one Redis round trip), else
    profile's HTTP API, which reads MongoDB and publishes it again.

    Redis errors and unreadable views fall back to the API, counted in ``fallbacks`` by
    reason; the API's errors (:class:`~rapport.common.profiles.ProfileServiceError`)
    reach the caller. The caller has checked that its key may read profiles.
    """

    def __init__(
        self,
        published: PublishedProfiles,
        api: ProfileClient,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        fallbacks: Counter | None = None,
    ) -> None:
        self.published = published
        self.api = api
        self.clock = clock
        self.fallbacks = fallbacks

    def _fell_back(self, reason: str) -> None:
        if self.fallbacks is not None:
            self.fallbacks.labels(reason).inc()

    async def read(
        self,
        tenant: str,
        user_id: str,
        *,
        authorization: str,
        recall: bool = False,
        timeout_s: float | None = None,
    ) -> ProfileRead:
        try:
            found = await self.published.read(tenant, user_id, recall=recall)
        except REDIS_ERRORS:
            self._fell_back("redis_error")
        except ValidationError:
            self._fell_back("unreadable")
        else:
            if found.view is not None:
                return ProfileRead(
                    found.view.at(self.clock()),
                    "published",
                    found.recall,
                    found.view.memory_retention_s,
                )
            self._fell_back("not_published")
        view = await self.api.profile(user_id, authorization, timeout_s=timeout_s)
        return ProfileRead(view, "api")
