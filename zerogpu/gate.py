"""Effects on Space processes and devices, kept behind small Protocols so the broker stays testable.

`Killer` ends a worker whose lease ran out (or whose device went to someone else). The pid comes from the
Space itself (`/allow?pid=`), so it is untrusted: `TreeKiller` kills only a process in the registered Space's
own process tree (and maps a pid seen inside a pid namespace, e.g. bubblewrap's `--unshare-pid`, to the host
pid through `NSpid`). Without a known root pid for the Space nothing is killed; the lease is still ended.

`DeviceGate` grants and revokes device access. What is enforced where (honestly):

- cgroup v1 hosts (`CgroupDeviceGate`, chosen by `spacehost up` when /sys/fs/cgroup/devices is writable):
  when a ZeroGPU Space registers its root process, every pool device is denied in that process's devices
  cgroup (its own: a process-runtime Space gets one, a Docker container has one); a grant allows the leased
  device (`devices.allow`), the release denies it again (`devices.deny`). The cgroup is checked when a device
  is opened, so a worker that still holds the device open after its lease keeps it until it exits — the broker
  ends workers that overrun their lease, and the next worker cannot open a device it does not lease. Rules are
  per Space, not per worker: two concurrent leases of one Space see both devices. MIG instances are reached
  through /dev/nvidia-caps and are not narrowed (their parent GPU is).
- cgroup v2 hosts and hosts without a devices hierarchy (`ProcessGate`, a no-op): the worker gets the device
  through `CUDA_VISIBLE_DEVICES=<uuid>`, which the `spaces` package sets itself — a convention, not isolation
  (`/dev/nvidia*` are open to every process of the host). v2 device control means replacing the eBPF program
  runc attached; not done.
- A Docker container only has the devices it was created with (Docker cannot add devices to a running
  container), so a ZeroGPU container is created with every pool device (`device_requests_for()`), then
  narrowed by the cgroup gate as above.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from zerogpu.pool import Device, Pool

log = logging.getLogger(__name__)


class Killer(Protocol):
    def kill(self, space_id: str, pid: int) -> bool:
        """End the Space's worker `pid`; True if a process was signalled."""
        ...


class DeviceGate(Protocol):
    def seal(self, space_id: str, root_pid: int) -> None:
        """A Space's root process is known: take every pool device away from it until a grant."""

    def grant(self, space_id: str, device: Device) -> None: ...

    def revoke(self, space_id: str, device: Device) -> None: ...


class ProcessGate:
    """No enforcement: `CUDA_VISIBLE_DEVICES` only (see the module docstring)."""

    def seal(self, space_id: str, root_pid: int) -> None:
        return None

    def grant(self, space_id: str, device: Device) -> None:
        return None

    def revoke(self, space_id: str, device: Device) -> None:
        return None


NVIDIA_MAJOR = 195  # /dev/nvidiaN is character device 195:N


def nvidia_node(device: Device) -> tuple[int, int]:
    """(major, minor) of a pool device's node: stat of /dev/nvidia<index>, else the driver's fixed numbering."""
    try:
        st = os.stat(f"/dev/nvidia{device.index}")
        return os.major(st.st_rdev), os.minor(st.st_rdev)
    except OSError:
        return NVIDIA_MAJOR, device.index


def devices_cgroup_of(pid: int, proc: Path = Path("/proc")) -> str | None:
    """The v1 devices cgroup path of `pid` (e.g. `/docker/<id>`), None if it has none or is in the root one."""
    try:
        text = (proc / str(pid) / "cgroup").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        _, ctrls, path = line.split(":", 2)
        if "devices" in ctrls.split(","):
            return path if path not in ("", "/") else None
    return None


