"""The request body's size cap, by path: ingest's bulk endpoints refuse what they would
not read anyway before it is read."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rapport.common.problems import problem_response


def body_too_large(max_bytes: int) -> str:
    """The 413's detail, wherever the cap is checked."""
    return f"The body is larger than {max_bytes} bytes."


class BodySizeLimitMiddleware:
    """413 for bodies over a path's cap (``limits``: path to bytes), by Content-Length up
    front or while streaming. One instance for every capped path: each layer of
    middleware costs every request.

    A chunked body that grows past the cap raises from ``receive``; FastAPI
    passes HTTPExceptions raised while reading the body through to the
    problem handlers, so the client gets the same 413 either way.
    """

    def __init__(self, app: ASGIApp, *, limits: Mapping[str, int]) -> None:
        self.app = app
        self.limits = dict(limits)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        max_bytes = self.limits.get(scope["path"]) if scope["type"] == "http" else None
        if max_bytes is None:
            await self.app(scope, receive, send)
            return
        detail = body_too_large(max_bytes)
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > max_bytes:
                response = problem_response(None, 413, detail=detail)
                await response(scope, receive, send)
                return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > max_bytes:
                    raise HTTPException(413, detail=detail)
            return message

        await self.app(scope, limited_receive, send)
