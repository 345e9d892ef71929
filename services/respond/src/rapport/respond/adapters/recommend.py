"""The recommend service's API, for respond.

Like :mod:`rapport.common.profiles`: the models are :mod:`rapport.common.contracts`',
and the caller's own bearer key is forwarded, so recommend enforces the key's
tenant and scopes.
"""

from __future__ import annotations

import aiohttp

from rapport.common.contracts import ProfileView, RecommendationRequest, Recommendations
from rapport.common.http import ServiceCallError, call_service, parse_answer


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
        profile: ProfileView | None = None,
        message: str | None = None,
        k: int = 10,
        vector: bool = False,
        timeout_s: float | None = None,
    ) -> Recommendations:
        """Items for ``user_id``; with ``profile`` inline, recommend does not read it again.
        ``vector``: also return the message's sentence vector."""
        request = RecommendationRequest(
            user_id=user_id, profile=profile, message=message or None, k=k, vector=vector
        )
        timeout = aiohttp.ClientTimeout(total=self.timeout_s if timeout_s is None else timeout_s)
        raw = await call_service(
            self.session,
            "POST",
            f"{self.base_url}/v1/recommendations",
            RecommendServiceError,
            authorization=authorization,
            client_timeout=timeout,
            json=request.model_dump(mode="json", exclude_none=True),
            resend_on_stale=True,  # recommending changes nothing
        )
        return parse_answer(Recommendations, raw, RecommendServiceError)
