"""The profile service's read API, for the services that call it.

The models are :mod:`rapport.common.contracts`', the ones profile answers with.
The caller's own bearer key is forwarded: the profile
service then enforces the key's tenant and scopes itself, and no service holds
a key that could read every tenant.
"""

from __future__ import annotations

from urllib.parse import quote

from rapport.common.contracts import (
    FeedbackCounts,
    ProfileView,
    Recalled,
    RecallRequest,
    TrendingView,
)
from rapport.common.http import ServiceCallError, ServiceClient
from rapport.common.vectors import MessageVector

# profile's MongoDB layout, as far as another reader needs it (`rapport-models retrain`
# reads who opted out and who was erased): the collections and the fields read.
PROFILES_COLLECTION = "profiles"
ERASURES_COLLECTION = "erasures"
CONSENT_VALUE_FIELD = "consent.value"  # False once the user opted out of personalization
ERASED_AT_FIELD = "erased_at"


def profile_id(tenant: str, user_id: str) -> str:
    """A profile's key wherever it is stored (MongoDB, Redis, the changelog, the vector
    store). Length-prefixed, so no (tenant, user) pair can collide with another."""
    return f"{len(tenant)}:{tenant}:{user_id}"


class ProfileServiceError(ServiceCallError):
    """The profile service refused or failed; ``status`` is its HTTP status (0: no answer)."""

    service = "profile service"


class ProfileClient(ServiceClient):
    error = ProfileServiceError

    async def profile(
        self, user_id: str, authorization: str, *, timeout_s: float | None = None
    ) -> ProfileView:
        """``timeout_s`` overrides the client's timeout for this call (a caller's deadline)."""
        return await self.call(
            "GET",
            f"/v1/profiles/{quote(user_id, safe='')}",
            ProfileView,
            authorization=authorization,
            timeout_s=timeout_s,
            route="/v1/profiles/{user_id}",
        )

    async def trending(
        self, authorization: str, *, category: str | None = None, limit: int = 20
    ) -> TrendingView:
        params = {"limit": str(limit)}
        if category:
            params["category"] = category
        return await self.call(
            "GET", "/v1/trending", TrendingView, authorization=authorization, params=params
        )

    async def feedback(self, authorization: str, policy: str) -> FeedbackCounts:
        return await self.call(
            "GET",
            "/v1/feedback/arms",
            FeedbackCounts,
            authorization=authorization,
            params={"policy": policy},
        )

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
        return await self.call(
            "POST",
            f"/v1/profiles/{quote(user_id, safe='')}/memory/recall",
            Recalled,
            authorization=authorization,
            timeout_s=timeout_s,
            json=request.model_dump(mode="json"),
            resend_on_stale=True,  # a recall changes nothing
            route="/v1/profiles/{user_id}/memory/recall",
        )
