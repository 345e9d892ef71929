"""The profile service's read API, for the services that call it.

The models are :mod:`rapport.common.contracts`', the ones profile answers with.
The caller's own bearer key is forwarded: the profile
service then enforces the key's tenant and scopes itself, and no service holds
a key that could read every tenant.
"""

from __future__ import annotations

from urllib.parse import quote

import aiohttp

from rapport.common.contracts import (
    FeedbackCounts,
    ProfileView,
    Recalled,
    RecallRequest,
    TrendingView,
)
from rapport.common.http import ServiceCallError, call_service, parse_answer
from rapport.common.vectors import MessageVector


def profile_id(tenant: str, user_id: str) -> str:
    """A profile's key wherever it is stored (MongoDB, Redis, the changelog, the vector
    store). Length-prefixed, so no (tenant, user) pair can collide with another."""
    return f"{len(tenant)}:{tenant}:{user_id}"


class ProfileServiceError(ServiceCallError):
    """The profile service refused or failed; ``status`` is its HTTP status (0: no answer)."""

    service = "profile service"


class ProfileClient:
    def __init__(self, session: aiohttp.ClientSession, base_url: str, timeout_s: float) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)

    def _timeout(self, timeout_s: float | None) -> aiohttp.ClientTimeout:
        """The client's timeout, or a caller's deadline for one call."""
        return self.timeout if timeout_s is None else aiohttp.ClientTimeout(total=timeout_s)

    async def _get(
        self,
        path: str,
        authorization: str,
        params: dict[str, str],
        timeout_s: float | None = None,
    ) -> bytes:
        return await call_service(
            self.session,
            "GET",
            f"{self.base_url}{path}",
            ProfileServiceError,
            authorization=authorization,
            client_timeout=self._timeout(timeout_s),
            params=params,
        )

    async def profile(
        self, user_id: str, authorization: str, *, timeout_s: float | None = None
    ) -> ProfileView:
        """``timeout_s`` overrides the client's timeout for this call (a caller's deadline)."""
        path = f"/v1/profiles/{quote(user_id, safe='')}"
        body = await self._get(path, authorization, {}, timeout_s)
        return parse_answer(ProfileView, body, ProfileServiceError)

    async def trending(
        self, authorization: str, *, category: str | None = None, limit: int = 20
    ) -> TrendingView:
        params = {"limit": str(limit)}
        if category:
            params["category"] = category
        body = await self._get("/v1/trending", authorization, params)
        return parse_answer(TrendingView, body, ProfileServiceError)

    async def feedback(self, authorization: str, policy: str) -> FeedbackCounts:
        body = await self._get("/v1/feedback/arms", authorization, {"policy": policy})
        return parse_answer(FeedbackCounts, body, ProfileServiceError)

    async def recall(
        self,
        user_id: str,
        vector: MessageVector,
        *,
        authorization: str,
        k: int = 3,
        min_score: float = 0.3,
        timeout_s: float | None = None,
    ) -> Recalled:
        """The user's own past messages nearest ``vector`` (memory)."""
        request = RecallRequest(vector=vector, k=k, min_score=min_score)
        raw = await call_service(
            self.session,
            "POST",
            f"{self.base_url}/v1/profiles/{quote(user_id, safe='')}/memory/recall",
            ProfileServiceError,
            authorization=authorization,
            client_timeout=self._timeout(timeout_s),
            json=request.model_dump(mode="json"),
            resend_on_stale=True,  # a recall changes nothing
        )
        return parse_answer(Recalled, raw, ProfileServiceError)
