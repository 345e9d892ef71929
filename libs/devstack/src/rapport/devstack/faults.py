"""Fault injection for tests: a TCP proxy on loopback that can slow a real server or cut it off.

Put it between a client and a real service, then, while traffic flows::

    proxy.delay_s = 0.3   # every response chunk waits 300 ms
    proxy.down()          # drop open connections and refuse new ones
    proxy.up()            # back to a plain pass-through

Only for loopback servers started by the tests themselves.
"""

from __future__ import annotations

import asyncio
import contextlib


class DelayProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.delay_s = 0.0
        self.refusing = False
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> DelayProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        self.down()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def down(self) -> None:
        self.refusing = True
        for writer in list(self._writers):
            writer.close()

    def up(self) -> None:
        self.refusing = False
        self.delay_s = 0.0

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            writer.close()
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
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
                if delayed and self.delay_s > 0:
                    await asyncio.sleep(self.delay_s)
                if self.refusing:
                    break
                sink.write(data)
                await sink.drain()
        sink.close()
