"""Faults around real ``rapport-profile`` processes: kill -9 and rebalances.

Afterwards every user's ``version`` (one increment per applied event) and
counters must equal an oracle computed from the input: nothing lost, nothing
applied twice.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from rapport.chaos.stream import item_views
from rapport.common.kafka import TopicSpec, connection_kwargs, ensure_topics
from rapport.common.mongo import create_mongo_client
from rapport.common.settings import KafkaSettings, MongoSettings
from rapport.devstack import processes, servers
from rapport.devstack.events import produce
from rapport.devstack.scrape import sample_sum
from rapport.devstack.servers import RunningServer, ServerSpec
from rapport.devstack.stack import service_spec
from rapport.devstack.waiting import eventually
from rapport.profile.adapters.store import from_document

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EVENTS = 100_000
USERS = 2_000
KILLS = 5
PARTITIONS = 6


@dataclass
class Stream:
    """Private topics, group and database for one test, and a way to start consumers."""

    kafka: KafkaSettings
    mongo: str
    redis: str
    suffix: str
    log_dir: Path

    @property
    def topic(self) -> str:
        return f"t.crash.{self.suffix}"

    @property
    def group(self) -> str:
        return f"g.crash.{self.suffix}"

    @property
    def database(self) -> str:
        return f"faults_{self.suffix}"

    def start(self) -> RunningServer:
        """A new rapport-profile process in the group (blocks until it serves)."""
        spec = profile_process(
            processes.free_port(),
            kafka=self.kafka.kafka_bootstrap_servers,
            mongo=self.mongo,
            redis=self.redis,
            suffix=self.suffix,
            database=self.database,
        )
        return servers.start(spec, self.log_dir)


@pytest.fixture
def stream(
    kafka_server: RunningServer,
    mongo_server: RunningServer,
    redis_server: RunningServer,
    tmp_path: Path,
) -> Stream:
    suffix = uuid.uuid4().hex[:8]
    kafka = KafkaSettings(kafka_bootstrap_servers=kafka_server.url())
    created = Stream(kafka, mongo_server.url(), redis_server.url(), suffix, tmp_path)
    asyncio.run(
        ensure_topics(
            kafka,
            [
                TopicSpec(created.topic, PARTITIONS),
                TopicSpec(f"t.crash-ch.{suffix}", 1),
                TopicSpec(f"t.crash-dlq.{suffix}", 1),
            ],
        )
    )
    return created


def profile_process(
    port: int, *, kafka: str, mongo: str, redis: str, suffix: str, database: str
) -> ServerSpec:
    return service_spec(
        "profile",
        port,
        {
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


async def produce_events(
    kafka: KafkaSettings, topic: str, rng: random.Random, count: int = EVENTS
) -> Counter[str]:
    """``count`` item views over USERS users, on the topic; how many each user got."""
    records, per_user = item_views(rng, count, users=USERS)
    await produce(kafka, topic, records)
    return per_user


async def committed_total(
    kafka: KafkaSettings, topic: str, group: str, partitions: int = PARTITIONS
) -> int:
    """How many records the group has committed, over every partition."""
    consumer = AIOKafkaConsumer(**connection_kwargs(kafka), group_id=group)
    await consumer.start()
    try:
        total = 0
        for p in range(partitions):
            total += await consumer.committed(TopicPartition(topic, p)) or 0
        return total
    finally:
        await consumer.stop()


def test_kill_9_five_times_loses_nothing_and_applies_nothing_twice(stream: Stream) -> None:
    # The stream is produced in chunks, each while no consumer runs, and every
    # consumer is killed soon after it starts applying: each kill lands with work
    # left (a chunk is ~16k events; the kill comes within 0.5 s of the first).
    rng = random.Random(11)
    topic, group, kafka, start = stream.topic, stream.group, stream.kafka, stream.start
    chunk = EVENTS // (KILLS + 1)
    expected: Counter[str] = Counter()
    committed_at_kill = []
    for _ in range(KILLS):
        expected += asyncio.run(produce_events(kafka, topic, rng, count=chunk))
        consumer = start()
        try:
            asyncio.run(applied_at_least(consumer))
            # Somewhere in its next batches, not always right after the first commit.
            asyncio.run(asyncio.sleep(rng.uniform(0.05, 0.5)))
            os.kill(consumer.handle.pid, signal.SIGKILL)
        finally:
            processes.stop(consumer.handle)  # reaps it
        committed_at_kill.append(asyncio.run(committed_total(kafka, topic, group)))
        assert committed_at_kill[-1] < expected.total(), "a kill landed after the work was done"

    expected += asyncio.run(produce_events(kafka, topic, rng, count=EVENTS - chunk * KILLS))
    consumer = start()
    try:
        asyncio.run(committed_at_least(kafka, topic, group, EVENTS))
    finally:
        processes.stop(consumer.handle)

    print(f"\ncommitted at each kill: {committed_at_kill}")
    assert len(committed_at_kill) == KILLS
    check_against_oracle(stream.mongo, stream.database, expected, f"{KILLS} x kill -9")


async def applied_at_least(server: RunningServer, at_least: float = 1) -> None:
    """Until the process has applied ``at_least`` events (its own /metrics)."""

    async def reached() -> bool:
        return await applied_by(server) >= at_least

    await eventually(reached, timeout_s=60, interval_s=0.02)


async def committed_at_least(
    kafka: KafkaSettings,
    topic: str,
    group: str,
    total: int,
    *,
    partitions: int = PARTITIONS,
    timeout_s: float = 300,
) -> None:
    async def reached() -> bool:
        return await committed_total(kafka, topic, group, partitions) >= total

    await eventually(reached, timeout_s=timeout_s, interval_s=0.5)


def check_against_oracle(mongo: str, database: str, expected: Counter[str], label: str) -> None:
    async def stored() -> dict[str, tuple[int, int]]:
        client = create_mongo_client(MongoSettings(mongo_url=mongo), app_name="t")
        try:
            result = {}
            async for doc in client[database]["profiles"].find({}):
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
        f"\n{label}: {sum(expected.values())} events, applied {applied}, "
        f"lost {lost}, applied twice {twice}"
    )
    assert lost == 0
    assert twice == 0
    assert {user: counts[1] for user, counts in state.items()} == dict(expected)


def test_two_processes_split_the_partitions_and_a_rebalance_loses_nothing(
    stream: Stream,
) -> None:
    # Phased, not timed: each step produces new work and waits for the member it
    # is about, so the join and the leave both happen with records still to apply.
    rng = random.Random(5)
    topic, group, kafka, start = stream.topic, stream.group, stream.kafka, stream.start
    chunk = 10_000
    expected = asyncio.run(produce_events(kafka, topic, rng, count=chunk))

    first = start()
    second: RunningServer | None = None
    try:
        asyncio.run(applied_at_least(first))
        second = start()  # joins: the partitions are split
        expected += asyncio.run(produce_events(kafka, topic, rng, count=chunk))
        # Only a member that was given partitions can apply anything.
        asyncio.run(applied_at_least(second))

        first_applied = asyncio.run(applied_by(first))
        expected += asyncio.run(produce_events(kafka, topic, rng, count=chunk))
        asyncio.run(applied_at_least(first, at_least=first_applied + 1))
        second_before_leave = asyncio.run(applied_by(second))
        processes.stop(first.handle)  # leaves: its partitions move to the second

        expected += asyncio.run(produce_events(kafka, topic, rng, count=chunk))
        asyncio.run(committed_at_least(kafka, topic, group, 4 * chunk))
        # The last chunk covers every partition, so the second applied at least all of it.
        assert asyncio.run(applied_by(second)) - second_before_leave >= chunk
    finally:
        processes.stop(first.handle)
        if second is not None:
            processes.stop(second.handle)
    check_against_oracle(stream.mongo, stream.database, expected, "rebalance test")


async def applied_by(server: RunningServer) -> float:
    """Events a process has applied, from its own /metrics."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{server.url()}/metrics") as response,
    ):
        return sample_sum(await response.text(), "rapport_profile_events_total", outcome="applied")
