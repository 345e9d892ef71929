"""Real round trips through the Kafka-protocol broker (Tansu)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from rapport.common.kafka import (
    CONSUMER_DEFAULTS,
    PRODUCER_DEFAULTS,
    TopicSpec,
    create_consumer,
    create_producer,
    ensure_topics,
    ping_kafka,
    process_span,
)
from rapport.common.settings import KafkaSettings
from rapport.devstack.servers import TANSU_FAST_GROUP

pytestmark = pytest.mark.integration


def unique(prefix: str) -> str:
    return f"{prefix}.{uuid.uuid4().hex[:8]}"


async def produce_keyed(settings: KafkaSettings, topic: str, count: int) -> None:
    producer = create_producer(settings)
    await producer.start()
    try:
        sends = [
            await producer.send(topic, key=f"user-{i % 10}".encode(), value=str(i).encode())
            for i in range(count)
        ]
        await asyncio.gather(*sends)
    finally:
        await producer.stop()


async def drain(consumer: AIOKafkaConsumer, expected: int, timeout_s: float = 20) -> list[int]:
    values: list[int] = []
    deadline = asyncio.get_running_loop().time() + timeout_s
    while len(values) < expected and asyncio.get_running_loop().time() < deadline:
        batch = await consumer.getmany(timeout_ms=200)
        for records in batch.values():
            values.extend(int(r.value) for r in records)
        if batch:
            await consumer.commit()
    return values


def test_defaults_are_explicit() -> None:
    assert PRODUCER_DEFAULTS["acks"] == "all"
    assert PRODUCER_DEFAULTS["linger_ms"] <= 5  # never trade visible latency for batching
    assert CONSUMER_DEFAULTS["enable_auto_commit"] is False


async def test_ensure_topics_is_idempotent(kafka_settings: KafkaSettings) -> None:
    spec = TopicSpec(unique("t.ensure"), partitions=3)
    assert await ensure_topics(kafka_settings, [spec]) == [spec.name]
    assert await ensure_topics(kafka_settings, [spec]) == []
    producer = create_producer(kafka_settings)
    consumer = create_consumer(kafka_settings, group_id=None)
    await producer.start()
    await consumer.start()
    try:
        await ping_kafka(producer)
        await ping_kafka(consumer)
        assert len(await producer.partitions_for(spec.name)) == 3
    finally:
        await producer.stop()
        await consumer.stop()


async def test_two_consumers_of_one_group_split_the_partitions(
    kafka_settings: KafkaSettings,
) -> None:
    topic = unique("t.split")
    group = unique("g.split")
    await ensure_topics(kafka_settings, [TopicSpec(topic, partitions=4)])
    first = create_consumer(kafka_settings, topic, group_id=group, **TANSU_FAST_GROUP)
    second = create_consumer(kafka_settings, topic, group_id=group, **TANSU_FAST_GROUP)
    await first.start()
    await second.start()
    try:
        # Wait for the rebalance to give each member a share.
        for _ in range(100):
            await asyncio.gather(first.getmany(timeout_ms=100), second.getmany(timeout_ms=100))
            if first.assignment() and second.assignment():
                break
        parts_a = {tp.partition for tp in first.assignment()}
        parts_b = {tp.partition for tp in second.assignment()}
        assert parts_a
        assert parts_b
        assert parts_a.isdisjoint(parts_b)
        assert parts_a | parts_b == {0, 1, 2, 3}

        await produce_keyed(kafka_settings, topic, 400)
        received: dict[str, list[int]] = {"first": [], "second": []}
        deadline = asyncio.get_running_loop().time() + 20
        while sum(map(len, received.values())) < 400:
            assert asyncio.get_running_loop().time() < deadline, received
            batches = await asyncio.gather(
                first.getmany(timeout_ms=200), second.getmany(timeout_ms=200)
            )
            for name, batch in zip(received, batches, strict=True):
                received[name].extend(int(r.value) for rs in batch.values() for r in rs)
        assert sorted(received["first"] + received["second"]) == list(range(400))
        assert received["first"], "both members must receive records"
        assert received["second"], "both members must receive records"
    finally:
        await asyncio.gather(first.stop(), second.stop())


async def test_restarted_consumer_resumes_at_committed_offset(
    kafka_settings: KafkaSettings,
) -> None:
    topic = unique("t.resume")
    group = unique("g.resume")
    await ensure_topics(kafka_settings, [TopicSpec(topic, partitions=1)])
    await produce_keyed(kafka_settings, topic, 10)

    consumer = create_consumer(
        kafka_settings, topic, group_id=group, max_poll_records=4, **TANSU_FAST_GROUP
    )
    await consumer.start()
    try:
        seen: list[int] = []
        while len(seen) < 4:
            batch = await consumer.getmany(timeout_ms=500, max_records=4 - len(seen))
            seen.extend(int(r.value) for records in batch.values() for r in records)
        await consumer.commit()  # commits exactly what was consumed: offsets 0-3
    finally:
        await consumer.stop()
    assert seen == [0, 1, 2, 3]

    restarted = create_consumer(kafka_settings, topic, group_id=group, **TANSU_FAST_GROUP)
    await restarted.start()
    try:
        rest = await drain(restarted, 6)
        assert await restarted.committed(TopicPartition(topic, 0)) == 10
    finally:
        await restarted.stop()
    assert rest == [4, 5, 6, 7, 8, 9]


async def test_producer_trace_context_parents_the_consumer_span(
    kafka_settings: KafkaSettings, spans: InMemorySpanExporter
) -> None:
    topic = unique("t.trace")
    group = unique("g.trace")
    await ensure_topics(kafka_settings, [TopicSpec(topic, partitions=1)])
    producer = create_producer(kafka_settings)
    await producer.start()
    try:
        await producer.send_and_wait(topic, key=b"u-1", value=b"hello")
    finally:
        await producer.stop()

    consumer = create_consumer(kafka_settings, topic, group_id=group, **TANSU_FAST_GROUP)
    await consumer.start()
    try:
        record = None
        while record is None:
            batch = await consumer.getmany(timeout_ms=500)
            record = next((r for rs in batch.values() for r in rs), None)
        assert any(name == "traceparent" for name, _ in record.headers)
        with process_span(record, group_id=group) as span:
            processing = span.get_span_context()
    finally:
        await consumer.stop()

    finished = spans.get_finished_spans()
    producer_span = next(s for s in finished if s.kind == SpanKind.PRODUCER and topic in s.name)
    process = next(s for s in finished if s.context.span_id == processing.span_id)
    assert process.kind == SpanKind.CONSUMER
    assert process.parent is not None
    assert process.parent.span_id == producer_span.context.span_id
    assert process.context.trace_id == producer_span.context.trace_id
    assert process.attributes is not None
    assert process.attributes["messaging.kafka.offset"] == record.offset