class CgroupDeviceGate:
    """cgroup v1 device rules per Space (module docstring). `node` maps a device to its (major, minor);
    `roots` is shared with the `TreeKiller` (Space → root pid)."""

    def __init__(self, pool: Pool, roots: Mapping[str, int], *, root: Path = Path("/sys/fs/cgroup/devices"),
                 proc: Path = Path("/proc"), node: Any = nvidia_node) -> None:
        self.pool, self.roots, self.root, self.proc, self.node = pool, roots, root, proc, node
        self._dirs: dict[str, Path] = {}
        self._held: dict[tuple[str, str], int] = {}  # (space, device uuid) → leases holding it

    def seal(self, space_id: str, root_pid: int) -> None:
        path = devices_cgroup_of(root_pid, self.proc)
        if path is None:
            log.warning("ZeroGPU devices of %s not enforced: pid %s has no devices cgroup of its own",
                        space_id, root_pid)
            self._dirs.pop(space_id, None)
            return
        self._dirs[space_id] = self.root / path.lstrip("/")
        for device in self.pool.devices:
            if not self._held.get((space_id, device.uuid)):
                self._rule(space_id, "deny", device)

    def grant(self, space_id: str, device: Device) -> None:
        key = (space_id, device.uuid)
        self._held[key] = self._held.get(key, 0) + 1
        self._rule(space_id, "allow", device)

    def revoke(self, space_id: str, device: Device) -> None:
        key = (space_id, device.uuid)
        left = self._held.get(key, 0) - 1
        if left > 0:
            self._held[key] = left
            return
        self._held.pop(key, None)
        self._rule(space_id, "deny", device)

    def enforced(self, space_id: str) -> bool:
        return space_id in self._dirs

    def _rule(self, space_id: str, kind: str, device: Device) -> None:
        d = self._dirs.get(space_id)
        if d is None:
            return
        major, minor = self.node(device)
        try:
            (d / f"devices.{kind}").write_text(f"c {major}:{minor} rwm")
        except OSError as e:  # the Space ended (its cgroup is gone) or the host forbids it: say so, go on
            log.warning("devices.%s c %s:%s for %s failed: %s", kind, major, minor, space_id, e)


def device_requests_for(pool: Pool) -> list[dict[str, Any]]:
    """The Docker Engine API `HostConfig.DeviceRequests` giving a container every pool device."""
    uuids = sorted({d.parent_uuid or d.uuid for d in pool.devices})
    return [{"Driver": "nvidia", "DeviceIDs": uuids, "Capabilities": [["gpu"]]}]


def gate_for_host(pool: Pool, roots: Mapping[str, int]) -> DeviceGate:
    """The cgroup gate where a v1 devices hierarchy is writable (root), else no enforcement."""
    root = Path("/sys/fs/cgroup/devices")
    if os.geteuid() == 0 and (root / "devices.allow").exists():
        return CgroupDeviceGate(pool, roots, root=root)
    log.warning("ZeroGPU device access is not enforced on this host (no writable cgroup v1 devices hierarchy); "
                "workers are confined to their lease by CUDA_VISIBLE_DEVICES only")
    return ProcessGate()


def _proc_table(proc: Path) -> dict[int, tuple[int, list[int]]]:
    """host pid → (parent pid, NSpid list) for every readable process."""
    table: dict[int, tuple[int, list[int]]] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "status").read_text()
        except OSError:
            continue
        ppid, nspid = 0, [int(entry.name)]
        for line in text.splitlines():
            if line.startswith("PPid:"):
                ppid = int(line.split()[1])
            elif line.startswith("NSpid:"):
                nspid = [int(x) for x in line.split()[1:]]
        table[int(entry.name)] = (ppid, nspid)
    return table


def resolve_in_tree(root: int, pid: int, table: Mapping[int, tuple[int, list[int]]]) -> int | None:
    """The host pid of the descendant of `root` that is `pid` (host pid, or innermost namespaced pid)."""
    children: dict[int, list[int]] = {}
    for p, (pp, _) in table.items():
        children.setdefault(pp, []).append(p)
    stack, seen = list(children.get(root, [])), set()
    while stack:
        p = stack.pop()
        if p in seen:
            continue
        seen.add(p)
        nspid = table[p][1]
        if p == pid and len(nspid) <= 1 or nspid[-1] == pid and len(nspid) > 1:
            return p
        stack.extend(children.get(p, []))
    return None


class TreeKiller:
    """SIGKILLs a worker only inside its Space's process tree. `roots` maps a Space to its root pid (the
    runtime's process for the Space); `send` is injectable for tests."""

    def __init__(self, proc: Path = Path("/proc"), send: Any = os.kill) -> None:
        self.roots: dict[str, int] = {}
        self.proc, self.send = proc, send

    def kill(self, space_id: str, pid: int) -> bool:
        root = self.roots.get(space_id)
        if root is None:
            log.warning("not killing pid %s of %s: the Space's root process is unknown", pid, space_id)
            return False
        host_pid = resolve_in_tree(root, pid, _proc_table(self.proc))
        if host_pid is None:
            log.warning("not killing pid %s: not in the process tree of %s", pid, space_id)
            return False
        try:
            self.send(host_pid, signal.SIGKILL)
        except ProcessLookupError:
            return False
        return True
