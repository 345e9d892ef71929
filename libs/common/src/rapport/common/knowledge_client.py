"""The knowledge service's search API, for respond.

Like :mod:`rapport.common.profiles`: the models are :mod:`rapport.common.knowledge`'s,
and the caller's own bearer key is forwarded, so knowledge scopes the search to the
key's tenant.
"""

from __future__ import annotations

import aiohttp

from rapport.common.http import ServiceCallError, call_service, parse_answer
from rapport.common.knowledge import KnowledgeQuery, KnowledgeResults
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
