"""Writes waiting in MongoDB for a store that was away: the vector store, or Redis.

While Milvus is away, a remembered message (its redacted text and vector, as the
processor had them) and a delete wait here, in the same database as the profile
that names them, and are written when it returns; nothing is lost and the stream
never stalls. A published view that a forget or an erasure could not replace in
Redis waits here too, so a forgotten fact is never served once Redis answers again.

One document per target, so the newest operation replaces an older one:

- ``<memory_id>``: ``op`` ``upsert`` (with the row) or ``delete``;
- ``erase:<pid>``: every vector of an erased user;
- ``cache:<pid>``: ``op`` ``republish`` (after a forget) or ``tombstone`` (an erasure).

Each carries ``queued_at``: a drain removes only what it read, so an operation queued
again meanwhile stays for the next round.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from pymongo import DeleteOne, ReplaceOne
from pymongo.asynchronous.database import AsyncDatabase

from rapport.common.mongo import Document
from rapport.profile.adapters.memory import MemoryRow

VECTOR_OPS = ("upsert", "delete", "erase")
CacheOp = Literal["republish", "tombstone"]


@dataclass(frozen=True)
class Waiting:
    """What one drain read: each operation as it was queued."""

    docs: list[Document]

    @property
    def upserts(self) -> list[MemoryRow]:
        return [row_of(doc) for doc in self.docs if doc["op"] == "upsert"]

    @property
    def deletes(self) -> set[str]:
        return {doc["_id"] for doc in self.docs if doc["op"] == "delete"}

    def ops(self, op: str) -> set[str]:
        """The profile ids of one kind of operation (erase, republish, tombstone)."""
        return {doc["pid"] for doc in self.docs if doc["op"] == op}


def row_doc(row: MemoryRow, now: datetime) -> Document:
    return {
        "_id": row.memory_id,
        "pid": row.pid,
        "op": "upsert",
        "text": row.text,
        "at": row.at,
        "encoder": row.encoder,
        "vector": row.vector,
        "queued_at": now,
    }


def row_of(doc: Document) -> MemoryRow:
    return MemoryRow(
        memory_id=doc["_id"],
        pid=doc["pid"],
        text=doc["text"],
        at=doc["at"],
        encoder=doc["encoder"],
        vector=[float(x) for x in doc["vector"]],
    )


class WaitingWrites:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.collection = db["waiting_writes"]
        # Set in this process when it queued something for the vector store: until a
        # drain empties the queue, new writes queue behind it instead of each waiting
        # for a store that is away to time out.
        self.holding = False

    async def hold(self, rows: Sequence[MemoryRow], deletes: Mapping[str, str]) -> None:
        """Queue messages and deletes (memory id to profile id) for the vector store;
        durable when this returns."""
        now = datetime.now(UTC)
        ops = [ReplaceOne({"_id": row.memory_id}, row_doc(row, now), upsert=True) for row in rows]
        ops += [
            ReplaceOne(
                {"_id": memory_id},
                {"_id": memory_id, "pid": pid, "op": "delete", "queued_at": now},
                upsert=True,
            )
            for memory_id, pid in sorted(deletes.items())
            if memory_id not in {row.memory_id for row in rows}
        ]
        if ops:
            self.holding = True
            await self.collection.bulk_write(ops, ordered=False)

    async def hold_erasure(self, pid: str) -> None:
        self.holding = True
        await self.collection.replace_one(
            {"_id": f"erase:{pid}"},
            {"_id": f"erase:{pid}", "pid": pid, "op": "erase", "queued_at": datetime.now(UTC)},
            upsert=True,
        )

    async def hold_cache(self, pid: str, op: CacheOp) -> None:
        await self.collection.replace_one(
            {"_id": f"cache:{pid}"},
            {"_id": f"cache:{pid}", "pid": pid, "op": op, "queued_at": datetime.now(UTC)},
            upsert=True,
        )

    async def drop_profile(self, pid: str) -> None:
        """An erased user's waiting messages and deletes: none of it is written any more."""
        await self.collection.delete_many({"pid": pid, "op": {"$in": ["upsert", "delete"]}})

    async def rows_of(self, pid: str) -> list[MemoryRow]:
        """One user's messages still waiting for the vector store."""
        cursor = self.collection.find({"pid": pid, "op": "upsert"})
        return [row_of(doc) async for doc in cursor]

    async def next_vector_ops(self, limit: int) -> Waiting:
        cursor = self.collection.find({"op": {"$in": list(VECTOR_OPS)}}).limit(limit)
        return Waiting([doc async for doc in cursor])

    async def next_cache_ops(self, limit: int) -> Waiting:
        cursor = self.collection.find({"op": {"$in": ["republish", "tombstone"]}}).limit(limit)
        return Waiting([doc async for doc in cursor])

    async def done(self, docs: Iterable[Document]) -> None:
        """Remove what was written, unless it was queued again since it was read."""
        ops = [DeleteOne({"_id": doc["_id"], "queued_at": doc["queued_at"]}) for doc in docs]
        if ops:
            await self.collection.bulk_write(ops, ordered=False)

    async def count_vector_ops(self) -> int:
        return await self.collection.count_documents({"op": {"$in": list(VECTOR_OPS)}})
