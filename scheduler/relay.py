"""A TCP relay: a node agent exposes each instance on `address:port` and splices every connection to the
instance's upstream (which may be an address inside a network namespace that only this host reaches). Only
connections that open with the cluster's relay preamble (core.relay_key) are spliced: anything else is closed
before a byte reaches the instance."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from core.relay_key import read_preamble
from core.routes import Upstream

CHUNK = 1 << 16


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        pass


class Relay:
    def __init__(self, server: asyncio.Server, target: Upstream) -> None:
        self.server, self.target = server, target
        self.port: int = server.sockets[0].getsockname()[1]

    @classmethod
    async def open(cls, host: str, port: int, target: Upstream, key: Callable[[], str | None]) -> Relay:
        """Listen on `host:port` (0: any free port; a taken port falls back to any). Each connection must open
        with the preamble of `key()` (the relay key as the node knows it now; None: none yet, every connection
        refused), else it is closed unanswered."""
        box: dict[str, Relay] = {}

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            t = box["relay"].target
            if not await read_preamble(reader, key()):
                writer.close()
                return
            try:
                ur, uw = await asyncio.open_connection(t.host, t.port)
            except OSError:
                writer.close()
                return
            try:
                await asyncio.gather(_pipe(reader, uw), _pipe(ur, writer))
            finally:
                for w in (uw, writer):
                    with contextlib.suppress(Exception):
                        w.close()

        try:
            server = await asyncio.start_server(handle, host, port, reuse_address=True, backlog=1024)
        except OSError:
            if not port:
                raise
            server = await asyncio.start_server(handle, host, 0, reuse_address=True, backlog=1024)
        box["relay"] = relay = cls(server, target)
        return relay

    async def close(self) -> None:
        self.server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.server.wait_closed(), 2)
