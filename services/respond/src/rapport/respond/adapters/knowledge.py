"""The company knowledge a reply cites: the index searched directly, or knowledge's API.

With ``RAPPORT_RESPOND_MILVUS_URI`` respond reads knowledge's index itself
(:mod:`rapport.common.knowledge_index`, the contract knowledge publishes): one read of
the vector store, no hop through a Python service. Without it, knowledge's HTTP search
(``RAPPORT_KNOWLEDGE_URL``), which uses the same reader. Either way the tenant is the
caller's key's, and a failure reaches respond as :class:`KnowledgeUnavailable` or the
knowledge client's own error, both of which degrade the reply's ``knowledge``.
"""

from __future__ import annotations

from typing import Protocol

from pymilvus.exceptions import MilvusException

from rapport.common.contracts import KnowledgeHit, KnowledgeQuery, KnowledgeResults
from rapport.common.http import ServiceCallError, ServiceClient
from rapport.common.knowledge_index import KnowledgeIndex
from rapport.common.vectors import MessageVector


class KnowledgeServiceError(ServiceCallError):
    """The knowledge service refused or failed; ``status`` is its HTTP status (0: no answer)."""

    service = "knowledge service"


class KnowledgeUnavailable(Exception):
    pass


class KnowledgeSearch(Protocol):
    async def search(
        self,
        vector: MessageVector,
        *,
        tenant: str,
        authorization: str,
        k: int,
        min_score: float,
        timeout_s: float,
    ) -> list[KnowledgeHit]: ...


class IndexSearch:
    """knowledge's index, read here."""

    def __init__(self, index: KnowledgeIndex, snippet_chars: int) -> None:
        self.index = index
        self.snippet_chars = snippet_chars

    async def search(
        self,
        vector: MessageVector,
        *,
        tenant: str,
        authorization: str,
        k: int,
        min_score: float,
        timeout_s: float,
    ) -> list[KnowledgeHit]:
        try:
            found = await self.index.search(
                tenant,
                vector.values(),
                encoder=vector.model,
                limit=k,
                min_score=min_score,
                timeout_s=timeout_s,
            )
        except (MilvusException, ValueError, OSError) as exc:
            raise KnowledgeUnavailable(f"{type(exc).__name__}: {exc}"[:200]) from exc
        return [f.hit(self.snippet_chars) for f in found]


class KnowledgeClient(ServiceClient):
    """knowledge's HTTP search: the caller's key is forwarded, so knowledge scopes the
    search to the key's tenant and checks its scope itself."""

    error = KnowledgeServiceError

    async def search(
        self,
        vector: MessageVector,
        *,
        tenant: str,
        authorization: str,
        k: int,
        min_score: float,
        timeout_s: float,
    ) -> list[KnowledgeHit]:
        query = KnowledgeQuery(vector=vector, k=k, min_score=min_score)
        results = await self.call(
            "POST",
            "/v1/knowledge/search",
            KnowledgeResults,
            authorization=authorization,
            timeout_s=timeout_s,
            json=query.model_dump(mode="json", exclude_none=True),
            resend_on_stale=True,  # a search changes nothing
        )
        return results.hits
