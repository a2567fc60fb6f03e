"""Client side of the splice: parse each request head with llhttp, decide, and either answer locally or
relay to an upstream. Requests are handled in order (pipelined ones wait their turn); bodies stream through
as they arrive, chunked bodies re-framed from llhttp's decoded chunks so nothing ambiguous reaches a Space.
The commonest exchange (a plain GET on a connection whose previous one was forwarded) is carried by the fast
lane of the base class (`proxy.lane`); everything else, and whatever the lane hands over, is handled here."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING

import httptools

from core.routes import Route, RouteState, Upstream
from proxy import auth, pages
from proxy.decide import REPLICAS, Action, Scan, decide, reload_target, request_head, scan
from proxy.exchange import RETRY_LIMIT, Exchange, Plan, hub_head, parser_mid_body, plain, space_head
from proxy.lane import ClientBase
from proxy.upstream import UpstreamConn

if TYPE_CHECKING:
    from proxy.server import ProxyServer

log = logging.getLogger("spacehost.proxy")

MAX_HEADERS = 100
PENDING_LIMIT = 1 << 20  # body bytes buffered while no upstream is attached; reading pauses beyond


_ACTIVE = frozenset((Action.FORWARD, Action.STATIC, Action.WAKE_PAGE, Action.HOLD))  # these count as visits
_WAITING = (RouteState.SLEEPING, RouteState.STARTING, RouteState.FROZEN)  # a held request waits while in these


class HeadTooLarge(Exception):
    pass


class ClientConn(ClientBase, asyncio.Protocol):
    def __init__(self, srv: ProxyServer, local_port: int, scheme: str) -> None:
        self.srv: ProxyServer = srv
        self.limits = limits = srv.limits
        self.loop: asyncio.AbstractEventLoop = asyncio.get_running_loop()
        self.local_port = local_port
        self.scheme = scheme
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.ip: str = "unknown"
        self.parser: httptools.HttpRequestParser | None = None
        self.queue: deque[Exchange] = deque()
        self.cur: Exchange | None = None
        self.up: UpstreamConn | None = None  # attached to the exchange in flight
        self.pinned: UpstreamConn | None = None  # idle, kept from the previous response for the next request
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
        self.added: tuple[str, str | None, bytes, float] | None = None  # (host, user, lines, re-mint after)
        self.plan: Plan | None = None  # the last plain request's decision, for the next one
        # read by the fast lane (see proxy.lane)
        self.lane_on = srv.fast_lane
        self.log_access = srv.access_log is not None
        self.keepalive_timeout = limits.keepalive_timeout
        self.stream_idle_timeout = limits.stream_idle_timeout
        self.pool_idle = limits.pool_idle
        self.rl_rate = srv.rate_limit.rate if srv.rate_limit is not None else -1.0
        self.rl_burst = srv.rate_limit.burst if srv.rate_limit is not None else 0.0
        self.fx_up: UpstreamConn | None = None  # the lane's exchange in flight: its upstream, url, head, start
        self.fx_url: bytes = b""
        self.fx_head: bytes = b""
        self.fx_start = 0.0
        self.fx_left = 0
        self.fx_kept = True  # fx_head is the whole request sent so far (kept for one resend)

    # --- transport events -------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's are not asyncio.Transport
        peer = transport.get_extra_info("peername")
        self.ip = peer[0] if peer else "unknown"
        self.fwd = f"X-Forwarded-For: {self.ip}\r\nX-Forwarded-Proto: {self.scheme}\r\n".encode("latin-1")
        self.parser = httptools.HttpRequestParser(self)
        self.deadline = self.loop.time() + self.srv.limits.header_timeout
        self.srv.conns.add(self)
        plan = self.srv.plans.get((self.ip, self.local_port, self.scheme)) if self.lane_on else None
        if plan is not None:  # this client's last plain decision here, and a pooled connection for it (or none)
            self.plan, self.pinned = plan, self.srv.pool.take(plan.upstream)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.fx_up is not None:
            self._adopt()
        self.closing = True
        self.srv.conns.discard(self)
        up, self.up = self.up, None
        if up is not None and up.transport is not None:
            up.client = None
            up.transport.close()  # mid-response: the upstream connection cannot be reused
        pinned, self.pinned = self.pinned, None
        if pinned is not None:
            self.srv.pool.release(pinned, pinned.idle_since)
        for ex in self.queue:
            if ex.task is not None:
                ex.task.cancel()

    def _data_received(self, data: bytes) -> None:
        """Every byte the fast lane does not carry (called by the base class's `data_received`)."""
        if self.spliced:
            assert self.up is not None and self.up.transport is not None
            self.up.transport.write(data)
            self.deadline = self.loop.time() + self.limits.stream_idle_timeout
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
        if self.in_head and self.raw_head > self.limits.max_head:
            self._bad_request(431)

    def pause_writing(self) -> None:
        if self.up is not None and self.up.transport is not None:
            self.up.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.up is not None and self.up.transport is not None:
            self.up.transport.resume_reading()

    def touch(self) -> None:
        self.deadline = self.loop.time() + self.limits.stream_idle_timeout

    def timed_out(self) -> None:
        """Called by the server's sweeper once `deadline` passed."""
        if self.fx_up is not None:
            self._adopt()
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
            self.deadline = self.loop.time() + self.limits.header_timeout

    def on_url(self, url: bytes) -> None:
        self.url += url
        self.head_size += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))
        self.head_size += len(name) + len(value) + 4
        if self.head_size > self.limits.max_head or len(self.headers) > MAX_HEADERS:
            raise HeadTooLarge()

    def on_headers_complete(self) -> None:
        self.in_head = False
        p = self.parser
        assert p is not None
        if self.head_size > self.limits.max_head:
            raise HeadTooLarge()
        ex = Exchange(p.get_method().decode(), self.url.decode("latin-1"), p.should_keep_alive(),
                      p.should_upgrade(), scan(self.headers), self.loop.time())
        self.cur = ex
        self.queue.append(ex)
        self.deadline = ex.start + self.limits.stream_idle_timeout
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
        if srv.rate_limit is not None:
            wait = srv.admit(self.ip, ex.start)
            if wait:
                return self._local(ex, pages.error(429, "too many requests", retry_after=wait, keep_alive=True))
        plan = self.plan
        if plan is not None and plan.host == s.host and plan.table is srv.table and plan.until > ex.start and (
            plain(ex)
        ):
            return self._forward_planned(ex, s, plan)
        target = srv.resolve(s.host, self.local_port) if s.host else None
        if not isinstance(target, Route):
            if target == "hub":
                return self._forward(ex, srv.table.hub, hub_head(ex, self.fwd), b"")
            return self._local(ex, pages.not_found(head_only=ex.method == "HEAD"))
        route = target
        if route.writers_only or ex.url.startswith(REPLICAS):  # the Space's reload server: writers' tokens only
            reload, url = reload_target(route, ex.url)
            if reload is None or not srv.may_write(reload, s):
                return self._local(ex, pages.not_found(head_only=ex.method == "HEAD"))
            route, signed = reload, None
        else:
            url, signed = auth.split_sign_param(ex.url) if "__sign" in ex.url else (ex.url, None)
        credentials = s.authorization or s.hf_authorization or s.cookie is not None or signed
        user, grant = srv.identify(route, s, signed) if credentials else (None, None)
        allowed = route.writers_only or not route.private or (user is not None and srv.can_view(route, user))
        browser = ex.method == "GET" and s.accept_html
        path = url.partition("?")[0]
        action = decide(route, allowed=allowed, browser=browser, path=path, sign_redirect=grant is not None and browser)
        if action is Action.NOT_FOUND:
            return self._local(ex, pages.not_found(head_only=ex.method == "HEAD"))
        ex.space = route.space_id
        if not s.probe and action in _ACTIVE:
            srv.note_activity(route.space_id, ex.start)
        if action is Action.FORWARD:
            assert route.upstream is not None
            if plain(ex):
                self.plan = Plan(srv.table, s.host, route, route.upstream, srv.extra_for(route),
                                 *self._added(s.host, None, ex.start))
                srv.keep_plan(self.ip, self.local_port, self.scheme, self.plan)
                return self._forward_planned(ex, s, self.plan)
            return self._forward(ex, route.upstream, self._space_head(ex, url, user), srv.extra_for(route))
        if action is Action.HOLD:
            srv.wake(route.space_id)
            ex.task = self.loop.create_task(self._hold(ex, s.host))
            return None
        from proxy.local import respond

        return respond(self, ex, action, route, url, grant)

    def _forward_planned(self, ex: Exchange, s: Scan, plan: Plan) -> None:
        ex.space = plan.route.space_id
        if not s.probe:
            self.srv.note_activity(ex.space, ex.start)
        self._forward(ex, plan.upstream, request_head(ex.method, ex.url, s.kept, plan.added, None), plan.extra)

    def _space_head(self, ex: Exchange, url: str, user: str | None) -> bytes:
        return space_head(ex, url, self._added(ex.scan.host, user, ex.start)[0])

    def _added(self, host: str, user: str | None, now: float) -> tuple[bytes, float]:
        """(the header lines the proxy adds for `user` on `host`: X-Forwarded-* and X-IP-Token, until when to
        use them). Memoized on the connection; the token (valid 600 s) is re-minted every `ip_token_reuse_s`."""
        memo = self.added
        if memo is None or memo[0] != host or memo[1] != user or memo[3] < now:
            token = self.srv.ip_token(user, self.ip).encode()
            lines = self.fwd + b"X-Forwarded-Host: %s\r\nX-IP-Token: %s\r\n" % (host.encode("latin-1"), token)
            memo = self.added = (host, user, lines, now + self.limits.ip_token_reuse_s)
        return memo[2], memo[3]

    def _forward(self, ex: Exchange, upstream: Upstream, head: bytes, extra: bytes) -> None:
        up = self._take_pinned(upstream, ex.start) or self.srv.pool.take(upstream)
        if up is not None:
            self._attach(ex, up, head, extra)
        else:
            ex.task = self.loop.create_task(self._connect(ex, upstream, head, extra))

    def _take_pinned(self, upstream: Upstream, now: float) -> UpstreamConn | None:
        """The connection kept from this client's previous response if it goes to `upstream` and is fresh (so
        a keep-alive client's requests reuse one upstream socket); otherwise it goes back to the pool."""
        up, self.pinned = self.pinned, None
        if up is None:
            return None
        if up.transport is None or up.transport.is_closing() or now - up.idle_since > self.limits.pool_idle:
            if up.transport is not None:
                up.transport.close()
            return None
        if up.key is not upstream and up.key != upstream:
            self.srv.pool.release(up, up.idle_since)
            return None
        up.reused = True
        return up

    def park(self, up: UpstreamConn) -> None:
        """`up` ended this connection's response cleanly: keep it for the next request."""
        now = self.loop.time()
        if self.closing or self.pinned is not None:
            self.srv.pool.release(up, now)
        else:
            up.idle_since = now
            self.pinned = up

    def drop_idle_upstream(self, now: float, max_idle: float) -> None:
        """Close the kept upstream connection once idle longer than the pool keeps its own."""
        up = self.pinned
        if up is not None and now - up.idle_since > max_idle:
            self.pinned = None
            if up.transport is not None:
                up.transport.close()

    async def _connect(self, ex: Exchange, upstream: Upstream, head: bytes, extra: bytes) -> None:
        try:
            up = await self.srv.pool.connect(upstream)
        except (TimeoutError, OSError) as e:
            log.info("upstream %s:%s of %s unreachable: %s", upstream.host, upstream.port, ex.space or "hub", e)
            return self._local(ex, pages.error(502, "the Space is not answering", retry_after=2, keep_alive=True))
        if self.closing or self.transport.is_closing():
            up.pool.release(up, self.loop.time())
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
        """Hold an API client's request while the Space wakes (or thaws): re-decide on every table swap, give
        up with 503 + Retry-After after `wake_hold` seconds."""

        deadline = self.loop.time() + self.limits.wake_hold
        while True:
            target = self.srv.table.resolve(host, self.local_port)
            if not (isinstance(target, Route) and target.state in _WAITING):
                ex.sent = [] if ex.sent is not None else None
                ex.started = False
                self._start(ex)
                return
            left = deadline - self.loop.time()
            if left <= 0:
                return self._local(ex, pages.error(503, "the Space is waking up", retry_after=5, keep_alive=True))
            await self.srv.table_changed(left)

    # --- the fast lane's exchanges -------------------------------------------------------------------
    def _adopt(self) -> None:
        """Take over the exchange the fast lane started (its request went upstream; of its response, nothing,
        or the head and part of the body were relayed): from here on it is an ordinary exchange of this
        connection."""
        up, plan = self.fx_up, self.plan
        assert up is not None and plan is not None
        self.fx_up = None
        up.fast = False
        method = self.fx_head[: self.fx_head.index(b" ")].decode()  # GET or POST (its body went with the head)
        ex = Exchange(method, self.fx_url.decode("latin-1"), True, False, Scan(host=plan.host), self.fx_start)
        ex.started, ex.complete = True, not self.fx_left
        if self.fx_left:  # the rest of its body is still to come: the parser reads it into this exchange
            self.parser = parser_mid_body(self, self.fx_left)
            self.fx_left = 0
        ex.space = plan.route.space_id
        ex.sent = [self.fx_head] if self.fx_kept else None  # a streamed upload is never resent
        self.cur = ex
        self.queue.append(ex)
        up.reused = True  # a kept connection: one resend if it turns out closed
        up.attach(self, ex, plan.extra)
        if up.rstatus:  # the lane relayed the head and part of the body
            up.resume()
        self.up = up
        ex.sink = up.transport

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

    def _route_of(self, ex: Exchange) -> Route | None:
        """The route `ex` went out on, as the current table has it (for a resend)."""
        route = self.srv.table.by_space(ex.space) if ex.space else None
        target = self.srv.resolve(ex.scan.host, self.local_port) if route is not None else None
        if isinstance(target, Route) and (target.writers_only or ex.url.startswith(REPLICAS)):
            return reload_target(target, ex.url)[0]  # the reload server's, not the app's
        return route

    def _upstream_of(self, ex: Exchange) -> Upstream:
        route = self._route_of(ex)
        return route.upstream if route is not None and route.upstream is not None else self.srv.table.hub

    def _extra_of(self, ex: Exchange) -> bytes:
        route = self._route_of(ex)
        return self.srv.extra_for(route) if route is not None else b""

    def response_done(self, ex: Exchange, close: bool) -> None:
        if self.up is not None and self.up.ex is None:
            self.up = None
        ex.responded = True
        ex.sink = None
        if self.log_access:
            ms = (self.loop.time() - ex.start) * 1000
            self.srv.access_log.add(self.ip, ex.method, ex.scan.host + ex.url, ex.status, ms)  # type: ignore[union-attr]
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
            self.deadline = self.loop.time() + self.limits.keepalive_timeout
