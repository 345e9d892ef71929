"""Searching the knowledge index: the published read contract of knowledge's vector store.

knowledge is the only writer of ``<prefix>_chunks`` (one row per chunk: ``tenant``,
``doc_id``, ``chunk``, ``title``, ``text``, ``url``, ``encoder`` and the unit-length
``vector``, FLAT inner product, so a score is the cosine similarity). Any service may
search it with this reader: respond does, on the reply path, with the message vector
recommend returned, instead of a hop through knowledge's HTTP search (which uses this
same reader).

Every search filters on the tenant (from the caller's API key, quoted by
:func:`~rapport.common.milvus.literal`) and on the encoder: a vector is only compared
with vectors of its own model, so one from another encoder (an encoder roll-out before
the index is rebuilt) finds nothing rather than nonsense.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pymilvus import AsyncMilvusClient

from rapport.common.contracts import KnowledgeHit
from rapport.common.milvus import Reloader, literal

CHUNK_FIELDS = ["doc_id", "chunk", "title", "text", "url"]


def chunks_collection(prefix: str) -> str:
    return f"{prefix}_chunks"


def snippet(chunk: str, max_chars: int) -> str:
    """The chunk, cut at a word boundary to ``max_chars`` (an ellipsis marks the cut)."""
    if len(chunk) <= max_chars:
        return chunk
    cut = chunk[: max_chars - 1]
    space = cut.rfind(" ")
    return (cut[:space] if space > max_chars // 2 else cut) + "…"


@dataclass(frozen=True)
class Found:
    doc_id: str
    chunk: int
    title: str
    text: str
    url: str
    score: float

    @classmethod
    def of(cls, row: dict[str, Any], score: float) -> Found:
        """A chunk row with ``CHUNK_FIELDS``, as a search hit or a read returns it."""
        return cls(
            doc_id=row["doc_id"],
            chunk=int(row["chunk"]),
            title=row["title"],
            text=row["text"],
            url=row["url"],
            score=score,
        )

    def hit(self, snippet_chars: int) -> KnowledgeHit:
        return KnowledgeHit(
            doc_id=self.doc_id,
            title=self.title,
            snippet=snippet(self.text, snippet_chars),
            score=round(self.score, 6),
            url=self.url or None,
            chunk=self.chunk,
        )


class KnowledgeIndex:
    """The reader. ``observe`` (e.g. a histogram's) gets each search's seconds."""

    def __init__(
        self,
        client: AsyncMilvusClient,
        *,
        prefix: str,
        consistency: str = "Strong",
        observe: Callable[[float], None] | None = None,
    ) -> None:
        self.client = client
        self.chunks = chunks_collection(prefix)
        self.consistency = consistency
        self.observe = observe
        self.reloader = Reloader(client, self.chunks)

    async def warm_up(self, dimension: int = 384) -> None:
        """One search, so a reply is not the first (the client connects lazily, and a
        store's first search pays for its caches: tens of ms). Raises while the store or
        the collection is not there yet."""
        await self.client.search(
            self.chunks,
            data=[[0.0] * dimension],
            limit=1,
            filter=f"tenant == {literal('')}",
            consistency_level=self.consistency,
        )

    async def search(
        self,
        tenant: str,
        vector: Sequence[float],
        *,
        encoder: str,
        limit: int,
        min_score: float | None,
        timeout_s: float,
    ) -> list[Found]:
        started = time.perf_counter()
        with self.reloader.watch():
            results = await self.client.search(
                self.chunks,
                data=[list(vector)],
                limit=limit,
                filter=f"tenant == {literal(tenant)} and encoder == {literal(encoder)}",
                output_fields=CHUNK_FIELDS,
                consistency_level=self.consistency,
                timeout=timeout_s,
            )
        if self.observe is not None:
            self.observe(time.perf_counter() - started)
        found = []
        for hit in results[0] if results else []:
            score = float(hit["distance"])
            if min_score is not None and score < min_score:
                continue
            found.append(Found.of(hit["entity"], score))
        return found
