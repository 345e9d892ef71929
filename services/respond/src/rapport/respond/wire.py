"""respond's own wire formats: its native API, and OpenAI's chat completions.

Pure: the request and response models, the template reply as an OpenAI completion
or as SSE chunks, and how chunks become server-sent events. What crosses to
another Rapport service is in rapport.common.contracts instead.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from openai.types.chat import ChatCompletion, ChatCompletionChunk, ChatCompletionMessage
from openai.types.chat.chat_completion import Choice
from openai.types.chat.chat_completion_chunk import Choice as ChunkChoice
from openai.types.chat.chat_completion_chunk import ChoiceDelta
from openai.types.completion_usage import CompletionUsage
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from rapport.common.contracts import MemoryFact, RecalledMessage
from rapport.common.experiments import Assignment, Tone
from rapport.common.identifiers import Identifier
from rapport.respond.adapters.llm import UpstreamFailed

SESSION_HEADER = "X-Rapport-Session-Id"
DEGRADED_HEADER = "X-Rapport-Degraded"

Label = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Locale = Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$")]


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


class KnowledgePassage(BaseModel):
    """A passage of the tenant's own documents that fits the message."""

    doc_id: str
    title: str
    snippet: str
    score: float = Field(description="Cosine similarity to the message, -1..1.")
    url: str | None = None


class Memory(BaseModel):
    """What the user told us about themselves: facts (from their profile) and their own
    past messages that fit this one."""

    facts: list[MemoryFact] = Field(default_factory=list)
    recalled: list[RecalledMessage] = Field(default_factory=list)


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
        "intent, sentiment, knowledge, memory, event, llm."
    )
    experiments: list[Assignment] = Field(
        default_factory=list,
        description="The experiments this user is enrolled in, their variant, and whether "
        "the variant changed this reply (an exposure).",
    )


class RespondResponse(BaseModel):
    reply: str
    recommendations: list[Recommendation]
    knowledge: list[KnowledgePassage] = Field(
        description="The company's own documents that fit the message, best first."
    )
    memory: Memory
    personalization: Personalization
    trace_id: str | None


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

    model_config = ConfigDict(extra="allow", strict=True)  # no coercion: the document's types only

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


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    description: str = ""


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


def completion_text(completion: ChatCompletion) -> str | None:
    """The first choice's text, when there is some."""
    content = completion.choices[0].message.content if completion.choices else None
    return content if content and content.strip() else None


def template_usage(text: str) -> CompletionUsage:
    """No model ran: an estimate in words (there is no tokenizer here)."""
    words = len(text.split())
    return CompletionUsage(prompt_tokens=0, completion_tokens=words, total_tokens=words)


def template_completion(body: ChatCompletionRequest, reply: str) -> ChatCompletion:
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
        usage=template_usage(reply),
        system_fingerprint=None,
    )


TEMPLATE_CHUNK_WORDS = 8


async def template_chunks(
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
        usage_chunk.usage = template_usage(reply)
        yield usage_chunk


def may_be_last(chunk: ChatCompletionChunk) -> bool:
    """The finishing chunk, or a usage chunk (no choices): where the extension may go."""
    return not chunk.choices or any(c.finish_reason for c in chunk.choices)


def sse_event(data: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


async def sse(
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
                yield sse_event(held.to_dict(mode="json"))
                held = None
            finished = finished or any(c.finish_reason for c in chunk.choices)
            if may_be_last(chunk):
                held = chunk
            else:
                yield sse_event(chunk.to_dict(mode="json"))
    except UpstreamFailed as exc:
        broken: str | None = f"the upstream stream broke off: {exc}"
    else:
        broken = None if finished else "the upstream stream ended before it finished"
    if broken is not None:
        if held is not None:
            yield sse_event(held.to_dict(mode="json"))
        error = {"message": broken, "type": "api_error", "param": None, "code": "upstream_failed"}
        yield sse_event({"error": error})
        return
    last = held.to_dict(mode="json") if held is not None else {"choices": []}
    yield sse_event({**last, "rapport": extension})
    yield b"data: [DONE]\n\n"
