"""The controller on a FakeClock: crash backoff, sleep after idle, wake, freeze and thaw, and a start whose
health probe times out, with no real waiting. The store is real (SQLite), the probes are real HTTP over
loopback; the runtime is LoopbackRuntime, a Runtime whose apps are asyncio HTTP servers in this process."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from core.artifact import Artifact
from core.clock import FakeClock
from core.config import SpaceConfig
from core.isolation import SandboxState
from core.routes import RouteTable, Upstream
from core.settings import Settings
from core.stages import Sdk
from scheduler.controller import Controller
from scheduler.runtimes.base import Ability, ExitInfo, Instance, LaunchSpec, Usage
from state.store import Space, Store

SID = "alice/demo"
SHA = "c" * 40


class LoopbackRuntime:
    """Apps are HTTP servers on 127.0.0.1 answering 200 (`silent`: nothing listens, every probe is refused)."""

    name = "loopback"

    def __init__(self, abilities: frozenset[Ability] = frozenset(), silent: bool = False) -> None:
        self.abilities, self.silent = abilities, silent
        self.servers: dict[str, asyncio.Server] = {}
        self.ended: dict[str, ExitInfo] = {}
        self.frozen: set[str] = set()
        self.started: list[Instance] = []
        self._n = itertools.count()

    async def start(self, spec: LaunchSpec) -> Instance:
        async def answer(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            await w.drain()
            w.close()

        server = await asyncio.start_server(answer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        if self.silent:
            server.close()
            await server.wait_closed()
        iid = f"{spec.instance_id}-{next(self._n)}"
        self.servers[iid] = server
        inst = Instance(iid, spec.artifact.space_id, spec.artifact.sha, Upstream("127.0.0.1", port))
        self.started.append(inst)
        return inst

    def crash(self, inst: Instance, code: int = 1) -> None:
        self.servers[inst.instance_id].close()
        self.ended[inst.instance_id] = ExitInfo(code, f"exited with code {code}")

    async def exited(self, inst: Instance) -> ExitInfo | None:
        return self.ended.get(inst.instance_id)

    async def stop(self, inst: Instance, grace_s: float = 5.0) -> None:
        self.servers[inst.instance_id].close()
        self.ended.setdefault(inst.instance_id, ExitInfo(None, "stopped"))
        self.frozen.discard(inst.instance_id)

    async def adopt(self) -> list[Instance]:
        return []

    async def freeze(self, inst: Instance) -> bool:
        if Ability.FREEZE not in self.abilities:
            return False
        self.frozen.add(inst.instance_id)
        return True

    async def thaw(self, inst: Instance) -> None:
        self.frozen.discard(inst.instance_id)

    async def usage(self, inst: Instance) -> Usage | None:
        return Usage(1 << 20, 0, 1) if Ability.USAGE in self.abilities else None

    def forget_space(self, space_id: str) -> None:
        return None

    def describe_isolation(self) -> str:
        return "in-process loopback servers (tests)"

    def sandbox_state(self) -> SandboxState:
        return SandboxState(True)

    def pending_reason(self, space_id: str) -> str | None:
        return None

    def gateway(self) -> str | None:
        return None

    def expose_host_services(self, services: Mapping[str, int]) -> None:
        return None

    def close(self) -> None:
        return None


class Rig:
    def __init__(self, tmp: Path, runtime: LoopbackRuntime, *, sleep_time: int | None = 3600,
                 freeze_after_s: int = 0, startup_timeout: str | None = None) -> None:
        self.clock, self.runtime = FakeClock(), runtime
        settings = Settings(data_dir=tmp / "data", freeze_after_s=freeze_after_s)
        self.store = Store(f"sqlite:///{tmp}/state.db")
        with self.store.session() as s:
            s.add(Space(owner="alice", name="demo", sdk="gradio", sleep_time=sleep_time))
        self.tables: list[RouteTable] = []
        self.c = Controller(settings, self.store, tmp / "repos", runtime, backend=None,  # type: ignore[arg-type]
                            env_source=lambda _s: ({}, {}), on_routes=self.tables.append,
                            app_url=lambda _s: "http://alice-demo.localhost:8080", clock=self.clock)
        self.art = Artifact(space_id=SID, sha=SHA, sdk=Sdk.GRADIO, app_dir=str(tmp), app_file="app.py", port=7860,
                            config=SpaceConfig(sdk=Sdk.GRADIO, startup_duration_timeout=startup_timeout))

    @property
    def stage(self) -> str:
        space = self.store.get_space(SID)
        assert space is not None
        return space.stage

    @property
    def error(self) -> str:
        space = self.store.get_space(SID)
        return (space.error or "") if space else ""

    async def deploy(self) -> None:
        await self.c.start()
        self.c.node.live_of(SID).artifact = self.art
        await self.c.restart(SID)
        await self.until(lambda: self.stage == "RUNNING")

    async def until(self, cond: Callable[[], bool], step: float = 0.25, limit_s: float = 600.0) -> float:
        """Advance the clock by `step` until `cond` holds; the fake seconds it took."""
        t0 = self.clock.monotonic()
        while not cond():
            assert self.clock.monotonic() - t0 < limit_s, f"not within {limit_s} fake seconds (stage {self.stage})"
            await self.clock.advance(step)
        return self.clock.monotonic() - t0


def on_clock(tmp_path: Path, runtime: LoopbackRuntime, body: Callable[[Rig], Awaitable[None]],
             **kw: Any) -> None:
    async def main() -> None:
        rig = Rig(tmp_path, runtime, **kw)
        try:
            await asyncio.wait_for(body(rig), 30.0)  # a guard only: no real waiting, each takes about a second of CPU
        finally:
            await rig.c.close()

    asyncio.run(main())


def test_crash_restarts_after_a_doubling_backoff_then_a_crash_loop_is_a_runtime_error(tmp_path: Path) -> None:
    rt = LoopbackRuntime()

    async def body(rig: Rig) -> None:
        await rig.deploy()
        waits = []
        for delay in (1, 2, 4):
            rt.crash(rig.c.live[SID].instance)  # type: ignore[arg-type]
            await rig.until(lambda: rig.stage == "APP_STARTING")
            assert rig.error == f"exited with code 1; restarting in {delay}s"
            waits.append(await rig.until(lambda: rig.stage == "RUNNING"))
        assert [round(w) for w in waits] == [1, 2, 4]  # restarted after its backoff, not before
        rt.crash(rig.c.live[SID].instance)  # type: ignore[arg-type]
        await rig.until(lambda: rig.stage == "RUNTIME_ERROR")
        assert "exited with code 1 (crash loop)" in rig.error and rig.c.live[SID].instance is None
        assert len(rt.started) == 4

    on_clock(tmp_path, rt, body)


def test_sleeps_after_its_sleep_time_and_a_visit_wakes_it(tmp_path: Path) -> None:
    rt = LoopbackRuntime()

    async def body(rig: Rig) -> None:
        await rig.deploy()
        first = rig.c.live[SID].instance
        await rig.clock.advance(50)
        rig.c.activity(SID)  # a visit: the idle time starts again
        assert await rig.until(lambda: rig.stage == "SLEEPING", step=1.0) == pytest.approx(60, abs=1.5)
        assert rig.c.live[SID].instance is None and rt.ended[first.instance_id].reason == "stopped"  # type: ignore[union-attr]
        assert rig.c.runtime_extra(SID)["tier"] == "sleeping"
        wake = asyncio.create_task(rig.c.wake(SID))
        await rig.until(wake.done)
        assert rig.stage == "RUNNING" and rig.c.live[SID].instance not in (None, first)

    on_clock(tmp_path, rt, body, sleep_time=60)


def test_an_idle_space_freezes_and_a_visit_thaws_it(tmp_path: Path) -> None:
    rt = LoopbackRuntime(frozenset({Ability.FREEZE, Ability.USAGE}))

    async def body(rig: Rig) -> None:
        await rig.deploy()
        inst = rig.c.live[SID].instance
        assert inst is not None
        await rig.until(lambda: inst.instance_id in rt.frozen, step=1.0)
        assert rig.c.runtime_extra(SID)["tier"] == "frozen" and rig.stage == "RUNNING"
        assert rig.tables[-1].routes[0].state.value == "frozen"
        rig.c.activity(SID)
        await rig.until(lambda: inst.instance_id not in rt.frozen)
        assert rig.c.runtime_extra(SID)["tier"] == "running"
        assert rig.c.runtime_extra(SID)["memory"]["pss"] == 1 << 20  # sampled: the runtime has USAGE

    on_clock(tmp_path, rt, body, freeze_after_s=10)


def test_a_start_that_never_answers_times_out_into_runtime_error(tmp_path: Path) -> None:
    rt = LoopbackRuntime(silent=True)

    async def body(rig: Rig) -> None:
        await rig.c.start()
        rig.c.node.live_of(SID).artifact = rig.art
        await rig.c.restart(SID)
        await rig.until(lambda: rig.c.live[SID].probes > 3)
        assert rig.stage == "APP_STARTING" and rig.c.runtime_extra(SID)["healthProbes"] > 3
        took = await rig.until(lambda: rig.stage == "RUNTIME_ERROR", step=1.0)
        assert took <= 5.0 + 1.0
        assert rig.error.startswith("the app did not answer within 5s")
        assert rt.ended[rt.started[0].instance_id].reason == "stopped"  # the unanswering instance is stopped

    on_clock(tmp_path, rt, body, startup_timeout="5s")
