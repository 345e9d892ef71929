"""``POST /v1/respond`` (native), ``POST /v1/chat/completions`` and ``GET /v1/models``."""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse, StreamingResponse
from openai.types.chat import ChatCompletion, ChatCompletionChunk, ChatCompletionMessage
from openai.types.chat.chat_completion import Choice
from openai.types.chat.chat_completion_chunk import Choice as ChunkChoice
from openai.types.chat.chat_completion_chunk import ChoiceDelta
from openai.types.completion_usage import CompletionUsage
from opentelemetry import trace
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from rapport.common.app import state_dependency
from rapport.common.auth import SCOPE_RESPOND_INVOKE, ApiKey, require_scope
from rapport.common.events import Identifier
from rapport.common.problems import FieldError, ProblemError, problem_responses
from rapport.respond.deadline import DEADLINE_HEADER, Deadline, parse_deadline_header
from rapport.respond.llm import Upstream, UpstreamFailed, UpstreamRejected
from rapport.respond.service import Gateway, Gathered, Turn
from rapport.respond.templates import Persona, Tone

log = logging.getLogger(__name__)

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
# Their problems also carry OpenAI's `error` member: OpenAI clients call them.
OPENAI_COMPATIBLE_PATHS = frozenset({"/v1/chat/completions", "/v1/models"})


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


def resolve_model(
    service: Gateway, upstream: Upstream | None, model: str | None
) -> tuple[Persona, str | None]:
    """A persona id, or (LLM mode) one of the tenant's upstream models; unknown is a 404."""
    templates = service.templates
    persona = templates.persona(model)
    if persona is not None:
        return persona, upstream.default_model if upstream else None
    if upstream is not None and model in upstream.models:
        return templates.personas[0], model
    raise ProblemError(
        404,
        title="Model not found",
        detail=f"The model `{model}` does not exist; `GET /v1/models` lists them.",
        slug="model-not-found",
    )


def request_deadline(service: Gateway, header: str | None) -> Deadline:
    settings = service.settings
    return Deadline.of_ms(
        parse_deadline_header(
            header, default_ms=settings.deadline_ms, max_ms=settings.max_deadline_ms
        )
    )


