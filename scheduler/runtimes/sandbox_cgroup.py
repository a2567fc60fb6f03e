"""Per-Space cgroups: memory (no swap), pids and CPU limits, OOM detection, kill-all; on v1 also a devices
cgroup of its own (created allowing everything, as its parent; the ZeroGPU broker narrows it), and a freezer and a
cpuacct cgroup (the frozen tier and the CPU account: scheduler/runtimes/freezer.py).

cgroup v2 (one `cgroup.controllers` hierarchy) and v1 (one hierarchy per controller, as on hosts where
`/sys/fs/cgroup` is a tmpfs of `memory/`, `pids/`, `cpu/`) are both handled. Each Space's cgroup is nested
under spacehost's own cgroup (`/proc/self/cgroup`) in `spacehost/<instance>`, so a host that confines
spacehost also confines its Spaces. Whatever cannot be created or written here is reported by
`CgroupHost.detect()` as missing; the runtime then falls back to rlimits and says so.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
from dataclasses import dataclass
from pathlib import Path

from scheduler.runtimes.sandbox import Limits

ROOT = Path("/sys/fs/cgroup")
CONTROLLERS = ("memory", "pids", "cpu")
# Joins the cgroups before exec'ing the sandbox, so no process of the Space ever runs outside them.
JOIN_CGROUPS = 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift; exec "$@"'
# v1 only: devices lets the ZeroGPU broker allow a Space just the GPUs it leases; freezer and cpuacct carry the
# frozen tier and the Space's CPU time (v2 has both in every cgroup: cgroup.freeze, cpu.stat)
OPTIONAL_V1 = ("devices", "freezer", "cpuacct")
CFS_PERIOD_US = 100_000


def own_paths(proc_cgroup: str) -> dict[str, str]:
    """controller (or "" for v2) → path of this process's cgroup, from /proc/self/cgroup text."""
    out: dict[str, str] = {}
    for line in proc_cgroup.splitlines():
        _, ctrls, path = line.split(":", 2)
        for c in ctrls.split(",") if ctrls else [""]:
            out[c] = path
    return out


@dataclass(frozen=True)
class CgroupHost:
    """Where this host lets spacehost make Space cgroups: controller → parent directory."""

    version: int  # 0: none usable, 1 or 2
    parents: tuple[tuple[str, str], ...]  # (controller, parent dir); v2: ("", dir)

    @property
    def controllers(self) -> tuple[str, ...]:
        if self.version == 2:
            return CONTROLLERS
        return tuple(c for c, _ in self.parents)

    @classmethod
    def detect(cls) -> CgroupHost:
        if os.geteuid() != 0:
            return cls(0, ())
        try:
            own = own_paths(Path("/proc/self/cgroup").read_text())
        except OSError:
            return cls(0, ())
        if (ROOT / "cgroup.controllers").exists():
            parent = _v2_parent(ROOT / own.get("", "/").lstrip("/"))
            return cls(2, (("", str(parent)),)) if parent else cls(0, ())
        parents = []
        for c in CONTROLLERS + OPTIONAL_V1:
            base = ROOT / c / own.get(c, "/").lstrip("/") / "spacehost"
            with contextlib.suppress(OSError):
                base.mkdir(parents=True, exist_ok=True)
                if os.access(base, os.W_OK):
                    parents.append((c, str(base)))
        return cls(1 if any(c in CONTROLLERS for c, _ in parents) else 0, tuple(parents))

    def describe(self) -> str:
        if self.version == 0:
            return "no writable cgroups"
        return f"cgroup v{self.version} ({', '.join(self.controllers)})"


def _v2_parent(own: Path) -> Path | None:
    """A v2 directory with memory, pids and cpu delegated to its children. A cgroup holding processes
    cannot delegate ("no internal processes"), so spacehost moves itself into a `spacehost/main` leaf."""
    parent = own / "spacehost"
    try:
        parent.mkdir(exist_ok=True)
        needed = set(CONTROLLERS) & set((own / "cgroup.controllers").read_text().split())
        if own != ROOT and (own / "cgroup.procs").read_text().strip():
            (parent / "main").mkdir(exist_ok=True)
            for pid in (own / "cgroup.procs").read_text().split():
                with contextlib.suppress(OSError):
                    (parent / "main" / "cgroup.procs").write_text(pid)
        enable = " ".join(f"+{c}" for c in sorted(needed))
        (own / "cgroup.subtree_control").write_text(enable)
        (parent / "cgroup.subtree_control").write_text(enable)
        return parent if needed == set(CONTROLLERS) else None
    except OSError:
        return None


@dataclass(frozen=True)
class SpaceCgroup:
    """The cgroup directories of one instance (one per v1 controller, or one v2 directory)."""

    version: int
    dirs: tuple[str, ...]
    memory_limit: int = 0

    @classmethod
    def create(cls, host: CgroupHost, instance_id: str, limits: Limits) -> SpaceCgroup:
        name = re.sub(r"[^A-Za-z0-9_.-]", "-", instance_id)
        dirs = []
        for ctrl, parent in host.parents:
            d = Path(parent) / name
            d.mkdir(exist_ok=True)
            dirs.append(str(d))
            if host.version == 2:
                _write(d / "memory.max", limits.memory_bytes)
                _write(d / "memory.swap.max", 0, optional=True)
                _write(d / "pids.max", limits.pids)
                _write(d / "cpu.max", f"{int(limits.cpus * CFS_PERIOD_US)} {CFS_PERIOD_US}")
            elif ctrl == "memory":
                _write(d / "memory.limit_in_bytes", limits.memory_bytes)
                _write(d / "memory.memsw.limit_in_bytes", limits.memory_bytes, optional=True)
            elif ctrl == "pids":
                _write(d / "pids.max", limits.pids)
            elif ctrl == "cpu":
                _write(d / "cpu.cfs_period_us", CFS_PERIOD_US)
                _write(d / "cpu.cfs_quota_us", int(limits.cpus * CFS_PERIOD_US))
        return cls(host.version, tuple(dirs), limits.memory_bytes)

    @property
    def procs_files(self) -> tuple[str, ...]:
        return tuple(os.path.join(d, "cgroup.procs") for d in self.dirs)

    def joined(self, argv: list[str]) -> list[str]:
        """`argv` run from inside these cgroups: the shell joins them, then execs it."""
        return ["/bin/sh", "-c", JOIN_CGROUPS, "sh", *self.procs_files, "--", *argv]

    def join(self, pid: int) -> None:
        for f in self.procs_files:
            Path(f).write_text(str(pid))

    def pids(self) -> set[int]:
        out: set[int] = set()
        for f in self.procs_files:
            with contextlib.suppress(OSError):
                out.update(int(p) for p in Path(f).read_text().split())
        return out

    def oom_kills(self) -> int:
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        for d in self.dirs:
            with contextlib.suppress(OSError):
                m = re.search(r"^oom_kill (\d+)$", (Path(d) / name).read_text(), re.MULTILINE)
                if m:
                    return int(m.group(1))
        return 0

    def kill_all(self) -> None:
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)

    def remove(self) -> None:
        for d in self.dirs:
            with contextlib.suppress(OSError):
                os.rmdir(d)


def _write(path: Path, value: object, optional: bool = False) -> None:
    try:
        path.write_text(str(value))
    except OSError:
        if not optional:
            raise
