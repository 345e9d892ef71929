"""The profile read model in a real Redis: what profile publishes, and what a reader finds.

The writer's ordering rules (rapport.profile.adapters.published) hold against a real
server, one rule a test: versions only move forward, an erasure's tombstone wins, a
recall set delta applies only on top of the version it came from (else the set is
marked incomplete), a backfill never replaces a published view, and a Redis that lost
its scripts is served again.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import pytest_asyncio
from redis.asyncio import Redis

from rapport.common.cache import create_redis
from rapport.common.profiles import profile_id
from rapport.common.published import PublishedProfiles, RecallEntry, nearest, recall_key
from rapport.common.settings import RedisSettings
from rapport.profile.adapters.published import Publisher, RecallChanges
from rapport.profile.domain.state import Profile, Rules

pytestmark = pytest.mark.integration

RULES = Rules()
NOW = datetime.now(UTC)
DIMENSION = 8


@pytest_asyncio.fixture
async def redis(redis_settings: RedisSettings) -> AsyncIterator[Redis]:
    client = create_redis(redis_settings, client_name="rapport-tests")
    try:
        yield client
    finally:
        await client.aclose()


def profile(user: str, version: int, **fields: object) -> Profile:
    return Profile.model_validate({"tenant": "acme", "user_id": user, "version": version, **fields})


def entry(memory_id: str, hot: int) -> RecallEntry:
    vector = np.zeros(DIMENSION, np.float32)
    vector[hot] = 1.0
    return RecallEntry.of(memory_id, NOW, "encoder:1", f"said {memory_id}", vector.tolist())


def query(hot: int) -> np.ndarray:
    vector = np.zeros(DIMENSION, np.float32)
    vector[hot] = 1.0
    return vector


async def read(redis: Redis, user: str) -> tuple[int | None, list[str] | None]:
    """The published version and the recall set's ids (None: incomplete or no view)."""
    found = await PublishedProfiles(redis).read("acme", user, recall=True)
    if found.view is None:
        return None, None
    ids = sorted(e.memory_id for e in found.recall) if found.recall is not None else None
    return found.view.view.version, ids


def new_user() -> tuple[str, str]:
    user = f"u-{uuid.uuid4().hex[:8]}"
    return user, profile_id("acme", user)


async def test_deltas_build_the_recall_set_and_a_late_writer_never_goes_back(
    redis: Redis,
) -> None:
    publisher = Publisher(redis, RULES, ttl_s=60)
    user, pid = new_user()
    remembered = [{"memory_id": "m-a", "at": NOW}]
    first = profile(user, 1, remembered=remembered)
    await publisher.publish_batch({pid: first}, {pid: RecallChanges(-1, [entry("m-a", 0)])}, NOW)
    assert await read(redis, user) == (1, ["m-a"])

    second = profile(user, 2, remembered=[*remembered, {"memory_id": "m-b", "at": NOW}])
    await publisher.publish_batch({pid: second}, {pid: RecallChanges(1, [entry("m-b", 1)])}, NOW)
    assert await read(redis, user) == (2, ["m-a", "m-b"])
    # A batch that wrote version 1 but publishes late changes nothing.
    await publisher.publish_batch({pid: first}, {pid: RecallChanges(0, [], {"m-b"})}, NOW)
    assert await read(redis, user) == (2, ["m-a", "m-b"])

    third = profile(user, 3, remembered=[{"memory_id": "m-b", "at": NOW}])
    await publisher.publish_batch({pid: third}, {pid: RecallChanges(2, [], {"m-a"})}, NOW)
    assert await read(redis, user) == (3, ["m-b"])
    found = await PublishedProfiles(redis).read("acme", user, recall=True)
    assert found.recall is not None
    recalled = nearest(
        found.recall,
        query(1),
        encoder="encoder:1",
        not_before=NOW - timedelta(days=1),
        k=3,
        min_score=0.5,
    )
    assert [(r.memory_id, r.text) for r in recalled] == [("m-b", "said m-b")]
    assert recalled[0].score == pytest.approx(1.0, abs=0.01)


