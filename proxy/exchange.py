"""One request/response exchange on a client connection (mutable, owned by that connection), and the request
heads built for it: a Space's (credentials stripped, the proxy's own lines added) and the hub's."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol

import httptools

from core.routes import Route, RouteTable, Upstream
from proxy.decide import Scan, request_head
from proxy.pages import STATUS_PATH

RETRY_LIMIT = 64 * 1024  # requests up to this size are kept to resend once on a stale pooled connection


class Exchange:
    __slots__ = (
        "chunked",
        "complete",
        "discard",
        "keep_alive",
        "method",
        "pending",
        "pending_size",
        "responded",
        "retried",
        "scan",
        "sent",
        "sink",
        "space",
        "start",
        "started",
        "status",
        "tail",
        "task",
        "upgrade",
        "url",
    )

    def __init__(self, method: str, url: str, keep_alive: bool, upgrade: bool, scan: Scan, start: float) -> None:
        self.method = method
        self.url = url
        self.keep_alive = keep_alive
        self.upgrade = upgrade
        self.scan = scan
        self.chunked = scan.chunked
        self.start = start
        self.complete = False  # the whole request (body included) has been parsed
        self.started = False  # dispatched
        self.responded = False  # the whole response has been written
        self.sink: asyncio.Transport | None = None  # where body bytes go once an upstream is attached
        self.pending: list[bytes] = []  # body bytes (already framed) waiting for an upstream
        self.pending_size = 0
        self.discard = False  # answered locally: the body is read and dropped
        self.sent: list[bytes] | None = []  # what went upstream, for one retry (None: too big to keep)
        self.status = 0
        self.space = ""
        self.tail = b""  # bytes after an upgrade request's head: the first bytes of the new protocol
        self.task: asyncio.Task[None] | None = None
        self.retried = False


def space_head(ex: Exchange, url: str, added: bytes) -> bytes:
    """The head a Space gets: the kept headers, the Cookie header without hub or proxy cookies (filtered by
    `ProxyServer.identify`), and `added`."""
    s = ex.scan
    lines = s.kept
    if s.cookie:
        lines.append(b"Cookie: %s\r\n" % s.cookie.encode("latin-1"))
    return request_head(ex.method, url, lines, added, s.upgrade if ex.upgrade else None)


def hub_head(ex: Exchange, fwd: bytes) -> bytes:
    """The head the hub gets: its credentials go back to it as sent."""
    s = ex.scan
    lines = s.kept
    for name, value in ((b"Authorization", s.authorization), (b"X-HF-Authorization", s.hf_authorization),
                        (b"Cookie", s.cookie)):
        if value is not None:
            lines.append(b"%s: %s\r\n" % (name, value.encode("latin-1")))
    added = fwd + b"X-Forwarded-Host: %s\r\n" % s.host.encode("latin-1")
    return request_head(ex.method, ex.url, lines, added, s.upgrade if ex.upgrade else None)


@dataclass(frozen=True, slots=True)
class Plan:
    """What a client connection decided for a plain request (`plain`) it forwarded to a Space: the decision
    holds for its next plain request while the table and Host stay the same and `until` (the IP token's re-mint
    time) has not passed, so that request skips resolving, deciding and head building."""

    table: RouteTable
    host: str
    route: Route
    upstream: Upstream
    extra: bytes  # the Space's response header lines
    added: bytes  # the proxy's request header lines (X-Forwarded-*, X-IP-Token)
    until: float


def plain(ex: Exchange) -> bool:
    """No credentials, no `__sign`, no upgrade, not the status path: `decide` then depends on the route only,
    and the request head on nothing but the connection, the Host and the request's own kept headers."""
    s = ex.scan
    return not (s.authorization or s.hf_authorization or s.cookie is not None or ex.upgrade
                or "__sign" in ex.url or ex.url.startswith(STATUS_PATH))


class RequestCallbacks(Protocol):
    def on_message_begin(self) -> None: ...
    def on_url(self, url: bytes) -> None: ...
    def on_header(self, name: bytes, value: bytes) -> None: ...
    def on_headers_complete(self) -> None: ...
    def on_body(self, body: bytes) -> None: ...
    def on_message_complete(self) -> None: ...


class _MidBody:
    """llhttp callbacks for a parser put in the middle of a request body: the head fed to put it there is not a
    request (muted); everything after it reaches the connection."""

    def __init__(self, conn: RequestCallbacks) -> None:
        self.conn, self.muted = conn, True

    def on_message_begin(self) -> None:
        if not self.muted:
            self.conn.on_message_begin()

    def on_url(self, url: bytes) -> None:
        if not self.muted:
            self.conn.on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.muted:
            self.conn.on_header(name, value)

    def on_headers_complete(self) -> None:
        if not self.muted:
            self.conn.on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self.conn.on_body(body)

    def on_message_complete(self) -> None:
        self.conn.on_message_complete()


def parser_mid_body(conn: RequestCallbacks, left: int) -> httptools.HttpRequestParser:
    """A request parser that expects `left` more body bytes of a request whose head (and the start of whose
    body) the fast lane forwarded, then parses what follows as the Python path would, calling `conn`."""
    relay = _MidBody(conn)
    parser = httptools.HttpRequestParser(relay)
    parser.feed_data(b"POST / HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % left)
    relay.muted = False
    return parser
