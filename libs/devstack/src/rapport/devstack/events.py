"""Events put straight onto a topic, past ingest, as ingest would put them.

For tests and the chaos harness: keyed by user id (one user's events stay in
one partition, in order), with the schema header and the server fields set.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from rapport.common.events import SCHEMA_HEADER
from rapport.common.kafka import connection_kwargs, create_producer, read_until_end
from rapport.common.settings import KafkaSettings
from rapport.devstack.waiting import eventually

Record = tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]


def event(
    user: str,
    type_: str = "item_view",
    at: datetime | None = None,
    *,
    tenant: str = "acme",
    **fields: Any,
) -> dict[str, Any]:
    """An event as ingest puts it on the topic; ``at`` is its ``occurred_at`` (default now)."""
    now = datetime.now(UTC).isoformat()
    return {
        "event_id": str(uuid.uuid4()),
        "type": type_,
        "user_id": user,
        "tenant": tenant,
        "occurred_at": at.isoformat() if at else now,
        "received_at": now,
        **fields,
    }


def record(value: dict[str, Any]) -> Record:
    return (value["user_id"].encode(), json.dumps(value).encode(), [SCHEMA_HEADER])


async def produce(kafka: KafkaSettings, topic: str, records: Iterable[Record]) -> list[Any]:
    """Produce with acks=all; returns each record's metadata (partition, offset) in order."""
    producer = create_producer(kafka, max_batch_size=256 * 1024)
    await producer.start()
    try:
        futures = [
            await producer.send(topic, key=key, value=value, headers=headers)
            for key, value, headers in records
        ]
        return list(await asyncio.gather(*futures))
    finally:
        await producer.stop()


async def publish(kafka: KafkaSettings, topic: str, *events: dict[str, Any]) -> None:
    """``events`` on ``topic``, acknowledged, in order."""
    await produce(kafka, topic, [record(e) for e in events])


# Tansu 0.6 answers ListOffsets(LATEST) with the last batch's base offset + 1, not the
# log end, so ``end_offsets`` undercounts a partition written in batches. The high
# watermark in fetch responses is right: drain reads it, and read_topic reads through
# rapport.common.kafka.read_until_end, which takes the larger of the two.


async def drain(consumer: AIOKafkaConsumer, tps: list[TopicPartition]) -> list[Any]:
    """Fetch until every partition's position has reached its high watermark."""
    records: list[Any] = []
    for _ in range(100_000):
        batches = await consumer.getmany(*tps, timeout_ms=50)
        records += [r for batch in batches.values() for r in batch]
        marks = [consumer.highwater(tp) for tp in tps]
        if None not in marks and all(
            [await consumer.position(tp) >= mark for tp, mark in zip(tps, marks, strict=True)]
        ):
            return records
    raise RuntimeError("the topic never ended")


async def read_topic(kafka: KafkaSettings, topic: str, partitions: int) -> list[Any]:
    """Every record on the topic now, partition by partition."""
    consumer = AIOKafkaConsumer(
        **connection_kwargs(kafka), enable_auto_commit=False, fetch_max_wait_ms=10
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        return [r async for r in read_until_end(consumer, tps, fetch_timeout_ms=50)]
    finally:
        await consumer.stop()


async def wait_committed(
    kafka: KafkaSettings, group_id: str, topic: str, partitions: int, timeout_s: float = 30
) -> None:
    """Until ``group_id`` has committed everything on ``topic`` now (a consumer caught up)."""
    group = AIOKafkaConsumer(**connection_kwargs(kafka), group_id=group_id)
    await group.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        end = await group.end_offsets(tps)

        async def committed() -> bool:
            return all([(await group.committed(tp) or 0) >= end[tp] for tp in tps])

        await eventually(committed, timeout_s)
    finally:
        await group.stop()
