"""The control loop of one node (embedded mode): builds, starts, probes, swaps, restarts, sleeps and wakes
Spaces, and publishes the route table. Decisions are in scheduler.lifecycle; this module does the effects.

Goal state lives in the store (head_sha, serving_sha, stage, paused); what runs is re-adopted from the
runtime after a restart, so killing spacehost at any moment loses nothing."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from builder.backend import BuildBackend, BuildContext
from builder.detect import NoAppFile
from builder.pipeline import kept_builds, load_artifact
from builder.queue import BuildQueue, BuildRequest, InlineQueue
from core.artifact import Artifact
from core.errors import BuildFailed, ConfigError, SpacehostError
from core.hardware import flavor
from core.ids import SpaceId
from core.routes import Route, RouteState, RouteTable, Upstream, reload_route
from core.settings import Settings
from core.stages import Sdk
from hub.phases import keep_good_build
from sandbox.bwrap import APP_UID
from scheduler import lifecycle
from scheduler.env import runtime_env
from scheduler.runtimes.base import Instance, LaunchSpec, Runtime, Usage
from scheduler.runtimes.freezer import mem_available
from sdk_templates import TEMPLATES
from state.logs import LogFile
from state.store import SpaceRecord, Store

log = logging.getLogger("spacehost.scheduler")
DRAIN_GRACE_S = 10.0
USAGE_EVERY_S = 15.0  # PSS and CPU samples of running Spaces (smaps_rollup costs ~1 ms per process)
FREEZE_RETRY_S = 10.0  # a freeze that did not settle (a task in an uninterruptible wait, a loaded host)
START_ATTEMPTS = 2  # an app that exits before it ever answered is started once more
START_RETRY_DELAY_S = 1.0
STOP_GRACE_S = 5.0  # SIGTERM, then SIGKILL after this, when a Space is deleted or spacehost stops
BUILD_GIVE_UP_S = 30.0  # how long a deletion waits for a cancelled build to leave the Space's folder
KEEP_IMAGES = 3  # per Space, for instant rollback (docker backend); older ones are removed after a redeploy
EnvSource = Callable[[SpaceRecord], tuple[dict[str, str], dict[str, str]]]  # (variables, secrets)


@dataclass
class Live:
    """What runs for one Space, in memory."""

    instance: Instance | None = None
    artifact: Artifact | None = None
    last_activity: float = field(default_factory=time.monotonic)
    crashes: tuple[float, ...] = ()
    build_cancel: threading.Event | None = None
    build_task: asyncio.Task[None] | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    waking: asyncio.Task[None] | None = None
    starting: Instance | None = None  # started, not yet ready (not yet `instance`)
    gone: bool = False  # the Space was deleted or moved: whatever starts for it is stopped
    probes: int = 0  # health probes of the instance starting now (the runtime API's `healthProbes`)
    frozen: bool = False  # the frozen tier: `instance` is frozen (lifecycle.Tier)
    freeze_failed: float = -1e9  # when the last freeze did not settle (or this runtime cannot): retried later
    usage: Usage | None = None  # `instance`'s PSS and CPU at the last sample
    cpu: tuple[tuple[float, int], ...] = ()  # (monotonic time, CPU ns) samples of the last minute
    since: float = field(default_factory=time.monotonic)  # when `instance` became ready (adopted: when seen)


class Controller:
    def __init__(self, settings: Settings, store: Store, repos_root: Path, runtime: Runtime,
                 backend: BuildBackend, env_source: EnvSource, on_routes: Callable[[RouteTable], None],
                 app_url: Callable[[SpaceRecord], str], zero_gpu: Any = None,
                 hub_upstream: Upstream | None = None, build_queue: BuildQueue | None = None,
                 zero_gpu_quota: Any = None) -> None:
        """`zero_gpu`: this host's broker (embedded); `zero_gpu_quota`: where quotas are read and set when that is
        not the broker (cluster: the ledger in Redis that every node's broker charges)."""
        self.settings, self.store, self.repos_root = settings, store, repos_root
        self.build_queue = build_queue or InlineQueue(backend, repos_root, settings.path("spaces"))
        self.runtime, self.backend, self.env_source = runtime, backend, env_source
        self.on_routes, self.app_url, self.zero_gpu = on_routes, app_url, zero_gpu
        self.zero_gpu_quota = zero_gpu_quota or zero_gpu
        self.hub_upstream = hub_upstream or Upstream("127.0.0.1", settings.port)
        self.live: dict[str, Live] = {}
        self._table: RouteTable | None = None
        self._tick: asyncio.Task[None] | None = None
        self._http = httpx.AsyncClient(timeout=2.0)
        self._bg: set[asyncio.Task[Any]] = set()

    # ---- helpers -------------------------------------------------------------------------------------
    def _live(self, space_id: str) -> Live:
        return self.live.setdefault(space_id, Live())

    def _dir(self, space_id: str) -> Path:
        return self.settings.path("spaces", space_id)

    def build_log(self, space_id: str) -> LogFile:
        return LogFile(self._dir(space_id) / "build.log")

    def run_log(self, space_id: str) -> LogFile:
        return LogFile(self._dir(space_id) / "run.log")

    def _set(self, space_id: str, **fields: Any) -> SpaceRecord | None:
        rec = self.store.update_space(space_id, **fields)
        self.publish()
        return rec

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._bg.add(task)
        task.add_done_callback(self._bg.discard)
        return task

    def runtime_extra(self, space_id: str) -> dict[str, Any]:
        """Extra runtime info: why the Space is not placed yet (cluster runtime: `scheduling`, per node in
        Kubernetes' words), and its ZeroGPU usage when it runs on a zero-* flavor."""
        why = getattr(self.runtime, "scheduling", {}).get(space_id)
        extra: dict[str, Any] = {"scheduling": why} if why else {}
        if (live := self.live.get(space_id)) and live.starting is not None:
            extra["healthProbes"] = live.probes
        if live is not None:
            extra.update(self._tier_info(space_id, live))
        if self.zero_gpu is None or not hasattr(self.zero_gpu, "space_summary"):
            return extra
        summary = self.zero_gpu.space_summary(space_id)
        return {**extra, "zeroGpu": summary} if summary else extra

    def _tier_info(self, space_id: str, live: Live) -> dict[str, Any]:
        """spacehost's own runtime info: the tier, and with an instance its PSS (bytes) and CPU (% of a core
        over the last minute) at the last sample."""
        if live.instance is None:
            space = self.store.get_space(space_id)
            return {"tier": lifecycle.Tier.SLEEPING.value} if space and space.stage == "SLEEPING" else {}
        tier = lifecycle.Tier.FROZEN if live.frozen else lifecycle.Tier.RUNNING
        out: dict[str, Any] = {"tier": tier.value, "uptimeSeconds": round(time.monotonic() - live.since)}
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
        if inst is None or self.runtime.name != "process":
            return None
        if visit:
            self.activity(space_id)
        route = reload_route(Route(space_id, "", RouteState.SERVING, upstream=inst.upstream))
        return (inst.instance_id, route.upstream) if route is not None and route.upstream is not None else None

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
            live = self._live(sid)
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
                    self._set(sid, stage="RUNNING", serving_sha=inst.sha, error=None)
            if space.stage in ("BUILDING", "RUNNING_BUILDING") and space.head_sha:
                await self.pushed(sid, space.head_sha)
            elif art is not None and (inst is None or art.sha != inst.sha):
                self._spawn(self._deploy(sid, art))
        await asyncio.to_thread(self._remove_leftovers, {s.space_id for s in self.store.list_spaces()})
        for inst in adopted.values():
            await self.runtime.stop(inst)
        self.publish()
        self._tick = asyncio.create_task(self._loop())

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
        for t in list(self._bg):
            t.cancel()
        await self._http.aclose()
        await self.build_queue.close()

    async def _stop_space(self, space_id: str, live: Live) -> None:
        """Stop what runs or starts for the Space, and its warm interpreters (process) or spares (docker)."""
        live.gone = True
        await asyncio.gather(*(self.runtime.stop(i, grace_s=STOP_GRACE_S) for i in (live.instance, live.starting)
                               if i is not None))
        live.instance = live.starting = None
        await asyncio.to_thread(self.runtime.forget_space, space_id)

    async def pushed(self, space_id: str, sha: str, *, factory: bool = False) -> None:
        live = self._live(space_id)
        if live.build_cancel:
            live.build_cancel.set()  # a newer push supersedes the build in progress
        old_task = live.build_task
        serving = live.instance is not None or (live.artifact is not None and live.artifact.static_root)
        keep_good_build(self.build_log(space_id).path.parent)  # the page compares this build's phases with it
        self.build_log(space_id).reset()
        ahead = sum(1 for k in self.live if k != space_id and self.building(k))
        self.build_log(space_id).write(f"==> Queued behind {ahead} build{'s' * (ahead != 1)}")
        self._set(space_id, head_sha=sha, stage="RUNNING_BUILDING" if serving else "BUILDING", error=None)
        cancel = threading.Event()
        live.build_cancel = cancel
        live.build_task = asyncio.ensure_future(self._build(space_id, sha, factory, cancel, old_task))

    async def _build(self, space_id: str, sha: str, factory: bool, cancel: threading.Event,
                     previous: asyncio.Task[None] | None) -> None:
        if previous is not None:
            with contextlib.suppress(BaseException):
                await previous
        blog = self.build_log(space_id)
        space = self.store.get_space(space_id)
        if space is None or cancel.is_set():
            return
        variables, secrets = self.env_source(space)
        ctx = BuildContext(log=_masking(blog.write, secrets.values()), cancel=cancel, secrets=secrets,
                           variables=variables, no_cache=factory)
        live = self._live(space_id)
        serving = live.instance is not None or bool(live.artifact and live.artifact.static_root)
        try:
            art = await self.build_queue.run(BuildRequest.of(space_id, sha, ctx), ctx)
        except (ConfigError, NoAppFile, BuildFailed, SpacehostError) as e:
            if cancel.is_set():
                return
            stage = ("CONFIG_ERROR" if isinstance(e, ConfigError) else "NO_APP_FILE" if isinstance(e, NoAppFile)
                     else "BUILD_ERROR")
            blog.write(f"==> {stage}: {e.message}")
            tail = getattr(e, "log_tail", "")
            error = e.message + (f"\n{tail}" if tail else "")
            if serving:  # the previous version keeps serving; the failure shows in the runtime info
                self._set(space_id, stage="RUNNING", error=f"{stage} for {sha[:12]}: {error}")
            else:
                self._set(space_id, stage=stage, error=error)
            return
        except Exception as e:  # a bug, not the user's fault: still say what happened
            log.exception("build of %s failed", space_id)
            blog.write(f"==> BUILD_ERROR: internal error: {e!r}")
            self._set(space_id, stage="RUNNING" if serving else "BUILD_ERROR", error=f"internal error: {e!r}")
            return
        if cancel.is_set():
            return
        self._set(space_id, sdk=art.sdk.value)
        await self._deploy(space_id, art)

    async def _deploy(self, space_id: str, art: Artifact) -> None:
        """Start `art`, wait until ready, switch the route, drain and stop the old instance."""
        live = self._live(space_id)
        async with live.lock:
            await self._thaw(space_id, live)  # a warm start forks from the frozen zygote; the old one drains
            space = self.store.get_space(space_id)
            if space is None:
                return
            if space.paused:
                live.artifact = art
                self._set(space_id, stage="PAUSED", serving_sha=art.sha)
                return
            if art.sdk is Sdk.STATIC:
                old, live.instance, live.artifact = live.instance, None, art
                self._set(space_id, stage="RUNNING", serving_sha=art.sha, error=None)
                if old:
                    await self.runtime.stop(old)
                return
            old = live.instance
            if (waiting := self._waiting_for_hardware(space)) is not None:
                live.artifact = art  # level-triggered: a hardware change or restart tries again
                self._set(space_id, stage="APP_STARTING", serving_sha=art.sha, error=waiting)
                return
            self._set(space_id, stage="RUNNING_APP_STARTING" if old else "APP_STARTING")
            inst, failure = await self._start_ready(space, art, live)
            if live.gone:  # deleted or moved meanwhile: deleted() stopped what it saw, this is the rest
                if inst is not None:
                    await self.runtime.stop(inst, grace_s=STOP_GRACE_S)
                return
            if inst is None:
                if old is not None:
                    self._set(space_id, stage="RUNNING", error=f"new version {art.sha[:12]} failed: {failure}")
                else:
                    live.artifact = art
                    self._set(space_id, stage="RUNTIME_ERROR", serving_sha=art.sha, error=failure)
                return
            if live.artifact is None or live.artifact.sha != art.sha:
                live.crashes = ()  # a new version starts with a clean slate; a restart keeps its history
            live.instance, live.artifact = inst, art
            live.last_activity = live.since = time.monotonic()
            live.cpu, live.usage = (), None
            self._set(space_id, stage="RUNNING", serving_sha=art.sha, error=None)
        if old is not None:
            self._spawn(self._drain_stop(old))

    async def _drain_stop(self, inst: Instance) -> None:
        await asyncio.sleep(DRAIN_GRACE_S)
        await self.runtime.stop(inst)
        await self._collect_images(inst.space_id)

    async def _collect_images(self, space_id: str) -> None:
        """Keep the newest KEEP_IMAGES images of the Space (and the one serving); the engine keeps any image a
        container still uses. Only build backends with images (docker) have `gc_images`."""
        gc = getattr(self.backend, "gc_images", None)
        if gc is None:
            return
        live = self.live.get(space_id)
        protect = {live.artifact.image} if live and live.artifact and live.artifact.image else set()
        try:
            removed = await asyncio.to_thread(gc, space_id, KEEP_IMAGES, protect)
        except Exception:  # the engine may be busy or gone; the next redeploy collects again
            log.warning("image collection of %s failed", space_id, exc_info=True)
            return
        if removed:
            log.info("removed old images of %s: %s", space_id, ", ".join(removed))

    def _waiting_for_hardware(self, space: SpaceRecord) -> str | None:
        """Why this machine cannot run the Space's GPU flavor (None if it can). Cluster mode: placement says."""
        if self.runtime.name == "cluster":
            return None
        from scheduler.hardware import local_gpus, waiting_for_hardware

        return waiting_for_hardware(flavor(space.hardware), local_gpus())

    async def _start_ready(self, space: SpaceRecord, art: Artifact, live: Live) -> tuple[Instance | None, str]:
        sid = space.space_id
        variables, secrets = self.env_source(space)
        fl = flavor(space.hardware)
        zurl = self.zero_gpu.register_space(sid) if (self.zero_gpu and fl.is_zero) else None
        env = runtime_env(SpaceId.parse(sid), art, fl, space_host=self.app_url(space).split("://", 1)[1],
                          hub_url=self.settings.hub_url, variables=variables, secrets=secrets, zero_gpu_url=zurl)
        rlog = self.run_log(sid)
        failure = ""
        for attempt in range(1, START_ATTEMPTS + 1):
            rlog.write(f"==> Starting {sid} at {art.sha[:12]} ({fl.hardware.value})")
            seq = len(live.crashes) + int(time.time() * 1000) % 100000
            spec = LaunchSpec(instance_id=f"{space.owner}--{space.name}--{art.sha[:7]}--{seq}", artifact=art,
                              env=env, flavor=fl, log_path=str(rlog.path),
                              secret_values=tuple(v for v in secrets.values() if v), volumes=self._volumes(space))
            try:
                inst = await self.runtime.start(spec)
            except SpacehostError as e:
                rlog.write(f"==> Not started: {e.message}")
                return None, e.message
            if zurl and inst.pid:
                self.zero_gpu.broker.set_root_pid(sid, inst.pid)  # overrunning GPU workers are killed in this tree
            live.starting = inst
            try:
                ready, failure, exited = await self._until_ready(sid, live, inst, art, rlog)
            finally:
                live.starting = None
            if ready is not None or not exited or live.gone or attempt == START_ATTEMPTS:
                return ready, failure
            # Exited before it ever answered. Gradio, for one, gives up when its own first page load is slow (a
            # busy machine): one more start, as a visitor's retry would, before calling it a RUNTIME_ERROR.
            rlog.write(f"==> The app exited before it answered; starting it again ({attempt + 1}/{START_ATTEMPTS})")
            await asyncio.sleep(START_RETRY_DELAY_S)
        return None, failure

    def _volumes(self, space: SpaceRecord) -> tuple[tuple[str, str, bool], ...]:
        """The Space's persistent volumes as (host dir, mount path, read-only), each dir made for uid 1000."""
        from hub.space_settings import volumes

        out = []
        for v in volumes(self.store, space.id):
            host = self.settings.path(*v.host_parts())
            if not host.is_dir():
                host.mkdir(parents=True, mode=0o755)
                with contextlib.suppress(PermissionError):
                    os.chown(host, APP_UID, APP_UID)
            out.append((str(host), v.mount_path, v.read_only))
        return tuple(out)

    def _sleep_time(self, space: SpaceRecord) -> int | None:
        """None (never) in dev mode: a Space being worked on stays up, as on HF."""
        from hub.space_settings import dev_mode

        return None if dev_mode(self.store, space.id) else _sleep_time(space)

    async def _until_ready(self, sid: str, live: Live, inst: Instance, art: Artifact,
                           rlog: LogFile) -> tuple[Instance | None, str, bool]:
        """Probe the started `inst` until it answers (returned), exits, times out or its Space is gone;
        (the instance or None, why not, whether it exited by itself)."""
        deadline = time.monotonic() + art.config.startup_timeout_s
        path = TEMPLATES[art.sdk].health_path
        url = f"http://{inst.upstream.host}:{inst.upstream.port}{path}"
        live.probes = 0
        while time.monotonic() < deadline and not live.gone:
            live.probes += 1
            ended = await self.runtime.exited(inst)
            if ended is not None:
                await asyncio.sleep(0.2)  # let the log reader flush the last lines
                return None, f"{ended.reason}\n{rlog.tail(20)}", True
            with contextlib.suppress(httpx.HTTPError):
                r = await self._http.get(url, headers={"X-Spacehost-Probe": "1"})
                if r.status_code < 500:
                    rlog.write(f"==> Ready: {sid} answers on {inst.upstream.host}:{inst.upstream.port}")
                    return inst, "", False
            await asyncio.sleep(0.05)  # a warm start answers in ~0.3-0.5 s: poll finely
        await self.runtime.stop(inst)
        return None, f"the app did not answer within {art.config.startup_timeout_s:.0f}s\n{rlog.tail(20)}", False

    async def restart(self, space_id: str, *, factory: bool = False) -> None:
        space = self.store.get_space(space_id)
        if space is None:
            return
        if space.paused:
            self._set(space_id, paused=False)
        live = self._live(space_id)
        if factory or live.artifact is None:
            if space.head_sha:
                await self.pushed(space_id, space.head_sha, factory=factory)
            return
        self._spawn(self._deploy(space_id, live.artifact))

    def builds(self, space_id: str) -> list[str]:
        """Commits with a kept build of this Space, newest first (rollback targets)."""
        return kept_builds(self._dir(space_id))

    async def rollback(self, space_id: str, sha: str) -> None:
        """Redeploy a previous commit's build without rebuilding."""
        from core.errors import NotFound

        art = load_artifact(self._dir(space_id), sha)
        if art is None:
            raise NotFound(f"no kept build of {sha[:12]} for {space_id}; kept: {', '.join(self.builds(space_id))}")
        self._set(space_id, paused=False)
        self._spawn(self._deploy(space_id, art))

    async def env_changed(self, space_id: str) -> None:
        live = self._live(space_id)
        space = self.store.get_space(space_id)
        if space and live.artifact and not space.paused and (live.instance or space.stage == "RUNTIME_ERROR"):
            self._spawn(self._deploy(space_id, live.artifact))

    async def pause(self, space_id: str) -> None:
        live = self._live(space_id)
        async with live.lock:
            inst, live.instance = live.instance, None
            self._set(space_id, paused=True, stage="PAUSED")
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
        if (remove := getattr(self.backend, "remove_images", None)) is not None:
            try:
                await asyncio.to_thread(remove, space_id)
            except Exception:
                log.warning("removing the images of deleted %s failed", space_id, exc_info=True)
        await asyncio.to_thread(shutil.rmtree, self._dir(space_id), True)

    async def _settle(self, space_id: str, live: Live) -> None:
        """Wait (bounded) until the Space's cancelled build and any start in flight have returned: neither
        may write into its folder once that is removed."""
        if live.build_task is not None:
            await asyncio.wait({live.build_task}, timeout=BUILD_GIVE_UP_S)  # neither raises nor cancels it
        try:
            await asyncio.wait_for(live.lock.acquire(), BUILD_GIVE_UP_S)  # _deploy holds it while starting
        except TimeoutError:
            log.warning("a start of deleted %s did not give up within %.0fs", space_id, BUILD_GIVE_UP_S)
            return
        live.lock.release()

    # ---- visitors: activity and wake ----------------------------------------------------------------
    def activity(self, space_id: str) -> None:
        if (live := self.live.get(space_id)) is not None:
            live.last_activity = time.monotonic()
            if live.frozen:  # a request reached it while it was being frozen, or a WebSocket stayed open
                self._spawn(self._thaw(space_id, live))

    async def wake(self, space_id: str) -> None:
        live = self._live(space_id)
        if live.instance is not None:  # frozen (or thawed by the request's activity a moment ago): a thaw
            live.last_activity = time.monotonic()
            await self._thaw(space_id, live)
            return
        if live.waking is None or live.waking.done():
            live.last_activity = time.monotonic()
            if live.artifact is not None:
                live.waking = self._spawn(self._deploy(space_id, live.artifact))
        await asyncio.shield(live.waking) if live.waking else None

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            try:
                await self._check()
            except Exception:
                log.exception("scheduler tick failed")

    async def _thaw(self, space_id: str, live: Live) -> None:
        """Leave the frozen tier (idempotent): the instance runs again, the route serves."""
        if not live.frozen:
            return
        live.frozen = False
        if live.instance is not None:
            await self.runtime.thaw(live.instance)
        self.publish()

    async def _freeze(self, space_id: str, live: Live, inst: Instance) -> None:
        since = live.last_activity
        if not await self.runtime.freeze(inst):
            live.freeze_failed = time.monotonic()
            log.info("%s did not freeze (retried in %.0f s)", space_id, FREEZE_RETRY_S)
            return
        live.frozen = True
        if live.last_activity != since or live.instance is not inst:  # a visitor came while it froze
            await self._thaw(space_id, live)
            return
        self.publish()

    async def _sleep(self, space_id: str, live: Live, inst: Instance, why: str) -> None:
        async with live.lock:
            live.instance = None
            live.frozen = False
            self._set(space_id, stage="SLEEPING")
            self.run_log(space_id).write(f"==> Sleeping {why}")
            await self.runtime.stop(inst)  # thaws a frozen one first

    async def _sample(self, live: Live, inst: Instance, now: float) -> None:
        if live.cpu and now - live.cpu[-1][0] < USAGE_EVERY_S:
            return
        usage = await self.runtime.usage(inst)
        live.usage = usage
        if usage is not None and usage.cpu_ns is not None:
            live.cpu = (*(s for s in live.cpu if now - s[0] <= 75.0), (now, usage.cpu_ns))

    async def _check(self) -> None:
        now = time.monotonic()
        for space_id, live in list(self.live.items()):
            inst = live.instance
            if inst is None or live.lock.locked():
                continue
            ended = await self.runtime.exited(inst)
            space = self.store.get_space(space_id)
            if space is None:
                continue
            if ended is not None:
                live.instance = None
                live.crashes = (*live.crashes, now)
                delay = lifecycle.restart_delay(live.crashes, now)
                self.run_log(space_id).write(f"==> The app stopped: {ended.reason}")
                if delay is None or live.artifact is None:
                    self._set(space_id, stage="RUNTIME_ERROR", error=f"{ended.reason} (crash loop)\n"
                              f"{self.run_log(space_id).tail(20)}")
                else:
                    self._set(space_id, stage="APP_STARTING", error=f"{ended.reason}; restarting in {delay:.0f}s")
                    self._spawn(self._restart_later(space_id, live.artifact, delay))
                if self.zero_gpu:
                    self.zero_gpu.space_died(space_id)
                continue
            sleep_time = self._sleep_time(space)
            tier = lifecycle.idle_tier(sleep_time, self.settings.freeze_after_s, live.last_activity, now)
            if tier is lifecycle.Tier.SLEEPING:
                await self._sleep(space_id, live, inst, "after inactivity")
                continue
            if tier is lifecycle.Tier.FROZEN and not live.frozen and now - live.freeze_failed >= FREEZE_RETRY_S:
                await self._freeze(space_id, live, inst)
            elif tier is lifecycle.Tier.RUNNING and live.frozen:  # dev mode turned on, or sleep turned off
                await self._thaw(space_id, live)
            await self._sample(live, inst, now)
        frozen = {sid: lv.last_activity for sid, lv in self.live.items() if lv.frozen and lv.instance}
        victim = lifecycle.pressure_victim(frozen, await asyncio.to_thread(mem_available),
                                           self.settings.min_available_mb << 20) if frozen else None
        if victim is not None and (lv := self.live[victim]).instance is not None:
            await self._sleep(victim, lv, lv.instance, "under memory pressure (MemAvailable below "
                              f"{self.settings.min_available_mb} MiB)")

    async def _restart_later(self, space_id: str, art: Artifact, delay: float) -> None:
        await asyncio.sleep(delay)
        await self._deploy(space_id, art)

    # ---- routes -------------------------------------------------------------------------------------
    def routes_changed(self) -> None:
        self.publish()

    def publish(self) -> None:
        views = []
        domains = self.store.domains()
        for space in self.store.list_spaces():
            live = self.live.get(space.space_id) or Live()
            cfg = live.artifact.config if live.artifact else None
            views.append(lifecycle.SpaceView(
                space_id=space.space_id, subdomain=SpaceId(space.owner, space.name).subdomain, stage=space.stage,
                private=space.private, direct_port=space.direct_port,
                upstream=live.instance.upstream if live.instance else None,
                static_root=live.artifact.static_root if live.artifact and live.artifact.sdk is Sdk.STATIC else None,
                headers=cfg.custom_headers if cfg else (), disable_embedding=bool(cfg and cfg.disable_embedding),
                zero_gpu=flavor(space.hardware).is_zero, error=space.error,
                custom_domains=domains.get(space.id, ()), frozen=live.frozen and live.instance is not None,
            ))
        table = RouteTable(self.settings.domain, self.hub_upstream, tuple(lifecycle.route_for(v) for v in views),
                           spaces_domain=self.settings.spaces_domain)
        if table != self._table:
            self._table = table
            self.on_routes(table)


def _sleep_time(space: SpaceRecord) -> int | None:
    return space.sleep_time if space.sleep_time is not None else flavor(space.hardware).default_sleep_s


def _masking(write: Callable[[str], None], secrets: Any) -> Callable[[str], None]:
    values = sorted((v for v in secrets if v and len(v) >= 3), key=len, reverse=True)

    def masked(line: str) -> None:
        for v in values:
            line = line.replace(v, "***")
        write(line)

    return masked


def env_source_for(store: Store, box: Any) -> EnvSource:
    def source(space: SpaceRecord) -> tuple[dict[str, str], dict[str, str]]:
        variables = {k: r.value for k, r in store.kv(space.id, "variable").items()}
        secrets = {k: box.open(r.value) for k, r in store.kv(space.id, "secret").items()}
        return variables, secrets

    return source


