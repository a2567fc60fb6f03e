"""The runtime Protocol: start, probe, stop and re-adopt app instances."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from core.artifact import Artifact
from core.hardware import Flavor
from core.isolation import SandboxState
from core.routes import Upstream, reload_upstream


@dataclass(frozen=True)
class LaunchSpec:
    instance_id: str  # unique per start, e.g. "owner--name--<sha7>--<n>"
    artifact: Artifact
    env: Mapping[str, str]  # full runtime env of the app (DESIGN.md), secrets included
    flavor: Flavor
    log_path: str  # the runtime appends the app's stdout/stderr here
    secret_values: tuple[str, ...] = field(default=(), repr=False)  # masked in logs
    volumes: tuple[tuple[str, str, bool], ...] = ()  # (host dir, mount path in the app, read-only): persistent
    volume_limit: int | None = None  # bytes: the size of the volumes a node makes (placing runtimes); 0: none


def volume_binds(spec: LaunchSpec) -> tuple[tuple[str, str], ...]:
    """The read-write (host dir, path) binds of the spec's volumes (read-only ones: `volume_ro_binds`)."""
    return tuple((src, dst) for src, dst, ro in spec.volumes if not ro)


def volume_ro_binds(spec: LaunchSpec) -> tuple[tuple[str, str], ...]:
    return tuple((src, dst) for src, dst, ro in spec.volumes if ro)


@dataclass(frozen=True)
class Instance:
    instance_id: str
    space_id: str
    sha: str
    upstream: Upstream
    pid: int | None = None  # process runtime: the sandbox's leader pid
    container_id: str | None = None  # docker runtime
    address: str | None = None  # its own network's address where `upstream` is not in it (docker: the port is
    # published on the host's loopback): where its reload server (RELOAD_PORT) listens
    reload: Upstream | None = None  # where its reload server is reached instead (cluster: the node's relay to it,
    # or core.routes.NO_RELOAD)


@dataclass(frozen=True)
class ExitInfo:
    code: int | None
    reason: str  # "exited with code 1", "killed: out of memory (limit 16 GiB)", ...


@dataclass(frozen=True)
class Usage:
    """What one instance costs now: proportional set size over its processes, and its CPU time so far."""

    pss_bytes: int
    cpu_ns: int | None  # None: no CPU account here
    processes: int


class Ability(StrEnum):
    """What a runtime can do beyond start, probe, stop and adopt, declared in its `abilities` (the contract suite
    checks each claim, and that a runtime without one gives the method's neutral answer)."""

    FREEZE = "freeze"  # `freeze` stops an instance in place (True); without: it returns False, it keeps running
    USAGE = "usage"  # `usage` measures PSS and CPU time; without: it returns None
    HOT_RELOAD = "hot-reload"  # an instance has a network of its own (its upstream's host, or `address` where the
    # upstream is a port published on the host), its reload server beside the app; or `reload` says where
    HOST_NETWORK = "host-network"  # `gateway` and `expose_host_services` let Spaces reach services on the host
    PLACEMENT = "placement"  # places Spaces on nodes itself: says why one waits (`pending_reason`) and whether
    # its hardware exists anywhere (the controller does not check this machine's GPUs for it)


def reload_of(abilities: frozenset[Ability], inst: Instance) -> Upstream | None:
    """Where `inst`'s reload server is reached (core.routes.reload_upstream), for a runtime that gives instances a
    network of their own (HOT_RELOAD); None otherwise, or where that server is out of reach."""
    return reload_upstream(inst.upstream, inst.address, inst.reload) if Ability.HOT_RELOAD in abilities else None


class Runtime(Protocol):
    name: str
    abilities: frozenset[Ability]

    async def start(self, spec: LaunchSpec) -> Instance:
        """Start the app; return once the process/container exists (not yet ready)."""
        ...

    async def exited(self, inst: Instance) -> ExitInfo | None:
        """None while the instance runs; why it ended otherwise."""
        ...

    async def stop(self, inst: Instance, grace_s: float = 5.0) -> None:
        """Stop it (TERM, then KILL after `grace_s`); idempotent."""
        ...

    async def adopt(self) -> list[Instance]:
        """Instances this runtime left running before a restart (for recovery)."""
        ...

    async def freeze(self, inst: Instance) -> bool:
        """Stop every process of the instance where it stands (cgroup freezer, `docker pause`), keeping its
        memory and sockets; True once frozen, False where this runtime or host cannot (it keeps running).
        Connections to a frozen instance wait in the kernel's queues until `thaw`."""
        ...

    async def thaw(self, inst: Instance) -> None:
        """Let a frozen instance run again; idempotent. `stop` thaws by itself."""
        ...

    async def usage(self, inst: Instance) -> Usage | None:
        """Its PSS and CPU time now (None: not measurable here)."""
        ...

    def forget_space(self, space_id: str) -> None:
        """The Space was deleted or moved, its instances are stopped: remove what the runtime still keeps for
        it (warm interpreters, spare containers started from its images). Blocking; idempotent."""
        ...

    def describe_isolation(self) -> str:
        """How Spaces are isolated on this host, in a sentence or two (start banner, runtime info)."""
        ...

    def sandbox_state(self) -> SandboxState:
        """Whether Spaces are sandboxed here; `start` raises LaunchFailed with `refusal()` when it `refuses`."""
        ...

    def pending_reason(self, space_id: str) -> str | None:
        """Why the Space is not placed yet, per node in Kubernetes' words (PLACEMENT); None: it is, or this
        runtime does not place."""
        ...

    def gateway(self) -> str | None:
        """The host's address on the Spaces' network (HOST_NETWORK; made if missing), where spacehost binds
        what Spaces call; None without one. Blocking."""
        ...

    def expose_host_services(self, services: Mapping[str, int]) -> None:
        """Base URL on the host → port on the gateway serving the same: Spaces may reach those (HOST_NETWORK;
        a no-op without). Blocking."""
        ...

    def close(self) -> None:
        """Remove what the runtime keeps beside the instances (warm interpreters, spare containers); the
        instances themselves keep running, to be adopted. Blocking; idempotent."""
        ...
