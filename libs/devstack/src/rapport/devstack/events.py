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

from rapport.common.events import SCHEMA_HEADER
from rapport.common.kafka import create_producer
from rapport.common.settings import KafkaSettings

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
