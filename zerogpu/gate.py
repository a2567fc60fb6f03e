"""Effects on Space processes and devices, kept behind small Protocols so the broker stays testable.

`Killer` ends a worker whose lease ran out (or whose device went to someone else). The pid comes from the
Space itself (`/allow?pid=`), so it is untrusted: `TreeKiller` kills only a process in the registered Space's
own process tree (and maps a pid seen inside a pid namespace, e.g. bubblewrap's `--unshare-pid`, to the host
pid through `NSpid`). Without a known root pid for the Space nothing is killed; the lease is still ended.

`DeviceGate` is where device access would be granted and revoked. What is enforced where (honestly):

- process runtime (`ProcessGate`, a no-op): the worker gets the device through `CUDA_VISIBLE_DEVICES=<uuid>`,
  which the `spaces` package sets itself. That is a convention, not isolation: `/dev/nvidia*` are readable
  by every process of the host, so a malicious app can open any GPU, ignore its lease, and read or disturb
  another Space's GPU memory. The broker still ends overrunning workers (kill) and charges quota, so a
  cooperating app is time-shared correctly; a hostile one is only bounded by the kill.
- docker runtime (`DockerGate`): Docker cannot add or remove devices of a running container (`docker update`
  has no device flags), so a ZeroGPU container must be created with every pool device (`--gpus` / a
  DeviceRequest for the pool UUIDs, `device_requests_for()` builds it) and the same caveat holds inside it.
  Real per-lease isolation needs the container's device cgroup rewritten on each grant — cgroup v1
  `devices.allow/deny` (the `cgroupPath` the package sends to `/schedule` exists for this), or on cgroup v2
  replacing the eBPF device program runc attached — or one MIG instance per container. None of that is done
  here; `DockerGate.grant/revoke` record the intent so such an enforcer can be plugged in.
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
    def grant(self, space_id: str, device: Device) -> None: ...

    def revoke(self, space_id: str, device: Device) -> None: ...


class ProcessGate:
    """No enforcement: `CUDA_VISIBLE_DEVICES` only (see the module docstring)."""

    def grant(self, space_id: str, device: Device) -> None:
        return None

    def revoke(self, space_id: str, device: Device) -> None:
        return None


class DockerGate:
    """Records grants per Space for a device-cgroup enforcer; enforces nothing by itself."""

    def __init__(self) -> None:
        self.granted: dict[str, set[str]] = {}

    def grant(self, space_id: str, device: Device) -> None:
        self.granted.setdefault(space_id, set()).add(device.uuid)

    def revoke(self, space_id: str, device: Device) -> None:
        self.granted.get(space_id, set()).discard(device.uuid)

    @staticmethod
    def device_requests_for(pool: Pool) -> list[dict[str, Any]]:
        """The Docker Engine API `HostConfig.DeviceRequests` giving a container every pool device."""
        uuids = sorted({d.parent_uuid or d.uuid for d in pool.devices})
        return [{"Driver": "nvidia", "DeviceIDs": uuids, "Capabilities": [["gpu"]]}]


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
