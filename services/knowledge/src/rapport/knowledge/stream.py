"""The stream processor: ``rapport.knowledge.v1`` into the vector store, exactly-once
in effect, and its lifecycle.

:class:`Indexer` handles each batch from ``getmany``:


1. decode; a poison record (unparseable, schema-invalid, unknown schema
   version) goes to the DLQ with its provenance in headers; a null value (a
   compaction tombstone, e.g. from a CDC source) is counted and skipped;
2. keep the last record of each document, and read what the store holds for
   those documents (one ``get``);
3. skip the records at or below the stored offset (a replay or a redelivery);
4. chunk the upserts and embed every chunk of the batch on Triton, many chunks
   per request;
5. raise the stored chunk count of each document whose new version has more
   chunks (a reservation: the record applied before stays), write the chunks
   (ids ``key/n``: an upsert overwrites in place), delete the previous version's
   chunks past the new count and a deleted document's chunks, then write the
   documents' state;
6. commit the offsets, only now that the store has it all.

A crash anywhere before 6 redelivers the batch; the writes are keyed, so doing
them again changes nothing. The document state is written after its chunks,
so a crash between the two leaves the old state, and the redelivery deletes
the same stale ids again. The redelivered batch may end with a later record of
the document (a shorter version, a delete): thanks to the reservation the state
counts every id the crashed batch wrote, so those past the later record's count
are deleted too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeAlias

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from tritonclient.utils import InferenceServerException

from rapport.common.kafka import (
    BatchLoop,
    PoisonRecord,
    parse_value,
    process_span,
    send_dead_letters,
)
from rapport.common.knowledge import (
    KNOWLEDGE_RECORD,
    KNOWLEDGE_SCHEMA_HEADER,
    KnowledgeDelete,
    KnowledgeUpsert,
)
from rapport.knowledge.adapters.encoder import TritonEncoder
from rapport.knowledge.adapters.store import ChunkRow, KnowledgeStore
from rapport.knowledge.domain import (
    Change,
    Indexed,
    chunk_text,
    embedding_text,
    latest_per_document,
    plan,
    split_for_embedding,
)
from rapport.knowledge.metrics import KnowledgeMetrics
from rapport.knowledge.settings import KnowledgeSettings

log = logging.getLogger(__name__)

Record: TypeAlias = ConsumerRecord[bytes, bytes]


@dataclass(frozen=True)
class Chunking:
    words: int
    overlap_words: int
    max_chunks: int


@dataclass
class BatchReport:
    indexed: int = 0
    deleted: int = 0
    superseded: int = 0
    already_indexed: int = 0
    dead_lettered: int = 0
    tombstones: int = 0
    chunks: int = 0
    applied: list[Change] = field(default_factory=list)


class Indexer(BatchLoop):
    def __init__(
        self,
        *,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        store: KnowledgeStore,
        encoder: TritonEncoder,
        group_id: str,
        dlq_topic: str,
        metrics: KnowledgeMetrics,
        chunking: Chunking,
        embed_batch: int,
    ) -> None:
        self.consumer = consumer
        self.producer = producer
        self.store = store
        self.encoder = encoder
        self.group_id = group_id
        self.dlq_topic = dlq_topic
        self.metrics = metrics
        self.chunking = chunking
        self.embed_batch = embed_batch
        self.batch_lock = asyncio.Lock()
        self.lag = metrics.consumer_lag

    async def process(self, batch: dict[TopicPartition, list[Record]]) -> BatchReport:
        report = BatchReport()
        decoded: list[tuple[KnowledgeUpsert | KnowledgeDelete, int, int]] = []
        poison: list[tuple[Record, PoisonRecord]] = []
        for records in batch.values():
            for record in records:
                try:
                    parsed = parse_value(
                        record, KNOWLEDGE_SCHEMA_HEADER, KNOWLEDGE_RECORD.validate_json
                    )
                except PoisonRecord as exc:
                    poison.append((record, exc))
                    continue
                if parsed is None:
                    report.tombstones += 1  # compaction's delete marker: nothing to index
                else:
                    decoded.append((parsed, record.partition, record.offset))
        latest, report.superseded = latest_per_document(decoded)
        encoder = self.encoder.id
        work = plan(latest, await self.store.indexed(list(latest)), encoder)
        report.already_indexed = work.already_indexed
        with process_span(
            batch[next(iter(batch))][0], group_id=self.group_id, name="index knowledge"
        ) as span:
            span.set_attribute("messaging.batch.message_count", len(decoded) + len(poison))
            await self._apply(work.changes, encoder, report)
        await self._dead_letter(poison)
        report.dead_lettered = len(poison)
        offsets = {tp: records[-1].offset + 1 for tp, records in batch.items() if records}
        await self.consumer.commit(offsets)
        self._observe(offsets, report)
        return report

    async def _apply(self, changes: list[Change], encoder: str, report: BatchReport) -> None:
        chunking = self.chunking
        texts: list[str] = []
        pieces: list[tuple[KnowledgeUpsert, int, str]] = []  # record, chunk number, text
        counts: dict[str, int] = {}
        for change in changes:
            record = change.record
            if isinstance(record, KnowledgeDelete):
                counts[change.key] = 0
                continue
            chunks = chunk_text(
                record.text, max_words=chunking.words, overlap_words=chunking.overlap_words
            )[: chunking.max_chunks]
            counts[change.key] = len(chunks)
            for number, chunk in enumerate(chunks):
                pieces.append((record, number, chunk))
                texts.append(embedding_text(record.title, chunk))
        vectors = [
            vector
            for part in await asyncio.gather(
                *(
                    self.encoder.encode(group)
                    for group in split_for_embedding(texts, self.embed_batch)
                )
            )
            for vector in part.tolist()
        ]
        rows = []
        for (record, number, chunk), vector in zip(pieces, vectors, strict=True):
            rows.append(
                ChunkRow(
                    tenant=record.tenant,
                    doc_id=record.doc_id,
                    chunk=number,
                    title=record.title,
                    text=chunk,
                    url=record.url or "",
                    published_ms=int(record.published_at.timestamp() * 1000),
                    encoder=encoder,
                    vector=vector,
                )
            )
        # A crash after the chunks must leave every id it wrote counted in the state.
        await self.store.write_documents(
            {
                change.key: reserved
                for change in changes
                if (reserved := change.reservation(counts[change.key], encoder)) is not None
            }
        )
        await self.store.write_chunks(rows)
        stale = [cid for change in changes for cid in change.stale_ids(counts[change.key])]
        await self.store.delete_chunks(stale)
        await self.store.write_documents(
            {
                change.key: Indexed(change.partition, change.offset, counts[change.key], encoder)
                for change in changes
            }
        )
        report.chunks = len(rows)
        report.applied = changes
        report.deleted = sum(isinstance(c.record, KnowledgeDelete) for c in changes)
        report.indexed = len(changes) - report.deleted

    async def _dead_letter(self, poison: list[tuple[Record, PoisonRecord]]) -> None:
        futures = await send_dead_letters(self.producer, self.dlq_topic, poison)
        if futures:
            await asyncio.gather(*futures)

    def _observe(self, offsets: dict[TopicPartition, int], report: BatchReport) -> None:
        metrics = self.metrics
        outcomes = {
            "indexed": report.indexed,
            "deleted": report.deleted,
            "superseded": report.superseded,
            "already_indexed": report.already_indexed,
            "dead_lettered": report.dead_lettered,
            "tombstone": report.tombstones,
        }
        for outcome, count in outcomes.items():
            if count:
                metrics.records.labels(outcome).inc(count)
        metrics.chunks.inc(report.chunks)
        searchable_at = datetime.now(UTC)
        for change in report.applied:
            metrics.freshness.observe((searchable_at - change.published_at).total_seconds())
        self.record_lag(offsets)


class IndexLifecycle:
    """The index, opened and fed in the background, so the process serves /livez while
    Triton is still loading: wait for the encoder (the index's dimension and model come
    from it), open the collections, call ``opened``, then run the indexer (if any) until
    :meth:`stop`."""

    def __init__(
        self,
        settings: KnowledgeSettings,
        *,
        store: KnowledgeStore,
        encoder: TritonEncoder,
        indexer: Indexer | None,
        opened: Callable[[], None],
        retry_s: float = 1.0,
    ) -> None:
        self.settings = settings
        self.store = store
        self.encoder = encoder
        self.indexer = indexer
        self.opened = opened
        self.retry_s = retry_s
        self.is_open = False
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()  # the batch in hand finishes and commits
        if self._task is None:
            return
        if not self.is_open:
            self._task.cancel()  # still waiting for Triton or the store: nothing in hand
        try:
            await asyncio.wait_for(self._task, timeout=timeout_s)
        except TimeoutError:
            log.warning("the indexer did not stop within %s s", timeout_s)
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("the knowledge index failed")

    async def _run(self) -> None:
        while True:
            await self._wait_for_encoder()
            try:
                await self.store.open(dimension=self.encoder.dimension)
                break
            except Exception as exc:  # the store may still be starting: try again
                log.warning("vector store not open yet", extra={"error": str(exc)[:200]})
                await asyncio.sleep(self.retry_s)
        self.is_open = True
        self.opened()
        log.info("knowledge index open", extra={"encoder": self.encoder.id})
        if self.indexer is None:
            return
        async with self.indexer.running(self.settings.topic, max_records=self.settings.max_batch):
            await self._stop.wait()

    async def _wait_for_encoder(self) -> None:
        while True:
            try:
                await self.encoder.describe()
                return
            except (InferenceServerException, OSError) as exc:
                log.info("encoder not answering yet", extra={"error": str(exc)[:200]})
                await asyncio.sleep(self.retry_s)
