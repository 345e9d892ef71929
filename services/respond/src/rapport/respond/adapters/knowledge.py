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

import aiohttp
from pymilvus.exceptions import MilvusException

from rapport.common.contracts import KnowledgeHit, KnowledgeQuery, KnowledgeResults
from rapport.common.http import ServiceCallError, call_service, parse_answer
from rapport.common.knowledge_index import KnowledgeIndex
from rapport.common.vectors import MessageVector


class KnowledgeServiceError(ServiceCallError):
    """The knowledge service refused or failed; ``status`` is its HTTP status (0: no answer)."""

    service = "knowledge service"


class KnowledgeClient:
    """respond's client; the caller's key is forwarded, so knowledge scopes it to its tenant."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, timeout_s: float) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s

    async def search(
        self,
        vector: MessageVector,
        *,
        authorization: str,
        k: int = 3,
        min_score: float | None = None,
        timeout_s: float | None = None,
    ) -> KnowledgeResults:
        query = KnowledgeQuery(vector=vector, k=k, min_score=min_score)
        timeout = aiohttp.ClientTimeout(total=self.timeout_s if timeout_s is None else timeout_s)
        raw = await call_service(
            self.session,
            "POST",
            f"{self.base_url}/v1/knowledge/search",
            KnowledgeServiceError,
            authorization=authorization,
            client_timeout=timeout,
            json=query.model_dump(mode="json", exclude_none=True),
            resend_on_stale=True,  # a search changes nothing
        )
        return parse_answer(KnowledgeResults, raw, KnowledgeServiceError)


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


class ServiceSearch:
    """knowledge's HTTP search (it enforces the key's tenant and scope itself)."""

    def __init__(self, client: KnowledgeClient) -> None:
        self.client = client

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
        results = await self.client.search(
            vector, authorization=authorization, k=k, min_score=min_score, timeout_s=timeout_s
        )
        return results.hits
