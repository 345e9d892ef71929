"""Profile reads, memory, consent and erasure. The tenant always comes from the API key."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response

from rapport.common.app import link, state_dependency
from rapport.common.auth import (
    SCOPE_EXPERIMENTS_READ,
    SCOPE_PROFILES_READ,
    SCOPE_PROFILES_WRITE,
    ApiKey,
    require_scope,
)
from rapport.common.contracts import (
    FeedbackCounts,
    ProfileView,
    Recalled,
    RecallRequest,
    TrendingView,
)
from rapport.common.experiments import NAME_PATTERN, ExperimentList, ExperimentReport
from rapport.common.identifiers import NO_SPACE_OR_CONTROL, WHITESPACE
from rapport.common.problems import ProblemError, problem_responses
from rapport.profile.domain.memory import MEMORY_ID_PATTERN
from rapport.profile.domain.views import ConsentAccepted, ConsentChange
from rapport.profile.service import ProfileService

UserId = Annotated[str, Path(min_length=1, max_length=128, pattern=NO_SPACE_OR_CONTROL)]
MemoryId = Annotated[str, Path(max_length=66, pattern=MEMORY_ID_PATTERN)]

Reader = Annotated[ApiKey, Depends(require_scope(SCOPE_PROFILES_READ))]
Writer = Annotated[ApiKey, Depends(require_scope(SCOPE_PROFILES_WRITE))]
Analyst = Annotated[ApiKey, Depends(require_scope(SCOPE_EXPERIMENTS_READ))]
ExperimentName = Annotated[str, Path(max_length=48, pattern=NAME_PATTERN)]
Service = Annotated[ProfileService, Depends(state_dependency("service", ProfileService))]

router = APIRouter(tags=["profiles"])

PROFILE = "/v1/profiles/{user_id}"
MEMORY = "/v1/profiles/{user_id}/memory/{memory_id}"
READ_PROFILE = link("GET", PROFILE, "The user's profile.", user_id="$request.path.user_id")


@router.get(
    PROFILE,
    response_model=ProfileView,
    summary="What is known about a user now",
    responses={
        200: {
            "links": {
                "ForgetFact": link(
                    "DELETE",
                    MEMORY,
                    "Forget the first fact.",
                    user_id="$request.path.user_id",
                    memory_id="$response.body#/facts/0/memory_id",
                )
            }
        },
        **problem_responses(401, 403, 422),
    },
)
async def get_profile(user_id: UserId, caller: Reader, service: Service) -> ProfileView:
    return await service.read(caller.tenant, user_id)


@router.get(
    "/v1/trending",
    response_model=TrendingView,
    summary="What is popular now, overall and by category",
    description="One vote per user for each item in their recent items, decayed by age. "
    "Recomputed from the profiles at most every 30 s.",
    responses=problem_responses(401, 403, 422),
)
async def get_trending(
    caller: Reader,
    service: Service,
    category: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> TrendingView:
    return await service.trending(caller.tenant, category, limit)


@router.get(
    "/v1/feedback/arms",
    response_model=FeedbackCounts,
    summary="Feedback counts per exploration arm (the bandit's evidence)",
    description="`feedback` events whose `attributes` name a `policy` and an `arm` count as a "
    "success when `rating` >= 4, else a failure; each event once. Summed over the tenant's "
    "profiles at most every 30 s.",
    responses=problem_responses(401, 403, 422),
)
async def get_feedback_arms(
    caller: Reader,
    service: Service,
    policy: Annotated[str, Query(min_length=1, max_length=64, pattern=rf"^[^/{WHITESPACE}]+$")],
) -> FeedbackCounts:
    return await service.feedback_counts(caller.tenant, policy)


@router.put(
    "/v1/profiles/{user_id}/consent",
    status_code=202,
    response_model=ConsentAccepted,
    summary="Opt in or out of personalization",
    description="Recorded as a `consent` event, ordered with the user's activity. After an "
    "opt-out only consent changes are applied to the profile.",
    responses={
        202: {"links": {"ReadProfile": READ_PROFILE}},
        **problem_responses(401, 403, 422),
    },
)
async def put_consent(
    user_id: UserId, body: ConsentChange, caller: Writer, service: Service
) -> ConsentAccepted:
    return await service.change_consent(caller.tenant, user_id, body.personalization)


@router.delete(
    PROFILE,
    status_code=204,
    summary="Erase a user everywhere",
    description="Removes the profile (with its facts) from MongoDB and Redis, the "
    "remembered messages from the vector store, publishes a tombstone on "
    "`rapport.profile-changes.v1`, and keeps an erasure marker so a replay of the user's "
    "older events never brings the profile back. Idempotent.",
    responses={
        204: {"links": {"ReadProfile": READ_PROFILE}},
        **problem_responses(401, 403, 422),
    },
)
async def delete_profile(user_id: UserId, caller: Writer, service: Service) -> Response:
    await service.erase(caller.tenant, user_id)
    return Response(status_code=204)


@router.post(
    "/v1/profiles/{user_id}/memory/recall",
    response_model=Recalled,
    summary="The user's own past messages nearest the current one",
    description="Searches the messages memory keeps for this user (PII redacted) with the "
    "current message's vector, as recommend returns it (`vector: true`). Empty for a user "
    "who opted out, and when memory keeps no messages. Within the retention only.",
    responses={
        200: {
            "links": {
                "ForgetMessage": link(
                    "DELETE",
                    MEMORY,
                    "Forget the nearest message.",
                    user_id="$request.path.user_id",
                    memory_id="$response.body#/recalled/0/memory_id",
                )
            }
        },
        **problem_responses(401, 403, 422),
    },
)
async def recall(
    user_id: UserId, body: RecallRequest, caller: Reader, service: Service
) -> Recalled:
    with service.timed_recall():
        return await service.recall(caller.tenant, user_id, body)


@router.delete(
    MEMORY,
    status_code=204,
    summary="Forget one fact or remembered message",
    description="`memory_id` as `GET /v1/profiles/{user_id}` (`facts`) or a recall returns "
    "it. A forgotten fact stays forgotten until the user says it again in a newer "
    "message; a replay of the message that said it does not bring it back.",
    responses=problem_responses(401, 403, 404, 422),
)
async def forget_memory(
    user_id: UserId, memory_id: MemoryId, caller: Writer, service: Service
) -> Response:
    if not await service.forget(caller.tenant, user_id, memory_id):
        raise ProblemError(
            404,
            detail=f"The user has no memory `{memory_id}` (forgotten already, or never kept).",
            slug="memory-not-found",
        )
    return Response(status_code=204)


@router.get(
    "/v1/experiments",
    response_model=ExperimentList,
    tags=["experiments"],
    summary="Every configured experiment's report, for the key's tenant",
    responses=problem_responses(401, 403),
)
async def list_experiments(caller: Analyst, service: Service) -> ExperimentList:
    return await service.experiment_reports(caller.tenant)


@router.get(
    "/v1/experiments/{name}",
    response_model=ExperimentReport,
    tags=["experiments"],
    summary="One experiment's report: per variant and KPI, the rate, the difference from "
    "the control with an always-valid interval, the probability to beat it, and the "
    "sample ratio check",
    responses=problem_responses(401, 403, 404, 422),
)
async def get_experiment(
    name: ExperimentName, caller: Analyst, service: Service
) -> ExperimentReport:
    return await service.experiment_report(caller.tenant, name)
