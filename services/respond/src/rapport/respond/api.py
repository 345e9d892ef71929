"""``POST /v1/respond`` (native), ``POST /v1/chat/completions`` and ``GET /v1/models``."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse, StreamingResponse
from opentelemetry import trace
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from rapport.common.app import state_dependency
from rapport.common.auth import SCOPE_RESPOND_INVOKE, ApiKey, require_scope
from rapport.common.events import Identifier
from rapport.common.problems import FieldError, ProblemError, problem_responses
from rapport.respond.deadline import DEADLINE_HEADER, Deadline, parse_deadline_header
from rapport.respond.service import Gateway, Gathered, Turn
from rapport.respond.templates import Persona, Tone

SESSION_HEADER = "X-Rapport-Session-Id"
DEGRADED_HEADER = "X-Rapport-Degraded"

Caller = Annotated[ApiKey, Depends(require_scope(SCOPE_RESPOND_INVOKE))]
Service = Annotated[Gateway, Depends(state_dependency("gateway", Gateway))]
DeadlineHeader = Annotated[
    str | None,
    Header(
        alias=DEADLINE_HEADER,
        description="This request's budget in ms (default `RAPPORT_RESPOND_DEADLINE_MS`).",
    ),
]
Label = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Locale = Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$")]

router = APIRouter(tags=["respond"])


class RespondRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: Identifier
    session_id: Identifier
    message: str = Field(min_length=1, max_length=4096, description="The user's message.")
    channel: Label | None = Field(None, description="Where the user is, e.g. `web` or `app`.")
    locale: Locale | None = Field(None, description="BCP 47 tag, e.g. `fr-FR`.")
    persona: str | None = Field(None, description="A persona id (see `GET /v1/models`).")


class Recommendation(BaseModel):
    item_id: str
    title: str
    score: float
    reason: str


class Personalization(BaseModel):
    personalized: bool = Field(description="False for an opted-out or anonymous user.")
    profile_version: int | None
    segment: str | None
    intent: str | None
    sentiment: str | None
    tone: Tone
    mode: Literal["template", "llm"]
    degraded: list[str] = Field(
        description="Parts that could not be used: profile, recommendations, ranking, "
        "intent, sentiment, event, llm."
    )


class RespondResponse(BaseModel):
    reply: str
    recommendations: list[Recommendation]
    personalization: Personalization
    trace_id: str | None


def trace_id() -> str | None:
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None


def personalization(gathered: Gathered, mode: Literal["template", "llm"]) -> Personalization:
    return Personalization(
        personalized=gathered.personalized,
        profile_version=gathered.profile_version,
        segment=gathered.segment,
        intent=gathered.intent,
        sentiment=gathered.sentiment,
        tone=gathered.tone,
        mode=mode,
        degraded=list(gathered.degraded),
    )


def recommendations(gathered: Gathered) -> list[Recommendation]:
    return [
        Recommendation(item_id=i.item_id, title=i.title, score=i.score, reason=i.reason)
        for i in gathered.items
    ]


def resolve_model(service: Gateway, model: str | None) -> tuple[Persona, str | None]:
    """A persona id, or (LLM mode) an upstream model; unknown is a 404 like OpenAI's."""
    templates = service.templates
    upstream_default = service.settings.llm_model if service.upstream else None
    persona = templates.persona(model)
    if persona is not None:
        return persona, upstream_default
    if service.upstream is not None and model in service.settings.upstream_models:
        return templates.personas[0], model
    raise ProblemError(
        404,
        title="Model not found",
        detail=f"The model `{model}` does not exist; `GET /v1/models` lists them.",
        slug="model-not-found",
    )


@router.post(
    "/v1/respond",
    response_model=RespondResponse,
    summary="A personalized reply to the user's message",
    description="Reads the profile and asks recommend (intent, sentiment, ranked items) within "
    f"the deadline (`{DEADLINE_HEADER}`, default 80 ms), records the message as a "
    "`chat_message` event, and answers from a template or the upstream LLM. A slow or down "
    "dependency never fails the reply: the part is left out and named in "
    "`personalization.degraded`.",
    responses=problem_responses(401, 403, 404, 422),
)
async def respond(
    body: RespondRequest,
    request: Request,
    caller: Caller,
    service: Service,
    deadline_ms: DeadlineHeader = None,
) -> RespondResponse:
    settings = service.settings
    deadline = Deadline.of_ms(
        parse_deadline_header(
            deadline_ms, default_ms=settings.deadline_ms, max_ms=settings.max_deadline_ms
        )
    )
    persona, upstream_model = resolve_model(service, body.persona)
    turn = Turn(body.user_id, body.session_id, body.message, body.channel, body.locale)
    gathered = await service.gather(
        turn,
        tenant=caller.tenant,
        authorization=request.headers["authorization"],
        deadline=deadline,
    )
    reply, mode = None, "template"
    if upstream_model is not None:
        messages = service.prompt(
            gathered,
            turn,
            persona,
            operator_system=[],
            conversation=[{"role": "user", "content": body.message}],
        )
        reply = await service.llm_reply(gathered, upstream_model, messages)
        mode = "llm" if reply is not None else "template"
    if reply is None:
        reply = service.template_reply(gathered, persona)
    service.metrics.replies.labels("respond", mode, gathered.tone).inc()
    return RespondResponse(
        reply=reply,
        recommendations=recommendations(gathered),
        personalization=personalization(gathered, "llm" if mode == "llm" else "template"),
        trace_id=trace_id(),
    )


# ---- OpenAI-compatible ---------------------------------------------------------------


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str = Field(max_length=32)
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        if isinstance(self.content, list):  # content parts: keep the text ones
            return "\n".join(
                str(p.get("text", "")) for p in self.content if p.get("type") == "text"
            )
        return ""


