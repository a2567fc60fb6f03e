"""A node's relay (scheduler/relay.py) splices only connections that open with the cluster's relay preamble
(core/relay_key.py): a real app server behind a real relay on loopback; with the right preamble requests reach
it (keep-alive too, and through `relay_client`); without one, with a wrong key, or before the node knows the key
(not registered yet), the connection is closed and no byte, not even a connection, reaches the app."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import httpx
import pytest

from core.relay_key import PREAMBLE_LEN, preamble, relay_client, relay_key
from core.routes import Upstream
from scheduler.relay import Relay

KEY = relay_key(b"installation key")
REQUEST = b"GET /secret HTTP/1.1\r\nHost: space\r\nUser-Agent: a plain client of the node's address\r\n\r\n"


class App:
    """An HTTP/1.1 server that answers every request with its path and counts what reaches it."""

    def __init__(self) -> None:
        self.connections = 0
        self.received = b""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                self.received += head
                body = b"private " + head.split(b" ")[1]
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def run(key: str | None, check: Callable[[App, Relay], Awaitable[None]]) -> App:
    async def main() -> App:
        app = App()
        server = await asyncio.start_server(app.handle, "127.0.0.1", 0)
        relay = await Relay.open("127.0.0.1", 0, Upstream("127.0.0.1", server.sockets[0].getsockname()[1]),
                                 lambda: key)
        try:
            await check(app, relay)
        finally:
            await relay.close()
            server.close()
        return app

    return asyncio.run(main())


async def exchange(relay: Relay, first: bytes) -> bytes:
    """Send `first` then REQUEST on a fresh connection; everything the relay sends back until it closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
    writer.write(first + REQUEST)
    await writer.drain()
    got = b""
    try:
        while chunk := await asyncio.wait_for(reader.read(65536), 10):
            got += chunk
            if b"private" in got:
                break
    except ConnectionError:
        pass
    writer.close()
    return got


def test_the_right_preamble_reaches_the_app_and_the_app_never_sees_it() -> None:
    async def check(app: App, relay: Relay) -> None:
        got = await exchange(relay, preamble(KEY))
        assert got.startswith(b"HTTP/1.1 200 OK") and got.endswith(b"private /secret"), got

    app = run(KEY, check)
    assert (app.connections, app.received) == (1, REQUEST)


@pytest.mark.parametrize("first", [b"", preamble(relay_key(b"another installation")), preamble(KEY)[:-3] + b"\r\n\r",
                                   b"\0" * PREAMBLE_LEN], ids=["none", "other key", "altered", "zeros"])
def test_a_connection_without_the_key_is_closed_before_the_app(first: bytes) -> None:
    async def check(app: App, relay: Relay) -> None:
        assert await exchange(relay, first) == b""

    app = run(KEY, check)
    assert (app.connections, app.received) == (0, b"")


def test_a_node_that_does_not_know_the_key_yet_admits_nobody() -> None:
    async def check(app: App, relay: Relay) -> None:
        assert await exchange(relay, preamble(KEY)) == b""

    app = run(None, check)
    assert app.connections == 0


def test_relay_client_opens_each_connection_with_the_key_keep_alive_included() -> None:
    async def check(app: App, relay: Relay) -> None:
        async with relay_client(KEY, timeout=10) as client:
            for path in ("/a", "/b"):
                r = await client.get(f"http://127.0.0.1:{relay.port}{path}")
                assert (r.status_code, r.text) == (200, f"private {path}")
        async with httpx.AsyncClient(timeout=10) as plain:
            with pytest.raises(httpx.HTTPError):
                await plain.get(f"http://127.0.0.1:{relay.port}/c")

    app = run(KEY, check)
    assert app.connections == 1  # both requests on one kept-alive connection; the plain client's never arrived
    assert b"/c" not in app.received
