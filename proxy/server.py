"""The proxy server: listeners (main port, per-Space direct ports, HTTP→HTTPS redirect), the route table
swapped whole by `update`, and the shared state the connections use (upstream pool, rate buckets, token
caches, wake-ups in flight). One sweeper task enforces timeouts instead of a timer per request."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

import httptools

from core import iptoken
from core.routes import Route, RouteTable
from proxy import auth, lane, pages, ratelimit
from proxy.accesslog import AccessLog
from proxy.connection import ClientConn
from proxy.decide import Scan, embedding_headers, encode_headers
from proxy.exchange import Plan
from proxy.hooks import ProxyHooks
from proxy.tls import TlsConfig, TlsContexts
from proxy.upstream import Pool

log = logging.getLogger("spacehost.proxy")
DEFAULT_RATE_LIMIT = ratelimit.RateLimit()


@dataclass(frozen=True)
class Limits:
    header_timeout: float = 10.0  # a whole request head must arrive within this (slowloris)
    keepalive_timeout: float = 75.0  # idle client connection between requests
    stream_idle_timeout: float = 3600.0  # no byte either way on a response/WebSocket in flight
    max_head: int = 32 * 1024  # request line + headers; beyond: 431
    wake_hold: float = 60.0  # how long an API request to a sleeping Space is held
    connect_timeout: float = 10.0
    pool_idle: float = 4.0  # below uvicorn's 5 s keep-alive, so pooled connections are rarely stale
    token_cache_s: float = 10.0  # user_for_token results
    credential_cache_s: float = 2.0  # credential_live results: a revoked token's Space cookies die this soon
    ip_token_reuse_s: float = 30.0  # an X-IP-Token (valid 600 s) is re-minted after this
    # activity() for open WebSockets and responses in flight (an SSE stream): below the frozen tier's idle time,
    # so a Space with a visitor connected is never frozen under it
    activity_interval: float = 10.0


@dataclass
class _Listeners:
    main: list[asyncio.Server] = field(default_factory=list)
    direct: dict[int, asyncio.Server] = field(default_factory=dict)


class ProxyServer:
    """Reverse proxy for the hub and every Space. `update` swaps the table atomically (requests in flight
    keep the route they resolved; held ones re-decide) and opens/closes per-Space direct ports to match."""

    def __init__(
        self,
        table: RouteTable,
        hooks: ProxyHooks,
        *,
        host: str,
        port: int,
        secret: bytes,
        tls: TlsConfig | None = None,
        direct_ports: bool = True,
        hub_origin: str | None = None,
        limits: Limits = Limits(),
        rate_limit: ratelimit.RateLimit | None = DEFAULT_RATE_LIMIT,
        drop_cookies: frozenset[str] = frozenset({"spacehost_session"}),
        fast_lane: bool = True,
        access_log: AccessLog | None = None,
    ) -> None:
        self.hooks = hooks
        self.host, self.port, self.secret = host, port, secret
        self.tls = TlsContexts(tls) if tls is not None else None
        self.tls_config = tls
        self.direct_ports = direct_ports
        self.limits, self.rate_limit, self.drop_cookies = limits, rate_limit, drop_cookies
        self.fast_lane = fast_lane and lane.COMPILED  # off: every request takes the Python path (tests compare)
        self.access_log = access_log
        self._hub_origin = hub_origin
        self.pool = Pool(limits.connect_timeout)
        self.conns: set[ClientConn] = set()
        self.buckets: dict[str, ratelimit.Bucket] = {}
        self._tokens: dict[str, tuple[float, str | None]] = {}
        self._writers: dict[tuple[str, str], tuple[float, bool]] = {}  # (token, Space) → (until, writer)
        self._creds: dict[str, tuple[float, bool]] = {}  # hub credential → (until, live)
        self._ip_tokens: dict[tuple[str | None, str], tuple[float, str]] = {}
        self._active: dict[str, float] = {}
        self._waking: dict[str, asyncio.Task[None]] = {}
        self._changed: asyncio.Future[None] | None = None
        self._listeners = _Listeners()
        self._sweeper: asyncio.Task[None] | None = None
        self._direct_failed: set[int] = set()
        self._direct_lock = asyncio.Lock()
        self.table = table
        self._extras: dict[int, bytes] = {}
        self._set_table(table)

    # --- table ----------------------------------------------------------------------------------------
    @property
    def hub_origin(self) -> str:
        if self._hub_origin:
            return self._hub_origin
        scheme = "https" if self.tls else "http"
        default = 443 if self.tls else 80
        return f"{scheme}://{self.table.domain}" + ("" if self.port == default else f":{self.port}")

    def _set_table(self, table: RouteTable) -> None:
        origin = self.hub_origin if self.port else ""
        extras = {id(r): encode_headers(embedding_headers(r, origin)) for r in table.routes}
        self.table, self._extras = table, extras  # the connections read both; one assignment each, no await
        self._resolved: dict[tuple[str, int], Route | str | None] = {}
        self.plans: dict[tuple[str, int, str], Plan] = {}  # see `keep_plan`

    def keep_plan(self, ip: str, port: int, scheme: str, plan: Plan) -> None:
        """The last plain decision for a client IP on a listener (port, scheme), until the next table swap: a new
        connection from that IP starts with it (`ClientConn.connection_made`), so its first plain request may
        take the fast lane too (gradio_client opens a connection per call). The plan depends on nothing else:
        X-Forwarded-For/-Proto and the IP token are the IP's and the listener's, and the lane checks the Host."""
        if len(self.plans) > 4096:  # many clients: do not grow without bound
            self.plans.clear()
        self.plans[ip, port, scheme] = plan

    def resolve(self, host: str, port: int) -> Route | str | None:
        """`table.resolve`, memoized until the next swap."""
        key = (host, port)
        try:
            return self._resolved[key]
        except KeyError:
            target = self._resolved[key] = self.table.resolve(host, port)
            if len(self._resolved) > 4096:  # hostile Host headers: do not grow without bound
                self._resolved.clear()
            return target

    def extra_for(self, route: Route) -> bytes:
        extra = self._extras.get(id(route))
        return extra if extra is not None else encode_headers(embedding_headers(route, self.hub_origin))

    def update(self, table: RouteTable) -> None:
        """Swap in a new table; wake held requests; reconcile direct ports (in the background)."""
        self._set_table(table)
        fut, self._changed = self._changed, None
        if fut is not None and not fut.done():
            fut.set_result(None)
        if self._listeners.main and self.direct_ports:
            asyncio.get_running_loop().create_task(self._sync_direct_ports())

    async def table_changed(self, timeout: float) -> None:
        if self._changed is None:
            self._changed = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait_for(asyncio.shield(self._changed), timeout)
        except TimeoutError:
            pass

    # --- per-request services for the connections ------------------------------------------------------
    def admit(self, ip: str, now: float) -> int:
        """0 if a request from `ip` may proceed, else the Retry-After seconds of a 429."""
        assert self.rate_limit is not None
        bucket, ok = ratelimit.take(self.rate_limit, self.buckets.get(ip), now)
        self.buckets[ip] = bucket
        return 0 if ok else ratelimit.retry_after(self.rate_limit, bucket)

    def user_for_token(self, token: str) -> str | None:
        now = time.monotonic()
        hit = self._tokens.get(token)
        if hit is not None and hit[0] > now:
            return hit[1]
        user = self.hooks.user_for_token(token)
        self._tokens[token] = (now + self.limits.token_cache_s, user)
        return user

    def credential_live(self, cred: str) -> bool:
        """Whether the hub credential behind a URL token or Space cookie still stands (`ProxyHooks`), asked again
        after `credential_cache_s`."""
        now = time.monotonic()
        hit = self._creds.get(cred)
        if hit is None or hit[0] <= now:
            if len(self._creds) > 4096:  # forged ones cannot get here (signed), but do not grow without bound
                self._creds.clear()
            hit = self._creds[cred] = (now + self.limits.credential_cache_s, self.hooks.credential_live(cred))
        return hit[1]

    def _live_pass(self, token: str, space_id: str, typ: str) -> auth.SpacePass | None:
        grant = auth.verify_space_pass(self.secret, token, space_id, time.time(), typ)
        return grant if grant is not None and self.credential_live(grant.cred) else None

    def identify(self, route: Route, s: Scan, signed: str | None) -> tuple[str | None, auth.SpacePass | None]:
        """(the visitor's user name or None, what a valid `__sign` that came with the request grants). Filters
        the hub's and the proxy's own cookies out of `s.cookie` on the way. URL tokens and cookies count only
        while the hub credential that minted them is live."""
        user = None
        token = (s.authorization and auth.bearer(s.authorization)) or (
            s.hf_authorization and auth.bearer(s.hf_authorization)
        )
        if token:
            user = self.user_for_token(token)
        if s.cookie is not None:
            s.cookie, value = auth.filter_cookies(s.cookie, self.drop_cookies, auth.cookie_name(route.space_id))
            if user is None and value:
                cookie = self._live_pass(value, route.space_id, auth.COOKIE_TOKEN)
                user = cookie.user if cookie else None
        if signed:
            grant = self._live_pass(signed, route.space_id, auth.URL_TOKEN)
            if grant is not None:
                return (user or grant.user), grant
        return user, None

    def can_view(self, route: Route, user: str) -> bool:
        return self.hooks.can_view(route.space_id, user)

    def may_write(self, route: Route, s: Scan) -> bool:
        """Whether the request's Bearer token (Authorization or X-HF-Authorization; never a cookie) is a
        writer's of the Space: cached like `user_for_token`."""
        token = (s.authorization and auth.bearer(s.authorization)) or (
            s.hf_authorization and auth.bearer(s.hf_authorization))
        if not token:
            return False
        now, key = time.monotonic(), (token, route.space_id)
        hit = self._writers.get(key)
        if hit is None or hit[0] <= now:
            if len(self._writers) > 4096:  # hostile tokens: do not grow without bound
                self._writers.clear()
            hit = self._writers[key] = (now + self.limits.token_cache_s, self.hooks.writer_of(token, route.space_id))
        return hit[1]

    def ip_token(self, user: str | None, ip: str) -> str:
        now = time.time()
        hit = self._ip_tokens.get((user, ip))
        if hit is not None and now - hit[0] < self.limits.ip_token_reuse_s:
            return hit[1]
        token = iptoken.sign(self.secret, iptoken.Visitor(user, ip), now)
        self._ip_tokens[(user, ip)] = (now, token)
        return token

    def note_activity(self, space_id: str, now: float) -> None:
        if now - self._active.get(space_id, -1e9) >= 1.0:
            self._active[space_id] = now
            try:
                self.hooks.activity(space_id)
            except Exception:  # a hook failure must not fail the request
                log.exception("activity hook failed for %s", space_id)

    def wake(self, space_id: str) -> None:
        if space_id in self._waking:
            return

        async def run() -> None:
            try:
                await self.hooks.wake(space_id)
            except Exception:
                log.exception("waking %s failed", space_id)
            finally:
                self._waking.pop(space_id, None)

        self._waking[space_id] = asyncio.get_running_loop().create_task(run())

    # --- listeners ------------------------------------------------------------------------------------
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        ssl_ctx = self.tls.listener if self.tls else None
        scheme = "https" if self.tls else "http"
        main = await loop.create_server(lambda: ClientConn(self, self.port, scheme), self.host, self.port,
                                        ssl=ssl_ctx, backlog=4096, reuse_address=True)
        if not self.port:
            self.port = main.sockets[0].getsockname()[1]
            self._set_table(self.table)
        self._listeners.main.append(main)
        if self.tls_config is not None and self.tls_config.redirect_port is not None:
            redirect = await loop.create_server(lambda: _Redirect(self.port), self.host,
                                                self.tls_config.redirect_port, reuse_address=True)
            self._listeners.main.append(redirect)
        if self.direct_ports:
            await self._sync_direct_ports()
        self._sweeper = loop.create_task(self._sweep())

    async def _sync_direct_ports(self) -> None:
        async with self._direct_lock:  # one reconciliation at a time: two would race to bind the same port
            await self._sync_direct_ports_locked()

    async def _sync_direct_ports_locked(self) -> None:
        want = {r.direct_port for r in self.table.routes if r.direct_port}
        have = self._listeners.direct
        for port in [p for p in have if p not in want]:
            have.pop(port).close()
        loop = asyncio.get_running_loop()
        ssl_ctx = self.tls.listener if self.tls else None
        scheme = "https" if self.tls else "http"
        for port in sorted(want - set(have)):
            try:
                have[port] = await loop.create_server(lambda p=port: ClientConn(self, p, scheme),
                                                      self.host, port, ssl=ssl_ctx, reuse_address=True)
            except OSError as e:
                if port not in self._direct_failed:  # said once; the sweeper keeps trying quietly
                    log.error("direct port %s unavailable (retrying every 5 s): %s", port, e)
                self._direct_failed.add(port)
            else:
                self._direct_failed.discard(port)

    def _missing_direct_ports(self) -> bool:
        return any(r.direct_port and r.direct_port not in self._listeners.direct for r in self.table.routes)

    @property
    def direct_listening(self) -> frozenset[int]:
        return frozenset(self._listeners.direct)

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        servers = self._listeners.main + list(self._listeners.direct.values())
        self._listeners = _Listeners()
        for s in servers:
            s.close()
        for c in list(self.conns):
            c.transport.close()
        for t in list(self._waking.values()):
            t.cancel()
        self.pool.close()
        for s in servers:
            await s.wait_closed()
        if self.access_log is not None:
            self.access_log.flush()

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        tick = 0
        while True:
            await asyncio.sleep(1.0)
            tick += 1
            now = loop.time()
            for c in list(self.conns):
                c.drop_idle_upstream(now, self.limits.pool_idle)
                if c.deadline < now:
                    c.timed_out()
                elif (c.spliced or c.up is not None) and c.cur is not None and c.cur.space and now - c.last_activity > (
                    self.limits.activity_interval
                ):
                    c.last_activity = now
                    self._active.pop(c.cur.space, None)
                    self.note_activity(c.cur.space, now)
            self.pool.sweep(now, self.limits.pool_idle)
            if self.access_log is not None:
                self.access_log.tick()
            if tick % 10 == 0:
                self._prune(now)
            if self.tls and tick % 5 == 0:
                self.tls.reload_if_changed()
            if self.direct_ports and tick % 5 == 0 and self._missing_direct_ports():
                await self._sync_direct_ports()  # a port that was busy when its Space appeared: try again

    def _prune(self, now: float) -> None:
        if self.rate_limit is not None:
            rl = self.rate_limit
            self.buckets = {ip: b for ip, b in self.buckets.items() if not ratelimit.is_full(rl, b, now)}
        mono, wall = time.monotonic(), time.time()
        self._tokens = {t: v for t, v in self._tokens.items() if v[0] > mono}
        self._writers = {k: v for k, v in self._writers.items() if v[0] > mono}
        self._creds = {k: v for k, v in self._creds.items() if v[0] > mono}
        self._ip_tokens = {k: v for k, v in self._ip_tokens.items() if wall - v[0] < self.limits.ip_token_reuse_s}


class _Redirect(asyncio.Protocol):
    """Plain-HTTP listener next to TLS: every request gets a 308 to the same URL over https."""

    def __init__(self, https_port: int) -> None:
        self.https_port = https_port
        self.host = ""
        self.url = b""
        self.parser = httptools.HttpRequestParser(self)

    transport: asyncio.Transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's are not asyncio.Transport

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"host":
            self.host = value.decode("latin-1").rsplit(":", 1)[0] if not value.startswith(b"[") else ""

    def on_headers_complete(self) -> None:
        port = "" if self.https_port == 443 else f":{self.https_port}"
        if not self.host:
            self.transport.write(pages.error(400, "Host required"))
        else:
            location = f"https://{self.host}{port}{self.url.decode('latin-1')}"
            self.transport.write(pages.response(308, b"", headers=(("Location", location),), keep_alive=False))
        self.transport.close()

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.close()
