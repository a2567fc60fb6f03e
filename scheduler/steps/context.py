"""What every step's effect shares: the store, the runtime, the clock, what runs (`live`), the logs, and the
two ways to make a change visible (`set`: the store, then the route table; `publish`: the route table)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from builder.backend import BuildBackend
from builder.queue import BuildQueue
from core.clock import Clock
from core.routes import RouteTable, Upstream
from core.settings import Settings
from scheduler.runtimes.base import Runtime
from scheduler.steps.live import Live
from scheduler.steps.routes import route_table
from state.logs import LogFile
from state.store import SpaceRecord, Store

EnvSource = Callable[[SpaceRecord], tuple[dict[str, str], dict[str, str]]]  # (variables, secrets)
Volumes = tuple[tuple[str, str, bool], ...]  # (host dir, mount path, read-only)


@dataclass
class Node:
    """The controller's dependencies and in-memory state, handed to each step's effect."""

    settings: Settings
    store: Store
    runtime: Runtime
    backend: BuildBackend
    build_queue: BuildQueue
    env_source: EnvSource
    on_routes: Callable[[RouteTable], None]
    app_url: Callable[[SpaceRecord], str]
    hub_upstream: Upstream
    clock: Clock
    sleep_time_of: Callable[[SpaceRecord], int | None]  # None: never (dev mode, or the owner's choice)
    volumes_of: Callable[[SpaceRecord], Volumes]  # made on the host, for uid 1000
    volume_limit_of: Callable[[SpaceRecord], int]  # the size limit of its volumes (tier capped by the operator's)
    zero_gpu: Any = None
    live: dict[str, Live] = field(default_factory=dict)
    http: httpx.AsyncClient = field(default_factory=lambda: httpx.AsyncClient(timeout=2.0))
    bg: set[asyncio.Task[Any]] = field(default_factory=set)
    table: RouteTable | None = None

    def live_of(self, space_id: str) -> Live:
        """The Space's in-memory state, made (idle since now) on first use."""
        if (live := self.live.get(space_id)) is None:
            now = self.clock.monotonic()
            live = self.live[space_id] = Live(last_activity=now, since=now)
        return live

    def dir(self, space_id: str) -> Path:
        return self.settings.path("spaces", space_id)

    def build_log(self, space_id: str) -> LogFile:
        return LogFile(self.dir(space_id) / "build.log")

    def run_log(self, space_id: str) -> LogFile:
        return LogFile(self.dir(space_id) / "run.log")

    def set(self, space_id: str, **fields: Any) -> SpaceRecord | None:
        """Write the Space's row, then publish the routes it may change."""
        rec = self.store.update_space(space_id, **fields)
        self.publish()
        return rec

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run `coro` in the background (cancelled by `close`)."""
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self.bg.add(task)
        task.add_done_callback(self.bg.discard)
        return task

    def publish(self) -> None:
        """Rebuild the route table; hand it on only when it changed."""
        table = route_table(self.settings.domain, self.hub_upstream, self.store.list_spaces(), self.live,
                            self.store.domains(), spaces_domain=self.settings.spaces_domain)
        if table != self.table:
            self.table = table
            self.on_routes(table)
