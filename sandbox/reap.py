"""Reaping the sandbox bridges of installs that are gone (sandbox/netns.py).

An install killed with SIGKILL (or whose data dir was deleted while it was stopped) never removes its bridges
(`shbr<tag>`, `shbb<tag>`), their /21, firewall chains and state under /run/spacehost/net. The first `ensure`
of every install calls `reap_orphans`, which removes each other install's bridge when

- its owner is gone: nobody holds `owner.lock` (every process using a bridge holds it shared; the kernel
  drops a flock with its process, so a free lock is a dead owner, pid reuse or not), and
- no namespace on it is in use: no lease whose namespace a process is in, no port on the bridge that no lease
  accounts for.

A bridge made before owners were recorded (no `owner.lock`) is reaped once it exposes no gateway port (a live
install always does) and its state has not changed for LEGACY_IDLE_S. A bridge whose state lock is held is
being worked on and is left alone; so is the calling install's own (`keep`). `verdict` decides, over a
`BridgeState` snapshot taken while holding the bridge's locks (so nobody adopts it between snapshot and
teardown); `reap_orphans` takes the snapshots and does the teardown: namespaces and their veths, the chains
(whatever subnet they were made for), the bridge, the state directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from sandbox import firewall
from sandbox.netstate import NETNS_DIR, STATE_ROOT, host_veth, live_netns, remove_namespace

log = logging.getLogger(__name__)

BRIDGE_RE = re.compile(r"^shb[rb][0-9a-f]{8}$")  # install_bridge, build_bridge
LEGACY_IDLE_S = 600.0
SYS_NET = Path("/sys/class/net")


class Owner(str, Enum):
    LIVE = "live"  # someone holds owner.lock
    GONE = "gone"  # owner.lock exists and is free
    UNRECORDED = "unrecorded"  # no owner.lock: made before owners were recorded, or no state at all


@dataclass(frozen=True)
class BridgeState:
    bridge: str
    owner: Owner
    busy: bool = False  # its state lock is held: someone is working on it right now
    live_namespaces: tuple[str, ...] = ()  # leases whose namespace a process is in
    foreign_ports: tuple[str, ...] = ()  # interfaces on the bridge that no lease accounts for
    exposed: bool = False  # gateway ports exposed (ports/*.json)
    idle_s: float = float("inf")  # since its state last changed
    owner_pid: int | None = None  # as owner.json recorded it


@dataclass(frozen=True)
class Verdict:
    bridge: str
    reap: bool
    why: str


def verdict(s: BridgeState, keep: frozenset[str]) -> Verdict:
    """Whether to reap the bridge of `s`, and why (see the module docstring). Pure."""
    def no(why: str) -> Verdict:
        return Verdict(s.bridge, False, why)

    if s.bridge in keep:
        return no("the calling install's own")
    if s.busy:
        return no("its state is locked: a process is working on it")
    if s.owner is Owner.LIVE:
        return no("its owner is alive (holds owner.lock)")
    if s.live_namespaces:
        return no(f"namespaces on it are in use: {', '.join(s.live_namespaces[:3])}")
    if s.foreign_ports:
        return no(f"interfaces no lease accounts for are on it: {', '.join(s.foreign_ports[:3])}")
    if s.owner is Owner.GONE:
        return Verdict(s.bridge, True, f"its owner (pid {s.owner_pid}) is gone and no namespace on it is in use")
    if s.exposed:
        return no("made before owners were recorded, and gateway ports are still exposed on it")
    if s.idle_s < LEGACY_IDLE_S:
        return no(f"made before owners were recorded, and its state changed {s.idle_s:.0f}s ago")
    return Verdict(s.bridge, True, f"made before owners were recorded; unused for {s.idle_s:.0f}s")


def decide(states: Iterable[BridgeState], keep: Iterable[str]) -> tuple[Verdict, ...]:
    kept = frozenset(keep)
    return tuple(verdict(s, kept) for s in states)


# -- effects ----------------------------------------------------------------------------------------------------


def candidates(root: Path = STATE_ROOT) -> list[str]:
    """Install bridges on this host: the interfaces and the state directories of that name."""
    found = {p.name for p in SYS_NET.iterdir()} | ({p.name for p in root.iterdir()} if root.is_dir() else set())
    return sorted(b for b in found if BRIDGE_RE.match(b))


def reap_orphans(keep: Iterable[str], root: Path = STATE_ROOT) -> list[Verdict]:
    """Reap every install bridge `verdict` gives up (never one in `keep`); returns those reaped. One reaper at
    a time (another one running does the same work: this one returns at once)."""
    kept = frozenset(keep)
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    reaped: list[Verdict] = []
    with _try_lock(root / ".reap.lock", fcntl.LOCK_EX) as mine:
        if not mine:
            return reaped
        live = live_netns()
        for bridge in candidates(root):
            if bridge in kept:
                continue
            with contextlib.ExitStack() as held:
                state = _snapshot(bridge, root / bridge, live, held)
                v = verdict(state, kept)
                if v.reap:
                    _teardown(bridge, root)
                    log.info("reaped the sandbox bridge %s: %s", bridge, v.why)
                    reaped.append(v)
    return reaped


def _snapshot(bridge: str, state: Path, live: set[int], held: contextlib.ExitStack) -> BridgeState:
    """What `verdict` needs, holding (in `held`, until the teardown is done) the bridge's state lock and, when
    it is free, its owner lock exclusively; never blocks and never creates a file."""
    if state.is_dir() and not held.enter_context(_try_lock(state / "lock", fcntl.LOCK_EX, create=False)):
        return BridgeState(bridge, Owner.UNRECORDED, busy=True)
    owner, pid = Owner.UNRECORDED, None
    if (state / "owner.lock").exists():
        owner = Owner.GONE if held.enter_context(_try_lock(state / "owner.lock", fcntl.LOCK_EX)) else Owner.LIVE
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            pid = int(json.loads((state / "owner.json").read_text())["pid"])
    names = sorted(p.name for p in (state / "names").iterdir()) if (state / "names").is_dir() else []
    in_use = []
    for name in names:
        with contextlib.suppress(OSError):
            if os.stat(NETNS_DIR / name).st_ino in live:
                in_use.append(name)
    brif = SYS_NET / bridge / "brif"
    ports = sorted(p.name for p in brif.iterdir()) if brif.is_dir() else []
    leased = {host_veth(n) for n in names}
    files = [p for p in state.rglob("*") if p.is_file()] if state.is_dir() else []
    newest = max((p.stat().st_mtime for p in files), default=None)
    return BridgeState(bridge, owner, live_namespaces=tuple(in_use),
                       foreign_ports=tuple(p for p in ports if p not in leased),
                       exposed=any((state / "ports").glob("*.json")),
                       idle_s=float("inf") if newest is None else max(0.0, time.time() - newest), owner_pid=pid)


def _teardown(bridge: str, root: Path) -> None:
    """The bridge's namespaces and veths, its chains and rules, the bridge, its state (under its locks)."""
    names = root / bridge / "names"
    for lease in list(names.iterdir()) if names.is_dir() else []:
        remove_namespace(root / bridge, lease.name)
    firewall.remove_chains_of(bridge)
    if (SYS_NET / bridge).exists():
        subprocess.run(["ip", "link", "del", bridge], capture_output=True, check=False, timeout=30)
    shutil.rmtree(root / bridge, ignore_errors=True)


@contextlib.contextmanager
def _try_lock(path: Path, how: int, create: bool = True) -> Iterator[bool]:
    """A flock on `path` without waiting: yields whether it was taken (held until the block ends)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC | (os.O_CREAT if create else 0), 0o600)
    except FileNotFoundError:
        yield True  # nothing to lock: nobody holds it
        return
    try:
        try:
            fcntl.flock(fd, how | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)
