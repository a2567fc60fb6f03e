"""The node relays' key (cluster mode). A node agent exposes each instance, and its reload server, on a relay of
its own (scheduler/relay.py) that anyone reaching the node's address could connect to. Each connection to a
relay therefore opens with a fixed-length preamble naming the relay key, sent right after connect and before any
HTTP byte; the relay reads exactly that many bytes, compares them in constant time and closes the connection
on anything else, then splices as before (keep-alive, WebSocket and SSE unchanged).

The key is derived from the installation key on the server (like the join token, but apart from it: a relay key
opens no cluster API); nodes get it when they register, proxies with the route table. Who connects to relays:
the cluster proxies' upstream pool (proxy/upstream.py), the server's readiness probes and its hot-reload
commits (`relay_client`)."""

from __future__ import annotations

import asyncio
import hmac
import typing

import httpcore
import httpx

from core.crypto import derived

PREFIX = b"SPACEHOST-RELAY-V1 "
KEY_HEX = 64  # sha256 hexdigest
PREAMBLE_LEN = len(PREFIX) + KEY_HEX + 2
PREAMBLE_TIMEOUT_S = 5.0


def relay_key(secret: bytes) -> str:
    """The cluster's relay key, derived from the installation key (the same on every server; a new installation
    key is a new relay key)."""
    return derived(secret, "spacehost node relay key v1")


def preamble(key: str) -> bytes:
    """What a client of a relay sends first: PREAMBLE_LEN bytes."""
    return PREFIX + key.encode() + b"\r\n"


def admits(got: bytes, key: str | None) -> bool:
    """Whether `got` (the first PREAMBLE_LEN bytes of a connection) is the preamble of `key`; nothing is
    admitted while the key is unknown (None: a node that has not registered yet)."""
    return key is not None and len(key) == KEY_HEX and hmac.compare_digest(got, preamble(key))


async def read_preamble(reader: asyncio.StreamReader, key: str | None,
                        timeout: float = PREAMBLE_TIMEOUT_S) -> bool:
    """Read the preamble off a fresh connection (exactly PREAMBLE_LEN bytes, within `timeout`) and check it.
    False on a wrong one, a short one, EOF or silence: the caller closes the connection."""
    try:
        got = await asyncio.wait_for(reader.readexactly(PREAMBLE_LEN), timeout)
    except (asyncio.IncompleteReadError, TimeoutError, ConnectionError, OSError):
        return False
    return admits(got, key)


class _PreambleBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, sending the preamble on each new connection before any HTTP byte."""

    def __init__(self, first: bytes) -> None:
        self.first, self.inner = first, httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
                          ) -> httpcore.AsyncNetworkStream:
        stream = await self.inner.connect_tcp(host, port, timeout, local_address, socket_options)
        await stream.write(self.first, timeout)
        return stream

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


def relay_client(key: str, timeout: float) -> httpx.AsyncClient:
    """An HTTP client whose every connection opens with `key`'s preamble: for relays only (any other server
    would take the preamble for a malformed request)."""
    transport = httpx.AsyncHTTPTransport()  # takes no network backend: its pool (httpcore's) is given one
    transport._pool = httpcore.AsyncConnectionPool(network_backend=_PreambleBackend(preamble(key)))
    return httpx.AsyncClient(transport=transport, timeout=timeout)
