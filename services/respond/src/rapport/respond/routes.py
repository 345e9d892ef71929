"""``POST /v1/respond`` (native), ``POST /v1/chat/completions`` and ``GET /v1/models``.

Thin: each route describes its request as an :class:`~rapport.respond.service.Ask`,
takes the one reply path (:meth:`RespondService.answer`) and formats its answer.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import WithJsonSchema

from rapport.common.app import state_dependency
from rapport.common.auth import SCOPE_RESPOND_INVOKE, ApiKey, require_scope
from rapport.common.problems import FieldError, ProblemError, problem_responses
from rapport.respond.domain import DEADLINE_HEADER
from rapport.respond.fanout import Turn
from rapport.respond.service import Ask, RespondService, trace_id
from rapport.respond.wire import (
    SESSION_HEADER,
    ChatCompletionRequest,
    ModelCard,
    ModelList,
    RespondRequest,
    RespondResponse,
    sse,
    template_chunks,
    template_completion,
)

Caller = Annotated[ApiKey, Depends(require_scope(SCOPE_RESPOND_INVOKE))]
Service = Annotated[RespondService, Depends(state_dependency("service", RespondService))]
# Parsed by the service (parse_deadline_header), documented as the number it must be.
DeadlineHeader = Annotated[
    str | None,
    WithJsonSchema({"type": "number", "minimum": 1}),
    Header(
        alias=DEADLINE_HEADER,
        description="This request's budget in ms (default `RAPPORT_RESPOND_DEADLINE_MS`), at "
        "most `RAPPORT_RESPOND_MAX_DEADLINE_MS` (2000 by default): more is refused (422).",
    ),
]

router = APIRouter(tags=["respond"])
# Their problems also carry OpenAI's `error` member: OpenAI clients call them.
OPENAI_COMPATIBLE_PATHS = frozenset({"/v1/chat/completions", "/v1/models"})


@router.post(
    "/v1/respond",
    response_model=RespondResponse,
    summary="A personalized reply to the user's message",
    description="Reads the profile and asks recommend (intent, sentiment, ranked items) within "
    f"the deadline (`{DEADLINE_HEADER}`, default 80 ms), records the message as a "
    "`chat_message` event, and answers from a template or the upstream LLM. A slow or down "
    "dependency never fails the reply: the part is left out and named in "
    "`personalization.degraded`. A gateway past its capacity answers 503 with `Retry-After` "
    "when no place frees within the deadline (nothing is recorded: send it again).",
    responses=problem_responses(401, 403, 404, 422, 503),
)
async def respond(
    body: RespondRequest,
    request: Request,
    caller: Caller,
    service: Service,
    deadline_ms: DeadlineHeader = None,
) -> RespondResponse:
    ask = Ask(
        turn=Turn(body.user_id, body.session_id, body.message, body.channel, body.locale),
        endpoint="respond",
        model=body.persona,
        conversation=[{"role": "user", "content": body.message}],
    )
    answer = await service.answer(
        ask,
        caller=caller,
        authorization=request.headers["authorization"],
        deadline_ms=deadline_ms,
    )
    return RespondResponse(
        reply=answer.reply,
        recommendations=answer.recommendations(),
        knowledge=answer.knowledge(),
        memory=answer.memory(),
        personalization=answer.personalization(),
        trace_id=trace_id(),
    )


def chat_turn(body: ChatCompletionRequest, session_header: str | None) -> Turn:
    users = [m for m in body.messages if m.role == "user" and m.text().strip()]
    if not users:
        raise ProblemError(
            422,
            title="Invalid request",
            detail="`messages` needs at least one user message with text.",
            slug="validation",
            errors=[FieldError(field="messages", reason="no user message")],
        )
    metadata = body.metadata or {}
    session = session_header or metadata.get("session_id")
    return Turn(
        user_id=body.user,
        session_id=session[:128] if session else None,
        message=users[-1].text()[:4096],
        channel=metadata.get("channel", "")[:64] or None,
        locale=metadata.get("locale", "")[:35] or None,
        record=body.messages[-1].role == "user",
    )


@router.post(
    "/v1/chat/completions",
    summary="OpenAI-compatible chat completion, personalized",
    description="The OpenAI request and response (`stream: true` gives SSE chunks ending with "
    "`data: [DONE]`). `user` is the end user's id; `model` is a persona or, in LLM mode, an "
    "upstream model (`GET /v1/models`). In LLM mode every other parameter (`tools`, "
    "`tool_choice`, `temperature`, `response_format`, `seed`, `stop`, `stream_options`, ...) "
    "reaches the upstream unchanged, and its answer (`tool_calls`, `finish_reason`, `usage`, "
    "`system_fingerprint`, `logprobs`) comes back as it sent it. The session id comes from "
    f"the `{SESSION_HEADER}` header or `metadata.session_id`. `messages` must hold a user "
    "message with text (`422` otherwise). Rapport's personalization is in "
    "an extra `rapport` field (the last chunk when streaming). Errors carry OpenAI's `error` "
    "member too.",
    responses={
        200: {
            "description": "A chat completion, or an SSE stream of chunks.",
            "content": {"application/json": {}, "text/event-stream": {}},
        },
        **problem_responses(400, 401, 403, 404, 422, 502, 503, 504),
    },
)
async def chat_completions(  # noqa: PLR0917 - FastAPI parameters
    body: ChatCompletionRequest,
    request: Request,
    caller: Caller,
    service: Service,
    deadline_ms: DeadlineHeader = None,
    session_id: Annotated[str | None, Header(alias=SESSION_HEADER)] = None,
) -> Any:
    ask = Ask(
        turn=chat_turn(body, session_id),
        endpoint="chat_completions",
        model=body.model,
        conversation=body.conversation(),
        forwarded=body.forwarded(),
        needs_model=body.needs_model(),
        stream=body.stream,
        passthrough=True,
    )
    answer = await service.answer(
        ask,
        caller=caller,
        authorization=request.headers["authorization"],
        deadline_ms=deadline_ms,
    )
    headers = answer.degraded_headers()
    if body.stream:
        chunks = answer.chunks or template_chunks(body, answer.reply)
        return StreamingResponse(
            sse(chunks, answer.extension()),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", **headers},
        )
    completion = answer.completion or template_completion(body, answer.reply)
    document = {**completion.to_dict(mode="json"), "rapport": answer.extension()}
    return JSONResponse(document, headers=headers)


@router.get(
    "/v1/models",
    response_model=ModelList,
    summary="The models a chatbot can pass as `model`: personas, and upstream models in LLM mode",
    responses=problem_responses(401, 403),
)
async def models(caller: Caller, service: Service) -> ModelList:
    """The personas, and the upstream models of the caller's tenant."""
    created = service.started_at
    cards = [
        ModelCard(id=p.id, created=created, owned_by="rapport", description=p.description)
        for p in service.templates.personas
    ]
    upstream = service.upstreams.for_tenant(caller.tenant)
    if upstream is not None:
        cards += [
            ModelCard(id=m, created=created, owned_by="upstream", description="upstream model")
            for m in upstream.models
            if m not in {c.id for c in cards}
        ]
    return ModelList(data=cards)
