"""The upstream OpenAI-compatible API, called with the official ``openai`` client.

It receives the messages ready (``rapport.respond.prompt`` builds them). Every request
parameter Rapport does not own is forwarded unchanged, and the upstream's answer comes
back as it sent it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import openai
from openai import AsyncOpenAI, AsyncStream
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from pydantic import BaseModel, ConfigDict, Field, SecretStr, TypeAdapter

log = logging.getLogger(__name__)

# The upstream's own 4xx for what the request asked: the client's to see and fix. Its 401
# and 403 (Rapport's upstream key) and 429 (Rapport's quota) are the gateway's problem.
REQUEST_ERRORS = frozenset({400, 404, 409, 413, 415, 422})


class UpstreamFailed(Exception):
    """The upstream could not answer: down, too slow, or refusing Rapport itself."""

    def __init__(self, reason: str, *, timed_out: bool = False) -> None:
        super().__init__(reason)
        self.timed_out = timed_out


class UpstreamRejected(Exception):
    """The upstream refused the request itself (a bad tool schema, a context too long)."""

    def __init__(self, status: int, error: Mapping[str, Any]) -> None:
        super().__init__(f"upstream answered {status}: {error.get('message')}")
        self.status = status
        self.error = dict(error)


def _failure(exc: Exception) -> Exception:
    """An ``openai`` exception as UpstreamRejected or UpstreamFailed."""
    if isinstance(exc, openai.APIStatusError):
        body = exc.body if isinstance(exc.body, Mapping) else {"message": str(exc.body)}
        if exc.status_code in REQUEST_ERRORS:
            return UpstreamRejected(exc.status_code, body)
        return UpstreamFailed(f"upstream answered {exc.status_code}")
    timed_out = isinstance(exc, openai.APITimeoutError | TimeoutError | httpx2.TimeoutException)
    return UpstreamFailed(f"{type(exc).__name__}: {exc}", timed_out=timed_out)


UPSTREAM_ERRORS = (openai.APIError, TimeoutError, httpx2.HTTPError)
COMPLETIONS_PATH = "/chat/completions"


@dataclass
class Upstream:
    """One OpenAI-compatible API: its client (own key), the models it may serve, limits."""

    client: AsyncOpenAI
    models: tuple[str, ...]  # the first is the default
    timeout_s: float
    default_max_tokens: int | None

    @property
    def default_model(self) -> str:
        return self.models[0]

    def _body(self, body: Mapping[str, Any], *, stream: bool) -> dict[str, Any]:
        """The body as sent upstream: verbatim, plus the default ``max_tokens`` if none."""
        sent = {**body, "stream": stream}
        if self.default_max_tokens and not {"max_tokens", "max_completion_tokens"} & set(sent):
            sent["max_tokens"] = self.default_max_tokens
        return sent

    # The client's generic ``post`` sends the body as it is: ``chat.completions.create``
    # would first walk every message against its typed parameters (0.5 ms a call, measured
    # with py-spy) only to forward the same JSON.

    async def complete(self, body: Mapping[str, Any]) -> ChatCompletion:
        """The whole completion within the timeout; UpstreamRejected or UpstreamFailed."""
        try:
            async with asyncio.timeout(self.timeout_s):
                return await self.client.post(
                    COMPLETIONS_PATH,
                    cast_to=ChatCompletion,
                    body=self._body(body, stream=False),
                    options={"timeout": self.timeout_s},
                )
        except UPSTREAM_ERRORS as exc:
            raise _failure(exc) from exc

    async def stream(
        self, body: Mapping[str, Any]
    ) -> tuple[ChatCompletionChunk, AsyncIterator[ChatCompletionChunk]]:
        """The first chunk (within the timeout), and the rest as the upstream sends them.

        Raises UpstreamRejected or UpstreamFailed before the first chunk; after it, each
        chunk must come within the timeout, and a failure ends the rest with UpstreamFailed.
        """
        # No total: a long answer may stream for a while; every read has the timeout.
        per_read = httpx2.Timeout(self.timeout_s)
        try:
            async with asyncio.timeout(self.timeout_s):
                chunks = await self.client.post(
                    COMPLETIONS_PATH,
                    cast_to=ChatCompletion,
                    body=self._body(body, stream=True),
                    options={"timeout": per_read},
                    stream=True,
                    stream_cls=AsyncStream[ChatCompletionChunk],
                )
                iterator = aiter(chunks)
                try:
                    first = await anext(iterator)
                except BaseException:
                    await chunks.close()
                    raise
        except StopAsyncIteration as exc:
            raise UpstreamFailed("upstream sent an empty stream") from exc
        except UPSTREAM_ERRORS as exc:
            raise _failure(exc) from exc

        async def rest() -> AsyncIterator[ChatCompletionChunk]:
            try:
                async for chunk in iterator:
                    yield chunk
            except UPSTREAM_ERRORS as exc:
                raise _failure(exc) from exc
            finally:
                await chunks.close()

        return first, rest()


class UpstreamEntry(BaseModel):
    """A tenant's own upstream: its API, its key and the models its chatbots may pick."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tenant: str = Field(min_length=1, max_length=128)
    base_url: str = Field(min_length=1, description="Ending in /v1.")
    api_key: SecretStr | None = None
    models: list[str] = Field(min_length=1, description="The first is the default.")


_ENTRIES = TypeAdapter(list[UpstreamEntry])


def upstream_entries(inline: SecretStr | None, file: Path | None) -> list[UpstreamEntry]:
    """Per-tenant upstreams from ``RAPPORT_LLM_UPSTREAMS`` and ``..._FILE`` (a Secret)."""
    entries: list[UpstreamEntry] = []
    if inline is not None:
        entries += _ENTRIES.validate_json(inline.get_secret_value())
    if file is not None:
        entries += _ENTRIES.validate_json(file.read_bytes())
    tenants = [e.tenant for e in entries]
    if len(tenants) != len(set(tenants)):
        raise ValueError("a tenant has more than one upstream")
    return entries


@dataclass
class Upstreams:
    """Which upstream serves a tenant: its own, else the default, else none (templates).

    A tenant with its own upstream never reaches the default or another tenant's.
    """

    default: Upstream | None
    by_tenant: dict[str, Upstream]

    def for_tenant(self, tenant: str) -> Upstream | None:
        return self.by_tenant.get(tenant, self.default)

    async def aclose(self) -> None:
        for upstream in {id(u): u for u in [self.default, *self.by_tenant.values()] if u}.values():
            await upstream.client.close()
