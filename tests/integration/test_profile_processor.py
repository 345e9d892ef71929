"""The profile stream processor against real Kafka (Tansu), MongoDB-wire and Redis."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, TopicPartition

from rapport.common.cache import create_redis
from rapport.common.events import ChatMessageEvent, Event, parse_event
from rapport.common.kafka import (
    TopicSpec,
    connection_kwargs,
    create_consumer,
    create_producer,
    ensure_topics,
)
from rapport.common.mongo import create_mongo_client
from rapport.common.profiles import profile_id
from rapport.common.published import VERSION_FIELD, VIEW_FIELD, PublishedView, view_key
from rapport.common.settings import KafkaSettings, MongoSettings, RedisSettings
from rapport.devstack.events import wait_committed
from rapport.devstack.servers import TANSU_FAST_GROUP
from rapport.devstack.waiting import eventually
from rapport.profile.adapters.published import Publisher
from rapport.profile.adapters.store import ProfileStore, to_document
from rapport.profile.domain.memory import Heard
from rapport.profile.domain.reducer import apply
from rapport.profile.domain.state import Profile, Rules, Stamped
from rapport.profile.domain.views import view
from rapport.profile.stream import Processor

pytestmark = pytest.mark.integration

RULES = Rules()
PARTITIONS = 3


@dataclass
class Topics:
    events: str
    changes: str
    dlq: str


@pytest_asyncio.fixture
async def topics(kafka_settings: KafkaSettings) -> Topics:
    suffix = uuid.uuid4().hex[:8]
    names = Topics(f"t.ev.{suffix}", f"t.ch.{suffix}", f"t.dlq.{suffix}")
    await ensure_topics(
        kafka_settings,
        [TopicSpec(names.events, PARTITIONS), TopicSpec(names.changes, 1), TopicSpec(names.dlq, 1)],
    )
    return names


@pytest_asyncio.fixture
async def store(mongo_settings: MongoSettings) -> AsyncIterator[ProfileStore]:
    client = create_mongo_client(mongo_settings, app_name="rapport-tests")
    try:
        yield ProfileStore(client[f"profile_{uuid.uuid4().hex[:8]}"])
    finally:
        await client.close()


def make_events(rng: random.Random, users: int, count: int) -> list[dict[str, Any]]:
    """Over the last two weeks, all received now; whole seconds, as MongoDB keeps only ms."""
    now = datetime.now(UTC).replace(microsecond=0)
    kinds: list[tuple[str, dict[str, Any]]] = [
        ("item_view", {"item_id": "m-1", "category": "drama"}),
        ("item_view", {"item_id": "m-2", "category": "comedy"}),
        ("purchase", {"item_id": "m-3", "category": "drama", "value": 9.5}),
        ("search", {"query": "space", "category": "scifi"}),
        ("preference", {"attributes": {"language": "fr"}}),
        ("chat_message", {"text": "hi", "attributes": {"sentiment": -0.5, "intent": "refund"}}),
    ]
    events = []
    for _ in range(count):
        type_, fields = rng.choice(kinds)
        # Out of order on purpose: event time jumps back and forth by hours.
        at = now - timedelta(minutes=rng.randint(0, 60 * 24 * 14))
        events.append(
            {
                "event_id": str(uuid.uuid4()),
                "type": type_,
                "user_id": f"user-{rng.randrange(users)}",
                "tenant": "acme",
                "occurred_at": at.isoformat(),
                "received_at": now.isoformat(),
                **fields,
            }
        )
    return events


POISON: list[tuple[bytes, list[tuple[str, bytes]]]] = [
    (b"\xff\xfe not json", [("rapport-schema", b"event.v1")]),
    (b'{"type": "item_view", "user_id": "x"}', [("rapport-schema", b"event.v1")]),
    (json.dumps({"type": "page_view"}).encode(), [("rapport-schema", b"event.v9")]),
]


async def produce(
    kafka: KafkaSettings, topic: str, events: list[dict[str, Any]], poison_every: int = 0
) -> int:
    producer = create_producer(kafka)
    await producer.start()
    poisoned = 0
    try:
        futures = []
        for i, event in enumerate(events):
            futures.append(
                await producer.send(
                    topic,
                    key=event["user_id"].encode(),
                    value=json.dumps(event).encode(),
                    headers=[("rapport-schema", b"event.v1")],
                )
            )
            if poison_every and i % poison_every == 0:
                value, headers = POISON[poisoned % len(POISON)]
                futures.append(
                    await producer.send(topic, key=b"poison", value=value, headers=headers)
                )
                poisoned += 1
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return poisoned


@contextlib.asynccontextmanager
async def running_processor(
    kafka: KafkaSettings,
    topics: Topics,
    store: ProfileStore,
    redis_settings: RedisSettings,
    group: str,
    *,
    processor_class: type[Processor] = Processor,
    commit_interval_s: float = 0.0,
) -> AsyncIterator[Processor]:
    """A processor subscribed to ``topics.events`` in ``group``, running until the exit."""
    consumer = create_consumer(kafka, group_id=group, **TANSU_FAST_GROUP)
    redis = create_redis(redis_settings, client_name="rapport-tests")
    processor = processor_class(
        consumer=consumer,
        producer=create_producer(kafka),
        store=store,
        publisher=Publisher(redis, RULES, ttl_s=3600),
        rules=RULES,
        group_id=group,
        changes_topic=topics.changes,
        dlq_topic=topics.dlq,
        commit_interval_s=commit_interval_s,
    )
    consumer.subscribe([topics.events], listener=processor.rebalance_listener())
    await consumer.start()
    await processor.producer.start()
    stop = asyncio.Event()
    runner = asyncio.create_task(processor.run(stop=stop))
    try:
        yield processor
    finally:
        stop.set()
        await runner
        await consumer.stop()
        await processor.producer.stop()
        await redis.aclose()


async def run_until_caught_up(
    kafka: KafkaSettings,
    topics: Topics,
    store: ProfileStore,
    redis_settings: RedisSettings,
    group: str,
    *,
    from_beginning: bool = False,
    commit_interval_s: float = 0.0,
    processor_class: type[Processor] = Processor,
) -> None:
    async with running_processor(
        kafka,
        topics,
        store,
        redis_settings,
        group,
        commit_interval_s=commit_interval_s,
        processor_class=processor_class,
    ) as processor:
        consumer = processor.consumer
        partitions = [TopicPartition(topics.events, p) for p in range(PARTITIONS)]
        end = await consumer.end_offsets(partitions)
        if from_beginning:
            for _ in range(200):
                if consumer.assignment():
                    break
                await asyncio.sleep(0.05)
            await consumer.seek_to_beginning(*partitions)
        for _ in range(600):
            if from_beginning:
                # Replayed to the end once fetched that far; the runner finishes the batch.
                positions = [await consumer.position(tp) for tp in partitions]
                if all(pos >= end[tp] for pos, tp in zip(positions, partitions, strict=True)):
                    break
            else:
                committed = [await consumer.committed(tp) or 0 for tp in partitions]
                if all(off >= end[tp] for off, tp in zip(committed, partitions, strict=True)):
                    break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("processor did not catch up")


def oracle(events: list[dict[str, Any]]) -> dict[str, Profile]:
    """The reducer over each user's events in production order (their partition's order)."""
    profiles: dict[str, Profile] = {}
    for offset, raw in enumerate(events):
        event = parse_event(raw)
        pid = profile_id(event.tenant, event.user_id)
        profile = profiles.setdefault(pid, Profile(tenant="acme", user_id=event.user_id))
        apply(profile, event, partition=0, offset=offset, rules=RULES)
    return profiles


def essence(profile: Profile) -> dict[str, Any]:
    doc = to_document(profile)
    for key in ("_id", "watermarks", "updated_at"):
        doc.pop(key)
    comparable: dict[str, Any] = json.loads(json.dumps(doc, default=str))
    return comparable


async def state_hash(store: ProfileStore) -> str:
    docs = [doc async for doc in store.profiles.find({}).sort("_id", 1)]
    return hashlib.sha256(json.dumps(docs, default=str, sort_keys=True).encode()).hexdigest()


async def test_profiles_equal_the_oracle_and_poison_goes_to_the_dlq(
    kafka_settings: KafkaSettings,
    topics: Topics,
    store: ProfileStore,
    redis_settings: RedisSettings,
) -> None:
    events = make_events(random.Random(7), users=25, count=800)
    poisoned = await produce(kafka_settings, topics.events, events, poison_every=97)
    group = f"g.{uuid.uuid4().hex[:8]}"
    await run_until_caught_up(kafka_settings, topics, store, redis_settings, group)

    stored = {doc["_id"]: doc async for doc in store.profiles.find({})}
    expected = oracle(events)
    assert set(stored) == set(expected)
    loaded = await store.load(stored)
    for pid, profile in expected.items():
        assert essence(loaded[pid]) == essence(profile), pid

    # Every poison record is dead-lettered, exactly once, with where it came from.
    dlq = await read_all(kafka_settings, topics.dlq)
    assert len(dlq) == poisoned
    headers = dict(dlq[0].headers)
    assert headers["original-topic"] == topics.events.encode()
    assert int(headers["original-offset"]) >= 0
    assert headers["error-class"]

    # Every user's published view is the view of what MongoDB holds, at its version; the
    # changelog has every changed user.
    redis = create_redis(redis_settings, client_name="rapport-tests")
    try:
        for pid, profile in loaded.items():
            version, raw = await redis.hmget(view_key(pid), [VERSION_FIELD, VIEW_FIELD])
            assert version is not None, pid
            assert raw is not None, pid
            assert int(version) == profile.version, pid
            published = PublishedView.model_validate_json(raw)
            assert published.view == view(profile, profile.user_id, "cache", RULES, published.as_of)
    finally:
        await redis.aclose()
    changes = await read_all(kafka_settings, topics.changes)
    assert {r.key.decode() for r in changes} == set(expected)

    # Duplicates plus a replay from offset 0 leave the state exactly as it was.
    before = await state_hash(store)
    await produce(kafka_settings, topics.events, events[:200])  # client retries: same ids
    await run_until_caught_up(kafka_settings, topics, store, redis_settings, group)
    await run_until_caught_up(
        kafka_settings, topics, store, redis_settings, group, from_beginning=True
    )
    assert await state_hash(store) == before


class CountsHearing(Processor):
    """Counts the chat messages memory reads (all instances together)."""

    hearings = 0

    def _hear(self, event: Event) -> tuple[Heard | None, list[float] | None]:
        if isinstance(event, ChatMessageEvent):
            CountsHearing.hearings += 1
        return super()._hear(event)


class DiesBeforeCommitting(CountsHearing):
    """As a process killed between commits: what it applied since its last commit stays
    uncommitted (no flush when idle or on the way out)."""

    async def flush_commits(self) -> None:
        return None


async def positions_at(consumer: AIOKafkaConsumer, end: dict[TopicPartition, int]) -> bool:
    return all([await consumer.position(tp) >= offset for tp, offset in end.items()])


async def test_commits_wait_for_the_interval_and_what_they_held_back_replays_as_a_no_op(
    kafka_settings: KafkaSettings,
    topics: Topics,
    store: ProfileStore,
    redis_settings: RedisSettings,
) -> None:
    events = make_events(random.Random(11), users=10, count=300)
    chats = sum(e["type"] == "chat_message" for e in events)
    CountsHearing.hearings = 0
    group = f"g.{uuid.uuid4().hex[:8]}"
    partitions = [TopicPartition(topics.events, p) for p in range(PARTITIONS)]
    async with running_processor(
        kafka_settings,
        topics,
        store,
        redis_settings,
        group,
        processor_class=DiesBeforeCommitting,
        commit_interval_s=3600,
    ) as processor:
        consumer = processor.consumer
        await produce(kafka_settings, topics.events, events[:1])
        end = await consumer.end_offsets(partitions)
        await eventually(lambda: positions_at(consumer, end), timeout_s=30)
        async with processor.batch_lock:  # the batch that reached the end is done
            pass
        first = {tp: await consumer.committed(tp) for tp in partitions}
        assert sum(o or 0 for o in first.values()) == 1  # the first batch commits at once
        await produce(kafka_settings, topics.events, events[1:])
        end = await consumer.end_offsets(partitions)
        await eventually(lambda: positions_at(consumer, end), timeout_s=30)
        async with processor.batch_lock:
            pass
        # Applied, not committed: the interval has not passed, and this one never flushes.
        assert {tp: await consumer.committed(tp) for tp in partitions} == first
    applied = await state_hash(store)
    stored = {doc["_id"] async for doc in store.profiles.find({}, {"_id": 1})}
    assert stored == set(oracle(events))
    assert CountsHearing.hearings == chats

    # The next owner gets every event again from the last commit; none changes a thing,
    # and memory does not read its chat messages again. Its commits wait for the
    # interval too, and go out once it is idle.
    await run_until_caught_up(
        kafka_settings,
        topics,
        store,
        redis_settings,
        group,
        commit_interval_s=3600,
        processor_class=CountsHearing,
    )
    assert await state_hash(store) == applied
    assert CountsHearing.hearings == chats


async def read_all(kafka: KafkaSettings, topic: str) -> list[Any]:
    consumer = AIOKafkaConsumer(**connection_kwargs(kafka), enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        records: list[Any] = []
        while await consumer.position(tp) < end:
            batch = await consumer.getmany(tp, timeout_ms=200)
            records.extend(batch.get(tp, []))
        return records
    finally:
        await consumer.stop()


async def test_an_erased_user_is_not_resurrected_by_a_replay(
    kafka_settings: KafkaSettings,
    topics: Topics,
    store: ProfileStore,
    redis_settings: RedisSettings,
) -> None:
    events = make_events(random.Random(3), users=2, count=40)
    await produce(kafka_settings, topics.events, events)
    group = f"g.{uuid.uuid4().hex[:8]}"
    await run_until_caught_up(kafka_settings, topics, store, redis_settings, group)
    victim = profile_id("acme", "user-0")
    assert await store.profiles.count_documents({"_id": victim}) == 1
    # What erasure leaves behind: no profile, and a marker dated after every past event.
    await store.profiles.delete_one({"_id": victim})
    erased_after_every_event = datetime.now(UTC)
    await store.erasures.insert_one({"_id": victim, "erased_at": erased_after_every_event})
    await run_until_caught_up(
        kafka_settings, topics, store, redis_settings, group, from_beginning=True
    )
    assert await store.profiles.count_documents({"_id": victim}) == 0
    assert await store.profiles.count_documents({"_id": profile_id("acme", "user-1")}) == 1


async def test_cached_profiles_yield_to_another_writer_and_to_an_erasure(
    kafka_settings: KafkaSettings,
    topics: Topics,
    store: ProfileStore,
    redis_settings: RedisSettings,
) -> None:
    """The processor keeps what it wrote, so it reads no profile it wrote last; another
    writer's compare-and-set (as a forget does) and an erasure both make its next write
    fail, and it reads the profile again."""
    group_id = f"g.{uuid.uuid4().hex[:8]}"
    user, pid = "cached-0", profile_id("acme", "cached-0")

    def event(type_: str, received: datetime, **fields: Any) -> dict[str, Any]:
        at = received.replace(microsecond=0)
        return {
            "event_id": str(uuid.uuid4()),
            "type": type_,
            "user_id": user,
            "tenant": "acme",
            "occurred_at": at.isoformat(),
            "received_at": at.isoformat(),
            **fields,
        }

    async def stored_version(version: int) -> bool:
        found = (await store.load([pid])).get(pid)
        return found is not None and found.version == version

    async with running_processor(
        kafka_settings, topics, store, redis_settings, group_id
    ) as processor:
        now = datetime.now(UTC)
        await produce(kafka_settings, topics.events, [event("item_view", now, item_id="m-1")])
        await eventually(lambda: stored_version(1))
        await eventually(lambda: _cached(processor, pid))

        other = (await store.load([pid]))[pid]
        other.preferences["tone"] = Stamped(value="concise", at=now)
        other.version += 1
        assert await store.save({pid: (1, other)}, existing=[pid]) == set()
        await produce(kafka_settings, topics.events, [event("item_view", now, item_id="m-2")])
        await eventually(lambda: stored_version(3))
        both = (await store.load([pid]))[pid]
        assert both.preferences["tone"].value == "concise", "the other writer's change stays"
        assert [seen.value for seen in both.recent_items] == ["m-2", "m-1"]

        # Erased while the processor holds the profile: a replay of the user's past
        # (received before the erasure) does not bring it back.
        await store.erase(pid, datetime.now(UTC))
        past = event("search", now - timedelta(hours=1), query="boots")
        await produce(kafka_settings, topics.events, [past])
        await wait_committed(kafka_settings, group_id, topics.events, PARTITIONS)
        assert await store.profiles.count_documents({"_id": pid}) == 0
        assert pid not in processor.written


async def _cached(processor: Processor, pid: str) -> bool:
    return pid in processor.written
