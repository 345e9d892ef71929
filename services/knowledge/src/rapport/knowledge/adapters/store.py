"""The vector store: Milvus through pymilvus, the same code for Milvus Lite and a cluster.

Two collections:

``<prefix>_chunks``
    one row per chunk, id ``key/n`` (``key``: :func:`~rapport.knowledge.domain.document_key`):
    the text, title and url it answers with, and its vector (FLAT, inner product:
    vectors are unit length, so the score is the cosine similarity).
``<prefix>_documents``
    one row per document, id ``key``: the partition and offset of the record
    indexed last, its chunk count (0 once deleted) and its encoder. Milvus wants
    a vector in every collection; this one's is a constant of dimension 2.

Every search filters on ``tenant``, quoted by
:func:`~rapport.common.milvus.literal`, and on ``encoder``: each chunk names the encoder that
made its vector, so a vector is only ever compared with vectors of its own model.
After an encoder upgrade, a replay of the topic re-embeds every document.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pymilvus import AsyncMilvusClient, DataType

from rapport.common.knowledge_index import CHUNK_FIELDS, Found, KnowledgeIndex, chunks_collection
from rapport.common.milvus import OPEN_TIMEOUT_S, Reloader, create_flat_collection, literal
from rapport.knowledge.domain import MAX_CHUNK_BYTES, Indexed, chunk_id, document_key
from rapport.knowledge.metrics import KnowledgeMetrics

log = logging.getLogger(__name__)

MAX_ID = 64  # a 32-hex-digit document key, then /chunk
DOCUMENT_VECTOR = [1.0, 0.0]


@dataclass(frozen=True)
class ChunkRow:
    tenant: str
    doc_id: str
    chunk: int
    title: str
    text: str
    url: str
    published_ms: int
    encoder: str
    vector: list[float]

    @property
    def id(self) -> str:
        return chunk_id(document_key(self.tenant, self.doc_id), self.chunk)


class KnowledgeStore:
    def __init__(
        self,
        client: AsyncMilvusClient,
        *,
        prefix: str,
        metrics: KnowledgeMetrics,
        consistency: str = "Strong",
    ) -> None:
        self.client = client
        self.chunks = chunks_collection(prefix)
        self.documents = f"{prefix}_documents"
        self.metrics = metrics
        self.consistency = consistency
        self.reloader = Reloader(client, self.chunks, self.documents)
        self.index = KnowledgeIndex(
            client, prefix=prefix, consistency=consistency, observe=metrics.search_duration.observe
        )

    async def open(self, *, dimension: int) -> None:
        """Create the collections when missing (FLAT, inner product) and load them."""
        async with asyncio.timeout(OPEN_TIMEOUT_S):
            existing = set(await self.client.list_collections())
            if self.chunks not in existing:
                schema = self._chunk_schema(dimension)
                await create_flat_collection(self.client, self.chunks, schema)
            if self.documents not in existing:
                await create_flat_collection(self.client, self.documents, self._document_schema())
            for name in (self.chunks, self.documents):
                await self.client.load_collection(name)
            await self.index.warm_up(dimension)

    def _chunk_schema(self, dimension: int) -> Any:
        schema = AsyncMilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=MAX_ID)
        schema.add_field("tenant", DataType.VARCHAR, max_length=512)
        schema.add_field("doc_id", DataType.VARCHAR, max_length=512)
        schema.add_field("chunk", DataType.INT64)
        schema.add_field("title", DataType.VARCHAR, max_length=1024)
        schema.add_field("text", DataType.VARCHAR, max_length=MAX_CHUNK_BYTES)
        schema.add_field("url", DataType.VARCHAR, max_length=8192)
        schema.add_field("published_ms", DataType.INT64)
        schema.add_field("encoder", DataType.VARCHAR, max_length=256)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dimension)
        return schema

    def _document_schema(self) -> Any:
        schema = AsyncMilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=MAX_ID)
        schema.add_field("partition", DataType.INT64)
        schema.add_field("offset", DataType.INT64)
        schema.add_field("chunks", DataType.INT64)
        schema.add_field("encoder", DataType.VARCHAR, max_length=256)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=len(DOCUMENT_VECTOR))
        return schema

    def _timed(self, operation: str, started: float) -> None:
        self.metrics.store_duration.labels(operation).observe(time.perf_counter() - started)

    async def indexed(self, keys: Sequence[str]) -> dict[str, Indexed]:
        if not keys:
            return {}
        started = time.perf_counter()
        with self.reloader.watch():
            rows = await self.client.get(
                self.documents,
                ids=list(keys),
                output_fields=["partition", "offset", "chunks", "encoder"],
            )
        self._timed("get_documents", started)
        return {
            str(row["id"]): Indexed(
                int(row["partition"]), int(row["offset"]), int(row["chunks"]), str(row["encoder"])
            )
            for row in rows
        }

    async def write_chunks(self, rows: Sequence[ChunkRow]) -> None:
        if not rows:
            return
        started = time.perf_counter()
        with self.reloader.watch():
            await self.client.upsert(
                self.chunks,
                [
                    {
                        "id": row.id,
                        "tenant": row.tenant,
                        "doc_id": row.doc_id,
                        "chunk": row.chunk,
                        "title": row.title,
                        "text": row.text,
                        "url": row.url,
                        "published_ms": row.published_ms,
                        "encoder": row.encoder,
                        "vector": row.vector,
                    }
                    for row in rows
                ],
            )
        self._timed("upsert_chunks", started)

    async def delete_chunks(self, ids: Sequence[str]) -> None:
        if not ids:
            return
        started = time.perf_counter()
        with self.reloader.watch():
            await self.client.delete(self.chunks, ids=list(ids))
        self._timed("delete_chunks", started)

    async def write_documents(self, indexed: dict[str, Indexed]) -> None:
        if not indexed:
            return
        started = time.perf_counter()
        with self.reloader.watch():
            await self.client.upsert(
                self.documents,
                [
                    {
                        "id": key,
                        "partition": state.partition,
                        "offset": state.offset,
                        "chunks": state.chunks,
                        "encoder": state.encoder,
                        "vector": DOCUMENT_VECTOR,
                    }
                    for key, state in indexed.items()
                ],
            )
        self._timed("upsert_documents", started)

    async def document(self, tenant: str, doc_id: str) -> tuple[Indexed, list[Found]] | None:
        """What is indexed of one document: its state and its chunks in order."""
        key = document_key(tenant, doc_id)
        state = (await self.indexed([key])).get(key)
        if state is None:
            return None
        ids = [chunk_id(key, n) for n in range(state.chunks)]
        rows: list[Any] = []
        if ids:
            with self.reloader.watch():
                rows = await self.client.get(self.chunks, ids=ids, output_fields=CHUNK_FIELDS)
        chunks = sorted((Found.of(row, 1.0) for row in rows), key=lambda f: f.chunk)
        return state, chunks

    async def count_chunks(self, tenant: str, doc_id: str) -> int:
        """Chunks of a document found by a scan, not through the document row (for tests)."""
        with self.reloader.watch():
            rows = await self.client.query(
                self.chunks,
                filter=f"tenant == {literal(tenant)} and doc_id == {literal(doc_id)}",
                output_fields=["id"],
                consistency_level="Strong",
            )
        return len(rows)

    async def ping(self) -> None:
        await self.client.list_collections(timeout=2.0)
