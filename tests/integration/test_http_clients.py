"""The shared HTTP clients against a server that closes its keep-alive connections.

A restarted pod, or a server's idle timeout, leaves connections in aiohttp's pool
that fail on their next use. aiohttp itself sends an idempotent request (the
profile GETs) again on a new connection; recommend's POST it does not, so its
client does (recommending changes nothing). Either way a caller does not see a
degraded reply for it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio

from rapport.common.profiles import ProfileClient, ProfileServiceError
from rapport.respond.adapters.recommend import RecommendClient, RecommendServiceError

pytestmark = pytest.mark.integration


class ClosingServer:
    """Answers a connection's first request (keep-alive) and drops the next one unanswered.

    That is the keep-alive race: the server closes an idle connection just as the
    client sends on it, and the request fails before any handler saw it.
    """

    def __init__(self, body: dict[str, object]) -> None:
        self.payload = json.dumps(body).encode()
        self.connections = 0
        self.answered = 0
        self.dropped = 0
        self.server: asyncio.Server | None = None

    async def read_request(self, reader: asyncio.StreamReader) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.lower().split(b"\r\n")
        length = next((int(h.split(b":")[1]) for h in lines if h.startswith(b"content-length")), 0)
        await reader.readexactly(length)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        await self.read_request(reader)
        self.answered += 1
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(self.payload)}\r\n\r\n".encode()
            + self.payload
        )
        await writer.drain()
        try:
            await self.read_request(reader)
            self.dropped += 1
        except asyncio.IncompleteReadError:
            pass  # the client closed it
        writer.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"


@pytest_asyncio.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as created:
        yield created


async def serve(body: dict[str, object]) -> ClosingServer:
    closing = ClosingServer(body)
    closing.server = await asyncio.start_server(closing.handle, "127.0.0.1", 0)
    return closing


async def test_profile_reads_survive_a_closed_pooled_connection(
    session: aiohttp.ClientSession,
) -> None:
    server = await serve({"user_id": "u-1", "known": True, "version": 3})
    client = ProfileClient(session, server.url, timeout_s=2)
    for _ in range(3):
        profile = await client.profile("u-1", "Bearer k")
        assert profile.version == 3
    # Each later read was dropped on the pooled connection, then answered on a new one
    # (aiohttp's own retry of idempotent requests; the client relies on it).
    assert (server.answered, server.dropped, server.connections) == (3, 2, 3)


async def test_recommend_calls_survive_a_closed_pooled_connection(
    session: aiohttp.ClientSession,
) -> None:
    server = await serve({"user_id": "u-1", "items": [], "models": {}, "fallback": False})
    client = RecommendClient(session, server.url, timeout_s=2)
    for _ in range(3):
        answer = await client.recommend(user_id="u-1", authorization="Bearer k")
        assert answer.items == []
    assert (server.answered, server.dropped, server.connections) == (3, 2, 3)


async def test_an_answer_outside_the_contract_is_a_service_error(
    session: aiohttp.ClientSession,
) -> None:
    """A 200 that is not the contract's model (another version, a proxy's page) is the
    callee's failure (502), which callers already degrade on, not a crash of theirs."""
    server = await serve({"items": "not a list"})
    with pytest.raises(RecommendServiceError) as raised:
        await RecommendClient(session, server.url, timeout_s=2).recommend(
            user_id="u-1", authorization="Bearer k"
        )
    assert raised.value.status == 502
    assert "Recommendations" in raised.value.detail


async def test_a_server_that_is_gone_is_still_an_error(session: aiohttp.ClientSession) -> None:
    server = await serve({})
    url = server.url
    assert server.server is not None
    server.server.close()
    await server.server.wait_closed()
    with pytest.raises(ProfileServiceError) as raised:
        await ProfileClient(session, url, timeout_s=2).profile("u-1", "Bearer k")
    assert raised.value.status == 0
