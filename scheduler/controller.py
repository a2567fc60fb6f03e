"""The control loop of one node (embedded mode) and of the server (cluster mode): the hub's SpaceControl.
The work is in named steps (scheduler/steps): build, deploy, health, sleep and routes, each a pure decision
plus a thin effect, run by the reconcile loop (steps/reconcile.py) on an injected clock. This module recovers
at start, and turns the hub's requests (push, restart, pause, delete, visit) into those steps.

Goal state lives in the store (head_sha, serving_sha, stage, paused); what runs is re-adopted from the
runtime after a restart, so killing spacehost at any moment loses nothing."""

from __future__ import annotations

import asyncio
import logging
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from builder.backend import BuildBackend
from builder.pipeline import kept_builds, load_artifact
from builder.queue import BuildQueue, InlineQueue
from core.clock import SYSTEM, Clock
from core.hardware import flavor
from core.routes import RouteTable, Upstream
from core.settings import Settings
from core.stages import SpaceStage
from sandbox.bwrap import APP_UID
from scheduler import lifecycle, volume_fs
from scheduler.runtimes.base import Ability, Instance, Runtime, reload_of
from scheduler.steps import build, deploy, reconcile, sleep
from scheduler.steps.context import EnvSource, Node, Volumes
from scheduler.steps.deploy import KEEP_IMAGES, STOP_GRACE_S
from scheduler.steps.live import Live
from state.logs import LogFile, keep_good_build
from state.space_settings import dev_mode, storage_tier, volumes
from state.store import SpaceRecord, Store
from state.volumes import volume_limit

__all__ = ["KEEP_IMAGES", "Controller", "EnvSource", "env_source_for"]
log = logging.getLogger("spacehost.scheduler")
BUILD_GIVE_UP_S = 30.0  # how long a deletion waits for a cancelled build to leave the Space's folder


