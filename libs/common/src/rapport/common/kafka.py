"""Kafka clients (aiokafka) with explicit defaults, topic names and trace context.

Produce side: ``AIOKafkaInstrumentor`` (enabled by ``setup_telemetry``) writes
W3C ``traceparent`` into the record headers of every send, under a producer
span. Consume side: :func:`record_context` reads it back and
:func:`process_span` starts the span that processes one record as a child of
the producer's span, so a trace runs through the broker.

Defaults (each one overridable by keyword):

producer
  ``acks="all"``: a send is acknowledged only once every in-sync replica has
  it; nothing is ever acknowledged to a client before that.
  ``linger_ms=0``: aiokafka already batches whatever accumulates while a
  request to the partition leader is in flight, so lingering only adds delay.
  Measured with ``bench/infra.py`` (acks=all, 2,000 sends, loopback Tansu):
  linger 0 gave p50 0.23 ms at concurrency 1 and 77k sends/s at 64 in flight;
  linger 2 gave p50 2.5 ms and 19k sends/s. Re-measure against real Kafka.
  ``enable_idempotence=False``: Tansu (the local broker) rejects the idempotent
  producer; duplicates are absorbed by the application's event ids instead.
  ``request_timeout_ms=5000``: callers add their own, shorter deadlines.
consumer
  ``enable_auto_commit=False``: offsets are committed by the application only
  after the state derived from a batch is durable.
  ``auto_offset_reset="earliest"``: a new group starts at the beginning rather
  than silently skipping what is already on the topic.
  ``fetch_max_wait_ms=10``: keeps event-to-profile freshness in milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.helpers import create_ssl_context
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter
from prometheus_client import Gauge
from pydantic import ValidationError

from rapport.common.settings import KafkaSettings

log = logging.getLogger(__name__)

Headers = Sequence[tuple[str, bytes]]

PRODUCER_DEFAULTS: dict[str, Any] = {
    "acks": "all",
    "linger_ms": 0,
    "enable_idempotence": False,
    "request_timeout_ms": 5000,
    "max_batch_size": 64 * 1024,
}

CONSUMER_DEFAULTS: dict[str, Any] = {
    "enable_auto_commit": False,
    "auto_offset_reset": "earliest",
    "fetch_max_wait_ms": 10,
    "max_poll_records": 500,
    "session_timeout_ms": 10_000,
    "heartbeat_interval_ms": 3_000,
}


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int = 1
    config: tuple[tuple[str, str], ...] = ()


EVENTS_TOPIC = "rapport.events.v1"
EVENTS_DLQ_TOPIC = "rapport.events.dlq.v1"
PROFILE_CHANGES_TOPIC = "rapport.profile-changes.v1"
KNOWLEDGE_TOPIC = "rapport.knowledge.v1"
KNOWLEDGE_DLQ_TOPIC = "rapport.knowledge.dlq.v1"
CATALOG_TOPIC = "rapport.catalog.v1"


def default_topics(partitions: int = 6, replication_factor: int = 1) -> list[TopicSpec]:
    """Every topic Rapport uses. The changelog is compacted (latest state per user), and so
    is the knowledge topic (latest version of every document: a replay rebuilds the index),
    and so is the catalogue (latest version of every item: recommend replays it on start)."""
    return [
        TopicSpec(EVENTS_TOPIC, partitions, replication_factor),
        TopicSpec(EVENTS_DLQ_TOPIC, 1, replication_factor),
        TopicSpec(
            PROFILE_CHANGES_TOPIC,
            partitions,
            replication_factor,
            (("cleanup.policy", "compact"),),
        ),
        TopicSpec(
            KNOWLEDGE_TOPIC, partitions, replication_factor, (("cleanup.policy", "compact"),)
        ),
        TopicSpec(KNOWLEDGE_DLQ_TOPIC, 1, replication_factor),
        TopicSpec(CATALOG_TOPIC, partitions, replication_factor, (("cleanup.policy", "compact"),)),
    ]


def connection_kwargs(settings: KafkaSettings) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "security_protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        kwargs["ssl_context"] = create_ssl_context()
    if settings.kafka_sasl_mechanism is not None:
        kwargs["sasl_mechanism"] = settings.kafka_sasl_mechanism
        kwargs["sasl_plain_username"] = settings.kafka_sasl_username
        if settings.kafka_sasl_password is not None:
            kwargs["sasl_plain_password"] = settings.kafka_sasl_password.get_secret_value()
    return kwargs


def create_producer(settings: KafkaSettings, **overrides: Any) -> AIOKafkaProducer:
    """A producer with the defaults above. The caller starts and stops it."""
    return AIOKafkaProducer(**connection_kwargs(settings), **{**PRODUCER_DEFAULTS, **overrides})


def create_consumer(
    settings: KafkaSettings, *topics: str, group_id: str | None, **overrides: Any
) -> AIOKafkaConsumer:
    """A consumer with manual commits. The caller starts, commits and stops it."""
    return AIOKafkaConsumer(
        *topics,
        group_id=group_id,
        **connection_kwargs(settings),
        **{**CONSUMER_DEFAULTS, **overrides},
    )


async def ensure_topics(settings: KafkaSettings, topics: Sequence[TopicSpec]) -> list[str]:
    """Create the topics that are missing; returns the names it created.

    Tansu and many managed clusters do not auto-create topics, and a consumer
    subscribed to a missing topic waits silently. Existing topics are left as
    they are, whatever their partition count.
    """
    admin = AIOKafkaAdminClient(**connection_kwargs(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [spec for spec in topics if spec.name not in existing]
        if not missing:
            return []
        new_topics = [
            NewTopic(
                name=spec.name,
                num_partitions=spec.partitions,
                replication_factor=spec.replication_factor,
                topic_configs=dict(spec.config),
            )
            for spec in missing
        ]
        try:
            await admin.create_topics(new_topics)
        except TopicAlreadyExistsError:
            log.info("topics created concurrently by another client")
        created = [spec.name for spec in missing]
        log.info("created kafka topics", extra={"topics": created})
        return created
    finally:
        await admin.close()


async def read_until_end(
    consumer: AIOKafkaConsumer, tps: Sequence[TopicPartition], *, fetch_timeout_ms: int = 200
) -> AsyncIterator[ConsumerRecord[Any, Any]]:
    """The records of ``tps`` (assigned, positioned) up to each partition's end as first
    seen; records written after that are left.

    The end is the larger of ListOffsets' answer and the first fetch response's high
    watermark: Tansu (the local broker) answers ListOffsets with the last batch's base
    offset + 1, short of the log end when a partition was written in batches.
    """
    begin = await consumer.beginning_offsets(list(tps))
    listed = await consumer.end_offsets(list(tps))
    ends: dict[TopicPartition, int] = {}
    pending = {tp for tp in tps if listed[tp] > begin[tp]}
    while pending:
        batches = await consumer.getmany(*pending, timeout_ms=fetch_timeout_ms)
        for tp in list(pending):
            mark = consumer.highwater(tp)
            if tp not in ends and mark is not None:
                ends[tp] = max(listed[tp], mark)
            for record in batches.get(tp, []):
                if tp not in ends or record.offset < ends[tp]:  # later: written since
                    yield record
            if tp in ends and await consumer.position(tp) >= ends[tp]:
                pending.discard(tp)


async def ping_kafka(client: AIOKafkaProducer | AIOKafkaConsumer) -> None:
    """Raises unless the cluster answers a metadata request (a readiness check)."""
    if isinstance(client, AIOKafkaConsumer):
        await client.topics()  # a fresh metadata request, through the public API
    else:
        await client.client.fetch_all_metadata()


T = TypeVar("T")


class PoisonRecord(Exception):
    """A record no consumer can use: it goes to the dead-letter topic, saying why."""


def parse_value(
    record: ConsumerRecord[bytes, bytes],
    schema_header: tuple[str, bytes],
    parse: Callable[[bytes], T],
) -> T | None:
    """The record's value, parsed; None for a null value (a compaction tombstone).

    Raises PoisonRecord when the ``rapport-schema`` header names another schema
    (a record without the header is read as this schema: any producer may write
    the topic) or the value does not parse.
    """
    schema = dict(record.headers or ()).get(schema_header[0])
    if schema is not None and schema != schema_header[1]:
        raise PoisonRecord(f"unknown schema version {schema!r}")
    if record.value is None:
        return None
    try:
        return parse(record.value)
    except ValidationError as exc:
        raise PoisonRecord(str(exc).splitlines()[0][:300]) from exc


async def send_dead_letters(
    producer: AIOKafkaProducer,
    topic: str,
    poison: Sequence[tuple[ConsumerRecord[bytes, bytes], PoisonRecord]],
) -> list[asyncio.Future[Any]]:
    """Hand each poison record, unchanged, to the producer for ``topic`` with its
    provenance; the caller awaits the returned deliveries before it commits."""
    return [
        await producer.send(
            topic, key=record.key, value=record.value, headers=dead_letter_headers(record, error)
        )
        for record, error in poison
    ]


def dead_letter_headers(
    record: ConsumerRecord[Any, Any], error: BaseException
) -> list[tuple[str, bytes]]:
    """Where a poison record came from and why it was refused, for its DLQ copy."""
    return [
        ("original-topic", record.topic.encode()),
        ("original-partition", str(record.partition).encode()),
        ("original-offset", str(record.offset).encode()),
        ("error-class", type(error.__cause__ or error).__name__.encode()),
        ("error-message", str(error).encode()[:1000]),
    ]


Batch = dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]


class BatchLoop:
    """A consumer that processes ``getmany`` batches and commits only after each one.

    Subclasses set ``consumer``, ``batch_lock`` (an ``asyncio.Lock``) and ``lag``
    (a gauge labelled by ``partition``) and implement :meth:`process`, which
    commits (:meth:`commit`). A batch that raises is redelivered, never skipped: the
    position rewinds to the committed offsets, and the subclass's writes must make the
    second pass a no-op. A rebalance waits for the batch in hand, so a revoked
    partition's batch is never half-committed.

    With ``commit_interval_s`` above 0, :meth:`commit` sends the offsets of the batches
    done at most that often (and whenever the consumer is idle, before a rebalance
    gives partitions up, and on stop), instead of one commit request per batch. Only a
    subclass whose second pass is a no-op may set it: after a crash, what was done
    since the last commit is delivered again.
    """

    consumer: AIOKafkaConsumer
    batch_lock: asyncio.Lock
    lag: Gauge
    commit_interval_s: float = 0.0
    _uncommitted: dict[TopicPartition, int] | None = None
    _committed_at: float = 0.0

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Commit ``offsets`` (next offset to read, per partition), now or with a later
        batch's (see ``commit_interval_s``)."""
        pending = self._uncommitted = {**(self._uncommitted or {}), **offsets}
        if time.monotonic() - self._committed_at >= self.commit_interval_s:
            await self._commit_pending(pending)

    async def flush_commits(self) -> None:
        """Commit what :meth:`commit` is holding, if anything."""
        if self._uncommitted:
            await self._commit_pending(self._uncommitted)

    async def _commit_pending(self, pending: dict[TopicPartition, int]) -> None:
        assigned = self.consumer.assignment()
        await self.consumer.commit({tp: o for tp, o in pending.items() if tp in assigned})
        self._uncommitted = None
        self._committed_at = time.monotonic()

    async def process(self, batch: Batch) -> object:
        raise NotImplementedError

    def revoked(self, partitions: Sequence[TopicPartition]) -> None:
        """After the batch in hand, before the partitions go: drop what was kept of them."""

    def rebalance_listener(self) -> ConsumerRebalanceListener:
        loop = self

        class WaitForBatch(ConsumerRebalanceListener):  # type: ignore[misc]
            async def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
                async with loop.batch_lock:  # the batch in hand finishes and commits
                    try:
                        await loop.flush_commits()
                    except Exception:  # the next owner delivers it again: a no-op pass
                        log.warning("could not commit before the rebalance", exc_info=True)
                    loop.revoked(revoked)
                for tp in revoked:  # the new owner reports its lag; a stale gauge would linger
                    with contextlib.suppress(KeyError):
                        loop.lag.remove(str(tp.partition))

            async def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
                log.info(
                    "partitions assigned", extra={"partitions": [tp.partition for tp in assigned]}
                )

        return WaitForBatch()

    @asynccontextmanager
    async def running(
        self, topic: str, *, max_records: int, stop_timeout_s: float = 10.0
    ) -> AsyncIterator[None]:
        """Subscribe to ``topic`` and process it in the background while the block runs;
        on leaving, the batch in hand finishes and commits (within ``stop_timeout_s``),
        then the consumer leaves the group."""
        self.consumer.subscribe([topic], listener=self.rebalance_listener())
        await self.consumer.start()
        stop = asyncio.Event()
        task = asyncio.create_task(self.run(max_records=max_records, stop=stop))
        try:
            yield
        finally:
            stop.set()
            try:
                await asyncio.wait_for(task, timeout=stop_timeout_s)
            except (asyncio.CancelledError, TimeoutError):
                log.warning("the consumer loop did not stop within %s s", stop_timeout_s)
            finally:
                await self.consumer.stop()

    async def run(self, *, max_records: int = 500, stop: asyncio.Event | None = None) -> None:
        try:
            while stop is None or not stop.is_set():
                batch = await self.consumer.getmany(timeout_ms=100, max_records=max_records)
                if not batch:
                    async with self.batch_lock:
                        await self.flush_commits()
                    continue
                async with self.batch_lock:
                    try:
                        await self.process(batch)
                    except Exception:
                        # The position is already past this batch: rewind to the committed
                        # offsets so it is redelivered, never skipped. What was done since
                        # the last commit is delivered again too (a no-op second pass).
                        log.exception("batch failed; rewinding to the committed offsets")
                        with contextlib.suppress(Exception):  # the batches done before it
                            await self.flush_commits()
                        self._uncommitted = None
                        await self.rewind(list(batch))
                        await asyncio.sleep(1.0)
        finally:
            with contextlib.suppress(Exception):  # stopping: a broker that is gone loses none
                await self.flush_commits()

    async def rewind(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            if tp not in self.consumer.assignment():
                continue
            committed = await self.consumer.committed(tp)
            if committed is None:
                await self.consumer.seek_to_beginning(tp)
            else:
                self.consumer.seek(tp, committed)

    def record_lag(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Records behind each partition's high watermark, after a committed batch."""
        for tp, next_offset in offsets.items():
            highwater = self.consumer.highwater(tp)
            if highwater is not None:
                self.lag.labels(str(tp.partition)).set(max(0, highwater - next_offset))


class _HeaderGetter(Getter[Headers]):
    def get(self, carrier: Headers, key: str) -> list[str] | None:
        values = [value.decode("latin-1") for name, value in carrier if name == key]
        return values or None

    def keys(self, carrier: Headers) -> list[str]:
        return [name for name, _ in carrier]


_GETTER = _HeaderGetter()


def record_context(record: ConsumerRecord[Any, Any]) -> Context:
    """The trace context the producer wrote into the record's headers."""
    return propagate.extract(record.headers or (), getter=_GETTER)


@functools.cache
def _tracer() -> trace.Tracer:
    """Made on first use, once: ``get_tracer`` per record cost 5% of the apply path."""
    return trace.get_tracer("rapport.common.kafka")


@contextmanager
def process_span(
    record: ConsumerRecord[Any, Any], *, group_id: str | None, name: str | None = None
) -> Iterator[trace.Span]:
    """A CONSUMER span for processing one record, parented by the producer's span."""
    tracer = _tracer()
    attributes: dict[str, str | int] = {
        "messaging.system": "kafka",
        "messaging.operation.type": "process",
        "messaging.destination.name": record.topic,
        "messaging.destination.partition.id": str(record.partition),
        "messaging.kafka.offset": record.offset,
    }
    if group_id:
        attributes["messaging.consumer.group.name"] = group_id
    with tracer.start_as_current_span(
        name or f"process {record.topic}",
        context=record_context(record),
        kind=trace.SpanKind.CONSUMER,
        attributes=attributes,
    ) as span:
        yield span