def upstream_problem(exc: UpstreamFailed | UpstreamRejected, gathered: Gathered) -> ProblemError:
    """What the client gets when only the upstream could answer and it did not.

    The upstream's own rejection keeps its status and error; a failure is a 502, or a
    504 when it timed out, with ``llm`` among the degraded parts.
    """
    if isinstance(exc, UpstreamRejected):
        return ProblemError(
            exc.status,
            title="The upstream model rejected the request",
            detail=str(exc.error.get("message") or exc),
            slug="upstream-rejected",
            extra={"error": exc.error},
        )
    status = 504 if exc.timed_out else 502
    return ProblemError(
        status,
        title="The upstream model did not answer",
        detail="This request needs the upstream model (it carries tools, a tool result or a "
        f"structured response format), and the model failed: {exc}",
        slug="upstream-timeout" if exc.timed_out else "upstream-failed",
        headers={DEGRADED_HEADER: ",".join(gathered.degraded)},
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
    upstream = service.upstreams.for_tenant(caller.tenant)
    persona, upstream_model = resolve_model(service, upstream, body.persona)
    turn = Turn(body.user_id, body.session_id, body.message, body.channel, body.locale)
    gathered = await service.gather(
        turn,
        tenant=caller.tenant,
        authorization=request.headers["authorization"],
        deadline=request_deadline(service, deadline_ms),
    )
    reply = None
    if upstream is not None and upstream_model is not None:
        conversation = [{"role": "user", "content": body.message}]
        messages = service.prompt(gathered, turn, persona, conversation)
        try:
            completion = await service.llm_complete(
                gathered, upstream, {"model": upstream_model, "messages": messages}
            )
            reply = completion_text(completion)
        except (UpstreamFailed, UpstreamRejected) as exc:
            log.warning("upstream LLM gave no reply; template reply", extra={"error": str(exc)})
        if reply is None:
            service.degrade(gathered, "llm")
    mode: Literal["template", "llm"] = "llm" if reply is not None else "template"
    if reply is None:
        reply = service.template_reply(gathered, persona)
    service.metrics.replies.labels("respond", mode, gathered.tone).inc()
    return RespondResponse(
        reply=reply,
        recommendations=recommendations(gathered),
        personalization=personalization(gathered, mode),
        trace_id=trace_id(),
    )


def completion_text(completion: ChatCompletion) -> str | None:
    """The first choice's text, when there is some."""
    content = completion.choices[0].message.content if completion.choices else None
    return content if content and content.strip() else None


# ---- OpenAI-compatible ---------------------------------------------------------------

# Request fields Rapport reads and does not forward; every other one goes upstream as sent.
OWNED_FIELDS = frozenset({"model", "messages", "user", "metadata"})


class ChatMessage(BaseModel):
    """One message as OpenAI defines it; every field is kept and forwarded as sent."""

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
    """The OpenAI request. In LLM mode every field but those Rapport owns (`model`, mapped
    to an upstream model; `user` and `metadata`, read here) reaches the upstream unchanged:
    `tools`, `tool_choice`, `temperature`, `response_format`, `seed`, `stop`, ..."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=128)
    messages: list[ChatMessage] = Field(min_length=1, max_length=200)
    stream: bool = False
    user: Identifier | None = Field(None, description="The end user's id: whose profile to use.")
    metadata: dict[str, str] | None = Field(
        None, description="`session_id`, `channel` and `locale` are read from here."
    )

    def forwarded(self) -> dict[str, Any]:
        return self.model_dump(exclude_unset=True, exclude=set(OWNED_FIELDS))

    def conversation(self) -> list[dict[str, Any]]:
        return [m.model_dump(exclude_unset=True) for m in self.messages]

    def needs_model(self) -> str | None:
        """The field that only a model can honour (a template would make an answer up)."""
        extra = self.model_extra or {}
        if extra.get("tools") or extra.get("functions"):
            return "tools"
        response_format = extra.get("response_format")
        if isinstance(response_format, dict) and response_format.get("type") not in (None, "text"):
            return "response_format"
        for message in self.messages:
            if message.role in ("tool", "function") or (message.model_extra or {}).get(
                "tool_calls"
            ):
                return "messages"
        return None


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
        record=body.messages[-1].role == "user",
    )


def _extension(gathered: Gathered, mode: Literal["template", "llm"]) -> dict[str, Any]:
    """Rapport's part of a completion; OpenAI clients ignore fields they do not know."""
    return {
        "recommendations": [r.model_dump() for r in recommendations(gathered)],
        "personalization": personalization(gathered, mode).model_dump(),
        "trace_id": trace_id(),
    }


def _template_usage(text: str) -> CompletionUsage:
    """No model ran: an estimate in words (there is no tokenizer here)."""
    words = len(text.split())
    return CompletionUsage(prompt_tokens=0, completion_tokens=words, total_tokens=words)


@router.post(
    "/v1/chat/completions",
    summary="OpenAI-compatible chat completion, personalized",
    description="The OpenAI request and response (`stream: true` gives SSE chunks ending with "
    "`data: [DONE]`). `user` is the end user's id; `model` is a persona or, in LLM mode, an "
    "upstream model (`GET /v1/models`). In LLM mode every other parameter (`tools`, "
    "`tool_choice`, `temperature`, `response_format`, `seed`, `stop`, `stream_options`, ...) "
    "reaches the upstream unchanged, and its answer (`tool_calls`, `finish_reason`, `usage`, "
    "`system_fingerprint`, `logprobs`) comes back as it sent it. The session id comes from "
    f"the `{SESSION_HEADER}` header or `metadata.session_id`. Rapport's personalization is in "
    "an extra `rapport` field (the last chunk when streaming). Errors carry OpenAI's `error` "
    "member too.",
    responses={
        200: {
            "description": "A chat completion, or an SSE stream of chunks.",
            "content": {"application/json": {}, "text/event-stream": {}},
        },
        **problem_responses(400, 401, 403, 404, 422, 502, 504),
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
    upstream = service.upstreams.for_tenant(caller.tenant)
    persona, upstream_model = resolve_model(service, upstream, body.model)
    turn = _turn(body, session_id)
    only_a_model = body.needs_model()
    if only_a_model and upstream_model is None:
        raise ProblemError(
            400,
            title="No model to answer this request",
            detail=f"`{only_a_model}` needs a language model, and this gateway answers from "
            "templates (no upstream is configured for this tenant).",
            slug="needs-upstream",
            errors=[FieldError(field=only_a_model, reason="needs an upstream model")],
        )
    gathered = await service.gather(
        turn,
        tenant=caller.tenant,
        authorization=request.headers["authorization"],
        deadline=request_deadline(service, deadline_ms),
    )
    chunks: AsyncIterator[ChatCompletionChunk] | None = None
    completion: ChatCompletion | None = None
    if upstream is not None and upstream_model is not None:
        upstream_body = {
            **body.forwarded(),
            "model": upstream_model,
            "messages": service.prompt(gathered, turn, persona, body.conversation()),
        }
        try:
            if body.stream:
                chunks = await service.llm_stream(gathered, upstream, upstream_body)
            else:
                completion = await service.llm_complete(gathered, upstream, upstream_body)
        except UpstreamRejected as exc:
            raise upstream_problem(exc, gathered) from exc
        except UpstreamFailed as exc:
            if only_a_model:
                raise upstream_problem(exc, gathered) from exc
    mode: Literal["template", "llm"] = (
        "llm" if chunks is not None or completion is not None else "template"
    )
    headers = {DEGRADED_HEADER: ",".join(gathered.degraded)} if gathered.degraded else {}
    service.metrics.replies.labels("chat_completions", mode, gathered.tone).inc()
    extension = _extension(gathered, mode)
    if body.stream:
        if chunks is None:
            chunks = _template_chunks(body, service.template_reply(gathered, persona))
        return StreamingResponse(
            _sse(chunks, extension),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", **headers},
        )
    if completion is None:
        completion = _template_completion(body, service.template_reply(gathered, persona))
    return JSONResponse({**completion.to_dict(mode="json"), "rapport": extension}, headers=headers)


def _template_completion(body: ChatCompletionRequest, reply: str) -> ChatCompletion:
    return ChatCompletion(
        id=f"chatcmpl-{secrets.token_hex(12)}",
        object="chat.completion",
        created=int(time.time()),
        model=body.model,
        choices=[
            Choice(
                index=0,
                message=ChatCompletionMessage(role="assistant", content=reply, refusal=None),
                finish_reason="stop",
                logprobs=None,
            )
        ],
        usage=_template_usage(reply),
        system_fingerprint=None,
    )


TEMPLATE_CHUNK_WORDS = 8


async def _template_chunks(
    body: ChatCompletionRequest, reply: str
) -> AsyncIterator[ChatCompletionChunk]:
    """A template reply as a few chunks, the way a model streams (usage last when asked)."""
    completion_id, created = f"chatcmpl-{secrets.token_hex(12)}", int(time.time())

    def chunk(
        delta: ChoiceDelta | None, finish: Literal["stop"] | None = None
    ) -> ChatCompletionChunk:
        choices = [] if delta is None else [ChunkChoice(index=0, delta=delta, finish_reason=finish)]
        return ChatCompletionChunk(
            id=completion_id,
            object="chat.completion.chunk",
            created=created,
            model=body.model,
            choices=choices,
        )

    yield chunk(ChoiceDelta(role="assistant", content=""))
    words = reply.split(" ")
    for start in range(0, len(words), TEMPLATE_CHUNK_WORDS):
        text = " ".join(words[start : start + TEMPLATE_CHUNK_WORDS])
        last = start + TEMPLATE_CHUNK_WORDS >= len(words)
        yield chunk(ChoiceDelta(content=text if last else text + " "))
    yield chunk(ChoiceDelta(), "stop")
    options = (body.model_extra or {}).get("stream_options")
    if isinstance(options, dict) and options.get("include_usage"):
        usage_chunk = chunk(None)
        usage_chunk.usage = _template_usage(reply)
        yield usage_chunk


def _may_be_last(chunk: ChatCompletionChunk) -> bool:
    """The finishing chunk, or a usage chunk (no choices): where the extension may go."""
    return not chunk.choices or any(c.finish_reason for c in chunk.choices)


def _event(data: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


async def _sse(
    chunks: AsyncIterator[ChatCompletionChunk], extension: dict[str, Any]
) -> AsyncIterator[bytes]:
    """Chunks as server-sent events, as they come; ``rapport`` rides on the last one.

    A chunk that may be the last (finishing, or usage) is held until the next arrives,
    so content deltas are never delayed. A stream that breaks, or ends before a choice
    finished, ends with an OpenAI ``error`` event (its clients raise it), not ``[DONE]``.
    """
    held: ChatCompletionChunk | None = None
    finished = False
    try:
        async for chunk in chunks:
            if held is not None:
                yield _event(held.to_dict(mode="json"))
                held = None
            finished = finished or any(c.finish_reason for c in chunk.choices)
            if _may_be_last(chunk):
                held = chunk
            else:
                yield _event(chunk.to_dict(mode="json"))
    except UpstreamFailed as exc:
        broken: str | None = f"the upstream stream broke off: {exc}"
    else:
        broken = None if finished else "the upstream stream ended before it finished"
    if broken is not None:
        if held is not None:
            yield _event(held.to_dict(mode="json"))
        error = {"message": broken, "type": "api_error", "param": None, "code": "upstream_failed"}
        yield _event({"error": error})
        return
    last = held.to_dict(mode="json") if held is not None else {"choices": []}
    yield _event({**last, "rapport": extension})
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
