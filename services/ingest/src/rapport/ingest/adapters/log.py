"""The event log (Kafka): records produced with ``acks=all``, one span per publish.

Events and documents go through the same :meth:`EventLog.publish`. A partition's
records go through ``send`` when there are a few (aiokafka then merges them with
other requests' records into one batch) and as whole batches when there are many
(``send`` costs per record, and a large request paid mostly for that). The
partition is the default partitioner's (murmur2 of the key), exactly what a keyed
``send`` would choose.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner
from opentelemetry import propagate, trace

tracer = trace.get_tracer("rapport.ingest")

# Below this many records for one partition, `send` (which merges concurrent requests'
# records) beats building a batch (which waits for the partition's previous batch).
WHOLE_BATCH_MIN_RECORDS = 8

Header = tuple[str, bytes]


@dataclass
class Delivery:
    """What became of each record given to :meth:`EventLog.publish`, by its index."""

    acked: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    # Never handed to the producer by the deadline.
    unsent: list[int] = field(default_factory=list)
    # Handed over, not acknowledged by the deadline: each future still settles later.
    pending: dict[asyncio.Future[Any], list[int]] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return not (self.failed or self.unsent or self.pending)


class EventLog:
    def __init__(self, producer: AIOKafkaProducer) -> None:
        self.producer = producer
        self.partitioner = DefaultPartitioner()

    async def publish(
        self,
        topic: str,
        records: Sequence[tuple[bytes, bytes]],
        *,
        header: Header,
        deadline_s: float,
    ) -> Delivery:
        """Produce ``(key, value)`` records and wait for their acknowledgements, at most
        ``deadline_s`` in all."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + deadline_s
        with tracer.start_as_current_span(
            f"publish {topic}",
            kind=trace.SpanKind.PRODUCER,
            attributes={
                "messaging.system": "kafka",
                "messaging.destination.name": topic,
                "messaging.batch.message_count": len(records),
            },
        ) as span:
            # This span's context goes into every batched record, so consumers continue
            # this trace (the aiokafka instrumentation adds it on the `send` path).
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            trace_headers = [(k, v.encode()) for k, v in carrier.items()]
            sent, unsent = await self._send(topic, records, header, trace_headers, deadline)
            remaining = max(0.0, deadline - loop.time())
            done, pending = await asyncio.wait(sent, timeout=remaining) if sent else (set(), set())
            delivery = Delivery(unsent=unsent, pending={f: sent[f] for f in pending})
            for future in done:
                ok = not future.cancelled() and future.exception() is None
                (delivery.acked if ok else delivery.failed).extend(sent[future])
            if not delivery.complete:
                span.set_status(trace.StatusCode.ERROR, "broker did not acknowledge in time")
        return delivery

    async def _send(
        self,
        topic: str,
        records: Sequence[tuple[bytes, bytes]],
        header: Header,
        trace_headers: list[Header],
        deadline: float,
    ) -> tuple[dict[asyncio.Future[Any], list[int]], list[int]]:
        """Hand the records to the producer: delivery futures (with the indexes each
        covers), and the indexes never handed over by the deadline."""
        sent: dict[asyncio.Future[Any], list[int]] = {}
        try:
            async with asyncio.timeout_at(deadline):
                # Waits for metadata when the topic is not known yet (inside the deadline).
                partitions = sorted(await self.producer.partitions_for(topic))
                by_partition: dict[int, list[int]] = {}
                for index, (key, _) in enumerate(records):
                    partition = self.partitioner(key, partitions, partitions)
                    by_partition.setdefault(partition, []).append(index)
                for partition, group in by_partition.items():
                    if len(group) < WHOLE_BATCH_MIN_RECORDS:
                        for index in group:
                            key, value = records[index]
                            future = await self.producer.send(
                                topic, value=value, key=key, partition=partition, headers=[header]
                            )
                            sent[future] = [index]
                        continue
                    members: list[int] = []
                    batch = self.producer.create_batch()
                    for index in group:
                        key, value = records[index]
                        record = {
                            "timestamp": None,
                            "key": key,
                            "value": value,
                            "headers": [header, *trace_headers],
                        }
                        if batch.append(**record) is None:  # full: ship it, start another
                            sent[await self._ship(batch, topic, partition)] = members
                            members, batch = [], self.producer.create_batch()
                            batch.append(**record)
                        members.append(index)
                    sent[await self._ship(batch, topic, partition)] = members
        except (TimeoutError, KafkaError):
            pass  # what was not handed over by the deadline is reported as unsent
        shipped = {index for members in sent.values() for index in members}
        return sent, [index for index in range(len(records)) if index not in shipped]

    async def _ship(self, batch: Any, topic: str, partition: int) -> asyncio.Future[Any]:
        batch.close()
        future: asyncio.Future[Any] = await self.producer.send_batch(
            batch, topic, partition=partition
        )
        return future
