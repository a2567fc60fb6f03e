"""Client side of the splice: parse each request head with llhttp, decide, and either answer locally or
relay to an upstream. Requests are handled in order (pipelined ones wait their turn); bodies stream through
as they arrive, chunked bodies re-framed from llhttp's decoded chunks so nothing ambiguous reaches a Space."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import TYPE_CHECKING

import httptools

from core.routes import Route, Upstream
from proxy import auth, pages
from proxy.decide import Action, Scan, decide, request_head, scan
from proxy.exchange import RETRY_LIMIT, Exchange
from proxy.upstream import UpstreamConn

if TYPE_CHECKING:
    from proxy.server import ProxyServer

log = logging.getLogger("spacehost.proxy")
access_log = logging.getLogger("spacehost.proxy.access")

MAX_HEADERS = 100
PENDING_LIMIT = 1 << 20  # body bytes buffered while no upstream is attached; reading pauses beyond


class HeadTooLarge(Exception):
    pass


class ClientConn(asyncio.Protocol):
    def __init__(self, srv: ProxyServer, local_port: int, scheme: str) -> None:
        self.srv = srv
        self.loop = asyncio.get_running_loop()
        self.local_port = local_port
        self.scheme = scheme
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.ip = "unknown"
        self.parser: httptools.HttpRequestParser | None = None
        self.queue: deque[Exchange] = deque()
        self.cur: Exchange | None = None
        self.up: UpstreamConn | None = None
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.in_head = False
        self.head_size = 0
        self.raw_head = 0
        self.closing = False
        self.spliced = False
        self.read_paused = False
        self.deadline = 0.0
        self.last_activity = 0.0
        self.fwd = b""
        self.ipt: tuple[str | None, float, bytes] | None = None  # (user, re-mint after, X-IP-Token line)

    # --- transport events -------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's are not asyncio.Transport
        peer = transport.get_extra_info("peername")
        self.ip = peer[0] if peer else "unknown"
        self.fwd = f"X-Forwarded-For: {self.ip}\r\nX-Forwarded-Proto: {self.scheme}\r\n".encode("latin-1")
        self.parser = httptools.HttpRequestParser(self)
        self.deadline = self.loop.time() + self.srv.limits.header_timeout
        self.srv.conns.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.srv.conns.discard(self)
        up, self.up = self.up, None
        if up is not None and up.transport is not None:
            up.client = None
            up.transport.close()  # mid-response: the upstream connection cannot be reused
        for ex in self.queue:
            if ex.task is not None:
                ex.task.cancel()

    def data_received(self, data: bytes) -> None:
        if self.spliced:
            assert self.up is not None and self.up.transport is not None
            self.up.transport.write(data)
            self.deadline = self.loop.time() + self.srv.limits.stream_idle_timeout
            return
        if self.parser is None or self.closing:
            return
        if self.in_head:
            self.raw_head += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as e:
            self.parser = None  # the rest belongs to the new protocol (or to nothing, if refused)
            if self.cur is not None:
                self.cur.tail = data[e.args[0] :]
        except httptools.HttpParserCallbackError as e:
            if not isinstance(e.__context__, HeadTooLarge):
                log.error("proxy bug handling a request", exc_info=e.__context__)
            self._bad_request(431 if isinstance(e.__context__, HeadTooLarge) else 500)
            return
        except httptools.HttpParserError:
            self._bad_request(400)
            return
        if self.in_head and self.raw_head > self.srv.limits.max_head:
            self._bad_request(431)

    def pause_writing(self) -> None:
        if self.up is not None and self.up.transport is not None:
            self.up.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.up is not None and self.up.transport is not None:
            self.up.transport.resume_reading()

    def touch(self) -> None:
        self.deadline = self.loop.time() + self.srv.limits.stream_idle_timeout

    def timed_out(self) -> None:
        """Called by the server's sweeper once `deadline` passed."""
        if self.in_head and not self.queue:
            self.transport.write(pages.error(408, "request head timeout"))
        self.closing = True
        self.transport.close()

    def _bad_request(self, status: int) -> None:
        """Refuse a malformed request. If it is the one in flight (its body went bad), the upstream exchange is
        abandoned: the Space saw a truncated request, never a smuggled one (bodies are re-framed)."""
        self.parser = None
        self.closing = True
        active = self.queue[0] if self.queue else None
        if active is not None and active.complete:
            return  # garbage after a whole request: let its response finish, then close
        if active is not None:
            if active.task is not None:
                active.task.cancel()
            up, self.up = self.up, None
            if up is not None and up.transport is not None:
                up.client = None
                up.transport.abort()
            if active.status:  # its response already started: nothing sane can follow
                self.transport.abort()
                return
        self.transport.write(pages.error(status, pages.REASONS[status]))
        self.transport.close()

    # --- llhttp callbacks ---------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.in_head = True
        self.url = b""
        self.headers = []
        self.head_size = self.raw_head = 0
        if not self.queue:
            self.deadline = self.loop.time() + self.srv.limits.header_timeout

    def on_url(self, url: bytes) -> None:
        self.url += url
        self.head_size += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))
        self.head_size += len(name) + len(value) + 4
        if self.head_size > self.srv.limits.max_head or len(self.headers) > MAX_HEADERS:
            raise HeadTooLarge()

    def on_headers_complete(self) -> None:
        self.in_head = False
        p = self.parser
        assert p is not None
        if self.head_size > self.srv.limits.max_head:
            raise HeadTooLarge()
        sc = scan(self.headers)
        ex = Exchange(p.get_method().decode(), self.url.decode("latin-1"), self.headers, p.should_keep_alive(),
                      p.should_upgrade(), sc.chunked, self.loop.time())
        ex.scan = sc
        self.cur = ex
        self.queue.append(ex)
        self.deadline = ex.start + self.srv.limits.stream_idle_timeout
        if len(self.queue) == 1 and not self.closing:
            self._start(ex)

    def on_body(self, body: bytes) -> None:
        ex = self.cur
        if ex is not None and not ex.discard:
            self._body(ex, b"%x\r\n%b\r\n" % (len(body), body) if ex.chunked else body)

    def on_message_complete(self) -> None:
        ex = self.cur
        if ex is None:
            return
        ex.complete = True
        if ex.chunked and not ex.discard:
            self._body(ex, b"0\r\n\r\n")
        if ex.responded:
            self._advance()

    def _body(self, ex: Exchange, data: bytes) -> None:
        if ex.sent is not None:
            ex.sent.append(data)
            if len(ex.sent) > 64 or sum(map(len, ex.sent)) > RETRY_LIMIT:
                ex.sent = None
        if ex.sink is not None:
            ex.sink.write(data)
            return
        ex.pending.append(data)
        ex.pending_size += len(data)
        if ex.pending_size > PENDING_LIMIT and not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()

    # --- dispatch -------------------------------------------------------------------------------------
    def _start(self, ex: Exchange) -> None:
        ex.started = True
        srv = self.srv
        s = ex.scan
        assert s is not None
        target = srv.resolve(s.host, self.local_port) if s.host else None
        if srv.rate_limit is not None:
            wait = srv.admit(self.ip, ex.start)
            if wait:
                return self._local(ex, pages.error(429, "too many requests", retry_after=wait, keep_alive=True))
        if target == "hub":
            return self._forward(ex, srv.table.hub, self._hub_head(ex, s), b"")
        route = target if isinstance(target, Route) else None
        url, signed = auth.split_sign_param(ex.url) if "__sign" in ex.url else (ex.url, None)
        user, sign_ok = self._identify(route, s, signed) if route is not None else (None, False)
        allowed = route is not None and (not route.private or (user is not None and srv.can_view(route, user)))
        browser = ex.method == "GET" and s.accept_html
        path = url.split("?", 1)[0]
        action = decide(route, allowed=allowed, browser=browser, path=path, sign_redirect=sign_ok and browser)
        if route is None or action is Action.NOT_FOUND:
            return self._local(ex, pages.not_found(head_only=ex.method == "HEAD"))
        ex.space = route.space_id
        if not s.probe and action in (Action.FORWARD, Action.STATIC, Action.WAKE_PAGE, Action.HOLD):
            srv.note_activity(route.space_id, ex.start)
        if action is Action.FORWARD:
            assert route.upstream is not None
            return self._forward(ex, route.upstream, self._space_head(ex, s, url, user), srv.extra_for(route))
        if action is Action.HOLD:
            srv.wake(route.space_id)
            ex.task = self.loop.create_task(self._hold(ex, s.host))
            return None
        from proxy.local import respond

        return respond(self, ex, action, route, url, user)

    def _identify(self, route: Route, s: Scan, signed: str | None) -> tuple[str | None, bool]:
        """(the visitor's user name or None, whether a valid `__sign` came with the request)."""
        srv = self.srv
        user = None
        token = (s.authorization and auth.bearer(s.authorization)) or (
            s.hf_authorization and auth.bearer(s.hf_authorization)
        )
        if token:
            user = srv.user_for_token(token)
        if s.cookie is not None:
            s.cookie, value = auth.filter_cookies(s.cookie, srv.drop_cookies, auth.cookie_name(route.space_id))
            if user is None and value:
                user = auth.verify_space_token(srv.secret, value, route.space_id, time.time(), auth.COOKIE_TOKEN)
        if signed:
            signer = auth.verify_space_token(srv.secret, signed, route.space_id, time.time())
            if signer is not None:
                return (user or signer), True
        return user, False

    def _space_head(self, ex: Exchange, s: Scan, url: str, user: str | None) -> bytes:
        kept = s.kept
        if s.cookie:
            kept.append((b"Cookie", s.cookie.encode("latin-1")))
        now = ex.start
        cached = self.ipt
        if cached is None or cached[0] != user or cached[1] < now:  # the token is valid 600 s; re-mint often
            line = b"X-IP-Token: %s\r\n" % self.srv.ip_token(user, self.ip).encode()
            cached = self.ipt = (user, now + self.srv.limits.ip_token_reuse_s, line)
        added = self.fwd + b"X-Forwarded-Host: %s\r\n%s" % (s.host.encode("latin-1"), cached[2])
        return request_head(ex.method, url, kept, added, s.upgrade if ex.upgrade else None)

    def _hub_head(self, ex: Exchange, s: Scan) -> bytes:
        kept = s.kept
        for name, value in ((b"Authorization", s.authorization), (b"X-HF-Authorization", s.hf_authorization),
                            (b"Cookie", s.cookie)):
            if value is not None:
                kept.append((name, value.encode("latin-1")))
        added = self.fwd + b"X-Forwarded-Host: %s\r\n" % s.host.encode("latin-1")
        return request_head(ex.method, ex.url, kept, added, s.upgrade if ex.upgrade else None)

    def _forward(self, ex: Exchange, upstream: Upstream, head: bytes, extra: bytes) -> None:
        up = self.srv.pool.take(upstream)
        if up is not None:
            self._attach(ex, up, head, extra)
        else:
            ex.task = self.loop.create_task(self._connect(ex, upstream, head, extra))

    async def _connect(self, ex: Exchange, upstream: Upstream, head: bytes, extra: bytes) -> None:
        try:
            up = await self.srv.pool.connect(upstream)
        except (TimeoutError, OSError) as e:
            log.info("upstream %s:%s of %s unreachable: %s", upstream.host, upstream.port, ex.space or "hub", e)
            return self._local(ex, pages.error(502, "the Space is not answering", retry_after=2, keep_alive=True))
        if self.closing or self.transport.is_closing():
            up.pool.release(up)
            return None
        up.reused = False
        self._attach(ex, up, head, extra)

    def _attach(self, ex: Exchange, up: UpstreamConn, head: bytes, extra: bytes) -> None:
        assert up.transport is not None
        self.up = up
        up.attach(self, ex, extra)
        if ex.sent is not None:
            ex.sent.insert(0, head)
        if ex.pending:
            up.transport.write(head + b"".join(ex.pending))
            ex.pending = []
            ex.pending_size = 0
        else:
            up.transport.write(head)
        ex.sink = up.transport
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()

    async def _hold(self, ex: Exchange, host: str) -> None:
        """Hold an API client's request while the Space wakes: re-decide on every table swap, give up with
        503 + Retry-After after `wake_hold` seconds."""
        from core.routes import RouteState

        deadline = self.loop.time() + self.srv.limits.wake_hold
        while True:
            target = self.srv.table.resolve(host, self.local_port)
            if not (isinstance(target, Route) and target.state in (RouteState.SLEEPING, RouteState.STARTING)):
                ex.sent = [] if ex.sent is not None else None
                ex.started = False
                self._start(ex)
                return
            left = deadline - self.loop.time()
            if left <= 0:
                return self._local(ex, pages.error(503, "the Space is waking up", retry_after=5, keep_alive=True))
            await self.srv.table_changed(left)

    # --- completion ------------------------------------------------------------------------------------
    def _local(self, ex: Exchange, data: bytes, status: int | None = None) -> None:
        """Answer `ex` without an upstream; its body (if any) is read and dropped."""
        ex.discard = True
        ex.pending = []
        ex.status = status or int(data[9:12])
        self.transport.write(data)
        self.response_done(ex, False)

    def upgraded(self, up: UpstreamConn) -> None:
        ex = self.cur
        self.spliced = True
        self.touch()
        if ex is not None and ex.tail:
            assert up.transport is not None
            up.transport.write(ex.tail)

    def upstream_failed(self, ex: Exchange, reused: bool, got_bytes: bool) -> None:
        self.up = None
        if reused and not got_bytes and ex.sent is not None and not ex.retried and ex.complete:
            ex.retried = True  # a pooled connection the upstream closed just as we reused it: resend once
            head, *body = ex.sent
            ex.sent, ex.sink, ex.pending = None, None, body
            ex.task = self.loop.create_task(self._connect(ex, self._upstream_of(ex), head, self._extra_of(ex)))
            return
        if got_bytes:
            return self.response_done(ex, True)
        self._local(ex, pages.error(502, "the Space closed the connection", retry_after=2), 502)

    def _upstream_of(self, ex: Exchange) -> Upstream:
        route = self.srv.table.by_space(ex.space) if ex.space else None
        return route.upstream if route is not None and route.upstream is not None else self.srv.table.hub

    def _extra_of(self, ex: Exchange) -> bytes:
        route = self.srv.table.by_space(ex.space) if ex.space else None
        return self.srv.extra_for(route) if route is not None else b""

    def response_done(self, ex: Exchange, close: bool) -> None:
        if self.up is not None and self.up.ex is None:
            self.up = None
        ex.responded = True
        ex.sink = None
        if access_log.isEnabledFor(logging.INFO):
            ms = (self.loop.time() - ex.start) * 1000
            host = ex.scan.host if ex.scan else "-"
            access_log.info("%s %s %s%s %d %.1fms", self.ip, ex.method, host, ex.url, ex.status, ms)
        if close or not ex.keep_alive or self.spliced or (self.parser is None and not self.closing) or (
            ex.upgrade and ex.status != 101
        ):
            self.closing = True
            self.transport.close()
            return
        if ex.complete:
            self._advance()
        else:
            ex.discard = True  # answered before the whole body arrived: read the rest and drop it

    def _advance(self) -> None:
        q = self.queue
        while q and q[0].responded and q[0].complete:
            q.popleft()
        if self.closing:
            if not q:
                self.transport.close()
            return
        if q:
            if not q[0].started:
                self._start(q[0])
        else:
            self.deadline = self.loop.time() + self.srv.limits.keepalive_timeout
