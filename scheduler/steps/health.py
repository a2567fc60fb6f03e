"""Health step: probe a starting instance until it answers, and decide what a crash of a running one means.
Decisions are pure (`verdict`, `on_crash`); `until_ready` is the thin effect that probes on the node's clock."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from enum import StrEnum

import httpx

from core.artifact import Artifact
from scheduler import lifecycle
from scheduler.runtimes.base import Instance
from scheduler.steps.context import Node
from scheduler.steps.live import Live
from sdk_templates import TEMPLATES
from state.logs import LogFile

PROBE_EVERY_S = 0.05  # a warm start answers in ~0.3-0.5 s: poll finely
LOG_FLUSH_S = 0.2  # after an exit, for the log reader to write the last lines


class Probe(StrEnum):
    WAIT = "wait"  # probe again
    READY = "ready"  # it answered (any status below 500)
    EXITED = "exited"  # it ended by itself before it answered
    TIMED_OUT = "timed-out"  # no answer within the Space's startup timeout
    GONE = "gone"  # the Space was deleted or moved meanwhile


def verdict(*, gone: bool, timed_out: bool, ended: bool = False, status: int | None = None) -> Probe:
    """What one probe of a starting instance means: `ended` whether it exited, `status` its HTTP answer (None:
    none yet). A deleted Space and a passed deadline win over anything the probe saw."""
    if gone:
        return Probe.GONE
    if timed_out:
        return Probe.TIMED_OUT
    if ended:
        return Probe.EXITED
    return Probe.READY if status is not None and status < 500 else Probe.WAIT


async def until_ready(node: Node, sid: str, live: Live, inst: Instance, art: Artifact,
                      rlog: LogFile) -> tuple[Instance | None, str, bool]:
    """Probe the started `inst` until it answers (returned), exits, times out or its Space is gone; (the
    instance or None, why not, whether it exited by itself). A timed-out or orphaned instance is stopped."""
    clock = node.clock
    deadline = clock.monotonic() + art.config.startup_timeout_s
    url = f"http://{inst.upstream.host}:{inst.upstream.port}{TEMPLATES[art.sdk].health_path}"
    live.probes = 0
    while verdict(gone=live.gone, timed_out=clock.monotonic() >= deadline) is Probe.WAIT:
        live.probes += 1
        if (ended := await node.runtime.exited(inst)) is not None:
            await clock.sleep(LOG_FLUSH_S)
            return None, f"{ended.reason}\n{rlog.tail(20)}", True
        status = None
        with contextlib.suppress(httpx.HTTPError):
            status = (await node.http.get(url, headers={"X-Spacehost-Probe": "1"})).status_code
        if verdict(gone=False, timed_out=False, status=status) is Probe.READY:
            rlog.write(f"==> Ready: {sid} answers on {inst.upstream.host}:{inst.upstream.port}")
            return inst, "", False
        await clock.sleep(PROBE_EVERY_S)
    await node.runtime.stop(inst)
    return None, f"the app did not answer within {art.config.startup_timeout_s:.0f}s\n{rlog.tail(20)}", False


@dataclass(frozen=True)
class Crash:
    """What follows a running instance's exit: the crash history to keep, and the restart delay (None: a crash
    loop, or nothing to restart: RUNTIME_ERROR)."""

    crashes: tuple[float, ...]
    delay: float | None

    def error(self, reason: str, log_tail: str) -> str:
        return (f"{reason} (crash loop)\n{log_tail}" if self.delay is None
                else f"{reason}; restarting in {self.delay:.0f}s")


def on_crash(crashes: tuple[float, ...], now: float, restartable: bool) -> Crash:
    """The crash at `now` joins the history; backoff doubles per recent crash, up to a crash loop."""
    history = (*crashes, now)
    delay = lifecycle.restart_delay(history, now)
    return Crash(history, delay if restartable else None)