class ChatCompletionRequest(BaseModel):
    """The OpenAI request; parameters this gateway does not use are accepted and ignored."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=128)
    messages: list[ChatMessage] = Field(min_length=1, max_length=200)
    stream: bool = False
    user: Identifier | None = Field(None, description="The end user's id: whose profile to use.")
    metadata: dict[str, str] | None = Field(
        None, description="`session_id`, `channel` and `locale` are read from here."
    )


def _turn(body: ChatCompletionRequest, session_header: str | None) -> Turn:
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
    )


def _conversation(body: ChatCompletionRequest) -> tuple[list[str], list[dict[str, str]]]:
    system = [m.text() for m in body.messages if m.role in ("system", "developer") and m.text()]
    turns = [
        {"role": m.role, "content": m.text()}
        for m in body.messages
        if m.role in ("user", "assistant") and m.text()
    ]
    return system, turns


def _extension(gathered: Gathered, mode: Literal["template", "llm"]) -> dict[str, Any]:
    """Rapport's part of a completion; OpenAI clients ignore fields they do not know."""
    return {
        "recommendations": [r.model_dump() for r in recommendations(gathered)],
        "personalization": personalization(gathered, mode).model_dump(),
        "trace_id": trace_id(),
    }


def _usage(text: str) -> dict[str, int]:
    completion = len(text.split())  # words, not tokens: no tokenizer here
    return {"prompt_tokens": 0, "completion_tokens": completion, "total_tokens": completion}


@router.post(
    "/v1/chat/completions",
    summary="OpenAI-compatible chat completion, personalized",
    description="The OpenAI request and response (`stream: true` gives SSE chunks ending with "
    "`data: [DONE]`). `user` is the end user's id; `model` is a persona or, in LLM mode, an "
    "upstream model (`GET /v1/models`). The session id comes from the "
    f"`{SESSION_HEADER}` header or `metadata.session_id`. Rapport's personalization is in an "
    "extra `rapport` field (the last chunk when streaming).",
    responses={
        200: {
            "description": "A chat completion, or an SSE stream of chunks.",
            "content": {"application/json": {}, "text/event-stream": {}},
        },
        **problem_responses(401, 403, 404, 422),
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
    settings = service.settings
    deadline = Deadline.of_ms(
        parse_deadline_header(
            deadline_ms, default_ms=settings.deadline_ms, max_ms=settings.max_deadline_ms
        )
    )
    persona, upstream_model = resolve_model(service, body.model)
    turn = _turn(body, session_id)
    gathered = await service.gather(
        turn,
        tenant=caller.tenant,
        authorization=request.headers["authorization"],
        deadline=deadline,
    )
    completion_id = f"chatcmpl-{secrets.token_hex(12)}"
    created = int(time.time())
    messages: list[dict[str, str]] = []
    if upstream_model is not None:
        system, conversation = _conversation(body)
        messages = service.prompt(
            gathered, turn, persona, operator_system=system, conversation=conversation
        )
    headers = {DEGRADED_HEADER: ",".join(gathered.degraded)} if gathered.degraded else {}

    if body.stream:
        deltas = None
        if upstream_model is not None:
            deltas = await service.llm_stream(gathered, upstream_model, messages)
        mode: Literal["template", "llm"] = "llm" if deltas is not None else "template"
        if deltas is None:
            deltas = _words(service.template_reply(gathered, persona))
        service.metrics.replies.labels("chat_completions", mode, gathered.tone).inc()
        return StreamingResponse(
            _sse(completion_id, created, body.model, deltas, _extension(gathered, mode)),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", **headers},
        )

    reply = None
    if upstream_model is not None:
        reply = await service.llm_reply(gathered, upstream_model, messages)
    mode = "llm" if reply is not None else "template"
    if reply is None:
        reply = service.template_reply(gathered, persona)
    service.metrics.replies.labels("chat_completions", mode, gathered.tone).inc()
    return JSONResponse(
        {
            "id": completion_id,
            "object": "chat.completion",
            "created": created,
            "model": body.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": reply, "refusal": None},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": _usage(reply),
            "system_fingerprint": None,
            "rapport": _extension(gathered, mode),
        },
        headers=headers,
    )


async def _words(text: str) -> AsyncIterator[str]:
    """A template reply as a few chunks, the way a model would stream it."""
    words = text.split(" ")
    step = 8
    for start in range(0, len(words), step):
        chunk = " ".join(words[start : start + step])
        yield chunk if start + step >= len(words) else chunk + " "


async def _sse(
    completion_id: str,
    created: int,
    model: str,
    deltas: AsyncIterator[str],
    extension: dict[str, Any],
) -> AsyncIterator[bytes]:
    def chunk(delta: dict[str, Any], finish: str | None, **extra: Any) -> bytes:
        data = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": None,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
            **extra,
        }
        return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"

    yield chunk({"role": "assistant", "content": ""}, None)
    async for delta in deltas:
        yield chunk({"content": delta}, None)
    yield chunk({}, "stop", rapport=extension)
    yield b"data: [DONE]\n\n"


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    description: str = ""


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


@router.get(
    "/v1/models",
    response_model=ModelList,
    summary="The models a chatbot can pass as `model`: personas, and upstream models in LLM mode",
    responses=problem_responses(401, 403),
)
async def models(caller: Caller, service: Service) -> ModelList:
    del caller  # the scope check is the point
    created = service.started_at
    cards = [
        ModelCard(id=p.id, created=created, owned_by="rapport", description=p.description)
        for p in service.templates.personas
    ]
    if service.upstream is not None:
        cards += [
            ModelCard(id=m, created=created, owned_by="upstream", description="upstream model")
            for m in service.settings.upstream_models
            if m not in {c.id for c in cards}
        ]
    return ModelList(data=cards)
