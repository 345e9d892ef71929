"""The recommend service's API, as the services that call it see it.

Like :mod:`rapport.common.profiles`: the models ignore fields they do not know
(recommend can add fields without breaking its callers), and the caller's own
bearer key is forwarded, so recommend enforces the key's tenant and scopes.
"""

from __future__ import annotations

from typing import Any

import aiohttp
from pydantic import BaseModel, ConfigDict, Field

from rapport.common.profiles import ProfileSnapshot
from rapport.common.retry import stale_connection_retry


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


class RecommendServiceError(Exception):
    """The recommend service refused or failed; ``status`` is its HTTP status (0: no answer)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"recommend service: {status} {detail}")
        self.status = status
        self.detail = detail


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
        try:
            # Recommending changes nothing, so a second attempt is safe.
            async for attempt in stale_connection_retry():
                with attempt:
                    async with self.session.post(
                        f"{self.base_url}/v1/recommendations",
                        json=body,
                        headers={"Authorization": authorization},
                        timeout=timeout,
                    ) as response:
                        raw = await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise RecommendServiceError(0, f"{type(exc).__name__}: {exc}") from exc
        if response.status != 200:
            raise RecommendServiceError(response.status, raw[:300].decode(errors="replace"))
        return RecommendationsSnapshot.model_validate_json(raw)
