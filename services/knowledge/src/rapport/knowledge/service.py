"""Searching the tenant's knowledge with a message's vector, and reading one document."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from pymilvus.exceptions import MilvusException

from rapport.common.contracts import KnowledgeQuery, KnowledgeResults
from rapport.common.problems import FieldError, ProblemError
from rapport.knowledge.adapters.encoder import TritonEncoder
from rapport.knowledge.adapters.store import KnowledgeStore
from rapport.knowledge.domain import IndexedChunk, IndexedDocument

log = logging.getLogger(__name__)


@dataclass
class KnowledgeService:
    store: KnowledgeStore
    encoder: TritonEncoder
    snippet_chars: int
    search_timeout_s: float
    retry_after_s: int = 1
    started: bool = False

    def open(self) -> None:
        """The index is open (:class:`~rapport.knowledge.stream.IndexLifecycle`): serve."""
        self.started = True

    def _unavailable(self, detail: str) -> ProblemError:
        return ProblemError(
            503, detail=detail, slug="unavailable", headers={"Retry-After": str(self.retry_after_s)}
        )

    async def search(self, tenant: str, query: KnowledgeQuery) -> KnowledgeResults:
        if not self.started:
            raise self._unavailable("The knowledge index is starting; retry shortly.")
        vector = query.vector
        if vector.model != self.encoder.id:
            raise ProblemError(
                409,
                title="Vector from another encoder",
                detail=f"The index holds vectors of `{self.encoder.id}`; this query's are "
                f"`{vector.model}`. Their similarities would mean nothing.",
                slug="encoder-mismatch",
                errors=[FieldError(field="vector.model", reason=f"expected {self.encoder.id}")],
            )
        if vector.dimension != self.encoder.dimension:
            raise ProblemError(
                422,
                title="Invalid vector",
                detail=f"The encoder's vectors have {self.encoder.dimension} dimensions.",
                slug="validation",
                errors=[FieldError(field="vector.dimension", reason="does not match the encoder")],
            )
        try:
            values = vector.values()
        except ValueError as exc:
            raise ProblemError(
                422,
                title="Invalid vector",
                detail=str(exc),
                slug="validation",
                errors=[FieldError(field="vector.data", reason=str(exc))],
            ) from None
        try:
            async with asyncio.timeout(self.search_timeout_s):
                found = await self.store.index.search(
                    tenant,
                    values,
                    encoder=vector.model,
                    limit=query.k,
                    min_score=query.min_score,
                    timeout_s=self.search_timeout_s,
                )
        except (MilvusException, TimeoutError, OSError) as exc:
            log.warning("vector store search failed", extra={"error": str(exc)[:200]})
            raise self._unavailable("The vector store did not answer in time.") from None
        return KnowledgeResults(
            encoder=self.encoder.id, hits=[f.hit(self.snippet_chars) for f in found]
        )

    async def document(self, tenant: str, doc_id: str) -> IndexedDocument:
        if not self.started:
            raise self._unavailable("The knowledge index is starting; retry shortly.")
        found = await self.store.document(tenant, doc_id)
        if found is None or found[0].chunks == 0:
            raise ProblemError(
                404, detail=f"No document `{doc_id}` is indexed for this tenant.", slug="not-found"
            )
        state, chunks = found
        return IndexedDocument(
            doc_id=doc_id,
            title=chunks[0].title if chunks else None,
            url=(chunks[0].url or None) if chunks else None,
            chunks=[IndexedChunk(chunk=c.chunk, text=c.text) for c in chunks],
            partition=state.partition,
            offset=state.offset,
            encoder=state.encoder,
        )
