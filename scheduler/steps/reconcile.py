"""The reconcile loop: every TICK_S, each running instance goes through the named steps in order — health (did
it exit? then restart after a backoff, or RUNTIME_ERROR in a crash loop), then sleep (freeze, thaw, sleep,
sample) — and memory pressure is relieved. Level-triggered: a tick decides from what it sees now."""

from __future__ import annotations

import logging

from core.stages import SpaceStage
from scheduler.runtimes.base import ExitInfo
from scheduler.steps import deploy, health, sleep
from scheduler.steps.context import Node
from scheduler.steps.live import Live

log = logging.getLogger("spacehost.scheduler")
TICK_S = 1.0


async def run_forever(node: Node) -> None:
    while True:
        await node.clock.sleep(TICK_S)
        try:
            await tick(node)
        except Exception:
            log.exception("scheduler tick failed")


async def tick(node: Node) -> None:
    """One pass over every Space with a running instance (one being deployed or slept is skipped: its lock
    is held)."""
    now = node.clock.monotonic()
    for space_id, live in list(node.live.items()):
        inst = live.instance
        if inst is None or live.lock.locked():
            continue
        ended = await node.runtime.exited(inst)
        space = node.store.get_space(space_id)
        if space is None:
            continue
        if ended is not None:
            crashed(node, space_id, live, ended, now)
            continue
        view = sleep.idle_view(node, live, node.sleep_time_of(space))
        await sleep.apply(node, space_id, live, inst, sleep.idle_actions(view, now), now)
    await sleep.relieve_pressure(node)


def crashed(node: Node, space_id: str, live: Live, ended: ExitInfo, now: float) -> None:
    """The running instance ended by itself: restart it after its backoff, or RUNTIME_ERROR in a crash loop."""
    live.instance = None
    crash = health.on_crash(live.crashes, now, restartable=live.artifact is not None)
    live.crashes = crash.crashes
    rlog = node.run_log(space_id)
    rlog.write(f"==> The app stopped: {ended.reason}")
    if crash.delay is None or live.artifact is None:
        node.set(space_id, stage=SpaceStage.RUNTIME_ERROR, error=crash.error(ended.reason, rlog.tail(20)))
    else:
        node.set(space_id, stage=SpaceStage.APP_STARTING, error=crash.error(ended.reason, ""))
        node.spawn(deploy.restart_later(node, space_id, live.artifact, crash.delay))
    if node.zero_gpu:
        node.zero_gpu.space_died(space_id)
