"""Running the broker: an HTTP server (uvicorn, httptools) on the caller's event loop, plus its timer.

`await start_broker(settings, key)` is what `spacehost up` calls: a pool from NVML, or
`settings.zerogpu_devices` declared devices; None when there is no device at all (ZeroGPU Spaces then run
their `@spaces.GPU` functions on CPU as the package's no-op). The returned `BrokerServer` gives each Space its
full `SPACES_ZERO_DEVICE_API_URL` from `register_space`. Given `sockets` (listening on 127.0.0.1 and on a Docker
bridge gateway at one port), it serves them all, so a URL rebased onto the gateway reaches it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from pathlib import Path
from typing import Any

import uvicorn

from core.settings import Settings
from zerogpu.broker import Broker
from zerogpu.gate import TreeKiller, gate_for_host
from zerogpu.ledger import Ledger
from zerogpu.pool import detect_pool
from zerogpu.quota import Limits, QuotaStatus, Tier
from zerogpu.server import IsAdmin, create_app


class BrokerServer:
    """The broker behind its HTTP face. Use on one event loop: `await start()`, …, `await close()`."""

    def __init__(self, broker: Broker, host: str = "127.0.0.1", port: int = 0, *, ping_s: float = 1.0,
                 tick_s: float = 0.25, sockets: list[socket.socket] | None = None,
                 is_admin: IsAdmin | None = None) -> None:
        """`sockets`: listening sockets to serve, the first one's address being the URL's; default: one made
        on host:port. `is_admin`: whose bearer token may read /metrics (None: nobody's)."""
        if sockets:
            host, port = sockets[0].getsockname()[:2]
        self.broker, self.host, self.port, self.tick_s = broker, host, port, tick_s
        self._sockets = sockets or []
        self.app = create_app(broker, ping_s=ping_s, is_admin=is_admin)
        self._server: uvicorn.Server | None = None
        self._tasks: list[asyncio.Task[Any]] = []

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        if not self._sockets:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
            self.port = sock.getsockname()[1]
            self._sockets = [sock]
        for sock in self._sockets:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # accepted sockets inherit it: no Nagle
        config = uvicorn.Config(self.app, log_level="warning", access_log=False, http="httptools",
                                lifespan="off", timeout_keep_alive=60)
        self._server = uvicorn.Server(config)
        self._tasks = [asyncio.create_task(self._server.serve(sockets=self._sockets)),
                       asyncio.create_task(self.broker.run(self.tick_s))]
        while not self._server.started:
            if self._tasks[0].done():
                self._tasks[0].result()
            await asyncio.sleep(0.01)

    def register_space(self, space_id: str, root_pid: int | None = None) -> str:
        """The Space's `SPACES_ZERO_DEVICE_API_URL`."""
        return f"{self.url}/s/{self.broker.register_space(space_id, root_pid)}"

    def unregister_space(self, space_id: str) -> None:
        self.broker.unregister_space(space_id)

    def space_died(self, space_id: str) -> None:
        self.broker.space_died(space_id)

    def space_summary(self, space_id: str) -> dict[str, Any]:
        return self.broker.space_summary(space_id)

    def quota_for(self, visitor_key: str) -> QuotaStatus:
        return self.broker.quota_for(visitor_key)

    def set_quota_overrides(self, overrides: dict[str, int]) -> None:
        self.broker.set_quota_overrides(overrides)

    async def close(self) -> None:
        self.broker.close()
        if self._server is not None:
            self._server.should_exit = True
        for t in self._tasks[1:]:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(t, 5)


def limits_from(settings: Settings) -> Limits:
    """The quota limits an installation's settings give (each tier's maximum duration at least HF's)."""
    tiers = {Tier.ANONYMOUS: settings.zerogpu_quota_anonymous_s, Tier.SIGNED_IN: settings.zerogpu_quota_signed_in_s}
    return Limits(daily_s=tiers, max_duration_s={t: max(s, Limits().max_duration_s[t]) for t, s in tiers.items()})


async def start_broker(settings: Settings, key: bytes, sockets: list[socket.socket] | None = None,
                       is_admin: IsAdmin | None = None, ledger: Ledger | None = None) -> BrokerServer | None:
    """The broker, serving `sockets` if given (closed when there is no device: no broker). `ledger`: where quota
    usage lives (default: a local file in the data dir; a cluster node passes the cluster's RedisLedger)."""
    pool = detect_pool(settings.zerogpu_devices)
    if len(pool) == 0:
        for sock in sockets or ():
            sock.close()
        return None
    killer = TreeKiller()
    server = BrokerServer(Broker(pool, key, limits=limits_from(settings), state_dir=Path(settings.path("zerogpu")),
                                 killer=killer, gate=gate_for_host(pool, killer.roots), ledger=ledger),
                          sockets=sockets, is_admin=is_admin)
    await server.start()
    return server
