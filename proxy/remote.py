"""`spacehost proxy`: a ProxyServer whose route table is long-polled from the server (swapped whole on each
change) and whose hooks are HTTP calls to the server's cluster API. While the server is down it keeps serving
its last table; activity is batched (one call a second)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from core.routes import RouteTable, Upstream
from core.routes_json import table_from_json
from proxy.server import ProxyServer

log = logging.getLogger("spacehost.proxy")
AUTH_CACHE_S = 5.0
POLL_WAIT_S = 20.0


class RemoteHooks:
    """ProxyHooks over the server's API. `user_for_token` and `can_view` are synchronous in the Protocol: they
    call with a short timeout and cache answers for AUTH_CACHE_S (only private Spaces need them)."""

    def __init__(self, server: str, token: str) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        self.http = httpx.AsyncClient(base_url=server, headers=headers, timeout=POLL_WAIT_S + 10)
        self.sync = httpx.Client(base_url=server, headers=headers, timeout=2.0)
        self._active: set[str] = set()
        self._cache: dict[tuple[str, str, str | None], tuple[float, object]] = {}

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

    def _cached(self, key: tuple[str, str, str | None], call: str, body: dict[str, object], field: str) -> object:
        hit = self._cache.get(key)
        if hit and time.monotonic() - hit[0] < AUTH_CACHE_S:
            return hit[1]
        try:
            value = self.sync.post(call, json=body).json().get(field)
        except (httpx.HTTPError, ValueError):
            return None  # the server is away: private Spaces are refused meanwhile (fail closed)
        self._cache[key] = (time.monotonic(), value)
        return value

    def user_for_token(self, token: str) -> str | None:
        user = self._cached(("auth", token, None), "/api/cluster/proxy/auth", {"token": token}, "user")
        return str(user) if user else None

    def writer_of(self, token: str, space_id: str) -> bool:
        """Always False: a proxy apart from the server does not open Spaces' reload servers (yet)."""
        return False

    def can_view(self, space_id: str, user: str | None) -> bool:
        return bool(self._cached(("view", space_id, user), "/api/cluster/proxy/can-view",
                                 {"space_id": space_id, "user": user}, "ok"))


async def serve(server: str, token: str, host: str, port: int, data_dir: Path) -> None:
    hooks = RemoteHooks(server, token)
    u = urlsplit(server)
    hub = Upstream(u.hostname or "127.0.0.1", u.port or 80)
    first: asyncio.Future[RouteTable] = asyncio.get_running_loop().create_future()
    box: dict[str, ProxyServer] = {}
    poll = asyncio.create_task(_follow_into(hooks, hub, box, first))
    table = await first
    data_dir.mkdir(parents=True, exist_ok=True)
    from core.settings import Settings

    key = Settings(data_dir=data_dir).secret_key()  # X-IP-Token signing on zero-* routes
    proxy = ProxyServer(table, hooks, host=host, port=port, secret=key, drop_cookies=frozenset({"spacehost_session"}))
    box["proxy"] = proxy
    await proxy.start()
    print(f"spacehost proxy is up on http://{host}:{port} (routes from {server})", flush=True)
    try:
        await asyncio.gather(poll, hooks.flush_activity())
    finally:
        await proxy.stop()


async def _follow_into(hooks: RemoteHooks, hub: Upstream, box: dict[str, ProxyServer],
                       first: asyncio.Future[RouteTable]) -> None:
    since = -1
    while True:
        try:
            r = await hooks.http.get("/api/cluster/routes",
                                     params={"since": since, "wait": POLL_WAIT_S if since >= 0 else 0})
            r.raise_for_status()
            data = r.json()
            if data["table"]:
                table = table_from_json(data["table"], hub=hub)
                if not first.done():
                    first.set_result(table)
                if "proxy" in box:
                    box["proxy"].update(table)
            since = int(data["version"])
        except (httpx.HTTPError, ValueError, KeyError) as e:
            log.warning("routes not available from the server (%s); serving the last table", e)
            since = -1
            await asyncio.sleep(1.0)


def run_proxy(server: str, token: str, host: str, port: int, data_dir: Path) -> None:
    logging.basicConfig(level=os.environ.get("SPACEHOST_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(serve(server.rstrip("/"), token, host, port, data_dir))
