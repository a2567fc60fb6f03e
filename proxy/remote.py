"""`spacehost proxy`: a ProxyServer whose route table is long-polled from the server (swapped whole on each
change) and whose hooks are HTTP calls to the server's cluster API. While the server is down it keeps serving
its last table; activity is batched (one call a second). Static Spaces are served from this proxy's copy of
their files (fetched from the server once per commit), private ones by answers to tokens the server gave in the
last minutes: both keep working while the server restarts."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import shutil
import tarfile
import time
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from core import static_tree
from core.relay_key import preamble
from core.routes import RouteState, RouteTable, Upstream
from core.routes_json import table_from_json
from proxy.server import ProxyServer

log = logging.getLogger("spacehost.proxy")
AUTH_CACHE_S = 5.0  # token → user and can-view answers are asked again after this…
CRED_CACHE_S = 1.0  # …a minting credential's liveness sooner (a revoked token's Space cookies die with it)
WRITER_CACHE_S = 3.0  # …whether a token writes a Space (the reload server's gate): a revoked right ends this soon
AUTH_STALE_S = 600.0  # …and reused this long while the server cannot be reached (HTTP's stale-if-error)
SERVER_AWAY_S = 2.0  # after a failed call, no call for this long: no per-request stall while the server is down
AUTH_CACHE_MAX = 10_000
POLL_WAIT_S = 20.0


class RemoteHooks:
    """ProxyHooks over the server's API. `user_for_token` and `can_view` are synchronous in the Protocol: they
    call with a short timeout and cache answers for AUTH_CACHE_S (only private Spaces need them). While the
    server is down (a restart), an answer it gave in the last AUTH_STALE_S still holds: visitors whose token was
    checked recently keep their private Spaces; anyone else is refused (fail closed)."""

    def __init__(self, server: str, token: str) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        self.http = httpx.AsyncClient(base_url=server, headers=headers, timeout=POLL_WAIT_S + 10)
        self.sync = httpx.Client(base_url=server, headers=headers, timeout=2.0)
        self._active: set[str] = set()
        self._cache: dict[tuple[str, str, str | None], tuple[float, object]] = {}
        self._away_until = 0.0
        self.relay_preamble = b""  # what connections to nodes' relays open with (the server's key, with the routes)

    def activity(self, space_id: str) -> None:
        self._active.add(space_id)

    async def flush_activity(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            if self._active:
                batch, self._active = sorted(self._active), set()
                with contextlib.suppress(httpx.HTTPError):
                    await self.http.post("/api/cluster/proxy/activity", json={"space_ids": batch})

    async def wake(self, space_id: str) -> None:
        with contextlib.suppress(httpx.HTTPError):
            await self.http.post("/api/cluster/proxy/wake", json={"space_id": space_id}, timeout=600)

    def _cached(self, key: tuple[str, str, str | None], call: str, body: dict[str, object], field: str,
                fresh_s: float = AUTH_CACHE_S, stale_s: float = AUTH_STALE_S) -> object:
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit and now - hit[0] < fresh_s:
            return hit[1]
        if now >= self._away_until:
            try:
                r = self.sync.post(call, json=body)
                r.raise_for_status()
                value = r.json().get(field)
            except (httpx.HTTPError, ValueError) as e:
                log.warning("%s not answered (%s): answers of the last %.0fs hold meanwhile", call, e, AUTH_STALE_S)
                self._away_until = now + SERVER_AWAY_S
            else:
                if len(self._cache) >= AUTH_CACHE_MAX:  # hostile tokens: do not grow without bound
                    self._cache = {k: v for k, v in self._cache.items() if now - v[0] < AUTH_CACHE_S}
                self._cache[key] = (now, value)
                return value
        return stale_answer(hit, now, stale_s)

    def with_static_copies(self, table: RouteTable, copies: Path) -> RouteTable:
        """`table` with each static route's root replaced by this proxy's copy of its files (fetched from the
        server once per commit: core.static_tree), so static Spaces serve from here, also while the server is
        down. A copy that cannot be fetched now leaves the server's path (served only where that path exists)
        and is tried again with the next table. Copies no route uses are removed. Blocking."""
        routes, kept = [], set()
        for r in table.routes:
            if r.state is RouteState.STATIC and r.static_root:
                dest = copies / static_tree.copy_name(r.static_root)
                try:
                    if not dest.is_dir():
                        got = self.sync.get(f"/api/cluster/static/{r.space_id}", timeout=120)
                        got.raise_for_status()
                        copies.mkdir(parents=True, exist_ok=True)
                        static_tree.extract(got.content, dest)
                    r = replace(r, static_root=str(dest))
                    kept.add(dest.name)
                except (httpx.HTTPError, OSError, tarfile.TarError) as e:
                    log.warning("no copy of %s's static files yet (%s)", r.space_id, e)
            routes.append(r)
        for d in copies.iterdir() if copies.is_dir() else ():
            if d.name not in kept and not d.name.startswith("."):
                shutil.rmtree(d, ignore_errors=True)
        return RouteTable(table.domain, table.hub, tuple(routes), spaces_domain=table.spaces_domain)

    def user_for_token(self, token: str) -> str | None:
        user = self._cached(("auth", token, None), "/api/cluster/proxy/auth", {"token": token}, "user")
        return str(user) if user else None

    def credential_live(self, cred: str) -> bool:
        return bool(self._cached(("cred", cred, None), "/api/cluster/proxy/credential", {"cred": cred}, "live",
                                 CRED_CACHE_S))

    def writer_of(self, token: str, space_id: str) -> bool:
        """Whether the server says `token` may change `space_id` (the gate of its reload server), asked again after
        WRITER_CACHE_S, keyed by the token's hash. While the server cannot be asked, False: a hot reload needs the
        server anyway, so no stale grant is worth the risk (fail closed)."""
        key = ("writer", hashlib.sha256(token.encode()).hexdigest(), space_id)
        return self._cached(key, "/api/cluster/proxy/writer", {"token": token, "space_id": space_id}, "writer",
                            WRITER_CACHE_S, stale_s=0.0) is True

    def can_view(self, space_id: str, user: str | None) -> bool:
        return bool(self._cached(("view", space_id, user), "/api/cluster/proxy/can-view",
                                 {"space_id": space_id, "user": user}, "ok"))


def without_server(table: RouteTable) -> RouteTable:
    """The last table as served while the server is unreachable: frozen Spaces route as serving (a thaw is the
    server's wake, and every node thaws its instances while it cannot reach the server)."""
    if not any(r.state is RouteState.FROZEN for r in table.routes):
        return table
    routes = tuple(replace(r, state=RouteState.SERVING) if r.state is RouteState.FROZEN and r.upstream else r
                   for r in table.routes)
    return RouteTable(table.domain, table.hub, routes, spaces_domain=table.spaces_domain)


def stale_answer(hit: tuple[float, object] | None, now: float, stale_s: float = AUTH_STALE_S) -> object:
    """What a cached answer still says while the server cannot be asked: itself if younger than `stale_s`,
    else None (refused)."""
    return hit[1] if hit is not None and now - hit[0] < stale_s else None


async def serve(server: str, token: str, host: str, port: int, data_dir: Path) -> None:
    hooks = RemoteHooks(server, token)
    u = urlsplit(server)
    hub = Upstream(u.hostname or "127.0.0.1", u.port or 80)
    first: asyncio.Future[RouteTable] = asyncio.get_running_loop().create_future()
    box: dict[str, ProxyServer] = {}
    poll = asyncio.create_task(_follow_into(hooks, hub, box, first, data_dir / "static"))
    table = await first
    data_dir.mkdir(parents=True, exist_ok=True)
    from core.settings import Settings

    key = Settings(data_dir=data_dir).secret_key()  # X-IP-Token signing on zero-* routes
    proxy = ProxyServer(table, hooks, host=host, port=port, secret=key, drop_cookies=frozenset({"spacehost_session"}))
    proxy.pool.preamble = lambda up: b"" if up == hub else hooks.relay_preamble  # every Space is on a node's relay
    box["proxy"] = proxy
    await proxy.start()
    print(f"spacehost proxy is up on http://{host}:{port} (routes from {server})", flush=True)
    try:
        await asyncio.gather(poll, hooks.flush_activity())
    finally:
        await proxy.stop()


async def _follow_into(hooks: RemoteHooks, hub: Upstream, box: dict[str, ProxyServer],
                       first: asyncio.Future[RouteTable], static_copies: Path) -> None:
    since = -1
    while True:
        try:
            r = await hooks.http.get("/api/cluster/routes",
                                     params={"since": since, "wait": POLL_WAIT_S if since >= 0 else 0})
            r.raise_for_status()
            data = r.json()
            if data["table"]:
                table = table_from_json(data["table"], hub=hub)
                hooks.relay_preamble = preamble(str(data["relay_key"]))
                table = await asyncio.to_thread(hooks.with_static_copies, table, static_copies)
                if not first.done():
                    first.set_result(table)
                if "proxy" in box:
                    box["proxy"].update(table)
            since = int(data["version"])
        except (httpx.HTTPError, ValueError, KeyError) as e:
            log.warning("routes not available from the server (%s); serving the last table", e)
            if "proxy" in box:  # nobody could thaw a frozen Space now: its node thaws it, the route serves
                box["proxy"].update(without_server(box["proxy"].table))
            since = -1
            await asyncio.sleep(1.0)


def run_proxy(server: str, token: str, host: str, port: int, data_dir: Path) -> None:
    logging.basicConfig(level=os.environ.get("SPACEHOST_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(serve(server.rstrip("/"), token, host, port, data_dir))
