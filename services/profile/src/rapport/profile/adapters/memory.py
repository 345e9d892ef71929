"""Remembered messages in the vector store: Milvus through pymilvus (Milvus Lite locally).

One collection, ``<collection>``: a row per remembered message, id ``m-<event_id>``,
with the profile id it belongs to (tenant and user, length-prefixed), the redacted
text, when it was said, the encoder that made its vector, and the vector (FLAT,
inner product on unit vectors: the score is the cosine similarity).

Every search filters on the profile id and on the encoder, so one user's messages
are never returned for another (nor another tenant's), and a vector is only compared
with vectors of its own model.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pymilvus import AsyncMilvusClient, DataType

from rapport.common.milvus import OPEN_TIMEOUT_S, Reloader, create_flat_collection, literal
from rapport.common.published import RecallEntry
from rapport.profile.metrics import ProfileMetrics

log = logging.getLogger(__name__)

MAX_ID = 64
MAX_TEXT = 16_384  # bytes; a chat message is at most 4,096 characters


@dataclass(frozen=True)
class MemoryRow:
    memory_id: str
    pid: str
    text: str
    at: datetime
    encoder: str
    vector: list[float]

    def recall_entry(self) -> RecallEntry:
        """As the published recall set keeps it (readers score it without the store)."""
        return RecallEntry.of(self.memory_id, self.at, self.encoder, self.text, self.vector)


@dataclass(frozen=True)
class Hit:
    memory_id: str
    text: str
    at_ms: int
    score: float


def epoch_ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


class MemoryStore:
    def __init__(
        self,
        client: AsyncMilvusClient,
        *,
        collection: str,
        dimension: int,
        metrics: ProfileMetrics,
        consistency: str = "Strong",
        write_timeout_s: float = 2.0,
    ) -> None:
        self.client = client
        self.write_timeout_s = write_timeout_s  # then the rows wait in MongoDB
        self.collection = collection
        self.dimension = dimension
        self.metrics = metrics
        self.consistency = consistency
        self.ready = False  # opened: until then (and when it fails) memory is degraded
        self.reloader = Reloader(client, collection)

    async def open_until_ready(self, retry_s: float) -> None:
        """Open, retrying while the store is away (profile serves meanwhile)."""
        while not self.ready:
            try:
                await self.open()
            except Exception as exc:  # any failure to reach or prepare the store: later
                log.warning(
                    "vector store unavailable; messages are not remembered yet",
                    extra={"error": f"{type(exc).__name__}: {exc}"[:200]},
                )
                await asyncio.sleep(retry_s)
                continue
            self.ready = True
            log.info("vector store ready", extra={"collection": self.collection})

    async def open(self) -> None:
        """Create the collection when missing and load it; one warm-up search."""
        async with asyncio.timeout(OPEN_TIMEOUT_S):
            if self.collection not in set(await self.client.list_collections()):
                await create_flat_collection(self.client, self.collection, self._schema())
            await self.client.load_collection(self.collection)
            await self.client.search(
                self.collection,
                data=[[0.0] * self.dimension],
                limit=1,
                filter=f"pid == {literal('')}",
                consistency_level=self.consistency,
            )

    def _schema(self) -> Any:
        schema = AsyncMilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=MAX_ID)
        schema.add_field("pid", DataType.VARCHAR, max_length=1024)
        schema.add_field("text", DataType.VARCHAR, max_length=MAX_TEXT)
        schema.add_field("at_ms", DataType.INT64)
        schema.add_field("encoder", DataType.VARCHAR, max_length=256)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self.dimension)
        return schema

    def _timed(self, operation: str, started: float) -> None:
        self.metrics.store_duration.labels(operation).observe(time.perf_counter() - started)

    async def write(self, rows: Sequence[MemoryRow]) -> None:
        if not rows:
            return
        started = time.perf_counter()
        with self.reloader.watch():
            await self.client.upsert(
                self.collection,
                [
                    {
                        "id": row.memory_id,
                        "pid": row.pid,
                        "text": row.text,
                        "at_ms": epoch_ms(row.at),
                        "encoder": row.encoder,
                        "vector": row.vector,
                    }
                    for row in rows
                ],
                timeout=self.write_timeout_s,
            )
        self._timed("milvus_upsert", started)

    async def delete(self, memory_ids: Iterable[str]) -> None:
        ids = list(memory_ids)
        if not ids:
            return
        started = time.perf_counter()
        with self.reloader.watch():
            await self.client.delete(self.collection, ids=ids, timeout=self.write_timeout_s)
        self._timed("milvus_delete", started)

    async def delete_profiles(self, pids: Iterable[str]) -> None:
        """Every remembered message of these users (erasure)."""
        wanted = sorted(set(pids))
        if not wanted:
            return
        started = time.perf_counter()
        quoted = ", ".join(literal(pid) for pid in wanted)
        with self.reloader.watch():
            await self.client.delete(
                self.collection, filter=f"pid in [{quoted}]", timeout=self.write_timeout_s
            )
        self._timed("milvus_delete", started)

    async def expire(self, before: datetime) -> None:
        """Every message said before ``before`` (the retention)."""
        started = time.perf_counter()
        with self.reloader.watch():
            await self.client.delete(self.collection, filter=f"at_ms < {epoch_ms(before)}")
        self._timed("milvus_expire", started)

    async def search(
        self,
        pid: str,
        vector: list[float],
        *,
        encoder: str,
        not_before: datetime,
        limit: int,
        timeout_s: float,
    ) -> list[Hit]:
        started = time.perf_counter()
        with self.reloader.watch():
            results = await self.client.search(
                self.collection,
                data=[vector],
                limit=limit,
                filter=f"pid == {literal(pid)} and encoder == {literal(encoder)} "
                f"and at_ms >= {epoch_ms(not_before)}",
                output_fields=["text", "at_ms"],
                consistency_level=self.consistency,
                timeout=timeout_s,
            )
        self._timed("milvus_search", started)
        return [
            Hit(
                memory_id=str(hit["id"]),
                text=str(hit["entity"]["text"]),
                at_ms=int(hit["entity"]["at_ms"]),
                score=float(hit["distance"]),
            )
            for hit in (results[0] if results else [])
        ]

    async def rows_of(self, pid: str) -> list[MemoryRow]:
        """Every stored message of one user, with its vector (a republish of the recall set)."""
        started = time.perf_counter()
        with self.reloader.watch():
            rows = await self.client.query(
                self.collection,
                filter=f"pid == {literal(pid)}",
                output_fields=["id", "text", "at_ms", "encoder", "vector"],
                consistency_level="Strong",
            )
        self._timed("milvus_query", started)
        return [
            MemoryRow(
                memory_id=str(row["id"]),
                pid=pid,
                text=str(row["text"]),
                at=datetime.fromtimestamp(int(row["at_ms"]) / 1000, UTC),
                encoder=str(row["encoder"]),
                vector=[float(x) for x in row["vector"]],
            )
            for row in rows
        ]

    async def ids_of(self, pid: str) -> list[str]:
        """Every stored message id of one user, found by a scan (erasure checks, tests)."""
        return sorted(await self._scan(pid))

    async def texts(self, pid: str) -> list[str]:
        """Every stored message text of one user, found by a scan (tests)."""
        return sorted((await self._scan(pid)).values())

    async def _scan(self, pid: str) -> dict[str, str]:
        with self.reloader.watch():
            rows = await self.client.query(
                self.collection,
                filter=f"pid == {literal(pid)}",
                output_fields=["id", "text"],
                consistency_level="Strong",
            )
        return {str(row["id"]): str(row["text"]) for row in rows}

    async def ping(self) -> None:
        await self.client.list_collections(timeout=2.0)

    async def exists(self) -> bool:
        """Whether the collection is there (a job over it has nothing to do otherwise)."""
        return self.collection in set(await self.client.list_collections())

    async def pages(self, size: int) -> AsyncIterator[list[MemoryRow]]:
        """Every stored row with its vector, ``size`` at a time, in id order (the
        re-redaction job). Keyset paging on the primary key, as pymilvus' own query
        iterator does: with ``iterator`` and ``reduce_stop_for_best`` set, Milvus answers
        a query with a limit by the smallest ids (without them, any rows: Milvus Lite's
        are not the first), so each page is the rows after the last id seen."""
        await self.client.load_collection(self.collection)
        after = ""
        while True:
            with self.reloader.watch():
                found = await self.client.query(
                    self.collection,
                    filter=f"id > {literal(after)}",
                    output_fields=["id", "pid", "text", "at_ms", "encoder", "vector"],
                    limit=size,
                    consistency_level="Strong",
                    iterator="True",
                    reduce_stop_for_best="True",
                )
            page = sorted(
                (
                    MemoryRow(
                        memory_id=str(row["id"]),
                        pid=str(row["pid"]),
                        text=str(row["text"]),
                        at=datetime.fromtimestamp(int(row["at_ms"]) / 1000, UTC),
                        encoder=str(row["encoder"]),
                        vector=[float(x) for x in row["vector"]],
                    )
                    for row in found
                ),
                key=lambda row: row.memory_id,
            )
            if page:
                yield page
            if len(page) < size:
                return
            after = page[-1].memory_id
