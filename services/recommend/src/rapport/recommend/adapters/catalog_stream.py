"""``rapport.catalog.v1`` into the catalogue overlay: every partition, from offset 0.

No consumer group: every replica assigns itself every partition and holds the whole
overlay (the topic is compacted, one record per item, small beside a model). Nothing
is committed; a restart reads the topic again from the beginning, which rebuilds the
same overlay because an item's records are applied in their partition's order. A new
record is applied the moment it is fetched (the fetch waits at most
``FETCH_MAX_WAIT_MS`` for one), so an item posted to ingest is a candidate within a
second.

A record that does not parse (another producer's, a newer schema) is counted and
skipped: the topic belongs to the catalogue's publishers, and every replica would
dead-letter the same record. A compaction tombstone (a null value) is skipped too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from rapport.common.catalog import CATALOG_RECORD, CATALOG_SCHEMA_HEADER
from rapport.common.kafka import PoisonRecord, create_consumer, parse_value, process_span
from rapport.common.settings import KafkaSettings
from rapport.recommend.domain import CatalogOverlay
from rapport.recommend.metrics import RecommendMetrics

log = logging.getLogger(__name__)

# The broker answers a fetch as soon as a record arrives; this bounds the wait when the
# topic is quiet (and the latency on a broker that does not hold fetches open).
FETCH_MAX_WAIT_MS = 250
PARTITIONS_CHECK_S = 60.0  # how often the topic is asked whether it has grown partitions
MAX_RETRY_S = 30.0  # a broker that stays away is tried less often (and logged less)


class CatalogStream:
    def __init__(
        self,
        kafka: KafkaSettings,
        topic: str,
        overlay: CatalogOverlay,
        metrics: RecommendMetrics,
        *,
        retry_s: float = 1.0,
    ) -> None:
        self.kafka = kafka
        self.topic = topic
        self.overlay = overlay
        self.metrics = metrics
        self.retry_s = retry_s
        # Where each partition was read to: a consumer started again after a failure
        # resumes there, so the overlay never steps back to an item's older version.
        self.positions: dict[TopicPartition, int] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        delay = self.retry_s
        while True:
            consumer = create_consumer(
                self.kafka,
                group_id=None,
                client_id="rapport-recommend-catalog",
                fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
            )
            read_before = len(self.positions)
            try:
                await consumer.start()
                await self._follow(consumer)
            except Exception as exc:  # the broker may be starting or gone: start again
                log.warning(
                    "catalogue stream interrupted; starting again",
                    extra={"error": str(exc)[:200], "retry_s": delay},
                )
            finally:
                with contextlib.suppress(Exception):
                    await consumer.stop()
            await asyncio.sleep(delay)
            progressed = len(self.positions) > read_before
            delay = self.retry_s if progressed else min(delay * 2, MAX_RETRY_S)

    async def _follow(self, consumer: AIOKafkaConsumer) -> None:
        assigned: set[TopicPartition] = set()
        checked_at = float("-inf")
        while True:
            if time.monotonic() - checked_at > PARTITIONS_CHECK_S or not assigned:
                await consumer.topics()  # fresh metadata: a topic created or grown since
                partitions = consumer.partitions_for_topic(self.topic) or set()
                found = {TopicPartition(self.topic, p) for p in partitions}
                checked_at = time.monotonic()
                if found and found != assigned:
                    await self._assign(consumer, found)
                    assigned = found
                if not assigned:  # no topic yet: an empty catalogue
                    await asyncio.sleep(self.retry_s)
                    continue
            batch = await consumer.getmany(timeout_ms=1000, max_records=1000)
            for tp, records in batch.items():
                for record in records:
                    self._apply(record)
                self.positions[tp] = records[-1].offset + 1
            self.metrics.catalog_overlay_items.set(len(self.overlay))
            lag = 0
            for tp in assigned:
                highwater = consumer.highwater(tp)
                if highwater is not None:
                    lag += max(0, highwater - await consumer.position(tp))
            self.metrics.catalog_lag.set(lag)

    async def _assign(self, consumer: AIOKafkaConsumer, partitions: set[TopicPartition]) -> None:
        consumer.assign(sorted(partitions, key=lambda tp: tp.partition))
        unread = [tp for tp in partitions if tp not in self.positions]
        if unread:
            await consumer.seek_to_beginning(*unread)
        for tp in partitions - set(unread):
            consumer.seek(tp, self.positions[tp])
        log.info(
            "reading the catalogue", extra={"topic": self.topic, "partitions": len(partitions)}
        )

    def _apply(self, record: ConsumerRecord[bytes, bytes]) -> None:
        with process_span(record, group_id=None, name=f"apply {self.topic}"):
            try:
                parsed = parse_value(record, CATALOG_SCHEMA_HEADER, CATALOG_RECORD.validate_json)
            except PoisonRecord as exc:
                self.metrics.catalog_records.labels("invalid").inc()
                log.warning(
                    "catalogue record skipped",
                    extra={
                        "partition": record.partition,
                        "offset": record.offset,
                        "error": str(exc),
                    },
                )
                return
            if parsed is None:
                self.metrics.catalog_records.labels("tombstone").inc()
                return
            self.overlay.apply(parsed)
            self.metrics.catalog_records.labels(parsed.op).inc()
