"""Fault injection for tests: a TCP proxy on loopback that can slow a real server or cut it off.

Put it between a client and a real service (HTTP, gRPC or the Kafka protocol),
then, while traffic flows::

    proxy.delay_s = 0.3   # latency: every response chunk waits 300 ms
    proxy.blackhole()     # bytes are held, never answered (a partition); open connections too
    proxy.reset()         # every open and new connection is reset (RST)
    proxy.down()          # drop open connections and refuse new ones
    proxy.up()            # back to a plain pass-through (held bytes then flow on, in order)

A blackhole holds data rather than dropping it, as TCP would across a network
partition: a connection that outlives the fault carries on where it stopped
instead of losing part of a stream. Only for loopback servers started by the
tests themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct


class DelayProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.delay_s = 0.0
        self.refusing = False
        self.resetting = False
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        """``host:port``, for clients that take no URL (Kafka bootstrap, gRPC)."""
        return f"127.0.0.1:{self.port}"

    @property
    def fault(self) -> str:
        """What the proxy does now: ``none``, ``latency``, ``blackhole``, ``reset`` or ``down``."""
        if self.refusing:
            return "down"
        if self.resetting:
            return "reset"
        if not self._flowing.is_set():
            return "blackhole"
        return "latency" if self.delay_s > 0 else "none"

    async def start(self, port: int = 0) -> DelayProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        self._flowing.set()  # held pipes wake up and see the proxy is closing
        self.down()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def down(self) -> None:
        self.refusing = True
        for writer in list(self._writers):
            writer.close()

    def blackhole(self) -> None:
        self._flowing.clear()

    def reset(self) -> None:
        self.resetting = True
        self._flowing.set()  # held pipes wake up, see the reset and end
        for writer in list(self._writers):
            _abort(writer)

    def up(self) -> None:
        self.refusing = False
        self.resetting = False
        self.delay_s = 0.0
        self._flowing.set()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.resetting:
            _abort(writer)
            return
        if self.refusing:
            writer.close()
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        fault = self.fault
        if fault in ("down", "reset"):  # the fault began while we were connecting
            upstream_writer.close()
            if fault == "reset":
                _abort(writer)
            else:
                writer.close()
            return
        self._writers |= {writer, upstream_writer}
        try:
            await asyncio.gather(
                self._pipe(reader, upstream_writer, delayed=False),
                self._pipe(upstream_reader, writer, delayed=True),
            )
        finally:
            self._writers -= {writer, upstream_writer}
            writer.close()
            upstream_writer.close()

    async def _pipe(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, *, delayed: bool
    ) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await source.read(65536):
                await self._flowing.wait()  # a blackhole holds the bytes until up()
                if delayed and self.delay_s > 0:
                    await asyncio.sleep(self.delay_s)
                if self.refusing or self.resetting:
                    break
                sink.write(data)
                await sink.drain()
        sink.close()


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close with RST rather than FIN: linger on, zero timeout, then drop the socket."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
