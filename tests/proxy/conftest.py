"""Fixtures: one event loop in a thread runs a uvicorn backend and the proxy; tests talk to them over
127.0.0.1 with ordinary blocking clients."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
import uvicorn
import uvloop

from core.routes import Route, RouteState, RouteTable, Upstream
from proxy import Limits, ProxyServer, RateLimit
from tests.proxy.backend import app

T = TypeVar("T")
SECRET = b"test-secret-test-secret-test-secret!"
DOMAIN = "spaces.test"


class LoopThread:
    def __init__(self) -> None:
        self.loop = uvloop.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Any, *args: Any) -> Any:
        async def wrap() -> Any:
            return fn(*args)

        return self.run(wrap())

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@dataclass
class FakeHooks:
    tokens: dict[str, str] = field(default_factory=lambda: {"tok-alice": "alice", "tok-bob": "bob"})
    viewers: set[tuple[str, str]] = field(default_factory=lambda: {("alice/secret", "alice")})
    writers: set[tuple[str, str]] = field(default_factory=lambda: {("alice/app", "alice")})
    live: set[str] = field(default_factory=lambda: {"t1"})  # hub credentials not revoked
    activities: list[str] = field(default_factory=list)
    wakes: list[str] = field(default_factory=list)

    def activity(self, space_id: str) -> None:
        self.activities.append(space_id)

    async def wake(self, space_id: str) -> None:
        self.wakes.append(space_id)

    def user_for_token(self, token: str) -> str | None:
        return self.tokens.get(token)

    def can_view(self, space_id: str, user: str | None) -> bool:
        return (space_id, user or "") in self.viewers

    def credential_live(self, cred: str) -> bool:
        return cred in self.live

    def writer_of(self, token: str, space_id: str) -> bool:
        return (space_id, self.tokens.get(token, "")) in self.writers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Env:
    lt: LoopThread
    proxy: ProxyServer
    hooks: FakeHooks
    backend: Upstream
    port: int

    def update(self, table: RouteTable) -> None:
        self.lt.call(self.proxy.update, table)

    def table(self, *routes: Route) -> RouteTable:
        return RouteTable(domain=DOMAIN, hub=self.backend, routes=routes)

    def serving(self, space_id: str, **kw: Any) -> Route:
        sub = space_id.replace("/", "-")
        return Route(space_id, sub, RouteState.SERVING, upstream=self.backend, **kw)


async def _start_backend() -> tuple[uvicorn.Server, int]:
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", lifespan="off", ws="websockets-sansio",
                            proxy_headers=False)  # the app sees the proxy's own socket as its client
    server = uvicorn.Server(config)
    asyncio.get_running_loop().create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    return server, port


@pytest.fixture()
def env(request: pytest.FixtureRequest) -> Iterator[Env]:
    opts: dict[str, Any] = getattr(request, "param", {})
    lt = LoopThread()
    backend_server, bport = lt.run(_start_backend())
    backend = Upstream("127.0.0.1", bport)
    hooks = FakeHooks()
    table = RouteTable(domain=DOMAIN, hub=backend, routes=())
    limits = opts.pop("limits", Limits(header_timeout=1.0, wake_hold=3.0))

    async def make() -> ProxyServer:
        p = ProxyServer(table, hooks, host="127.0.0.1", port=0, secret=SECRET, limits=limits,
                        rate_limit=opts.pop("rate_limit", RateLimit(rate=1000, burst=1000)), **opts)
        await p.start()
        return p

    proxy = lt.run(make())
    yield Env(lt, proxy, hooks, backend, proxy.port)
    lt.run(proxy.stop())
    backend_server.should_exit = True
    lt.run(asyncio.sleep(0.2))
    lt.stop()


def raw(port: int, data: bytes, *, read_timeout: float = 3.0, until_close: bool = True) -> bytes:
    """Send raw bytes to the proxy and return what comes back until it closes (or the timeout)."""
    with socket.create_connection(("127.0.0.1", port), timeout=read_timeout) as s:
        s.sendall(data)
        out = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
                if not until_close and b"\r\n\r\n" in out:
                    break
        except TimeoutError:
            pass
        return out
