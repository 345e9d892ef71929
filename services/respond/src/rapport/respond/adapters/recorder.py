"""Records chat messages as ``chat_message`` events, produced straight to Kafka.

The producer connects in the background: the gateway starts and serves without
Kafka (it degrades), and records again as soon as the broker answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer
from uuid_utils.compat import uuid7

from rapport.common.events import (
    SCHEMA_HEADER,
    ChatMessageEventIn,
    EventIn,
    ExposureAttributes,
    ExposureEventIn,
    encode_for_topic,
)
from rapport.common.kafka import create_producer, ping_kafka
from rapport.common.settings import KafkaSettings
from rapport.common.vectors import MessageVector

log = logging.getLogger(__name__)

# Sends waiting for the broker; past this the gateway stops recording rather than queueing.
MAX_PENDING = 10_000
MAX_TEXT = 4096


class RecorderUnavailable(Exception):
    pass


class EventRecorder:
    def __init__(self, settings: KafkaSettings, *, topic: str, retry_s: float) -> None:
        self.settings = settings
        self.topic = topic
        self.retry_s = retry_s
        self.producer: AIOKafkaProducer | None = None
        self._connecting: asyncio.Task[None] | None = None
        self.pending: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._connecting = asyncio.create_task(self._connect())

    async def _connect(self) -> None:
        while True:
            producer = create_producer(self.settings)
            try:
                await producer.start()
            except Exception as exc:  # any start-up failure: try again later
                log.warning(
                    "kafka unavailable; chat messages are not recorded",
                    extra={"error": f"{type(exc).__name__}: {exc}"[:200]},
                )
                with contextlib.suppress(Exception):
                    await producer.stop()
                await asyncio.sleep(self.retry_s)
                continue
            self.producer = producer
            log.info("kafka producer connected")
            return

    async def stop(self, drain_s: float = 5.0) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connecting
        if self.pending:
            await asyncio.wait(self.pending, timeout=drain_s)
        if self.producer is not None:
            await self.producer.stop()

    async def ping(self) -> None:
        if self.producer is None:
            raise RecorderUnavailable("not connected to Kafka yet")
        await ping_kafka(self.producer)

    def record(
        self,
        *,
        tenant: str,
        user_id: str,
        session_id: str | None,
        text: str,
        attributes: dict[str, str | float],
        vector: MessageVector | None = None,
    ) -> asyncio.Task[None]:
        """Start producing one event; the task ends when the broker acknowledges it."""
        now = datetime.now(UTC)
        event = ChatMessageEventIn(
            type="chat_message",
            user_id=user_id,
            session_id=session_id,
            occurred_at=now,
            source="respond",
            text=text[:MAX_TEXT],
            attributes=attributes or None,
            vector=vector,
        )
        return self._start(event, tenant, now)

    def record_exposure(
        self, *, tenant: str, user_id: str, session_id: str | None, experiment: str, variant: str
    ) -> asyncio.Task[None]:
        """Start producing an ``exposure`` event, like :meth:`record`."""
        now = datetime.now(UTC)
        event = ExposureEventIn(
            type="exposure",
            user_id=user_id,
            session_id=session_id,
            occurred_at=now,
            source="respond",
            attributes=ExposureAttributes(experiment=experiment, variant=variant),
        )
        return self._start(event, tenant, now)

    def _start(self, event: EventIn, tenant: str, now: datetime) -> asyncio.Task[None]:
        if self.producer is None:
            raise RecorderUnavailable("not connected to Kafka")
        if len(self.pending) >= MAX_PENDING:
            raise RecorderUnavailable("too many events waiting for the broker")
        value = encode_for_topic(event, event_id=uuid7(), received_at=now, tenant=tenant)
        task = asyncio.create_task(self._send(self.producer, event.user_id.encode(), value))
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)
        return task

    async def _send(self, producer: AIOKafkaProducer, key: bytes, value: bytes) -> None:
        # Keyed by user id: one user's events stay ordered in one partition.
        delivery = await producer.send(self.topic, value=value, key=key, headers=[SCHEMA_HEADER])
        await delivery
