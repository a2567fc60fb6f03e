"""The frozen tier's effects on one instance's cgroups, and what a Space costs: freeze, thaw, CPU time, PSS.

An instance's cgroup directories (`SpaceCgroup.dirs`: one per v1 controller, or one v2 directory) carry the
freezer (v1 `freezer/…/freezer.state`; v2 `cgroup.freeze`) and the CPU account (v1 `cpuacct.usage`, ns; v2
`cpu.stat` usage_usec). A warm instance lives in its zygote's cgroup, and a zygote serves one Space: freezing
that cgroup freezes exactly the Space's processes (its app and the interpreter it was forked from).

Frozen tasks keep their memory; on a host without swap nothing moves out, so "reclaimable" means: a frozen
Space's v1 memory cgroup gets a soft limit of 0 (`memory.soft_limit_in_bytes`; lifted on thaw), so under host
memory pressure the kernel reclaims its pages before a running Space's — on a swapless host its clean page
cache (the env's files, the SDK's .so files); with swap also its anonymous pages — and its anonymous memory
is given back at once when it falls to the killed tier (the controller does that while MemAvailable is below
its threshold, longest idle first). v1 cannot kill frozen tasks (signals wait for the thaw), so
whoever stops an instance thaws it first (`thaw`, idempotent).
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

from scheduler.runtimes.base import Usage

FREEZE_WAIT_S = 2.0  # v1 goes FREEZING → FROZEN once every task stopped; a task in an uninterruptible wait delays it


def _find(dirs: tuple[str, ...], name: str) -> Path | None:
    for d in dirs:
        p = Path(d) / name
        if p.exists():
            return p
    return None


def can_freeze(dirs: tuple[str, ...]) -> bool:
    return _find(dirs, "freezer.state") is not None or _find(dirs, "cgroup.freeze") is not None


def freeze(dirs: tuple[str, ...], wait_s: float = FREEZE_WAIT_S) -> bool:
    """Freeze every task of the cgroup; True once the kernel says all are frozen. False (and thawed again)
    when this host has no freezer for it or it did not settle within `wait_s`. Blocking."""
    v1, v2 = _find(dirs, "freezer.state"), _find(dirs, "cgroup.freeze")
    try:
        if v1 is not None:
            v1.write_text("FROZEN")
            deadline = time.monotonic() + wait_s
            while v1.read_text().strip() != "FROZEN":
                if time.monotonic() > deadline:
                    v1.write_text("THAWED")
                    return False
                time.sleep(0.01)
            _soft_limit(dirs, "0")
            return True
        if v2 is not None:
            v2.write_text("1")
            events = v2.with_name("cgroup.events")
            deadline = time.monotonic() + wait_s
            while "frozen 1" not in events.read_text():
                if time.monotonic() > deadline:
                    v2.write_text("0")
                    return False
                time.sleep(0.01)
            return True
    except OSError:
        return False
    return False


def thaw(dirs: tuple[str, ...]) -> None:
    """Let the cgroup's tasks run again; idempotent, no-op where nothing is frozen. Blocking (one write)."""
    with contextlib.suppress(OSError):
        if (v1 := _find(dirs, "freezer.state")) is not None:
            v1.write_text("THAWED")
            _soft_limit(dirs, "-1")
        elif (v2 := _find(dirs, "cgroup.freeze")) is not None:
            v2.write_text("0")


def _soft_limit(dirs: tuple[str, ...], value: str) -> None:
    """v1: reclaim this cgroup first (0) or as anyone (-1: none) under host memory pressure."""
    with contextlib.suppress(OSError):
        if (p := _find(dirs, "memory.soft_limit_in_bytes")) is not None:
            p.write_text(value)


def is_frozen(dirs: tuple[str, ...]) -> bool:
    with contextlib.suppress(OSError):
        if (v1 := _find(dirs, "freezer.state")) is not None:
            return v1.read_text().strip() in ("FROZEN", "FREEZING")
        if (v2 := _find(dirs, "cgroup.freeze")) is not None:
            return v2.read_text().strip() == "1"
    return False


def cpu_ns(dirs: tuple[str, ...]) -> int | None:
    """CPU time the cgroup's tasks used so far, in ns (None without a CPU account)."""
    with contextlib.suppress(OSError, ValueError):
        if (v1 := _find(dirs, "cpuacct.usage")) is not None:
            return int(v1.read_text())
        if (v2 := _find(dirs, "cpu.stat")) is not None:
            for line in v2.read_text().splitlines():
                if line.startswith("usage_usec "):
                    return int(line.split()[1]) * 1000
    return None


def pids(dirs: tuple[str, ...]) -> set[int]:
    out: set[int] = set()
    for d in dirs:
        with contextlib.suppress(OSError, ValueError):
            out.update(int(p) for p in (Path(d) / "cgroup.procs").read_text().split())
    return out


def pss_bytes(pid_set: set[int]) -> int:
    """Sum of `Pss:` in /proc/<pid>/smaps_rollup (shared pages counted in proportion: sums to real use)."""
    total = 0
    for pid in pid_set:
        with contextlib.suppress(OSError, ValueError):
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
                    break
    return total


def usage(dirs: tuple[str, ...], leader: int | None = None) -> Usage:
    """The cgroup's processes' PSS and CPU time; without cgroups, the leader's process group. Blocking."""
    found = pids(dirs)
    if not found and leader:
        found = {p for p in _all_pids() if _pgid(p) == leader}
    return Usage(pss_bytes(found), cpu_ns(dirs), len(found))


def _all_pids() -> list[int]:
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def mem_available() -> int:
    """The host's MemAvailable in bytes (what can be had without swapping; 0 if unreadable). Blocking."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0