async def test_a_delta_on_top_of_a_lost_write_marks_the_set_incomplete_until_a_republish(
    redis: Redis,
) -> None:
    publisher = Publisher(redis, RULES, ttl_s=60)
    user, pid = new_user()
    one = [{"memory_id": "m-a", "at": NOW}]
    await publisher.publish_batch(
        {pid: profile(user, 1, remembered=one)}, {pid: RecallChanges(-1, [entry("m-a", 0)])}, NOW
    )
    # Version 2's publish was lost (Redis away): version 3's delta is relative to 2.
    two = [*one, {"memory_id": "m-b", "at": NOW}, {"memory_id": "m-c", "at": NOW}]
    await publisher.publish_batch(
        {pid: profile(user, 3, remembered=two)}, {pid: RecallChanges(2, [entry("m-c", 2)])}, NOW
    )
    assert await read(redis, user) == (3, None), "the view is new, the set is not whole"
    assert not await redis.exists(recall_key(pid)), "a partial set is not kept"
    assert not await publisher.recall_complete(pid)
    whole = [entry("m-a", 0), entry("m-b", 1), entry("m-c", 2)]
    await publisher.replace(pid, profile(user, 3, remembered=two), NOW, whole)
    assert await read(redis, user) == (3, ["m-a", "m-b", "m-c"])
    assert await publisher.recall_complete(pid)


async def test_a_republish_never_replaces_a_newer_view_and_none_is_marked_incomplete(
    redis: Redis,
) -> None:
    publisher = Publisher(redis, RULES, ttl_s=60)
    user, pid = new_user()
    newer = profile(user, 5)
    await publisher.publish_batch({pid: newer}, {pid: RecallChanges(-1)}, NOW)
    await publisher.replace(pid, profile(user, 4), NOW, [entry("m-old", 0)])
    assert await read(redis, user) == (5, [])
    kept = [{"memory_id": "m-x", "at": NOW}]
    await publisher.replace(pid, profile(user, 6, remembered=kept), NOW, None)
    assert await read(redis, user) == (6, None), "the store could not be read: incomplete"


async def test_an_erasure_tombstone_outlives_every_batch_in_flight(redis: Redis) -> None:
    publisher = Publisher(redis, RULES, ttl_s=60)
    user, pid = new_user()
    kept = [{"memory_id": "m-a", "at": NOW}]
    await publisher.publish_batch(
        {pid: profile(user, 1, remembered=kept)}, {pid: RecallChanges(-1, [entry("m-a", 0)])}, NOW
    )
    await publisher.erase([pid])
    assert await read(redis, user) == (None, None)
    assert not await redis.exists(recall_key(pid))
    await publisher.publish_batch(
        {pid: profile(user, 2, remembered=kept)}, {pid: RecallChanges(1, [entry("m-b", 1)])}, NOW
    )
    await publisher.replace(pid, profile(user, 9, remembered=kept), NOW, [entry("m-a", 0)])
    assert await read(redis, user) == (None, None)
    assert not await redis.exists(recall_key(pid))


async def test_an_opted_out_user_is_published_withheld_with_no_recall_set(redis: Redis) -> None:
    publisher = Publisher(redis, RULES, ttl_s=60)
    user, pid = new_user()
    kept = [{"memory_id": "m-a", "at": NOW}]
    await publisher.publish_batch(
        {pid: profile(user, 1, remembered=kept, counters={"item_view": 3})},
        {pid: RecallChanges(-1, [entry("m-a", 0)])},
        NOW,
    )
    opted_out = profile(user, 2, consent={"value": False, "at": NOW}, counters={"item_view": 3})
    await publisher.publish_batch({pid: opted_out}, {pid: RecallChanges(1, [], {"m-a"})}, NOW)
    found = await PublishedProfiles(redis).read("acme", user, recall=True)
    assert found.view is not None
    assert found.view.view.withheld is True
    assert found.view.view.counters == {}
    assert found.recall == []
    assert (await PublishedProfiles(redis).read("globex", user)).view is None, "tenant's own"


async def test_a_redis_that_lost_its_scripts_is_published_to_again(redis: Redis) -> None:
    publisher = Publisher(redis, RULES, ttl_s=60)
    user, pid = new_user()
    await redis.script_flush()
    await publisher.publish_batch({pid: profile(user, 1)}, {pid: RecallChanges(-1)}, NOW)
    assert await read(redis, user) == (1, [])
