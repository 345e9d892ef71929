"""Outbound HTTP through one pooled aiohttp session per service.

aiohttp rather than httpx: one hop measured 0.34-0.48 ms against 1.3-1.7 ms
(../shared/INFRA.md); the hot fan-out paths re-measure it in their benchmarks.
"""

from __future__ import annotations

import json as jsonlib  # call_service's `json` argument has the module's name
from typing import Any, TypeVar

import aiohttp
from pydantic import BaseModel, ValidationError
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt

from rapport.common.telemetry import client_route

# A pooled keep-alive connection that the server (or a restarted pod) closed as
# the request went out: disconnected before an answer, or reset while writing
# (aiohttp reports a failed body write as ClientOSError).
STALE_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    aiohttp.ServerDisconnectedError,
    aiohttp.ClientConnectionResetError,
    aiohttp.ClientOSError,
)


def stale_connection_retry() -> AsyncRetrying:
    """An immediate second attempt, on a fresh connection, after a stale pooled one.

    For side-effect-free POSTs on a hot path (aiohttp already does this for
    idempotent methods): no backoff (the caller's deadline bounds both
    attempts), and no retry of timeouts or HTTP errors.
    """
    return AsyncRetrying(
        stop=stop_after_attempt(2),
        retry=retry_if_exception_type(STALE_CONNECTION_ERRORS),
        reraise=True,
    )


def create_http_session(
    *, total_timeout_s: float = 2.0, connect_timeout_s: float = 0.5, pool_size: int = 100
) -> aiohttp.ClientSession:
    """A session that reuses connections. Create it inside a running event loop."""
    connector = aiohttp.TCPConnector(
        limit=pool_size, limit_per_host=pool_size, keepalive_timeout=30, ttl_dns_cache=60
    )
    timeout = aiohttp.ClientTimeout(total=total_timeout_s, sock_connect=connect_timeout_s)
    return aiohttp.ClientSession(connector=connector, timeout=timeout, raise_for_status=False)


ModelT = TypeVar("ModelT", bound=BaseModel)


class ServiceCallError(Exception):
    """Another Rapport service refused or failed; ``status`` is its HTTP status (0: no answer)."""

    service = "a service"

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"{self.service}: {status} {detail}")
        self.status = status
        self.detail = detail


async def call_service(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    error: type[ServiceCallError],
    *,
    authorization: str,
    client_timeout: aiohttp.ClientTimeout,
    params: dict[str, str] | None = None,
    json: Any = None,
    resend_on_stale: bool = False,
    route: str | None = None,
) -> bytes:
    """The body of a 200 answer; anything else raises ``error``.

    ``resend_on_stale``: for a call that changes nothing, go once more on a fresh
    connection when a pooled one was closed under the request (aiohttp does this
    itself for idempotent methods only). ``route``: the path's template, which the
    client span records instead of a path that holds an id (a user's).
    """

    async def once() -> tuple[int, bytes]:
        async with session.request(
            method,
            url,
            params=params,
            json=json,
            headers={"Authorization": authorization},
            timeout=client_timeout,
        ) as response:
            return response.status, await response.read()

    try:
        with client_route(route):
            status, body = await (stale_connection_retry()(once) if resend_on_stale else once())
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise error(0, f"{type(exc).__name__}: {exc}") from exc
    if status != 200:
        raise error(status, refusal(body))
    return body


def refusal(body: bytes, limit: int = 300) -> str:
    """What a refusing service said, for the error (which is logged): a problem document
    without its ``instance``, the path that was asked for, which may hold a user id."""
    try:
        document = jsonlib.loads(body)
    except ValueError:
        document = None
    if isinstance(document, dict) and "instance" in document:
        del document["instance"]
        return jsonlib.dumps(document)[:limit]
    return body[:limit].decode(errors="replace")


def parse_answer(model: type[ModelT], body: bytes, error: type[ServiceCallError]) -> ModelT:
    """A 200 body as the contract's model; one that is not raises ``error`` (status 502)."""
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise error(502, f"answer is not a {model.__name__}: {exc.errors()[:1]}") from exc


class ServiceClient:
    """A client of another Rapport service's API on this process's pooled session: the
    caller's own bearer key is forwarded (that service enforces the key's tenant and
    scopes) and each answer is parsed as its contract's model. Subclasses name their
    service's ``error``."""

    error: type[ServiceCallError] = ServiceCallError

    def __init__(self, session: aiohttp.ClientSession, base_url: str, timeout_s: float) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def call(
        self,
        method: str,
        path: str,
        answer: type[ModelT],
        *,
        authorization: str,
        timeout_s: float | None = None,
        params: dict[str, str] | None = None,
        json: Any = None,
        resend_on_stale: bool = False,
        route: str | None = None,
    ) -> ModelT:
        """``timeout_s`` overrides the client's timeout for this call (a caller's deadline);
        ``resend_on_stale`` as :func:`call_service`'s, for a call that changes nothing;
        ``route`` as its, for a path that holds an id."""
        timeout = self.timeout if timeout_s is None else aiohttp.ClientTimeout(total=timeout_s)
        body = await call_service(
            self.session,
            method,
            f"{self.base_url}{path}",
            self.error,
            authorization=authorization,
            client_timeout=timeout,
            params=params,
            json=json,
            resend_on_stale=resend_on_stale,
            route=route,
        )
        return parse_answer(answer, body, self.error)
