"""The grant policy: pure functions over a frozen snapshot of the broker and `now`.

- `admit(ask, …)` runs once when a `/schedule` call arrives: a duration over the tier's maximum is
  `illegal-duration`; a request (duration × size factor) over what the visitor has left — daily quota minus
  used minus what their running leases and queued asks reserve — is `quota-exceeded`.
- `plan(snapshot, now)` runs on every change and on a timer: it ends leases past duration + grace, fails asks
  that waited longer than the queue timeout, and grants devices. Order of service: signed-in visitors before
  anonymous ones; among equals the least recently served Space first (so one busy Space cannot starve the
  others: Spaces take turns), then arrival. A Space holds at most `space_concurrency` leases at once; its
  extra asks wait with reason `concurrency` and do not block other Spaces. When the next ask in order finds
  no free device, granting stops (no backfill: an `xlarge` ask cannot be starved by a stream of `large`
  ones); the rest wait with reason `node`.
- Sizes: `large` takes one slot of a device, `xlarge` every slot of one device (a whole GPU or a whole MIG
  instance: never two devices) and costs 2× quota. With the default of one slot per device both sizes get
  a whole device; with `slots=2` two `large` leases share a GPU, as Hugging Face's half-GPU `large`.
- Idle workers: the `spaces` package keeps a forked worker per device after a successful call and reuses it
  when the next grant says `idle: true`. A grant is idle when the device's warm worker belongs to the same
  Space and task; the lease then inherits that worker's pid. Granting a device evicts (kills) the warm
  workers of others on it, since they hold GPU memory.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum

from zerogpu.pool import Device, Pool
from zerogpu.quota import GpuSize, Limits, Tier, Usage, status, tier_of

_TIER_RANK = {Tier.SIGNED_IN: 0, Tier.ANONYMOUS: 1}


class ApproveResult(str, Enum):
    APPROVED = "approved"
    QUOTA_EXCEEDED = "quota-exceeded"
    ILLEGAL_DURATION = "illegal-duration"


class QueuingReason(str, Enum):
    NODE = "node"  # no device free
    CONCURRENCY = "concurrency"  # the Space holds its maximum of leases


@dataclass(frozen=True)
class PolicyConfig:
    space_concurrency: int = 2
    queue_timeout_s: float = 60.0
    grace_s: float = 5.0  # a lease may overrun its duration by this much before it is ended


@dataclass(frozen=True)
class Ask:
    """A `/schedule` call waiting for a device."""

    ask_id: str
    space_id: str
    visitor: str  # quota key, `core.iptoken.Visitor.key`
    duration_s: int
    size: GpuSize
    task_id: int
    arrived_at: float

    @property
    def cost_s(self) -> int:
        return self.duration_s * self.size.quota_factor


@dataclass(frozen=True)
class Lease:
    token: str  # the allowToken
    space_id: str
    visitor: str
    device: int
    size: GpuSize
    duration_s: int
    task_id: int
    granted_at: float
    pid: int | None = None  # the worker process, from `/allow` or inherited from an idle worker

    @property
    def cost_s(self) -> int:
        return self.duration_s * self.size.quota_factor

    def deadline(self, grace_s: float) -> float:
        return self.granted_at + self.duration_s + grace_s


@dataclass(frozen=True)
class Warm:
    """An idle worker the `spaces` package keeps on a device after a successful call."""

    device: int
    space_id: str
    task_id: int
    pid: int


@dataclass(frozen=True)
class Admission:
    result: ApproveResult
    left_s: int = 0
    wait_s: float = 0.0  # until quota frees; -1 for an illegal duration (the package reads wait < 0 so)


def reserved_s(visitor: str, queue: tuple[Ask, ...], leases: tuple[Lease, ...]) -> int:
    return sum(a.cost_s for a in queue if a.visitor == visitor) + sum(
        le.cost_s for le in leases if le.visitor == visitor)


def admit(ask: Ask, limits: Limits, usage: Usage | None, reserved: float, now: float) -> Admission:
    """Whether `ask` may queue at all, given the visitor's usage and what they already reserve."""
    if ask.duration_s > limits.max_duration_for(ask.visitor) or ask.duration_s <= 0:
        return Admission(ApproveResult.ILLEGAL_DURATION, wait_s=-1.0)
    st = status(limits, ask.visitor, usage, reserved, now)
    if ask.cost_s > st.left_s + 1e-9:
        # Blocked by usage: wait for the window to reset; blocked only by reservations: about one request.
        over_by_used = ask.cost_s > st.daily_s - st.used_s
        wait = (st.resets_at - now) if (st.resets_at is not None and over_by_used) else float(ask.duration_s)
        return Admission(ApproveResult.QUOTA_EXCEEDED, left_s=int(st.left_s), wait_s=max(1.0, wait))
    return Admission(ApproveResult.APPROVED, left_s=int(st.left_s))


