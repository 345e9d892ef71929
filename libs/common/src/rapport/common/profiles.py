"""The profile service's read API, as the services that call it see it.

The models ignore fields they do not know, so profile can add fields without
breaking its readers. The caller's own bearer key is forwarded: the profile
service then enforces the key's tenant and scopes itself, and no service holds
a key that could read every tenant.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import aiohttp
from pydantic import BaseModel, ConfigDict, Field

from rapport.common.http import ServiceCallError, call_service

# A session whose running sentiment (the EWMA of signed scores, -1..1) is at or below this
# reads as frustrated: profile labels the segment, respond answers with empathy.
FRUSTRATED_SENTIMENT_EWMA = -0.3
FRUSTRATED_SEGMENT = "frustrated"


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ConsentSnapshot(_Lenient):
    personalization: bool = True


class SessionSnapshot(_Lenient):
    id: str
    turns: int = 0
    last_intent: str | None = None
    sentiment_ewma: float | None = None


class ProfileSnapshot(_Lenient):
    """A profile as ``GET /v1/profiles/{user_id}`` returns it (also accepted inline)."""

    user_id: str
    known: bool = True
    version: int = 0
    consent: ConsentSnapshot = Field(default_factory=ConsentSnapshot)
    affinities: dict[str, float] = Field(default_factory=dict)
    recent_items: list[str] = Field(default_factory=list)
    recent_searches: list[str] = Field(default_factory=list)
    preferences: dict[str, Any] = Field(default_factory=dict)
    segments: list[str] = Field(default_factory=list)
    session: SessionSnapshot | None = None
    cluster_id: int | None = None
    popular_items: list[str] = Field(default_factory=list)


class TrendingItemSnapshot(_Lenient):
    item_id: str
    category: str | None = None
    score: float


class TrendingSnapshot(_Lenient):
    items: list[TrendingItemSnapshot] = Field(default_factory=list)


class ArmCountsSnapshot(_Lenient):
    successes: int = 0
    failures: int = 0


class FeedbackSnapshot(_Lenient):
    arms: dict[str, ArmCountsSnapshot] = Field(default_factory=dict)


class ProfileServiceError(ServiceCallError):
    """The profile service refused or failed; ``status`` is its HTTP status (0: no answer)."""

    service = "profile service"


class ProfileClient:
    def __init__(self, session: aiohttp.ClientSession, base_url: str, timeout_s: float) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def _get(
        self,
        path: str,
        authorization: str,
        params: dict[str, str],
        timeout_s: float | None = None,
    ) -> bytes:
        timeout = self.timeout if timeout_s is None else aiohttp.ClientTimeout(total=timeout_s)
        return await call_service(
            self.session,
            "GET",
            f"{self.base_url}{path}",
            ProfileServiceError,
            authorization=authorization,
            client_timeout=timeout,
            params=params,
        )

    async def profile(
        self, user_id: str, authorization: str, *, timeout_s: float | None = None
    ) -> ProfileSnapshot:
        """``timeout_s`` overrides the client's timeout for this call (a caller's deadline)."""
        path = f"/v1/profiles/{quote(user_id, safe='')}"
        body = await self._get(path, authorization, {}, timeout_s)
        return ProfileSnapshot.model_validate_json(body)

    async def trending(
        self, authorization: str, *, category: str | None = None, limit: int = 20
    ) -> TrendingSnapshot:
        params = {"limit": str(limit)}
        if category:
            params["category"] = category
        return TrendingSnapshot.model_validate_json(
            await self._get("/v1/trending", authorization, params)
        )

    async def feedback(self, authorization: str, policy: str) -> FeedbackSnapshot:
        body = await self._get("/v1/feedback/arms", authorization, {"policy": policy})
        return FeedbackSnapshot.model_validate_json(body)
