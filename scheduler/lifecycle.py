"""Pure lifecycle decisions: restart backoff, sleep, and the route a Space's state maps to."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

from core.routes import Route, RouteState, Upstream
from core.stages import SpaceStage

BACKOFF_BASE_S = 1.0
BACKOFF_MAX_S = 30.0
CRASH_WINDOW_S = 120.0
MAX_CRASHES = 4  # crashes within the window before RUNTIME_ERROR


def restart_delay(crash_times: tuple[float, ...], now: float) -> float | None:
    """Seconds to wait before restarting a crashed app, or None to give up (a crash loop)."""
    recent = [t for t in crash_times if now - t <= CRASH_WINDOW_S]
    if len(recent) >= MAX_CRASHES:
        return None
    return float(min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2.0 ** max(0, len(recent) - 1)))


def should_sleep(sleep_time_s: int | None, last_activity: float, now: float) -> bool:
    """A Space sleeps after `sleep_time_s` without visitors; None or -1 means never."""
    return sleep_time_s is not None and sleep_time_s >= 0 and now - last_activity >= sleep_time_s


class Tier(str, Enum):
    """Where a Space with a running instance stands (the runtime info's `tier`; HF's stage stays RUNNING while
    frozen and is SLEEPING once killed)."""

    RUNNING = "running"
    FROZEN = "frozen"  # its processes stopped in place (cgroup freezer): a request thaws it in milliseconds
    SLEEPING = "sleeping"  # killed: a request forks it again (the warm interpreter stays)


def idle_tier(sleep_time_s: int | None, freeze_after_s: int, last_activity: float, now: float) -> Tier:
    """The tier an instance belongs in after `now - last_activity` seconds without visitors: asleep after its
    sleep time, frozen after `freeze_after_s` (0: never). A Space that never sleeps (None or -1: dev mode, an
    owner's choice) is never frozen either: it may have work of its own to do without visitors."""
    idle = now - last_activity
    if sleep_time_s is None or sleep_time_s < 0:
        return Tier.RUNNING
    if idle >= sleep_time_s:
        return Tier.SLEEPING
    return Tier.FROZEN if 0 < freeze_after_s <= idle else Tier.RUNNING


def pressure_victim(frozen: Mapping[str, float], mem_available: int, min_available: int) -> str | None:
    """Under memory pressure (MemAvailable below `min_available`, both in bytes) the frozen Space idle the
    longest falls to the killed tier, one per decision (the next one sees the memory it gave back); None
    without pressure or with nothing frozen. `frozen`: Space id → its last activity."""
    if mem_available >= min_available or not frozen:
        return None
    return min(frozen, key=lambda sid: (frozen[sid], sid))


def cpu_percent(samples: tuple[tuple[float, int], ...], window_s: float = 60.0) -> float | None:
    """% of one core used between the oldest sample within `window_s` of the newest and the newest; samples are
    (time, CPU ns so far), oldest first. None with fewer than two samples."""
    if len(samples) < 2:
        return None
    t1, u1 = samples[-1]
    t0, u0 = next((t, u) for t, u in samples if t1 - t <= window_s)
    if t1 <= t0:
        return None
    return round(max(0, u1 - u0) / 1e9 / (t1 - t0) * 100.0, 2)


@dataclass(frozen=True)
class SpaceView:
    """What the route of one Space depends on."""

    space_id: str
    subdomain: str
    stage: str
    private: bool
    direct_port: int | None
    upstream: Upstream | None
    static_root: str | None
    headers: tuple[tuple[str, str], ...]
    disable_embedding: bool
    zero_gpu: bool
    error: str | None
    custom_domains: tuple[str, ...] = ()
    frozen: bool = False  # the frozen tier: its instance runs no code until a request thaws it
    address: str | None = None  # the instance's own address, where not its upstream's (Instance.address)
    reload: Upstream | None = None  # where its reload server is reached instead (Instance.reload)


_STATE: dict[str, RouteState] = {
    SpaceStage.SLEEPING: RouteState.SLEEPING,
    SpaceStage.PAUSED: RouteState.STOPPED,
    SpaceStage.STOPPED: RouteState.STOPPED,
}
_UP = (SpaceStage.RUNNING, SpaceStage.RUNNING_BUILDING)  # the serving version is up, no new instance starting
_SERVING = (*_UP, SpaceStage.RUNNING_APP_STARTING)
_STARTING = (SpaceStage.BUILDING, SpaceStage.APP_STARTING, SpaceStage.RUNNING_APP_STARTING,
             SpaceStage.RUNNING_BUILDING)
_FAILED: dict[str, str] = {SpaceStage.NO_APP_FILE: "This Space has no app file yet.",
                           SpaceStage.CONFIG_ERROR: "Configuration error",
                           SpaceStage.BUILD_ERROR: "Build error",
                           SpaceStage.RUNTIME_ERROR: "Runtime error"}


def route_for(v: SpaceView) -> Route:
    if v.static_root and v.stage in _UP:
        state, message = RouteState.STATIC, ""
    elif v.upstream is not None and v.frozen and v.stage in _UP:
        state, message = RouteState.FROZEN, ""
    elif v.upstream is not None and v.stage in _SERVING:
        state, message = RouteState.SERVING, ""
    elif v.stage in _STATE:
        state = _STATE[v.stage]
        message = "This Space is paused by its owner." if v.stage == SpaceStage.PAUSED else "This Space is asleep."
    elif v.stage in _STARTING:
        state, message = RouteState.STARTING, "This Space is building." if "BUILD" in v.stage else "This Space is starting."
    else:
        state = RouteState.STOPPED
        message = _FAILED.get(v.stage, v.stage)
        if v.error:
            message += ": " + v.error.splitlines()[0][:300]
    return Route(
        space_id=v.space_id, subdomain=v.subdomain, state=state,
        upstream=v.upstream if state in (RouteState.SERVING, RouteState.FROZEN) else None,  # FROZEN: held, not
        # forwarded, while a server can thaw it; a cluster proxy that lost its server serves it (proxy.remote)
        static_root=v.static_root if state is RouteState.STATIC else None,
        private=v.private, direct_port=v.direct_port, custom_domains=v.custom_domains, headers=v.headers,
        disable_embedding=v.disable_embedding, zero_gpu=v.zero_gpu, message=message,
        address=v.address if state is RouteState.SERVING else None,
        reload=v.reload if state in (RouteState.SERVING, RouteState.FROZEN) else None,  # with the upstream
    )


STARTING_STAGES = (SpaceStage.APP_STARTING, SpaceStage.RUNNING_APP_STARTING)
RUNNABLE_STAGES = (SpaceStage.RUNNING, *STARTING_STAGES)


def recovery_target(stage: str, serving_sha: str | None, head_sha: str | None, head_built: bool) -> str | None:
    """The version that should run after a restart (the desired state, read from the store): while a start was
    in flight (a first version, a redeploy, a wake) and the head commit's build is kept, the head; else what
    served. None: nothing to run (never built, or not in a stage that runs)."""
    if stage in STARTING_STAGES and head_sha and head_built:
        return head_sha
    return serving_sha if stage in RUNNABLE_STAGES and serving_sha else None
