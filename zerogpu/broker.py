"""The broker's state and its effects: the one mutable place. It keeps the queue, the leases, the idle
workers and the Space registry in memory (a restarted broker starts with no grants), asks `zerogpu.policy`
what to do, and applies the answer: resolves waiters, kills workers, charges quota, records metrics.

Thread-safe (one lock); futures are resolved on their own loop. The HTTP face is `zerogpu.server`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import secrets as pysecrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from core.errors import NotFound
from core.iptoken import Visitor, verify
from zerogpu.gate import DeviceGate, Killer, ProcessGate, TreeKiller
from zerogpu.ledger import Hold, Ledger, LedgerUnavailable, LocalLedger
from zerogpu.metrics import Metrics, render
from zerogpu.policy import (
    Admission,
    ApproveResult,
    Ask,
    Lease,
    PolicyConfig,
    QueuingReason,
    Snapshot,
    Warm,
    admit,
    plan,
    reserved_s,
)
from zerogpu.pool import Pool, nvml_utilization
from zerogpu.quota import GpuSize, Limits, QuotaStatus, charged_seconds, status

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Granted:
    lease: Lease
    idle: bool


@dataclass(frozen=True)
class Rejected:
    admission: Admission


@dataclass(frozen=True)
class Queued:
    ask: Ask
    reason: QueuingReason
    waiter: asyncio.Future[Granted | None]  # a grant, or None: timed out / the Space went away


@dataclass(frozen=True)
class Unsent:
    """A charge the ledger could not take when its lease ended; sent again by `tick`."""

    visitor: str
    seconds: float
    at: float


@dataclass(frozen=True)
class Identity:
    key: str  # quota key
    signed_in: bool


def _resolve(fut: asyncio.Future[Granted | None], value: Granted | None) -> None:
    def set_() -> None:
        if not fut.done():
            fut.set_result(value)

    loop = fut.get_loop()
    try:
        same = asyncio.get_running_loop() is loop
    except RuntimeError:
        same = False
    if same:
        set_()
    elif not loop.is_closed():
        loop.call_soon_threadsafe(set_)


class Broker:
    """Leases GPUs of `pool` to registered Spaces. `secret` verifies X-IP-Tokens and derives each Space's
    URL token. `clock` is wall time (quota windows are persisted). `ledger` keeps quota usage (default: a
    `LocalLedger` in `state_dir`, kept across restarts; a cluster's node passes the shared `RedisLedger`).
    `killer` ends workers (default `TreeKiller`: only inside a Space's own process tree).

    Ledger unreachable (`LedgerUnavailable`): a new `/schedule` is refused with it (fail-closed, HTTP 503: the
    cluster-wide quota cannot be checked); leases already granted run and end as usual, their charges kept in
    `unsent` and sent by `tick` once the ledger answers again, before any new lease is admitted."""

    def __init__(self, pool: Pool, secret: bytes, *, clock: Callable[[], float] = time.time,
                 limits: Limits | None = None, config: PolicyConfig | None = None,
                 state_dir: Path | None = None, killer: Killer | None = None,
                 gate: DeviceGate | None = None, ledger: Ledger | None = None) -> None:
        self.pool, self.secret, self.clock = pool, secret, clock
        self.limits = limits or Limits()
        self.config = config or PolicyConfig()
        self.killer: Killer = killer or TreeKiller()
        self.gate: DeviceGate = gate or ProcessGate()
        self.ledger: Ledger = ledger or LocalLedger(state_dir / "zerogpu-usage.json" if state_dir else None)
        self.unsent: list[Unsent] = []
        self.metrics = Metrics()
        self._lock = threading.RLock()
        self._spaces: dict[str, str] = {}  # URL token → Space
        self._queue: dict[str, Ask] = {}
        self._waiters: dict[str, asyncio.Future[Granted | None]] = {}
        self._leases: dict[str, Lease] = {}
        self._warm: list[Warm] = []
        self._served: dict[str, float] = {}
        self._devices = {d.index: d for d in pool.devices}
        self._last_waiting: dict[str, QueuingReason] = {}

    # -- Spaces -------------------------------------------------------------------------------------------

    def space_token(self, space_id: str) -> str:
        """Stable per Space and installation, so a restarted broker accepts running Spaces' URLs again."""
        return hmac.new(self.secret, b"zerogpu:" + space_id.encode(), hashlib.sha256).hexdigest()[:32]

    def register_space(self, space_id: str, root_pid: int | None = None) -> str:
        """Admit a Space; returns the token of its device-API path `/s/<token>`."""
        token = self.space_token(space_id)
        with self._lock:
            self._spaces[token] = space_id
        if root_pid is not None:
            self.set_root_pid(space_id, root_pid)
        return token

    def device_api_path(self, space_id: str) -> str:
        return f"/s/{self.space_token(space_id)}"

    def set_root_pid(self, space_id: str, root_pid: int) -> None:
        """The Space's (new) root process: workers are killed only below it; its devices cgroup is sealed."""
        with self._lock:
            if isinstance(self.killer, TreeKiller):
                self.killer.roots[space_id] = root_pid
            self.gate.seal(space_id, root_pid)

    def space_for(self, token: str) -> str:
        space = self._spaces.get(token)
        if space is None:
            raise NotFound("unknown ZeroGPU Space")
        return space

    def space_died(self, space_id: str) -> None:
        """Release the Space's leases (charging what was used), fail its waiters, forget its idle workers."""
        with self._lock:
            now = self.clock()
            for ask in [a for a in self._queue.values() if a.space_id == space_id]:
                self._queue.pop(ask.ask_id)
                if (fut := self._waiters.pop(ask.ask_id, None)) is not None:
                    _resolve(fut, None)
            for lease in [le for le in self._leases.values() if le.space_id == space_id]:
                self._end(lease, now, outcome="space-died")
            self._warm = [w for w in self._warm if w.space_id != space_id]
            self._tick(now)

    def unregister_space(self, space_id: str) -> None:
        self.space_died(space_id)
        with self._lock:
            self._spaces = {t: s for t, s in self._spaces.items() if s != space_id}
            if isinstance(self.killer, TreeKiller):
                self.killer.roots.pop(space_id, None)

    # -- identity and quota -------------------------------------------------------------------------------

    def identify(self, ip_token: str | None, peer_ip: str) -> Identity:
        """The visitor of a verified X-IP-Token; anonymous by the caller's IP when it is absent or invalid."""
        visitor = verify(self.secret, ip_token, self.clock()) if ip_token else None
        v = visitor or Visitor(user=None, ip=peer_ip)
        return Identity(key=v.key, signed_in=v.user is not None)

    def quota_for(self, visitor_key: str) -> QuotaStatus:
        """The visitor's quota: the ledger's usage (cluster-wide with a RedisLedger), reserved here and by other
        brokers. Raises LedgerUnavailable."""
        with self._lock:
            now = self.clock()
            acct = self.ledger.account(visitor_key, now)
            return status(self.limits.with_override(visitor_key, acct.override_s), visitor_key, acct.usage,
                          self._reserved(visitor_key) + acct.held_elsewhere, now)

    def _reserved(self, visitor_key: str) -> int:
        return reserved_s(visitor_key, tuple(self._queue.values()), tuple(self._leases.values()))

    def _hold(self, visitor_key: str, now: float, extra_s: int = 0) -> Hold:
        """This broker's hold for the visitor: what it reserves (+ `extra_s` about to be), until every ask and
        lease it could have for them is over (queue timeout + the longest duration + grace)."""
        c = self.config
        until = now + c.queue_timeout_s + self.limits.max_duration_for(visitor_key) + c.grace_s
        return Hold(float(self._reserved(visitor_key) + extra_s), until)

    def _send_unsent(self) -> None:
        """Charges of leases that ended while the ledger was unreachable, oldest first. Raises LedgerUnavailable
        (what is not sent stays)."""
        while self.unsent:
            u = self.unsent[0]
            self.ledger.charge(u.visitor, u.seconds, u.at, self._hold(u.visitor, self.clock()))
            self.unsent.pop(0)

    def set_quota_override(self, visitor_key: str, daily_s: int | None) -> None:
        overrides = dict(self.limits.overrides)
        if daily_s is None:
            overrides.pop(visitor_key, None)
        else:
            overrides[visitor_key] = daily_s
        self.limits = replace(self.limits, overrides=overrides)

    def set_quota_overrides(self, overrides: Mapping[str, int]) -> None:
        """Replace every per-visitor daily quota at once (what the hub resolved from users and orgs)."""
        self.limits = replace(self.limits, overrides=dict(overrides))

    # -- the device protocol ------------------------------------------------------------------------------

    def schedule(self, space_id: str, who: Identity, duration_s: int, size: GpuSize,
                 task_id: int, loop: asyncio.AbstractEventLoop | None = None) -> Granted | Rejected | Queued:
        """Admit and try to grant now; else queue. The waiter lives on `loop` (default: the running one; pass
        it when calling from a thread, as the ledger may block). Raises LedgerUnavailable (fail-closed)."""
        with self._lock:
            now = self.clock()
            ask = Ask(pysecrets.token_hex(8), space_id, who.key, duration_s, size, task_id, now)
            reserved, limits = self._reserved(who.key), self.limits
            try:
                self._send_unsent()
                adm = self.ledger.admit(
                    who.key, now, lambda acct: admit(ask, limits.with_override(who.key, acct.override_s), acct.usage,
                                                     reserved + acct.held_elsewhere, now),
                    lambda a: self._hold(who.key, now, ask.cost_s) if a.result is ApproveResult.APPROVED else None)
            except LedgerUnavailable as e:
                self.metrics.outcomes["ledger-unavailable"] += 1
                log.warning("ZeroGPU lease for %s refused: %s", space_id, e.message)
                raise
            if adm.result is not ApproveResult.APPROVED:
                self.metrics.outcomes[adm.result.value] += 1
                return Rejected(adm)
            self._queue[ask.ask_id] = ask
            granted = self._tick(now)
            if (g := granted.get(ask.ask_id)) is not None:
                return g
            fut: asyncio.Future[Granted | None] = (loop or asyncio.get_running_loop()).create_future()
            self._waiters[ask.ask_id] = fut
            return Queued(ask, self._last_waiting.get(ask.ask_id, QueuingReason.NODE), fut)

    def abandon(self, ask_id: str, delivered: Granted | None) -> None:
        """The caller went away while queued: drop the ask, or give back a grant it never received."""
        with self._lock:
            self._waiters.pop(ask_id, None)
            if (ask := self._queue.pop(ask_id, None)) is not None:
                self._lower_hold(ask.visitor)
                return
            if delivered is not None and delivered.lease.token in self._leases:
                self._end(self._leases[delivered.lease.token], self.clock(), outcome="abandoned")
                self._tick(self.clock())

    def allow(self, space_id: str, token: str, pid: int) -> bool:
        with self._lock:
            lease = self._leases.get(token)
            if lease is None or lease.space_id != space_id:
                return False
            self._leases[token] = replace(lease, pid=pid)
            return True

    def release(self, space_id: str, token: str, fail: bool) -> bool:
        """End a lease of this Space, charging the time used. A failed call's worker is killed (the package
        does not reuse it); a successful one stays warm for an `idle` reuse."""
        with self._lock:
            lease = self._leases.get(token)
            if lease is None or lease.space_id != space_id:
                return False
            now = self.clock()
            self._end(lease, now, outcome="failed" if fail else "released")
            if lease.pid is not None:
                if fail:
                    self.killer.kill(space_id, lease.pid)
                else:
                    self._warm.append(Warm(lease.device, space_id, lease.task_id, lease.pid))
            self._tick(now)
            return True

    def queue_size(self, space_id: str | None = None) -> int:
        with self._lock:
            return sum(1 for a in self._queue.values() if space_id is None or a.space_id == space_id)

    # -- the loop -----------------------------------------------------------------------------------------

    def tick(self) -> None:
        """Timeouts, expiries and grants due now; then charges not sent yet, and the ledger's upkeep."""
        with self._lock:
            now = self.clock()
            self._tick(now)
            try:
                self._send_unsent()
            except LedgerUnavailable as e:
                log.warning("%d ZeroGPU charge(s) wait for the quota ledger: %s", len(self.unsent), e.message)
            self.ledger.tick(now)

    def _lower_hold(self, visitor_key: str) -> None:
        """An ask of the visitor left without a lease: hold less (best effort; a stale hold only expires)."""
        try:
            self.ledger.hold(visitor_key, self._hold(visitor_key, self.clock()))
        except LedgerUnavailable as e:
            log.warning("ZeroGPU hold of %s not lowered: %s", visitor_key, e.message)

    def _tick(self, now: float) -> dict[str, Granted]:
        p = plan(Snapshot(self.pool, tuple(self._queue.values()), tuple(self._leases.values()),
                          tuple(self._warm), self._served, self.config), now)
        for lease in p.expired:
            log.warning("ZeroGPU lease of %s ran past %ss: ending it", lease.space_id, lease.duration_s)
            self._end(lease, now, outcome="expired")
            if lease.pid is not None:
                self.killer.kill(lease.space_id, lease.pid)
        for w in p.evicted:
            self._warm.remove(w)
            self.killer.kill(w.space_id, w.pid)
        for ask_id in p.timed_out:
            if (gone := self._queue.pop(ask_id, None)) is not None:
                self._lower_hold(gone.visitor)
            self.metrics.outcomes["queue-timeout"] += 1
            if (fut := self._waiters.pop(ask_id, None)) is not None:
                _resolve(fut, None)
        granted: dict[str, Granted] = {}
        for g in p.grants:
            ask = self._queue.pop(g.ask_id)
            self._warm = [w for w in self._warm if not (w.device == g.device and w.pid == g.pid)]
            lease = Lease(pysecrets.token_urlsafe(18), ask.space_id, ask.visitor, g.device, ask.size,
                          ask.duration_s, ask.task_id, now, pid=g.pid)
            self._leases[lease.token] = lease
            self._served[ask.space_id] = now
            self.gate.grant(ask.space_id, self._devices[g.device])
            self.metrics.outcomes["approved"] += 1
            self.metrics.observe_wait(now - ask.arrived_at)
            granted[ask.ask_id] = Granted(lease, g.idle)
            if (fut := self._waiters.pop(ask.ask_id, None)) is not None:
                _resolve(fut, granted[ask.ask_id])
        self._last_waiting = dict(p.waiting)
        return granted

    def _end(self, lease: Lease, now: float, outcome: str) -> None:
        self._leases.pop(lease.token, None)
        cost = charged_seconds(lease.granted_at, lease.duration_s, lease.size, now)
        try:
            self.ledger.charge(lease.visitor, cost, now, self._hold(lease.visitor, now))
        except LedgerUnavailable as e:  # the lease ends all the same; its charge is sent once the ledger is back
            log.warning("ZeroGPU charge of %.1fs to %s kept until the quota ledger answers: %s", cost,
                        lease.visitor, e.message)
            self.unsent.append(Unsent(lease.visitor, cost, now))
        self.metrics.charge(lease.space_id, lease.visitor, cost, now)
        self.metrics.outcomes[outcome] += 1
        self.gate.revoke(lease.space_id, self._devices[lease.device])

    async def run(self, interval_s: float = 0.25) -> None:
        """Timer for timeouts and expiries; runs until cancelled."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                await asyncio.to_thread(self.tick)  # the ledger may be a network call
            except Exception:  # keep the timer alive whatever one pass hit
                log.exception("ZeroGPU tick failed")

    # -- reading --------------------------------------------------------------------------------------------

    def space_summary(self, space_id: str) -> dict[str, Any]:
        """JSON for a Space's runtime info: its GPU usage, active leases and queue."""
        with self._lock:
            out = self.metrics.space_summary(space_id)
            out["activeLeases"] = sum(1 for le in self._leases.values() if le.space_id == space_id)
            out["queued"] = self.queue_size(space_id)
            out["poolDevices"] = len(self.pool)
            enforced = getattr(self.gate, "enforced", None)
            out["deviceAccess"] = ("devices cgroup" if enforced is not None and enforced(space_id)
                                   else "CUDA_VISIBLE_DEVICES only")
            return out

    def metrics_text(self) -> str:
        with self._lock:
            busy = sum(self._devices[le.device].slots if le.size is GpuSize.XLARGE else 1
                       for le in self._leases.values())
            gauges = {"pool_slots": float(self.pool.slots), "leases_active": float(len(self._leases)),
                      "queue_length": float(len(self._queue)), "warm_workers": float(len(self._warm)),
                      "pool_utilization_ratio": busy / self.pool.slots if self.pool.slots else 0.0}
            util = nvml_utilization() if self.pool.source == "nvml" else None
            return render(self.metrics, gauges, util)

    def close(self) -> None:
        with self._lock:
            with contextlib.suppress(LedgerUnavailable):
                self._send_unsent()
            self.ledger.tick(self.clock())
            for fut in self._waiters.values():
                with contextlib.suppress(RuntimeError):
                    _resolve(fut, None)
            self._waiters.clear()
