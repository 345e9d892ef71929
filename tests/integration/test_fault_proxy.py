"""The fault proxy that `make chaos` and the respond tests put in front of real servers:
latency, blackhole (held, then delivered in order), reset (RST) and down, on loopback."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from rapport.devstack.faults import DelayProxy

pytestmark = pytest.mark.integration


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(1024):
        writer.write(data)
        await writer.drain()
    writer.close()


@pytest_asyncio.fixture
async def proxy() -> AsyncIterator[DelayProxy]:
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    proxy = await DelayProxy("127.0.0.1", port).start()
    try:
        yield proxy
    finally:
        await proxy.stop()
        server.close()
        await server.wait_closed()


async def _connect(proxy: DelayProxy) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", proxy.port)


async def _round_trip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> float:
    started = time.perf_counter()
    writer.write(b"ping")
    await writer.drain()
    assert await reader.readexactly(4) == b"ping"
    return time.perf_counter() - started


async def test_latency_then_up(proxy: DelayProxy) -> None:
    reader, writer = await _connect(proxy)
    assert await _round_trip(reader, writer) < 0.1
    proxy.delay_s = 0.2
    assert proxy.fault == "latency"
    assert await _round_trip(reader, writer) >= 0.2
    proxy.up()
    assert await _round_trip(reader, writer) < 0.1
    writer.close()


async def test_a_blackhole_holds_bytes_and_delivers_them_in_order_after_up(
    proxy: DelayProxy,
) -> None:
    reader, writer = await _connect(proxy)
    assert await _round_trip(reader, writer) < 0.1
    proxy.blackhole()
    assert proxy.fault == "blackhole"
    writer.write(b"one,two")
    await writer.drain()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.read(1), 0.3)
    fresh_reader, fresh_writer = await _connect(proxy)  # new connections are held too
    fresh_writer.write(b"x")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(fresh_reader.read(1), 0.2)
    proxy.up()
    assert await reader.readexactly(7) == b"one,two"
    assert await fresh_reader.readexactly(1) == b"x"
    writer.close()
    fresh_writer.close()


async def test_reset_aborts_open_and_new_connections(proxy: DelayProxy) -> None:
    reader, writer = await _connect(proxy)
    assert await _round_trip(reader, writer) < 0.1
    proxy.reset()
    assert proxy.fault == "reset"
    with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
        await asyncio.wait_for(_round_trip(reader, writer), 1)
    fresh_reader, fresh_writer = await _connect(proxy)
    fresh_writer.write(b"x")
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(fresh_reader.read(1), 1)
    proxy.up()
    reader, writer = await _connect(proxy)
    assert await _round_trip(reader, writer) < 0.1
    writer.close()


async def test_down_closes_and_refuses(proxy: DelayProxy) -> None:
    reader, writer = await _connect(proxy)
    assert await _round_trip(reader, writer) < 0.1
    proxy.down()
    assert proxy.fault == "down"
    assert await asyncio.wait_for(reader.read(1), 1) == b""
    writer.close()
    fresh_reader, fresh_writer = await _connect(proxy)
    assert await asyncio.wait_for(fresh_reader.read(1), 1) == b""
    fresh_writer.close()
