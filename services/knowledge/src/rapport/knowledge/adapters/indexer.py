"""The indexer: ``rapport.knowledge.v1`` into the vector store, exactly-once in effect.

Each batch from ``getmany``:

1. decode; a poison record (unparseable, schema-invalid, unknown schema
   version) goes to the DLQ with its provenance in headers; a null value (a
   compaction tombstone, e.g. from a CDC source) is counted and skipped;
2. keep the last record of each document, and read what the store holds for
   those documents (one ``get``);
3. skip the records at or below the stored offset (a replay or a redelivery);
4. chunk the upserts and embed every chunk of the batch on Triton, many chunks
   per request;
5. write the chunks (ids ``key/n``: an upsert overwrites in place), delete the
   previous version's chunks past the new count and a deleted document's
   chunks, then write the documents' state;
6. commit the offsets, only now that the store has it all.

A crash anywhere before 6 redelivers the batch; the writes are keyed, so doing
them again changes nothing. The document state is written after its chunks,
so a crash between the two leaves the old state, and the redelivery deletes
the same stale ids again.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeAlias

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

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
