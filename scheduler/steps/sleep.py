"""Sleep step: an idle instance is frozen, then killed (SLEEPING) after its sleep time; a visit thaws it; under
memory pressure the longest-idle frozen one is killed first; running ones are sampled for their PSS and CPU.
`idle_actions` is the pure decision per instance; the rest are the thin effects."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from enum import StrEnum

from core.stages import SpaceStage
from scheduler import lifecycle
from scheduler.runtimes.base import Ability, Instance
from scheduler.runtimes.freezer import mem_available
from scheduler.steps.context import Node
from scheduler.steps.live import Live

log = logging.getLogger("spacehost.scheduler")
USAGE_EVERY_S = 15.0  # PSS and CPU samples of running Spaces (smaps_rollup costs ~1 ms per process)
CPU_WINDOW_S = 75.0  # samples kept: a minute's CPU percentage and one sample before it
FREEZE_RETRY_S = 10.0  # a freeze that did not settle (a task in an uninterruptible wait, a loaded host)


class Idle(StrEnum):
    SLEEP = "sleep"  # kill it: the Space is SLEEPING, a request starts it again
    FREEZE = "freeze"
    THAW = "thaw"
    SAMPLE = "sample"  # measure its PSS and CPU


@dataclass(frozen=True)
class IdleView:
    """What the idle decision of one running instance depends on."""

    sleep_time_s: int | None  # None or -1: never (dev mode, or the owner's choice)
    freeze_after_s: int  # 0: never
    last_activity: float
    frozen: bool
    freeze_failed: float  # when the last freeze did not settle
    last_sample: float | None  # when its usage was last measured
    abilities: frozenset[Ability]


def idle_actions(v: IdleView, now: float) -> list[Idle]:
    """The actions for one running instance at `now`, in order: asleep after its sleep time (nothing else);
    frozen once idle long enough, unless a freeze failed within FREEZE_RETRY_S or the runtime cannot; thawed
    when it should run (dev mode turned on, sleep turned off); sampled every USAGE_EVERY_S where measurable."""
    tier = lifecycle.idle_tier(v.sleep_time_s, v.freeze_after_s, v.last_activity, now)
    if tier is lifecycle.Tier.SLEEPING:
        return [Idle.SLEEP]
    out = []
    if (tier is lifecycle.Tier.FROZEN and not v.frozen and Ability.FREEZE in v.abilities
            and now - v.freeze_failed >= FREEZE_RETRY_S):
        out.append(Idle.FREEZE)
    elif tier is lifecycle.Tier.RUNNING and v.frozen:
        out.append(Idle.THAW)
    if Ability.USAGE in v.abilities and (v.last_sample is None or now - v.last_sample >= USAGE_EVERY_S):
        out.append(Idle.SAMPLE)
    return out


def idle_view(node: Node, live: Live, sleep_time_s: int | None) -> IdleView:
    return IdleView(sleep_time_s, node.settings.freeze_after_s, live.last_activity, live.frozen,
                    live.freeze_failed, live.cpu[-1][0] if live.cpu else None, node.runtime.abilities)


async def apply(node: Node, space_id: str, live: Live, inst: Instance, actions: list[Idle], now: float) -> None:
    """Carry out `idle_actions`' answer for the Space's running `inst`."""
    for action in actions:
        if action is Idle.SLEEP:
            await sleep(node, space_id, live, inst, "after inactivity")
        elif action is Idle.FREEZE:
            await freeze(node, space_id, live, inst)
        elif action is Idle.THAW:
            await thaw(node, live)
        else:
            await sample(node, live, inst, now)


async def thaw(node: Node, live: Live) -> None:
    """Leave the frozen tier (idempotent): the instance runs again, the route serves."""
    if not live.frozen:
        return
    live.frozen = False
    if live.instance is not None:
        await node.runtime.thaw(live.instance)
    node.publish()


async def freeze(node: Node, space_id: str, live: Live, inst: Instance) -> None:
    since = live.last_activity
    if not await node.runtime.freeze(inst):
        live.freeze_failed = node.clock.monotonic()
        log.info("%s did not freeze (retried in %.0f s)", space_id, FREEZE_RETRY_S)
        return
    live.frozen = True
    if live.last_activity != since or live.instance is not inst:  # a visitor came while it froze
        await thaw(node, live)
        return
    node.publish()


async def sleep(node: Node, space_id: str, live: Live, inst: Instance, why: str) -> None:
    """Kill the instance; the Space is SLEEPING until a request wakes it."""
    async with live.lock:
        live.instance = None
        live.frozen = False
        node.set(space_id, stage=SpaceStage.SLEEPING)
        node.run_log(space_id).write(f"==> Sleeping {why}")
        await node.runtime.stop(inst)  # thaws a frozen one first


async def sample(node: Node, live: Live, inst: Instance, now: float) -> None:
    usage = await node.runtime.usage(inst)
    live.usage = usage
    if usage is not None and usage.cpu_ns is not None:
        live.cpu = (*(s for s in live.cpu if now - s[0] <= CPU_WINDOW_S), (now, usage.cpu_ns))


async def relieve_pressure(node: Node) -> None:
    """Under memory pressure the longest-idle frozen Space falls to the killed tier (one per tick)."""
    frozen = {sid: lv.last_activity for sid, lv in node.live.items() if lv.frozen and lv.instance}
    if not frozen:
        return
    min_available = node.settings.min_available_mb << 20
    victim = lifecycle.pressure_victim(frozen, await asyncio.to_thread(mem_available), min_available)
    if victim is not None and (lv := node.live[victim]).instance is not None:
        await sleep(node, victim, lv, lv.instance, "under memory pressure (MemAvailable below "
                    f"{node.settings.min_available_mb} MiB)")
