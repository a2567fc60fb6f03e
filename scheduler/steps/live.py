"""What runs for one Space, in memory: the controller's actual state beside the store's desired state."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field

from core.artifact import Artifact
from scheduler.runtimes.base import Instance, Usage


@dataclass
class Live:
    """One Space's instance, its artifact and the bookkeeping of the steps. Times are the controller clock's
    monotonic seconds."""

    instance: Instance | None = None
    artifact: Artifact | None = None
    last_activity: float = 0.0
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
    since: float = 0.0  # when `instance` became ready (adopted: when seen)
