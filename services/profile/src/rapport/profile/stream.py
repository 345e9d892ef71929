"""The stream processor: ``rapport.events.v1`` into profiles, exactly-once in effect,
and its lifecycle (:func:`stream_processor`).

Each batch from ``getmany``:

1. decode; a poison record (undecodable, schema-invalid, unknown schema
   version) goes to the DLQ with its provenance in headers;
2. take the batch's profiles from the processor's own cache of what it last wrote, and
   load the others with their erasure markers (one query each, both at once);
3. apply each user's events in offset order (the reducer skips what the
   partition watermark or the recent event ids say is already in);
4. with memory on, write the messages it keeps to the vector store and delete the
   ones it dropped (keyed writes: doing them again changes nothing; while the store
   is away they wait in MongoDB, :mod:`rapport.profile.adapters.waiting`), then
   write the changed profiles in one unordered bulk write, compare-and-set on
   ``version`` (a stored profile is only replaced, never inserted again); profiles
   that lost a race (another writer, an erasure) leave the cache, and are reloaded
   and applied again;
5. publish the changed profiles' views and recall sets in Redis in one pipeline
   (:mod:`rapport.common.published`; best effort: Redis may vanish) and, at the same time,
6. publish the changed profiles to ``rapport.profile-changes.v1``;
7. commit the offsets, only now that the state is durable (with the batches done
   since the last commit: at most every ``commit_interval_s``, one commit request
   for several batches).

A crash anywhere before 7 redelivers the batch, and the watermarks stored
with the profiles make the second pass a no-op for what was already written; a batch
that fails empties the cache (its profiles may hold what was not written), and so does
a rebalance (another consumer may write the partitions this one gave up).
The vectors go before the profile that refers to them, so a crash between the
two redelivers the message and writes its vector again, never a profile that
names a vector that was never written. An erasure during the batch deletes the
user's vectors with their profile.
A rebalance waits for the batch in hand (``on_partitions_revoked``), so a
revoked partition's batch is never half-committed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TypeAlias

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from cachetools import LRUCache

from rapport.common.events import SCHEMA_HEADER, ChatMessageEvent, Event, parse_event
from rapport.common.kafka import (
    EVENTS_DLQ_TOPIC,
    PROFILE_CHANGES_TOPIC,
    BatchLoop,
    PoisonRecord,
    create_consumer,
    parse_value,
    process_span,
    send_dead_letters,
)
from rapport.common.profiles import profile_id
from rapport.common.vectors import MessageVector
from rapport.profile.adapters.memory import MemoryRow, MemoryStore
from rapport.profile.adapters.published import Publisher, RecallChanges
from rapport.profile.adapters.store import ProfileStore
from rapport.profile.adapters.waiting import WaitingWrites
from rapport.profile.domain import Outcome, Profile, Rules, already_applied, apply
from rapport.profile.domain.clock import Clock, utc_now
from rapport.profile.domain.experiments import Note
from rapport.profile.domain.facts import DetectLanguage
from rapport.profile.domain.memory import Heard, hear
from rapport.profile.drift import CategoryDrift
from rapport.profile.metrics import ProfileMetrics
from rapport.profile.settings import ProfileSettings

log = logging.getLogger(__name__)

Record: TypeAlias = ConsumerRecord[bytes, bytes]


def decode(record: Record) -> Event:
    """The event in a record, or PoisonRecord saying why there is none."""
    event = parse_value(record, SCHEMA_HEADER, parse_event)
    if event is None:
        raise PoisonRecord("null value")
    return event


OUTCOMES = ("applied", "duplicate", "not_consented", "erased", "dead_lettered")


@dataclass
class BatchReport:
    applied: int = 0
    duplicates: int = 0
    not_consented: int = 0
    erased: int = 0
    dead_lettered: int = 0
    conflicts: int = 0
    changed: set[str] = field(default_factory=set)
    # What the batch did to experiments, per profile (a profile applied again after a lost
    # race is noted again, so its first notes are dropped).
    notes: dict[str, list[Note]] = field(default_factory=dict)
    facts_learned: int = 0
    messages_remembered: int = 0


class MemoryUnavailable(Exception):
    pass


@dataclass
class MemoryChanges:
    """What one pass over a batch asks of the vector store, and of each user's recall set."""

    rows: dict[str, MemoryRow] = field(default_factory=dict)
    dropped: dict[str, str] = field(default_factory=dict)  # memory id to profile id
    recall: dict[str, RecallChanges] = field(default_factory=dict)  # by profile id


