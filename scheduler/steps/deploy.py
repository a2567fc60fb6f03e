"""Deploy step: start an artifact, wait until it is healthy, switch the route, drain and stop the old instance.
`plan` (what a deploy does with the Space as the store has it) and `failed` (the stage after a start that did
not come up) are the pure decisions; `deploy` is the effect."""

from __future__ import annotations

import asyncio
import logging
from enum import StrEnum
from typing import Any

from core.artifact import Artifact
from core.errors import SpacehostError
from core.hardware import flavor
from core.ids import SpaceId
from core.stages import Sdk, SpaceStage
from scheduler.env import runtime_env
from scheduler.runtimes.base import Ability, Instance, LaunchSpec
from scheduler.steps import health, sleep
from scheduler.steps.context import Node
from scheduler.steps.live import Live
from state.store import SpaceRecord

log = logging.getLogger("spacehost.scheduler")
DRAIN_GRACE_S = 10.0
START_ATTEMPTS = 2  # an app that exits before it ever answered is started once more
START_RETRY_DELAY_S = 1.0
STOP_GRACE_S = 5.0  # SIGTERM, then SIGKILL after this, when a Space is deleted or spacehost stops
KEEP_IMAGES = 3  # per Space, for instant rollback (docker backend); older ones are removed after a redeploy


class Plan(StrEnum):
    KEEP_PAUSED = "keep-paused"  # remember the artifact; a restart starts it
    SERVE_STATIC = "serve-static"  # the proxy serves its files: no instance
    WAIT_FOR_HARDWARE = "wait-for-hardware"  # this machine lacks its GPU flavor: APP_STARTING with the reason
    START = "start"


def plan(*, paused: bool, sdk: Sdk, waiting_for_hardware: str | None) -> Plan:
    if paused:
        return Plan.KEEP_PAUSED
    if sdk is Sdk.STATIC:
        return Plan.SERVE_STATIC
    return Plan.WAIT_FOR_HARDWARE if waiting_for_hardware is not None else Plan.START


def failed(*, serving_old: bool, sha: str, failure: str) -> dict[str, Any]:
    """The Space's fields after a start of `sha` that did not come up: the old version keeps serving (the
    failure shows in the runtime info), or there is none and it is a RUNTIME_ERROR."""
    if serving_old:
        return {"stage": SpaceStage.RUNNING, "error": f"new version {sha[:12]} failed: {failure}"}
    return {"stage": SpaceStage.RUNTIME_ERROR, "serving_sha": sha, "error": failure}


def retry_start(*, ready: bool, exited: bool, gone: bool, attempt: int) -> bool:
    """Start once more only an app that exited before it ever answered (Gradio, for one, gives up when its own
    first page load is slow on a busy machine), as a visitor's retry would, before calling it RUNTIME_ERROR."""
    return not ready and exited and not gone and attempt < START_ATTEMPTS


async def deploy(node: Node, space_id: str, art: Artifact) -> None:
    """Start `art`, wait until ready, switch the route, drain and stop the old instance."""
    live = node.live_of(space_id)
    async with live.lock:
        await sleep.thaw(node, live)  # a warm start forks from the frozen zygote; the old one drains
        space = node.store.get_space(space_id)
        if space is None:
            return
        old = live.instance
        waiting = None if space.paused or art.sdk is Sdk.STATIC else waiting_for_hardware(node, space)
        step = plan(paused=space.paused, sdk=art.sdk, waiting_for_hardware=waiting)
        if step is Plan.KEEP_PAUSED:
            live.artifact = art
            node.set(space_id, stage=SpaceStage.PAUSED, serving_sha=art.sha)
            return
        if step is Plan.SERVE_STATIC:
            live.instance, live.artifact = None, art
            node.set(space_id, stage=SpaceStage.RUNNING, serving_sha=art.sha, error=None)
            if old:
                await node.runtime.stop(old)
            return
        if step is Plan.WAIT_FOR_HARDWARE:
            live.artifact = art  # level-triggered: a hardware change or restart tries again
            node.set(space_id, stage=SpaceStage.APP_STARTING, serving_sha=art.sha, error=waiting)
            return
        node.set(space_id, stage=SpaceStage.RUNNING_APP_STARTING if old else SpaceStage.APP_STARTING)
        inst, failure = await start_ready(node, space, art, live)
        if live.gone:  # deleted or moved meanwhile: deleted() stopped what it saw, this is the rest
            if inst is not None:
                await node.runtime.stop(inst, grace_s=STOP_GRACE_S)
            return
        if inst is None:
            if old is None:
                live.artifact = art
            node.set(space_id, **failed(serving_old=old is not None, sha=art.sha, failure=failure))
            return
        if live.artifact is None or live.artifact.sha != art.sha:
            live.crashes = ()  # a new version starts with a clean slate; a restart keeps its history
        live.instance, live.artifact = inst, art
        live.last_activity = live.since = node.clock.monotonic()
        live.cpu, live.usage = (), None
        node.set(space_id, stage=SpaceStage.RUNNING, serving_sha=art.sha, error=None)
    if old is not None:
        node.spawn(drain_stop(node, old))


