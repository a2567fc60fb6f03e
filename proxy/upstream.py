"""Upstream side of the splice: a keep-alive connection pool and the protocol that relays one response at a
time to the client connection it is attached to.

A response head is found by its CRLFCRLF, validated by llhttp, and written with the Space's extra header
lines inserted; the body is relayed as received (no re-framing, no buffering: SSE events leave as they come),
while llhttp follows the framing only to learn where the response ends so the connection can be reused.
Usually head and body go through llhttp in one call; HEAD replies, 1xx, 204 and 304 are parsed head first.
A connection whose response ended cleanly goes back to its client connection (`park`), which reuses it for
its next request to the same upstream, or to the pool. A response to a request the fast lane sent
(`fast`) is relayed by the base class (`proxy.lane`) while it keeps to the lane's shape (a whole head, then a
Content-Length or plainly chunked body, read by read), and handed to the client connection (`_adopt`, which
calls `resume` when part of the body was relayed) otherwise, before `_data_received` sees it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import httptools

from core.routes import Upstream
from proxy.lane import UpstreamBase

if TYPE_CHECKING:
    from proxy.exchange import Exchange

MAX_RESPONSE_HEAD = 64 * 1024
MAX_IDLE_PER_UPSTREAM = 256


class Client(Protocol):
    """What an upstream connection needs from the client connection it serves."""

    transport: asyncio.Transport

    def touch(self) -> None: ...
    def park(self, up: UpstreamConn) -> None: ...
    def response_done(self, ex: Exchange, close: bool) -> None: ...
    def upstream_failed(self, ex: Exchange, reused: bool, got_bytes: bool) -> None: ...
    def upgraded(self, up: UpstreamConn) -> None: ...
    def _adopt(self) -> None: ...


class UpstreamConn(UpstreamBase, asyncio.Protocol):
    # the base holds client, transport, key, idle_since, reusable, fast, spliced and rstatus
    __slots__ = ("complete", "ex", "extra", "got_bytes", "head_buf", "head_only", "in_body", "parser", "pool",
                 "reused", "status")

    def __init__(self, pool: Pool, key: Upstream) -> None:
        self.pool = pool
        self.key: Upstream = key
        self.transport: asyncio.Transport | None = None
        self.client: Client | None = None
        self.ex: Exchange | None = None
        self.extra = b""
        self.head_only = False
        self.head_buf = b""
        self.parser: httptools.HttpResponseParser | None = None
        self.in_body = False
        self.complete = False
        self.reused = False
        self.got_bytes = False
        self.spliced = False
        self.idle_since = 0.0
        self.status = 0
        self.reusable = True
        self.fast = False
        self.rstatus = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's are not asyncio.Transport

    def attach(self, client: Client, ex: Exchange, extra: bytes) -> None:
        self.client, self.ex, self.extra = client, ex, extra
        self.head_only = ex.method == "HEAD"
        self.head_buf, self.in_body, self.complete, self.got_bytes, self.status = b"", False, False, False, 0

    # llhttp callbacks
    def on_message_begin(self) -> None:
        if self.in_body or self.complete:  # bytes after the end of a response: never reuse this connection
            self.reusable = False

    def on_headers_complete(self) -> None:
        p = self.parser
        assert p is not None
        self.status = p.get_status_code()
        self.reusable = self.reusable and p.should_keep_alive()  # llhttp forgets it once the message ends

    def on_message_complete(self) -> None:
        self.complete = True

    def resume(self) -> None:
        """Carry on, on the Python path, the response whose head and part of whose body the fast lane relayed
        (`rstatus`, attached to the adopted exchange): a fresh parser is put where this connection's would be
        by the base's `resume_prefix` (same status, framing and place in the body), so what follows is parsed
        and relayed exactly as if this path had seen the response from its first byte."""
        assert self.ex is not None
        self.parser = httptools.HttpResponseParser(self)
        self.parser.feed_data(self.resume_prefix())
        self.rstatus = 0
        self.ex.status = self.status
        self.in_body = self.got_bytes = True

    def _data_received(self, data: bytes) -> None:
        """Every byte the fast lane does not relay (called by the base class's `data_received`)."""
        c = self.client
        if c is None or self.transport is None:
            self.reusable = False
            if self.transport is not None:
                self.transport.close()  # unsolicited bytes on an idle connection
            return
        self.got_bytes = True
        if self.spliced:
            c.transport.write(data)
            c.touch()
            return
        if self.in_body:
            assert self.parser is not None
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserError:
                self.reusable = False
                self.complete = True
            c.transport.write(data)
            if self.complete:
                self._done()  # the client connection sets its own deadline for what comes next
            else:
                c.touch()
            return
        buf = self.head_buf + data if self.head_buf else data
        idx = buf.find(b"\r\n\r\n")
        if idx < 0:
            c.touch()
            if len(buf) > MAX_RESPONSE_HEAD:
                self._fail()
            else:
                self.head_buf = buf
            return
        self.head_buf = b""
        if self.parser is None:  # one parser per connection: llhttp starts over after each complete response
            self.parser = httptools.HttpResponseParser(self)
        if self.head_only or buf[9:10] == b"1" or buf[9:12] in (b"204", b"304"):  # "HTTP/1.1 " is 9 bytes
            self._head_apart(buf, idx + 4)
        else:
            self._head_with_body(buf, idx + 2)

    def _head_with_body(self, buf: bytes, end: int) -> None:
        """The usual response: head and the body bytes that came with it parsed in one go, relayed in one
        write with the extra header lines inserted before the head's final CRLF (at `end`)."""
        c, p, ex = self.client, self.parser, self.ex
        assert c is not None and p is not None and ex is not None
        self.status = 0
        try:
            p.feed_data(buf)
        except httptools.HttpParserUpgrade:  # only a 101 may switch protocols, and 1xx go through _head_apart
            return self._fail()
        except httptools.HttpParserError:
            if not self.status:  # the head itself is malformed
                return self._fail()
            self.reusable = False  # the body is: relay what came, end the response here
            self.complete = True
        ex.status = self.status
        self.in_body = True
        c.transport.write(b"".join((buf[:end], self.extra, buf[end:])) if self.extra else buf)
        if self.complete:
            self._done()
        else:
            c.touch()

    def _head_apart(self, buf: bytes, end: int) -> None:
        """A head parsed on its own: a HEAD reply (llhttp would wait for the body it announces), 1xx interim
        responses and 101, and 204/304 (nothing may follow them)."""
        c, p, ex = self.client, self.parser, self.ex
        assert c is not None and p is not None and self.transport is not None and ex is not None
        c.touch()
        head, rest = buf[:end], buf[end:]
        try:
            p.feed_data(head)
        except httptools.HttpParserUpgrade:
            if p.get_status_code() == 101:
                self.status = ex.status = 101
                c.transport.write(head[:-2] + self.extra + b"\r\n" + rest)
                self.spliced = True
                c.upgraded(self)
                return
            self._fail()
            return
        except httptools.HttpParserError:
            self._fail()
            return
        status = ex.status = self.status
        if status < 200:  # 1xx interim (100 Continue): relay as is, the final head follows
            c.transport.write(head)
            self.complete = False
            if rest:
                self.data_received(rest)
            return
        out = head[:-2] + self.extra + b"\r\n"
        self.complete = True
        if self.head_only:  # llhttp still expects the body a HEAD reply announces
            self.parser = None
        self.in_body = True
        if rest:
            self.reusable = False
        c.transport.write(out)
        self._done()

    def _done(self) -> None:
        c, ex = self.client, self.ex
        assert c is not None and ex is not None
        keep = self.reusable and ex.complete
        self.client = self.ex = None
        self.in_body = False
        if keep:
            c.park(self)
        elif self.transport is not None:
            self.transport.close()
        c.response_done(ex, False)

    def _fail(self) -> None:
        """A malformed response: drop the upstream; the client gets a 502 if nothing was written yet."""
        self.reusable = False
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.pool.discard(self)
        if self.fast and self.client is not None:
            self.client._adopt()
        c, ex = self.client, self.ex
        self.client = self.ex = None
        self.transport = None
        if c is None or ex is None:
            return
        if self.spliced or self.in_body:
            c.response_done(ex, True)  # read-until-close bodies end here; truncated ones end the client too
        else:
            c.upstream_failed(ex, self.reused, self.got_bytes)

    def pause_writing(self) -> None:
        if self.client is not None:
            self.client.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.client is not None:
            self.client.transport.resume_reading()


class Pool:
    """Idle keep-alive connections per upstream, most recently used first. `preamble` (a cluster proxy's): the
    bytes a new connection to an upstream opens with, before any HTTP byte (a node relay's key, core.relay_key;
    b"": none)."""

    def __init__(self, connect_timeout: float) -> None:
        self.idle: dict[Upstream, list[UpstreamConn]] = {}
        self.connect_timeout = connect_timeout
        self.preamble: Callable[[Upstream], bytes] | None = None

    def take(self, key: Upstream) -> UpstreamConn | None:
        conns = self.idle.get(key)
        while conns:
            up = conns.pop()
            if up.transport is not None and not up.transport.is_closing():
                up.reused = True
                return up
        return None

    async def connect(self, key: Upstream) -> UpstreamConn:
        loop = asyncio.get_running_loop()
        _, proto = await asyncio.wait_for(
            loop.create_connection(lambda: UpstreamConn(self, key), key.host, key.port), self.connect_timeout
        )
        if self.preamble is not None and (first := self.preamble(key)) and proto.transport is not None:
            proto.transport.write(first)
        return proto

    def release(self, up: UpstreamConn, now: float) -> None:
        """Keep `up` (idle since `now`, loop time) for the next request to its upstream."""
        conns = self.idle.setdefault(up.key, [])
        if len(conns) >= MAX_IDLE_PER_UPSTREAM or up.transport is None:
            if up.transport is not None:
                up.transport.close()
            return
        up.idle_since = now
        conns.append(up)

    def discard(self, up: UpstreamConn) -> None:
        conns = self.idle.get(up.key)
        if conns and up in conns:
            conns.remove(up)

    def sweep(self, now: float, max_idle: float) -> None:
        """Close connections idle longer than `max_idle` (shorter than the upstreams' own keep-alive, so a
        pooled connection is rarely one the upstream is closing)."""
        for key, conns in list(self.idle.items()):
            for up in [u for u in conns if now - u.idle_since > max_idle]:
                conns.remove(up)
                if up.transport is not None:
                    up.transport.close()
            if not conns:
                del self.idle[key]

    def close(self) -> None:
        for conns in self.idle.values():
            for up in conns:
                if up.transport is not None:
                    up.transport.close()
        self.idle.clear()