class Processor(BatchLoop):
    def __init__(
        self,
        *,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        store: ProfileStore,
        publisher: Publisher,
        rules: Rules,
        group_id: str,
        changes_topic: str = PROFILE_CHANGES_TOPIC,
        dlq_topic: str = EVENTS_DLQ_TOPIC,
        metrics: ProfileMetrics | None = None,
        memory: MemoryStore | None = None,
        waiting: WaitingWrites | None = None,
        clock: Clock = utc_now,
        cached_profiles: int = 10_000,
        commit_interval_s: float = 0.0,
        detect_language: DetectLanguage | None = None,
        drift: CategoryDrift | None = None,
    ) -> None:
        self.consumer = consumer
        self.drift = drift  # the category mix of item events, against the item model's
        self.producer = producer
        self.store = store
        self.publisher = publisher
        self.rules = rules
        self.group_id = group_id
        self.clock = clock
        self.changes_topic = changes_topic
        self.dlq_topic = dlq_topic
        self.memory = memory  # None: facts only, no remembered messages
        self.waiting = waiting  # where messages wait while the vector store is away
        self.detect_language = detect_language  # None: only a stated language is a fact
        # The profiles as this processor last wrote them: most batches read none from
        # MongoDB. The compare-and-set of every write catches any other writer.
        self.written: LRUCache[str, Profile] = LRUCache(maxsize=max(1, cached_profiles))
        self.batch_lock = asyncio.Lock()
        # A second pass over what was applied is a no-op (the watermarks): commits can wait.
        self.commit_interval_s = commit_interval_s
        self.metrics = metrics or ProfileMetrics("rapport-profile")
        self.lag = self.metrics.consumer_lag
        for outcome in OUTCOMES:  # exported at 0 from the start, so rate() sees the first one
            self.metrics.events.labels(outcome)

    def revoked(self, partitions: Sequence[TopicPartition]) -> None:
        self.written.clear()

    async def process(self, batch: dict[TopicPartition, list[Record]]) -> BatchReport:
        try:
            return await self._process(batch)
        except BaseException:
            self.written.clear()  # applied in place, perhaps never written
            raise

    async def _load(self, pids: set[str]) -> tuple[dict[str, Profile], dict[str, datetime]]:
        """The cached profiles, and the others from MongoDB with their erasure markers.

        A cached profile needs no marker: the processor wrote it after any erasure that
        could matter, and an erasure since then makes its write fail (it is only replaced).
        """
        cached = {pid: self.written[pid] for pid in pids if pid in self.written}
        wanted = pids - set(cached)
        if not wanted:
            return cached, {}
        with self._timed("mongo_load"):
            loaded, erased = await asyncio.gather(
                self.store.load(wanted), self.store.erased_at(wanted)
            )
        return cached | loaded, erased

    async def _process(self, batch: dict[TopicPartition, list[Record]]) -> BatchReport:
        report = BatchReport()
        decoded: list[tuple[Record, Event]] = []
        poison: list[tuple[Record, PoisonRecord]] = []
        for records in batch.values():
            for record in records:
                try:
                    decoded.append((record, decode(record)))
                except PoisonRecord as exc:
                    poison.append((record, exc))
        pending = {profile_id(event.tenant, event.user_id) for _, event in decoded}
        saved: dict[str, Profile] = {}
        recall: dict[str, RecallChanges] = {}
        inserted: set[str] = set()
        while pending:
            loaded, erased = await self._load(pending)
            changed, memory = self._apply(decoded, pending, loaded, erased, report)
            await self._write_memory(memory)
            with self._timed("mongo_bulk_write"):
                conflicts = await self.store.save(changed, existing=loaded)
            report.conflicts += len(conflicts)
            for pid in conflicts:
                self.written.pop(pid, None)  # another writer's or erased: read it again
            saved |= {pid: profile for pid, (_, profile) in changed.items() if pid not in conflicts}
            recall |= {pid: c for pid, c in memory.recall.items() if pid not in conflicts}
            inserted |= {pid for pid in changed if pid not in loaded and pid not in conflicts}
            pending = conflicts
        # Only a profile inserted now can bring back one erased mid-batch (a replace of a
        # stored one fails once it is erased).
        undone = await self.store.undo_erased(inserted)
        for pid in undone:
            del saved[pid]  # erased mid-batch: the marker wins
            report.notes.pop(pid, None)
        self.written.update(saved)
        if self.memory is not None and undone:
            await self.memory.delete_profiles(undone)
        report.changed = set(saved)
        encoded = {pid: profile.model_dump_json().encode() for pid, profile in saved.items()}
        # Independent of each other; both are done before the offsets are committed.
        await asyncio.gather(self._publish_views(saved, recall), self._publish(encoded, poison))
        report.dead_lettered = len(poison)
        offsets = {tp: records[-1].offset + 1 for tp, records in batch.items() if records}
        await self.commit(offsets)
        self._observe(batch, decoded, offsets, report)
        return report

    @contextmanager
    def _timed(self, operation: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.metrics.store_duration.labels(operation).observe(time.perf_counter() - started)

    def _observe(
        self,
        batch: dict[TopicPartition, list[Record]],
        decoded: list[tuple[Record, Event]],
        offsets: dict[TopicPartition, int],
        report: BatchReport,
    ) -> None:
        metrics = self.metrics
        metrics.batch_size.observe(sum(len(records) for records in batch.values()))
        counts = (
            report.applied,
            report.duplicates,
            report.not_consented,
            report.erased,
            report.dead_lettered,
        )
        for outcome, count in zip(OUTCOMES, counts, strict=True):
            if count:
                metrics.events.labels(outcome).inc(count)
        metrics.write_conflicts.inc(report.conflicts)
        for notes in report.notes.values():
            for note in notes:
                metrics.experiment_note(note)
        if report.facts_learned:
            metrics.memory.labels("facts").inc(report.facts_learned)
        if report.messages_remembered:
            metrics.memory.labels("messages").inc(report.messages_remembered)
        if self.drift is not None:
            self.drift.observe(event for _, event in decoded)
        committed_at = datetime.now(UTC)
        for _, event in decoded:
            metrics.freshness.observe((committed_at - event.received_at).total_seconds())
        self.record_lag(offsets)

    def _apply(
        self,
        decoded: list[tuple[Record, Event]],
        ids: set[str],
        loaded: dict[str, Profile],
        erased: dict[str, datetime],
        report: BatchReport,
    ) -> tuple[dict[str, tuple[int, Profile]], MemoryChanges]:
        working: dict[str, tuple[int, Profile]] = {}
        touched: set[str] = set()
        kept_before: dict[str, set[str]] = {}
        heard: dict[str, tuple[Heard, list[float] | None]] = {}
        for pid in ids:
            report.notes.pop(pid, None)
        for record, event in decoded:
            pid = profile_id(event.tenant, event.user_id)
            if pid not in ids:
                continue
            marker = erased.get(pid)
            if marker is not None and event.received_at <= marker:
                report.erased += 1  # a replay of an erased user's past: never resurrect
                continue
            if pid not in working:
                current = loaded.get(pid) or Profile(tenant=event.tenant, user_id=event.user_id)
                working[pid] = (current.version, current)
                kept_before[pid] = {r.memory_id for r in current.remembered}
            notes = report.notes.setdefault(pid, [])
            outcome, message = self._apply_one(record, event, working[pid][1], heard, notes)
            if outcome is Outcome.DUPLICATE:
                report.duplicates += 1
                continue
            touched.add(pid)
            if outcome is Outcome.APPLIED:
                report.applied += 1
                if message is not None:
                    report.facts_learned += len(message.assertions)
            else:
                report.not_consented += 1
        memory = MemoryChanges()
        for pid in touched:
            _, profile = working[pid]
            kept = {r.memory_id for r in profile.remembered}
            base = working[pid][0] if pid in loaded else -1  # -1: nothing was published
            recall = memory.recall[pid] = RecallChanges(base, dropped=kept_before[pid] - kept)
            memory.dropped |= dict.fromkeys(recall.dropped, pid)
            for memory_id in kept - kept_before[pid]:
                message, values = heard[memory_id]
                if message.vector is not None and values is not None:  # only such is remembered
                    row = memory.rows[memory_id] = MemoryRow(
                        memory_id=memory_id,
                        pid=pid,
                        text=message.text,
                        at=message.at,
                        encoder=message.vector.model,
                        vector=values,
                    )
                    recall.added.append(row.recall_entry())
        report.messages_remembered += len(memory.rows)
        return {pid: working[pid] for pid in touched}, memory

    def _apply_one(
        self,
        record: Record,
        event: Event,
        profile: Profile,
        heard: dict[str, tuple[Heard, list[float] | None]],
        notes: list[Note],
    ) -> tuple[Outcome, Heard | None]:
        """One event on its profile. A duplicate (a replay since the last commit, a
        client's retry) is not read by memory at all: that is a chat message's costliest
        part."""
        if already_applied(profile, event, partition=record.partition, offset=record.offset):
            return Outcome.DUPLICATE, None
        message, values = self._hear(event)
        if message is not None:
            heard[message.memory_id] = (message, values)
        with process_span(record, group_id=self.group_id, name="apply event"):
            outcome = apply(
                profile,
                event,
                partition=record.partition,
                offset=record.offset,
                rules=self.rules,
                heard=message,
                notes=notes,
            )
        return outcome, message

    def _hear(self, event: Event) -> tuple[Heard | None, list[float] | None]:
        """A chat message as memory reads it, and its vector's floats when the store can
        keep them (decoded once, here)."""
        if not (self.rules.memory.enabled and isinstance(event, ChatMessageEvent)):
            return None, None
        message = hear(event, detect_language=self.detect_language)
        values = self._storable(message.vector) if message.vector is not None else None
        if message.vector is not None and values is None:
            return replace(message, vector=None), None  # facts only: no vector to keep it by
        return message, values

    def _storable(self, vector: MessageVector) -> list[float] | None:
        """The floats of a vector the store can take; None for a client's malformed one,
        which must not stall the stream."""
        if self.memory is None or vector.dimension != self.memory.dimension:
            return None
        try:
            return vector.values()
        except ValueError:
            return None

    async def _write_memory(self, changes: MemoryChanges) -> None:
        """Keyed writes, done again by a redelivery. A store that is away does not stop
        the stream: the messages and deletes wait in MongoDB (counted as
        ``messages_delayed``) and are written when it returns. Once something waits,
        the next batches queue behind it until a drain empties the queue, rather than
        each waiting for the store to time out. Without a queue (tests, facts-only
        deployments) they are dropped, as before."""
        if self.memory is None or not (changes.rows or changes.dropped):
            return
        rows = list(changes.rows.values())
        deletes = {i: pid for i, pid in changes.dropped.items() if i not in changes.rows}
        if not (self.waiting is not None and self.waiting.holding):
            try:
                if not self.memory.ready:
                    raise MemoryUnavailable("not opened yet")
                await self.memory.write(rows)
                await self.memory.delete(deletes)
                return
            except Exception as exc:  # the vector store failed: queue, never stall profiles
                log.warning(
                    "vector store unavailable: messages wait in MongoDB",
                    extra={"error": f"{type(exc).__name__}: {exc}"[:200], "waiting": len(rows)},
                )
        if self.waiting is None:
            self.metrics.memory.labels("messages_lost").inc(len(rows))
            return
        with self._timed("mongo_hold"):
            await self.waiting.hold(rows, deletes)  # a failure fails the batch: redelivered
        self.metrics.memory.labels("messages_delayed").inc(len(rows))

    async def _publish_views(
        self, saved: dict[str, Profile], recall: dict[str, RecallChanges]
    ) -> None:
        with self._timed("redis_pipeline"):
            await self.publisher.publish_batch(saved, recall, self.clock())

    async def _publish(
        self, encoded: dict[str, bytes], poison: list[tuple[Record, PoisonRecord]]
    ) -> None:
        futures = [
            await self.producer.send(self.changes_topic, key=pid.encode(), value=value)
            for pid, value in encoded.items()
        ]
        futures.extend(await send_dead_letters(self.producer, self.dlq_topic, poison))
        if futures:
            await asyncio.gather(*futures)


@asynccontextmanager
async def stream_processor(
    settings: ProfileSettings,
    *,
    rules: Rules,
    store: ProfileStore,
    producer: AIOKafkaProducer,
    publisher: Publisher,
    metrics: ProfileMetrics,
    memory: MemoryStore | None,
    waiting: WaitingWrites | None,
    clock: Clock,
    detect_language: DetectLanguage,
    drift: CategoryDrift | None = None,
) -> AsyncIterator[Processor]:
    """The processor, consuming ``events_topic`` in the background until the block ends."""
    consumer = create_consumer(
        settings,
        group_id=settings.group_id,
        client_id=settings.service_name,
        session_timeout_ms=settings.session_timeout_ms,
        heartbeat_interval_ms=settings.heartbeat_interval_ms,
    )
    processor = Processor(
        consumer=consumer,
        producer=producer,
        store=store,
        publisher=publisher,
        rules=rules,
        group_id=settings.group_id,
        changes_topic=settings.changes_topic,
        dlq_topic=settings.dlq_topic,
        metrics=metrics,
        memory=memory,
        waiting=waiting,
        clock=clock,
        cached_profiles=settings.cached_profiles,
        commit_interval_s=settings.commit_interval_ms / 1000,
        detect_language=detect_language,
        drift=drift,
    )
    async with processor.running(settings.events_topic, max_records=settings.max_batch):
        yield processor