def waiting_for_hardware(node: Node, space: SpaceRecord) -> str | None:
    """Why this machine cannot run the Space's GPU flavor (None if it can). A runtime that places Spaces on
    nodes itself (PLACEMENT) says so through its own pending reason instead."""
    if Ability.PLACEMENT in node.runtime.abilities:
        return None
    from scheduler.hardware import local_gpus, waiting_for_hardware

    return waiting_for_hardware(flavor(space.hardware), local_gpus())


async def start_ready(node: Node, space: SpaceRecord, art: Artifact, live: Live) -> tuple[Instance | None, str]:
    """Start `art` for the Space and probe it until ready; (the ready instance or None, why not)."""
    sid = space.space_id
    variables, secrets = node.env_source(space)
    fl = flavor(space.hardware)
    zurl = node.zero_gpu.register_space(sid) if (node.zero_gpu and fl.is_zero) else None
    env = runtime_env(SpaceId.parse(sid), art, fl, space_host=node.app_url(space).split("://", 1)[1],
                      hub_url=node.settings.hub_url, variables=variables, secrets=secrets, zero_gpu_url=zurl)
    rlog = node.run_log(sid)
    failure = ""
    for attempt in range(1, START_ATTEMPTS + 1):
        rlog.write(f"==> Starting {sid} at {art.sha[:12]} ({fl.hardware.value})")
        seq = len(live.crashes) + int(node.clock.now() * 1000) % 100000
        spec = LaunchSpec(instance_id=f"{space.owner}--{space.name}--{art.sha[:7]}--{seq}", artifact=art,
                          env=env, flavor=fl, log_path=str(rlog.path),
                          secret_values=tuple(v for v in secrets.values() if v), volumes=node.volumes_of(space),
                          volume_limit=node.volume_limit_of(space))
        try:
            inst = await node.runtime.start(spec)
        except SpacehostError as e:
            rlog.write(f"==> Not started: {e.message}")
            return None, e.message
        if zurl and inst.pid:
            node.zero_gpu.broker.set_root_pid(sid, inst.pid)  # overrunning GPU workers are killed in this tree
        live.starting = inst
        try:
            ready, failure, exited = await health.until_ready(node, sid, live, inst, art, rlog)
        finally:
            live.starting = None
        if not retry_start(ready=ready is not None, exited=exited, gone=live.gone, attempt=attempt):
            return ready, failure
        rlog.write(f"==> The app exited before it answered; starting it again ({attempt + 1}/{START_ATTEMPTS})")
        await node.clock.sleep(START_RETRY_DELAY_S)
    return None, failure


async def restart_later(node: Node, space_id: str, art: Artifact, delay: float) -> None:
    """A crashed instance's restart, after its backoff."""
    await node.clock.sleep(delay)
    await deploy(node, space_id, art)


async def drain_stop(node: Node, inst: Instance) -> None:
    """Let the replaced instance finish its requests, stop it, then collect the Space's old images."""
    await node.clock.sleep(DRAIN_GRACE_S)
    await node.runtime.stop(inst)
    await collect_images(node, inst.space_id)


async def collect_images(node: Node, space_id: str) -> None:
    """Keep the newest KEEP_IMAGES images of the Space (and the one serving); the engine keeps any image a
    container still uses; backends without images remove nothing."""
    live = node.live.get(space_id)
    protect = {live.artifact.image} if live and live.artifact and live.artifact.image else set()
    try:
        removed = await asyncio.to_thread(node.backend.gc_images, space_id, KEEP_IMAGES, protect)
    except Exception:  # the engine may be busy or gone; the next redeploy collects again
        log.warning("image collection of %s failed", space_id, exc_info=True)
        return
    if removed:
        log.info("removed old images of %s: %s", space_id, ", ".join(removed))