@dataclass(frozen=True)
class Snapshot:
    pool: Pool
    queue: tuple[Ask, ...] = ()
    leases: tuple[Lease, ...] = ()
    warm: tuple[Warm, ...] = ()
    last_served: Mapping[str, float] = field(default_factory=dict)  # Space → time of its last grant
    config: PolicyConfig = PolicyConfig()


@dataclass(frozen=True)
class Grant:
    ask_id: str
    device: int
    idle: bool
    pid: int | None  # inherited from the idle worker when `idle`


@dataclass(frozen=True)
class Plan:
    grants: tuple[Grant, ...] = ()
    timed_out: tuple[str, ...] = ()  # ask ids that waited past the queue timeout → SSE `failed`
    expired: tuple[Lease, ...] = ()  # leases past duration + grace → end, kill their worker
    evicted: tuple[Warm, ...] = ()  # idle workers to kill: their device goes to someone else
    waiting: Mapping[str, QueuingReason] = field(default_factory=dict)


def _fits(dev: Device, used: int, size: GpuSize) -> bool:
    return used == 0 if size is GpuSize.XLARGE else used < dev.slots


def _pick_device(ask: Ask, devices: tuple[Device, ...], used: dict[int, int], warm: list[Warm]) -> Device | None:
    def rank(d: Device) -> tuple[int, int, int, int]:
        mine = any(w.device == d.index and (w.space_id, w.task_id) == (ask.space_id, ask.task_id) for w in warm)
        others = sum(1 for w in warm if w.device == d.index and w.space_id != ask.space_id)
        # Reuse our idle worker; else disturb nobody's; pack `large` onto shared devices; lowest index.
        return (0 if mine else 1, others, -used[d.index], d.index)

    fitting = [d for d in devices if _fits(d, used[d.index], ask.size)]
    return min(fitting, key=rank) if fitting else None


def plan(s: Snapshot, now: float) -> Plan:
    cfg = s.config
    expired = tuple(le for le in s.leases if now >= le.deadline(cfg.grace_s))
    live = [le for le in s.leases if le not in expired]
    by_index = {d.index: d for d in s.pool.devices}
    used = {d.index: 0 for d in s.pool.devices}
    active: dict[str, int] = {}
    for le in live:
        dev = by_index.get(le.device)
        if dev is not None:
            used[dev.index] += dev.slots if le.size is GpuSize.XLARGE else 1
        active[le.space_id] = active.get(le.space_id, 0) + 1

    timed_out = tuple(a.ask_id for a in s.queue if now - a.arrived_at >= cfg.queue_timeout_s)
    pending = [a for a in s.queue if a.ask_id not in timed_out]
    served: dict[str, tuple[float, int]] = {k: (v, 0) for k, v in s.last_served.items()}
    warm = list(s.warm)
    grants: list[Grant] = []
    evicted: list[Warm] = []
    waiting: dict[str, QueuingReason] = {}
    blocked = False

    def order(a: Ask) -> tuple[int, tuple[float, int], float, str]:
        return (_TIER_RANK[tier_of(a.visitor)], served.get(a.space_id, (float("-inf"), 0)), a.arrived_at, a.ask_id)

    while pending:
        ask = min(pending, key=order)
        pending.remove(ask)
        if active.get(ask.space_id, 0) >= cfg.space_concurrency:
            waiting[ask.ask_id] = QueuingReason.CONCURRENCY
            continue
        dev = None if blocked else _pick_device(ask, s.pool.devices, used, warm)
        if dev is None:
            blocked = True
            waiting[ask.ask_id] = QueuingReason.NODE
            continue
        mine = next((w for w in warm if w.device == dev.index
                     and (w.space_id, w.task_id) == (ask.space_id, ask.task_id)), None)
        for w in [w for w in warm if w.device == dev.index and w is not mine]:
            warm.remove(w)
            evicted.append(w)
        if mine is not None:
            warm.remove(mine)
        grants.append(Grant(ask.ask_id, dev.index, idle=mine is not None, pid=mine.pid if mine else None))
        used[dev.index] += dev.slots if ask.size is GpuSize.XLARGE else 1
        active[ask.space_id] = active.get(ask.space_id, 0) + 1
        served[ask.space_id] = (now, len(grants))  # Spaces served in this same pass queue up in turn
    return Plan(grants=tuple(grants), timed_out=timed_out, expired=expired, evicted=tuple(evicted),
                waiting=waiting)