class Controller:
    def __init__(self, settings: Settings, store: Store, repos_root: Path, runtime: Runtime,
                 backend: BuildBackend, env_source: EnvSource, on_routes: Callable[[RouteTable], None],
                 app_url: Callable[[SpaceRecord], str], zero_gpu: Any = None,
                 hub_upstream: Upstream | None = None, build_queue: BuildQueue | None = None,
                 clock: Clock = SYSTEM, zero_gpu_quota: Any = None) -> None:
        """`zero_gpu`: this host's broker (embedded); `zero_gpu_quota`: where quotas are read and set when that is
        not the broker (cluster: the ledger in Redis that every node's broker charges)."""
        self.settings, self.store, self.repos_root = settings, store, repos_root
        self.runtime, self.backend, self.zero_gpu = runtime, backend, zero_gpu
        self.zero_gpu_quota = zero_gpu_quota or zero_gpu
        self.node = Node(
            settings=settings, store=store, runtime=runtime, backend=backend,
            build_queue=build_queue or InlineQueue(backend, repos_root, settings.path("spaces")),
            env_source=env_source, on_routes=on_routes, app_url=app_url,
            hub_upstream=hub_upstream or Upstream("127.0.0.1", settings.port), clock=clock,
            sleep_time_of=self._sleep_time, volumes_of=self._volumes, volume_limit_of=self._volume_limit,
            zero_gpu=zero_gpu)
        self.live = self.node.live
        self._tick: asyncio.Task[None] | None = None

    # ---- helpers -------------------------------------------------------------------------------------
    def _dir(self, space_id: str) -> Path:
        return self.node.dir(space_id)

    def build_log(self, space_id: str) -> LogFile:
        return self.node.build_log(space_id)

    def run_log(self, space_id: str) -> LogFile:
        return self.node.run_log(space_id)

    def runtime_extra(self, space_id: str) -> dict[str, Any]:
        """Extra runtime info: why the Space is not placed yet (a runtime that places: `scheduling`, per node in
        Kubernetes' words), and its ZeroGPU usage when it runs on a zero-* flavor."""
        why = self.runtime.pending_reason(space_id)
        extra: dict[str, Any] = {"scheduling": why} if why else {}
        if (live := self.live.get(space_id)) and live.starting is not None:
            extra["healthProbes"] = live.probes
        if live is not None:
            extra.update(self._tier_info(space_id, live))
        if self.zero_gpu is None:
            return extra
        summary = self.zero_gpu.space_summary(space_id)
        return {**extra, "zeroGpu": summary} if summary else extra

    def _tier_info(self, space_id: str, live: Live) -> dict[str, Any]:
        """spacehost's own runtime info: the tier, and with an instance its PSS (bytes) and CPU (% of a core
        over the last minute) at the last sample."""
        if live.instance is None:
            space = self.store.get_space(space_id)
            return {"tier": lifecycle.Tier.SLEEPING.value} if space and space.stage == SpaceStage.SLEEPING else {}
        tier = lifecycle.Tier.FROZEN if live.frozen else lifecycle.Tier.RUNNING
        out: dict[str, Any] = {"tier": tier.value,
                               "uptimeSeconds": round(self.node.clock.monotonic() - live.since)}
        if live.usage is not None:
            out["memory"] = {"pss": live.usage.pss_bytes, "processes": live.usage.processes}
        if (pct := lifecycle.cpu_percent(live.cpu)) is not None:
            out["cpuPercent"] = pct
        return out

    def shell_target(self, space_id: str) -> tuple[int | None, str | None]:
        """The process (or container) a shell enters. A shell is a visit: a frozen Space is thawed (the shell
        joins its cgroups, freezer included); without dev mode it may freeze again once idle."""
        live = self.live.get(space_id)
        inst = live.instance if live else None
        if live is not None and inst is not None:
            self.activity(space_id)
        return (inst.pid, inst.container_id) if inst else (None, None)

    def reload_target(self, space_id: str, *, visit: bool = True) -> tuple[str, Upstream] | None:
        """A hot reload is a visit too: a frozen Space is thawed before its reload server is called. A look
        (`visit=False`: the runtime view, polled by pages and clients) is not, or polling kept Spaces from freezing."""
        live = self.live.get(space_id)
        inst = live.instance if live else None
        target = reload_of(self.runtime.abilities, inst) if inst is not None else None
        if inst is None or target is None:
            return None
        if visit:
            self.activity(space_id)
        return inst.instance_id, target

    def zerogpu_quota(self, visitor_key: str) -> dict[str, Any] | None:
        """A visitor's remaining ZeroGPU quota today (None without a GPU pool)."""
        if self.zero_gpu_quota is None:
            return None
        return dict(self.zero_gpu_quota.quota_for(visitor_key).as_json())

    def set_zerogpu_overrides(self, overrides: dict[str, int]) -> bool:
        if self.zero_gpu_quota is None:
            return False
        self.zero_gpu_quota.set_quota_overrides(overrides)
        return True

    def building(self, space_id: str) -> bool:
        t = self.live.get(space_id)
        return bool(t and t.build_task and not t.build_task.done())

    # ---- lifecycle ----------------------------------------------------------------------------------
    async def start(self) -> None:
        """Recover: re-adopt what runs, resume interrupted builds, restart what should run."""
        adopted = {(i.space_id, i.sha): i for i in await self.runtime.adopt()}
        for space in self.store.list_spaces():
            sid = space.space_id
            live = self.node.live_of(sid)
            # Desired (the store) against actual (what was adopted): the serving version's instance is kept; a
            # start that was in flight (first version, redeploy, wake) runs again, next to what still serves.
            head = (load_artifact(self._dir(sid), space.head_sha)
                    if space.head_sha and space.stage in lifecycle.STARTING_STAGES else None)
            target = lifecycle.recovery_target(space.stage, space.serving_sha, space.head_sha, head is not None)
            art = head if target and target == space.head_sha and head else (
                load_artifact(self._dir(sid), target) if target else None)
            serving = art if target == space.serving_sha else (
                load_artifact(self._dir(sid), space.serving_sha) if space.serving_sha else None)
            live.artifact = serving or art
            inst = adopted.pop((sid, space.serving_sha or ""), None)
            if inst is not None:
                self._readmit_zero_gpu(space, inst)
                live.instance = inst
                if space.stage in lifecycle.STARTING_STAGES and art is not None and art.sha == inst.sha:
                    # the start finished while this process was down (a node kept running it): it serves
                    self.node.set(sid, stage=SpaceStage.RUNNING, serving_sha=inst.sha, error=None)
            if space.stage in (SpaceStage.BUILDING, SpaceStage.RUNNING_BUILDING) and space.head_sha:
                await self.pushed(sid, space.head_sha)
            elif art is not None and (inst is None or art.sha != inst.sha):
                self.node.spawn(deploy.deploy(self.node, sid, art))
        await asyncio.to_thread(self._remove_leftovers, {s.space_id for s in self.store.list_spaces()})
        for inst in adopted.values():
            await self.runtime.stop(inst)
        self.publish()
        self._tick = asyncio.create_task(reconcile.run_forever(self.node))

    def _remove_leftovers(self, known: set[str]) -> None:
        """Folders of Spaces the store no longer has (killed while deleting: the row goes first). Blocking."""
        root = self.settings.path("spaces")
        for owner in root.iterdir() if root.is_dir() else ():
            for d in owner.iterdir() if owner.is_dir() else ():
                if d.is_dir() and f"{owner.name}/{d.name}" not in known:
                    log.info("removing the folder of deleted Space %s/%s", owner.name, d.name)
                    shutil.rmtree(d, ignore_errors=True)

    def _readmit_zero_gpu(self, space: SpaceRecord, inst: Instance) -> None:
        """An adopted zero-* Space keeps its device-API URL (the token is stable per installation); the broker
        must admit it again and know its root process, or its next `@spaces.GPU` call gets 404."""
        if self.zero_gpu is not None and flavor(space.hardware).is_zero:
            self.zero_gpu.register_space(space.space_id, inst.pid or None)

    async def close(self, *, stop_apps: bool = False) -> None:
        """Stop the loop and cancel builds. `stop_apps`: also stop every Space (running or starting: SIGTERM,
        SIGKILL after STOP_GRACE_S, all at once) and its warm interpreters; otherwise they keep running for the
        next start to re-adopt."""
        if self._tick:
            self._tick.cancel()
        for live in self.live.values():
            if live.build_cancel:
                live.build_cancel.set()
        if stop_apps:
            await asyncio.gather(*(self._stop_space(sid, live) for sid, live in list(self.live.items())))
            await asyncio.to_thread(volume_fs.unmount_all, self.settings.path("volumes"))
        for t in list(self.node.bg):
            t.cancel()
        await self.node.http.aclose()
        await self.node.build_queue.close()

    async def _stop_space(self, space_id: str, live: Live) -> None:
        """Stop what runs or starts for the Space, and its warm interpreters (process) or spares (docker)."""
        live.gone = True
        await asyncio.gather(*(self.runtime.stop(i, grace_s=STOP_GRACE_S) for i in (live.instance, live.starting)
                               if i is not None))
        live.instance = live.starting = None
        await asyncio.to_thread(self.runtime.forget_space, space_id)

    async def pushed(self, space_id: str, sha: str, *, factory: bool = False) -> None:
        live = self.node.live_of(space_id)
        if live.build_cancel:
            live.build_cancel.set()  # a newer push supersedes the build in progress
        old_task = live.build_task
        serving = live.instance is not None or (live.artifact is not None and live.artifact.static_root)
        keep_good_build(self.build_log(space_id).path.parent)  # the page compares this build's phases with it
        self.build_log(space_id).reset()
        ahead = sum(1 for k in self.live if k != space_id and self.building(k))
        self.build_log(space_id).write(f"==> Queued behind {ahead} build{'s' * (ahead != 1)}")
        self.node.set(space_id, head_sha=sha, stage=SpaceStage.RUNNING_BUILDING if serving else SpaceStage.BUILDING, error=None)
        cancel = threading.Event()
        live.build_cancel = cancel
        live.build_task = asyncio.ensure_future(build.build(self.node, space_id, sha, factory, cancel, old_task))

    def _volumes(self, space: SpaceRecord) -> Volumes:
        """The Space's persistent volumes as (host dir, mount path, read-only), each dir made for uid 1000 and
        limited to its storage tier's size capped by the operator-wide limit (state.volumes.volume_limit). A
        runtime that places Spaces on nodes gets them relative to the data dir (volumes/OWNER/BUCKET[/SUB]):
        the node that runs the Space makes them under its own, with the limit the launch spec carries
        (`_volume_limit`; the server mounts nothing)."""
        vols = [("/".join(v.host_parts()), v.mount_path, v.read_only) for v in volumes(self.store, space.id)]
        if Ability.PLACEMENT in self.runtime.abilities:
            return tuple(vols)
        return volume_fs.bind_dirs(self.settings.data_dir, vols, self._volume_limit(space), APP_UID)

    def _volume_limit(self, space: SpaceRecord) -> int:
        """The size limit of the Space's volumes: its storage tier's size capped by the operator-wide limit."""
        return volume_limit(storage_tier(self.store, space.id), self.settings.storage_tier_bytes,
                            self.settings.volume_limit_bytes)

    def _sleep_time(self, space: SpaceRecord) -> int | None:
        """None (never) in dev mode: a Space being worked on stays up, as on HF."""
        return None if dev_mode(self.store, space.id) else _sleep_time(space)

    async def restart(self, space_id: str, *, factory: bool = False) -> None:
        space = self.store.get_space(space_id)
        if space is None:
            return
        if space.paused:
            self.node.set(space_id, paused=False)
        live = self.node.live_of(space_id)
        if factory or live.artifact is None:
            if space.head_sha:
                await self.pushed(space_id, space.head_sha, factory=factory)
            return
        self.node.spawn(deploy.deploy(self.node, space_id, live.artifact))

    def builds(self, space_id: str) -> list[str]:
        """Commits with a kept build of this Space, newest first (rollback targets)."""
        return kept_builds(self._dir(space_id))

    async def rollback(self, space_id: str, sha: str) -> None:
        """Redeploy a previous commit's build without rebuilding."""
        from core.errors import NotFound

        art = load_artifact(self._dir(space_id), sha)
        if art is None:
            raise NotFound(f"no kept build of {sha[:12]} for {space_id}; kept: {', '.join(self.builds(space_id))}")
        self.node.set(space_id, paused=False)
        self.node.spawn(deploy.deploy(self.node, space_id, art))

    async def env_changed(self, space_id: str) -> None:
        live = self.node.live_of(space_id)
        space = self.store.get_space(space_id)
        if space and live.artifact and not space.paused and (live.instance or space.stage == SpaceStage.RUNTIME_ERROR):
            self.node.spawn(deploy.deploy(self.node, space_id, live.artifact))

    async def pause(self, space_id: str) -> None:
        live = self.node.live_of(space_id)
        async with live.lock:
            inst, live.instance = live.instance, None
            self.node.set(space_id, paused=True, stage=SpaceStage.PAUSED)
            if inst:
                await self.runtime.stop(inst)

    async def deleted(self, space_id: str) -> None:
        """The Space left the store (deleted, or moved to another name; the hub removes the row first): stop
        what runs or starts for it, let its build and start give up, then remove every trace it left here —
        its route, warm interpreters or spare containers, images, and its folder (checkouts, kept builds, build
        and run logs), so a Space created again under this name starts empty."""
        live = self.live.pop(space_id, None)
        if live is not None:
            if live.build_cancel:
                live.build_cancel.set()
            await self._stop_space(space_id, live)
            await self._settle(space_id, live)
        else:
            await asyncio.to_thread(self.runtime.forget_space, space_id)
        if self.zero_gpu:
            self.zero_gpu.unregister_space(space_id)
        self.publish()
        # After the spares (forget_space): an image a container uses cannot be removed.
        try:
            await asyncio.to_thread(self.backend.remove_images, space_id)
        except Exception:
            log.warning("removing the images of deleted %s failed", space_id, exc_info=True)
        await asyncio.to_thread(shutil.rmtree, self._dir(space_id), True)

    async def _settle(self, space_id: str, live: Live) -> None:
        """Wait (bounded) until the Space's cancelled build and any start in flight have returned: neither
        may write into its folder once that is removed."""
        if live.build_task is not None:
            await asyncio.wait({live.build_task}, timeout=BUILD_GIVE_UP_S)  # neither raises nor cancels it
        try:
            await asyncio.wait_for(live.lock.acquire(), BUILD_GIVE_UP_S)  # deploy holds it while starting
        except TimeoutError:
            log.warning("a start of deleted %s did not give up within %.0fs", space_id, BUILD_GIVE_UP_S)
            return
        live.lock.release()

    # ---- visitors: activity and wake ----------------------------------------------------------------
    def activity(self, space_id: str) -> None:
        if (live := self.live.get(space_id)) is not None:
            live.last_activity = self.node.clock.monotonic()
            if live.frozen:  # a request reached it while it was being frozen, or a WebSocket stayed open
                self.node.spawn(sleep.thaw(self.node, live))

    async def wake(self, space_id: str) -> None:
        live = self.node.live_of(space_id)
        if live.instance is not None:  # frozen (or thawed by the request's activity a moment ago): a thaw
            live.last_activity = self.node.clock.monotonic()
            await sleep.thaw(self.node, live)
            return
        if live.waking is None or live.waking.done():
            live.last_activity = self.node.clock.monotonic()
            if live.artifact is not None:
                live.waking = self.node.spawn(deploy.deploy(self.node, space_id, live.artifact))
        await asyncio.shield(live.waking) if live.waking else None

    # ---- routes -------------------------------------------------------------------------------------
    def routes_changed(self) -> None:
        self.publish()

    def publish(self) -> None:
        self.node.publish()


def _sleep_time(space: SpaceRecord) -> int | None:
    return space.sleep_time if space.sleep_time is not None else flavor(space.hardware).default_sleep_s


def env_source_for(store: Store, box: Any) -> EnvSource:
    def source(space: SpaceRecord) -> tuple[dict[str, str], dict[str, str]]:
        variables = {k: r.value for k, r in store.kv(space.id, "variable").items()}
        secrets = {k: box.open(r.value) for k, r in store.kv(space.id, "secret").items()}
        return variables, secrets

    return source
