"""kill -9 the profile consumer mid-stream, five times: nothing lost, nothing applied twice.

The consumer is a real ``rapport-profile`` process; it is killed with SIGKILL at
random moments while 100,000 events flow, and restarted. Afterwards every
user's ``version`` (one increment per applied event) and counters must equal
an oracle computed from the input.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from rapport.common.kafka import TopicSpec, connection_kwargs, create_producer, ensure_topics
from rapport.common.mongo import create_mongo_client
from rapport.common.settings import KafkaSettings, MongoSettings
from rapport.devstack import processes, servers
from rapport.devstack.servers import RunningServer, ServerSpec
from rapport.profile.store import from_document

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EVENTS = 100_000
USERS = 2_000
KILLS = 5
PARTITIONS = 6
T0 = datetime(2026, 11, 1, tzinfo=UTC)


def profile_process(
    port: int, *, kafka: str, mongo: str, redis: str, suffix: str, database: str
) -> ServerSpec:
    url = f"http://127.0.0.1:{port}"
    return ServerSpec(
        name="profile",
        argv=[servers.console_script("rapport-profile")],
        probe=lambda: servers.probe_http_ok(f"{url}/livez"),
        urls={"profile": url},
        env={
            "RAPPORT_PROFILE_PORT": str(port),
            "RAPPORT_PROFILE_LOG_LEVEL": "WARNING",
            "RAPPORT_KAFKA_BOOTSTRAP_SERVERS": kafka,
            "RAPPORT_MONGO_URL": mongo,
            "RAPPORT_MONGO_DATABASE": database,
            "RAPPORT_REDIS_URL": redis,
            "RAPPORT_PROFILE_GROUP_ID": f"g.crash.{suffix}",
            "RAPPORT_PROFILE_EVENTS_TOPIC": f"t.crash.{suffix}",
            "RAPPORT_PROFILE_CHANGES_TOPIC": f"t.crash-ch.{suffix}",
            "RAPPORT_PROFILE_DLQ_TOPIC": f"t.crash-dlq.{suffix}",
            # Tansu holds a dead member's partitions for about two sessions.
            "RAPPORT_PROFILE_SESSION_TIMEOUT_MS": "2000",
            "RAPPORT_PROFILE_HEARTBEAT_INTERVAL_MS": "500",
            "OTEL_SDK_DISABLED": "true",
        },
    )


async def produce_events(kafka: KafkaSettings, topic: str, rng: random.Random) -> Counter[str]:
    per_user: Counter[str] = Counter()
    producer = create_producer(kafka, max_batch_size=256 * 1024)
    await producer.start()
    try:
        futures = []
        for i in range(EVENTS):
            user = f"user-{rng.randrange(USERS)}"
            per_user[user] += 1
            at = (T0 + timedelta(seconds=rng.randrange(86_400 * 7))).isoformat()
            event = {
                "event_id": str(uuid.uuid4()),
                "type": "item_view",
                "user_id": user,
                "tenant": "acme",
                "item_id": f"m-{i % 500}",
                "category": f"c-{i % 12}",
                "occurred_at": at,
                "received_at": datetime.now(UTC).isoformat(),
            }
            futures.append(
                await producer.send(topic, key=user.encode(), value=json.dumps(event).encode())
            )
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return per_user


async def committed_total(kafka: KafkaSettings, topic: str, group: str) -> int:
    consumer = AIOKafkaConsumer(**connection_kwargs(kafka), group_id=group)
    await consumer.start()
    try:
        total = 0
        for p in range(PARTITIONS):
            total += await consumer.committed(TopicPartition(topic, p)) or 0
        return total
    finally:
        await consumer.stop()


def test_kill_9_five_times_loses_nothing_and_applies_nothing_twice(
    kafka_server: RunningServer,
    mongo_server: RunningServer,
    redis_server: RunningServer,
    tmp_path: Path,
) -> None:
    rng = random.Random(11)
    suffix = uuid.uuid4().hex[:8]
    topic, group, database = f"t.crash.{suffix}", f"g.crash.{suffix}", f"crash_{suffix}"
    kafka = KafkaSettings(kafka_bootstrap_servers=kafka_server.url())
    asyncio.run(
        ensure_topics(
            kafka,
            [
                TopicSpec(topic, PARTITIONS),
                TopicSpec(f"t.crash-ch.{suffix}", 1),
                TopicSpec(f"t.crash-dlq.{suffix}", 1),
            ],
        )
    )
    expected = asyncio.run(produce_events(kafka, topic, rng))

    def start() -> RunningServer:
        spec = profile_process(
            processes.free_port(),
            kafka=kafka_server.url(),
            mongo=mongo_server.url(),
            redis=redis_server.url(),
            suffix=suffix,
            database=database,
        )
        return servers.start(spec, tmp_path)

    kills = 0
    consumer = start()
    try:
        while kills < KILLS:
            asyncio.run(asyncio.sleep(rng.uniform(2.0, 4.0)))
            done = asyncio.run(committed_total(kafka, topic, group))
            assert done < EVENTS, "the stream finished before every kill happened"
            os.kill(consumer.handle.pid, signal.SIGKILL)
            processes.stop(consumer.handle)  # reaps it
            kills += 1
            consumer = start()
        for _ in range(600):
            if asyncio.run(committed_total(kafka, topic, group)) >= EVENTS:
                break
            asyncio.run(asyncio.sleep(0.5))
    finally:
        processes.stop(consumer.handle)

    async def stored() -> dict[str, tuple[int, int]]:
        client = create_mongo_client(MongoSettings(mongo_url=mongo_server.url()), app_name="t")
        try:
            docs = client[database]["profiles"].find({})
            result = {}
            async for doc in docs:
                profile = from_document(doc)
                result[profile.user_id] = (profile.version, profile.counters.get("item_view", 0))
            return result
        finally:
            await client.close()

    state = asyncio.run(stored())
    applied = sum(version for version, _ in state.values())
    lost = sum(max(0, n - state.get(user, (0, 0))[0]) for user, n in expected.items())
    twice = sum(max(0, state.get(user, (0, 0))[0] - n) for user, n in expected.items())
    print(
        f"\ncrash test: {EVENTS} events, {KILLS} x kill -9, applied {applied}, "
        f"lost {lost}, applied twice {twice}"
    )
    assert kills == KILLS
    assert lost == 0
    assert twice == 0
    assert {user: counts[1] for user, counts in state.items()} == dict(expected)
