"""``POST /v1/recommendations``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from rapport.common.app import state_dependency
from rapport.common.auth import SCOPE_RECOMMEND_INVOKE, ApiKey, require_scope
from rapport.common.contracts import RecommendationRequest, Recommendations
from rapport.common.problems import problem_responses
from rapport.recommend.service import RecommendService

router = APIRouter(tags=["recommend"])

Caller = Annotated[ApiKey, Depends(require_scope(SCOPE_RECOMMEND_INVOKE))]
Service = Annotated[RecommendService, Depends(state_dependency("service", RecommendService))]


@router.post(
    "/v1/recommendations",
    response_model=Recommendations,
    summary="Items ranked for a user, and what their message means",
    description="Ranks the catalogue for the user's profile (given inline, or the view profile "
    "publishes in Redis, else the profile service's, with the caller's key) on Triton. With "
    "a `message`, also its intent, out-of-scope flag and sentiment. When Triton is down or "
    "slow, trending items serve instead and `fallback` is true: this endpoint answers 200 "
    "either way.",
    responses=problem_responses(401, 403, 422),
)
async def recommend(
    body: RecommendationRequest, request: Request, caller: Caller, service: Service
) -> Recommendations:
    return await service.recommend(
        body, caller=caller, authorization=request.headers["authorization"]
    )
