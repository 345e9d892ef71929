"""The recommend service's API, as the services that call it see it.

Like :mod:`rapport.common.profiles`: the models ignore fields they do not know
(recommend can add fields without breaking its callers), and the caller's own
bearer key is forwarded, so recommend enforces the key's tenant and scopes.
"""

from __future__ import annotations

from typing import Any

import aiohttp
from pydantic import BaseModel, ConfigDict, Field

from rapport.common.http import ServiceCallError, call_service
from rapport.common.profiles import ProfileSnapshot


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class RecommendedItem(_Lenient):
    item_id: str
    title: str
    score: float
    reason: str
    categories: list[str] = Field(default_factory=list)
    slot: str = "ranked"


class MessageUnderstandingSnapshot(_Lenient):
    intent: str
    confidence: float
    out_of_scope: bool
    sentiment: str | None = None
    sentiment_score: float | None = None


class SegmentSnapshot(_Lenient):
    id: int
    name: str


class RecommendationsSnapshot(_Lenient):
    """``POST /v1/recommendations``'s answer."""

    items: list[RecommendedItem] = Field(default_factory=list)
    message: MessageUnderstandingSnapshot | None = None
    segment: SegmentSnapshot | None = None
    models: dict[str, str] = Field(default_factory=dict)
    fallback: bool = False
    fallback_reason: str | None = None
    degraded: list[str] = Field(default_factory=list)
    personalized: bool = True
    profile_version: int | None = None
    exploration: dict[str, Any] | None = None


class RecommendServiceError(ServiceCallError):
    """The recommend service refused or failed; ``status`` is its HTTP status (0: no answer)."""

    service = "recommend service"


class RecommendClient:
    def __init__(self, session: aiohttp.ClientSession, base_url: str, timeout_s: float) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s

    async def recommend(
        self,
        *,
        user_id: str,
        authorization: str,
        profile: ProfileSnapshot | None = None,
        message: str | None = None,
        k: int = 10,
        timeout_s: float | None = None,
    ) -> RecommendationsSnapshot:
        """Items for ``user_id``; with ``profile`` inline, recommend does not read it again."""
        body: dict[str, Any] = {"user_id": user_id, "k": k}
        if profile is not None:
            body["profile"] = profile.model_dump(mode="json")
        if message:
            body["message"] = message
        timeout = aiohttp.ClientTimeout(total=self.timeout_s if timeout_s is None else timeout_s)
        raw = await call_service(
            self.session,
            "POST",
            f"{self.base_url}/v1/recommendations",
            RecommendServiceError,
            authorization=authorization,
            client_timeout=timeout,
            json=body,
            resend_on_stale=True,  # recommending changes nothing
        )
        return RecommendationsSnapshot.model_validate_json(raw)
