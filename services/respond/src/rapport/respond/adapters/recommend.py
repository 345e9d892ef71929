"""The recommend service's API, for respond.

Like :mod:`rapport.common.profiles`: the models are :mod:`rapport.common.contracts`',
and the caller's own bearer key is forwarded, so recommend enforces the key's
tenant and scopes.
"""

from __future__ import annotations

from rapport.common.contracts import ProfileView, RecommendationRequest, Recommendations
from rapport.common.http import ServiceCallError, ServiceClient


class RecommendServiceError(ServiceCallError):
    """The recommend service refused or failed; ``status`` is its HTTP status (0: no answer)."""

    service = "recommend service"


class RecommendClient(ServiceClient):
    error = RecommendServiceError

    async def recommend(
        self,
        *,
        user_id: str,
        authorization: str,
        profile: ProfileView | None = None,
        message: str | None = None,
        k: int = 10,
        vector: bool = False,
        exploration_rate: float | None = None,
        timeout_s: float | None = None,
    ) -> Recommendations:
        """Items for ``user_id``; with ``profile`` inline, recommend does not read it again.
        ``vector``: also return the message's sentence vector."""
        request = RecommendationRequest(
            user_id=user_id,
            profile=profile,
            message=message or None,
            k=k,
            vector=vector,
            exploration_rate=exploration_rate,
        )
        return await self.call(
            "POST",
            "/v1/recommendations",
            Recommendations,
            authorization=authorization,
            timeout_s=timeout_s,
            json=request.model_dump(mode="json", exclude_none=True),
            resend_on_stale=True,  # recommending changes nothing
        )
