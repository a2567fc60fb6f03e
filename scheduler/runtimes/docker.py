"""The `docker` runtime: one hardened container per instance, through the docker SDK.

Hardening (decided by the pure `container_plan`): uid 1000, every capability dropped, no-new-privileges,
read-only root file system, memory (no swap), CPU and pid limits from the flavor clamped to the machine, the
app port published on 127.0.0.1 only, no docker socket, no host directory. Writable: `/tmp` (tmpfs) and, as on
Hugging Face, `$HOME` — an anonymous volume that Docker fills from the image, so the app's files under
`$HOME/app` stay where the image put them and stay writable (also the working directory, when it lies outside
`$HOME`). The volumes go with the container.

Network: every Space joins one user-defined bridge made by spacehost (`settings.spaces_network`, one per install, labelled
`spacehost.network`, no inter-container traffic). `host.docker.internal` names the host's address on it (the
bridge gateway), where spacehost serves what Spaces call — the hub and the ZeroGPU broker, announced with
`expose_host_services`, whose URLs in the app's env are rebased onto that name. Egress (the pure `firewall`,
applied atomically with iptables-restore): to the host itself only those ports; to private ranges (10/8,
172.16/12, 192.168/16, 169.254/16, 100.64/10) nothing but DNS to the host's resolvers; public addresses as usual.
The app is reached at its port published on 127.0.0.1; the container's own address on the bridge
(`Instance.address`) is where the proxy and the hub reach its hot-reload server (core/routes.reload_route).

Containers carry the labels `spacehost.space`, `spacehost.sha`, `spacehost.instance` and `spacehost.data-dir`,
so `adopt()` finds its own after a spacehost restart (spare containers, which start Gradio and Streamlit Spaces
warm, record theirs on disk: docker_warm.py). The app's output is followed into `spec.log_path` with secret
values masked. A container that ended is removed once `exited()` has read why.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors
import docker.types

from builder.docker_backend import LABEL_SHA, LABEL_SPACE, masker
from core.crypto import SecretBox
from core.errors import LaunchFailed
from core.isolation import SandboxState
from core.routes import Upstream
from core.settings import Settings
from core.stages import Sdk
from sandbox import firewall as fwall
from sandbox.dockernet import Bridge, bridge_of, forward_chain
from sandbox.firewall import Firewall, bridge_firewall, nameservers
from scheduler.env import rebase_host_urls
from scheduler.runtimes.base import Ability, ExitInfo, Instance, LaunchSpec, Usage
from scheduler.runtimes.docker_home import capped_run_kwargs, homes_of, sweep_homes
from scheduler.runtimes.docker_home import release as release_home
from scheduler.runtimes.docker_warm import (
    LABEL_DATA_DIR,
    LABEL_SPARE,
    Registry,
    SparePool,
    handover_tar,
    spare_kwargs,
    warm_key,
)
from scheduler.runtimes.process import space_memory_cap

log = logging.getLogger("spacehost.docker")

LABEL_INSTANCE = "spacehost.instance"  # LABEL_SPACE, LABEL_SHA: the images' own (builder)
LABEL_LIMIT, LABEL_LOG = "spacehost.memory-limit", "spacehost.log"
LABEL_SECRETS = "spacehost.secret-names"  # names only: after adopt(), values are read back from the env
PIDS_LIMIT = 4096
LOG_CONFIG = {"max-size": "10m", "max-file": "2"}  # the engine's own copy; the Space log is spec.log_path
LABEL_NETWORK = "spacehost.network"
HOST_ALIAS = "host.docker.internal"


@dataclass(frozen=True)
class Machine:
    memory_bytes: int
    cpus: int

    @classmethod
    def this(cls) -> Machine:
        """This machine, its memory capped as the operator says (SPACEHOST_SPACE_MEMORY_MAX, as for processes)."""
        memory = space_memory_cap(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
                                  os.environ.get("SPACEHOST_SPACE_MEMORY_MAX", ""))
        return cls(memory, os.cpu_count() or 1)


def firewall(bridge: Bridge, host_ports: tuple[int, ...], resolvers: tuple[str, ...],
             forward_chain: str = "DOCKER-USER") -> Firewall:
    """Egress of the Spaces on `bridge` (sandbox/firewall.py): to the host only `host_ports` on the gateway;
    forwarded (`forward_chain`), nothing to private ranges but DNS to the host's private `resolvers` (the
    engine's embedded DNS forwards from inside the container); public addresses on to Docker's own rules."""
    return bridge_firewall(bridge.interface, bridge.gateway, host_ports, resolvers, forward_chain=forward_chain)


@dataclass(frozen=True)
class ContainerPlan:
    """Everything `containers.run` gets, decided without I/O."""

    name: str
    image: str
    env: tuple[tuple[str, str], ...]
    labels: tuple[tuple[str, str], ...]
    port: int
    memory_bytes: int
    nano_cpus: int
    pids_limit: int
    tmpfs: tuple[tuple[str, str], ...]
    volumes: tuple[str, ...]  # anonymous volumes, filled from the image
    gpus: int
    network: str | None = None
    extra_hosts: tuple[tuple[str, str], ...] = ()
    binds: tuple[tuple[str, str, bool], ...] = ()  # persistent volumes: (host dir, path, read-only)

    def limits(self) -> dict[str, Any]:
        """What a spare container must share with this plan to serve it (docker_warm.warm_key)."""
        return {"memory": self.memory_bytes, "cpus": self.nano_cpus, "pids": self.pids_limit, "port": self.port,
                "tmpfs": self.tmpfs, "volumes": self.volumes, "gpus": self.gpus, "network": self.network,
                "hosts": self.extra_hosts, "binds": self.binds}


def container_plan(spec: LaunchSpec, home: str, workdir: str, machine: Machine, bridge: Bridge | None = None,
                   host_urls: Mapping[str, str] = {}, owner: str = "") -> ContainerPlan:
    """`host_urls` maps base URLs of spacehost on the host to the same services as the container reaches them;
    `owner` (the data dir) is labelled on the container."""
    art, fl = spec.artifact, spec.flavor
    if not art.image:
        raise LaunchFailed(f"{art.space_id} at {art.sha[:12]} has no image: build it with the docker backend")
    memory = min(fl.memory_bytes, machine.memory_bytes)
    secret_values = set(spec.secret_values)
    volumes = [home]
    if workdir and workdir != "/" and not (workdir + "/").startswith(home.rstrip("/") + "/"):
        volumes.append(workdir)
    return ContainerPlan(
        name="spacehost-" + re.sub(r"[^A-Za-z0-9_.-]", "-", spec.instance_id),
        image=art.image,
        env=tuple(sorted(rebase_host_urls(spec.env, host_urls).items())),
        labels=((LABEL_SPACE, art.space_id), (LABEL_SHA, art.sha), (LABEL_INSTANCE, spec.instance_id),
                (LABEL_LIMIT, str(memory)), (LABEL_LOG, spec.log_path),
                (LABEL_SECRETS, ",".join(sorted(k for k, v in spec.env.items() if v in secret_values))),
                *(((LABEL_DATA_DIR, owner),) if owner else ())),
        port=art.port,
        memory_bytes=memory,
        nano_cpus=int(min(fl.cpu, machine.cpus) * 1e9),
        pids_limit=PIDS_LIMIT,
        tmpfs=(("/tmp", f"rw,nosuid,nodev,size={memory // 2}"),),
        volumes=tuple(volumes),
        gpus=fl.gpus,
        network=bridge.name if bridge else None,
        extra_hosts=((HOST_ALIAS, bridge.gateway),) if bridge else (),
        binds=spec.volumes,
    )


def exit_info(state: dict[str, Any], memory_limit: int | None) -> ExitInfo | None:
    """Why a container ended, from its inspected `State`; None while it runs."""
    if state.get("Status") not in ("exited", "dead") and state.get("Running", True):
        return None
    code = state.get("ExitCode")
    if state.get("OOMKilled"):
        limit = f" (limit {format_bytes(memory_limit)})" if memory_limit else ""
        return ExitInfo(code, f"killed: out of memory{limit}")
    if isinstance(code, int) and code > 128:
        return ExitInfo(code, f"killed by signal {code - 128}")
    error = state.get("Error") or ""
    return ExitInfo(code, f"exited with code {code}" + (f": {error}" if error else ""))


def format_bytes(n: int) -> str:
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= size:
            return f"{n / size:g} {unit}"
    return f"{n} B"


class DockerRuntime:
    name = "docker"
    abilities = frozenset({Ability.FREEZE, Ability.HOST_NETWORK, Ability.HOT_RELOAD})

    def __init__(self, settings: Settings, machine: Machine | None = None) -> None:
        self.settings = settings
        self.machine = machine or Machine.this()
        self._client: Any = None
        self._followers: dict[str, threading.Thread] = {}  # container id → log follower
        self._ended: dict[str, ExitInfo] = {}  # container id → why it ended (container already removed)
        self._lock = threading.Lock()
        self._net_lock = threading.Lock()
        self._bridge: Bridge | None = None
        self.host_urls: dict[str, str] = {}  # base URL on the host → as a container reaches it
        self.host_ports: tuple[int, ...] = ()  # ports of the gateway that Spaces may connect to
        self.owner = str(settings.data_dir)
        self.registry = Registry(settings.path("docker-instances"), SecretBox(settings.secret_key()))
        self.spares = SparePool(lambda: self.client, self._run, _remove)

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = docker.from_env(max_pool_size=64)
        return self._client

    # -- Runtime Protocol -------------------------------------------------------------------------------------

    async def start(self, spec: LaunchSpec) -> Instance:
        return await asyncio.to_thread(self._start, spec)

    async def exited(self, inst: Instance) -> ExitInfo | None:
        return await asyncio.to_thread(self._exited, inst)

    async def stop(self, inst: Instance, grace_s: float = 5.0) -> None:
        await asyncio.to_thread(self._stop, inst, grace_s)

    async def adopt(self) -> list[Instance]:
        return await asyncio.to_thread(self._adopt)

    async def freeze(self, inst: Instance) -> bool:
        """`docker pause` (the engine's cgroup freezer)."""
        return await asyncio.to_thread(self._pause, inst, True)

    async def thaw(self, inst: Instance) -> None:
        await asyncio.to_thread(self._pause, inst, False)

    async def usage(self, inst: Instance) -> Usage | None:
        return None  # not measured here yet (the engine's stats call takes a second per container)

    def _pause(self, inst: Instance, pause: bool) -> bool:
        try:
            c = self.client.containers.get(inst.container_id or "")
            if pause and c.status == "running":
                c.pause()
            elif not pause and c.status == "paused":
                c.unpause()
            return True
        except docker.errors.APIError:  # NotFound included: it ended meanwhile
            return False

    def describe_isolation(self) -> str:
        return ("Each Space runs in a Docker container as uid 1000 with every capability dropped, no-new-privileges, "
                "a read-only root and the flavor's memory, CPU and pids limits, on the bridge network "
                f"{self.settings.spaces_network!r} (no traffic between Spaces; only the hub and broker ports of "
                "the host; private ranges rejected).")

    def sandbox_state(self) -> SandboxState:
        return SandboxState(True)  # a container is the sandbox: whatever the engine cannot do, it refuses to run

    def pending_reason(self, space_id: str) -> str | None:
        return None

    def close(self) -> None:
        """Remove the spare containers (the Spaces' own keep running, to be adopted), and the network once no
        container is left on it (spacehost stopped its Spaces). Blocking."""
        self.spares.close()
        with self._net_lock:
            net = self._find_network()
        if net is not None:
            net.reload()  # a listing leaves out the containers
            if not net.attrs.get("Containers"):
                self.remove_network()

    def forget_space(self, space_id: str) -> None:
        """The Space is deleted: remove the spares started from its images, so the images can go. Blocking."""
        self.spares.forget(space_id)

    # -- network ----------------------------------------------------------------------------------------------

    def gateway(self) -> str:
        """The host's address on the Spaces' network (made, firewalled, if missing): bind there what Spaces
        call, then `expose_host_services`. Blocking."""
        return self._network().gateway

    def expose_host_services(self, services: Mapping[str, int]) -> None:
        """Let Spaces reach spacehost's services: base URL on the host → the port on the gateway that serves
        the same. Their URLs in an app's env are rebased onto HOST_ALIAS; the firewall opens those ports only."""
        bridge = self._network()
        with self._net_lock:
            self.host_urls = {base: f"http://{HOST_ALIAS}:{port}" for base, port in services.items()}
            self.host_ports = tuple(sorted(set(services.values())))
            self._apply_firewall(bridge)

    def remove_network(self) -> None:
        """Remove the network and its firewall rules (for tests and uninstall: no Space may still use it)."""
        with self._net_lock:
            net = self._find_network()
            if net is None:
                return
            bridge = bridge_of(net.attrs)
            fwall.remove(firewall(bridge, (), (), forward_chain()))
            net.remove()
            self._bridge = None

    def _network(self) -> Bridge:
        with self._net_lock:
            if self._bridge is None:
                net = self._find_network()
                if net is None:
                    net = self.client.networks.create(
                        self.settings.spaces_network, driver="bridge", check_duplicate=True,
                        labels={LABEL_NETWORK: "spaces"}, options={"com.docker.network.bridge.enable_icc": "false"})
                    net.reload()
                elif LABEL_NETWORK not in (net.attrs.get("Labels") or {}):
                    raise LaunchFailed(f"docker network {net.name!r} exists and was not made by spacehost: "
                                       "remove it or choose another --docker-network")
                bridge = bridge_of(net.attrs)
                self._apply_firewall(bridge)
                self._bridge = bridge
            return self._bridge

    def _find_network(self) -> Any:
        name = self.settings.spaces_network
        return next((n for n in self.client.networks.list(names=[name]) if n.name == name), None)

    def _apply_firewall(self, bridge: Bridge) -> None:
        """Fail closed: a Space never starts on a network whose egress rules could not be set."""
        try:
            resolvers = nameservers(Path("/etc/resolv.conf").read_text())
        except OSError:
            resolvers = ()
        try:
            fwall.apply(firewall(bridge, self.host_ports, resolvers, forward_chain()))
        except fwall.FirewallError as e:
            raise LaunchFailed(f"cannot set the egress rules of the Spaces' network: {e}") from None
        log.info("egress rules of %s (%s): host ports %s", bridge.name, bridge.interface, list(self.host_ports))

    # -- blocking parts ---------------------------------------------------------------------------------------

    def _start(self, spec: LaunchSpec) -> Instance:
        image = spec.artifact.image or ""
        try:
            attrs = self.client.images.get(image).attrs
        except docker.errors.ImageNotFound:
            raise LaunchFailed(f"image {image!r} is gone: rebuild the Space") from None
        cfg = attrs.get("Config") or {}
        env = dict(e.split("=", 1) for e in cfg.get("Env") or () if "=" in e)
        home = env.get("HOME", "/home/user")
        plan = container_plan(spec, home, cfg.get("WorkingDir") or "", self.machine, self._network(),
                              self.host_urls, self.owner)
        kwargs = _run_kwargs(plan)
        sdk = spec.artifact.sdk
        key = warm_key(attrs, sdk.value, plan.limits()) if sdk in (Sdk.GRADIO, Sdk.STREAMLIT) else None
        self._remove_stale(plan.name)
        c = self._take_spare(key, spec, plan, list(cfg.get("Cmd") or ()), home) if key else None
        if c is None:
            try:
                c = self._run(kwargs)
            except docker.errors.APIError as e:
                raise LaunchFailed(f"docker could not start {image}: {e.explanation or e}") from None
        inst = self._instance(c)
        self._follow(c.id, spec.log_path, masker(spec.secret_values), since=None)
        if key:
            spare = spare_kwargs(kwargs, key, sdk.value, home, keep=(LABEL_DATA_DIR, LABEL_LIMIT))
            self.spares.replenish_later(key, spare, spec.artifact.space_id)
        return inst

    def _run(self, kwargs: dict[str, Any]) -> Any:
        """`containers.run`, each anonymous volume (the home) a size-capped tmpfs instead (docker_home.py)."""
        kw, homes = capped_run_kwargs(self.client, kwargs, self.owner)
        try:
            return self.client.containers.run(**kw)
        except BaseException:
            for name in homes:
                release_home(self.client, name)
            raise

    def _take_spare(self, key: str, spec: LaunchSpec, plan: ContainerPlan, argv: list[str], home: str) -> Any:
        """A spare container turned into this instance (the SDK already imported), or None."""
        c = self.spares.take(key)
        if c is None:
            return None
        try:
            self.registry.put(c.id, dict(plan.labels), spec.secret_values)
            c.put_archive(home, handover_tar(spec.artifact.app_dir, dict(plan.env), argv))
            c.update(cpu_shares=1024)  # a spare's weight was the lowest
            c.rename(plan.name)
        except (docker.errors.APIError, OSError) as e:
            log.warning("spare %s could not take %s, starting cold: %s", c.short_id, spec.instance_id, e)
            self.registry.drop(c.id)
            _remove(c)
            return None
        log.info("%s starts warm in spare container %s", spec.instance_id, c.short_id)
        return c

    def _labels(self, c: Any) -> dict[str, str]:
        """The container's labels; for a taken spare, those its instance would have had (the registry)."""
        labels = dict(c.labels)
        rec = self.registry.get(c.id) if LABEL_SPARE in labels else None
        if rec is not None:
            labels.update(rec["labels"])
        return labels

    def _instance(self, c: Any) -> Instance:
        labels = self._labels(c)
        host_port = _published_port(c.attrs)
        network = self.settings.spaces_network
        if not host_port or not c.attrs["State"].get("Pid") or not container_address(c.attrs, network):
            c.reload()  # filled in a moment after the start
            host_port = _published_port(c.attrs)
        # The container's init as the host sees it: the ZeroGPU broker kills overrunning workers only below
        # it (mapping the pids the `spaces` package reports from inside the container) and seals its devices.
        pid = int(c.attrs["State"].get("Pid") or 0) or None
        return Instance(labels[LABEL_INSTANCE], labels[LABEL_SPACE], labels[LABEL_SHA],
                        Upstream("127.0.0.1", host_port), pid=pid, container_id=c.id,
                        address=container_address(c.attrs, network))

    def _exited(self, inst: Instance) -> ExitInfo | None:
        cid = inst.container_id or ""
        if cid in self._ended:
            return self._ended[cid]
        try:
            c = self.client.containers.get(cid)
        except docker.errors.NotFound:
            return self._ended.setdefault(cid, ExitInfo(None, "the container is gone"))
        limit = c.labels.get(LABEL_LIMIT)
        info = exit_info(c.attrs["State"], int(limit) if limit and limit.isdigit() else None)
        if info is not None:
            self._ended[cid] = info
            self._join(cid)
            _remove(c)
            self.registry.drop(cid)
        return info

    def _stop(self, inst: Instance, grace_s: float) -> None:
        cid = inst.container_id or ""
        try:
            c = self.client.containers.get(cid)
            if c.status == "paused":  # the frozen tier: a paused container cannot take SIGTERM
                c.unpause()
            c.stop(timeout=math.ceil(max(0.0, grace_s)))
            self._ended.setdefault(cid, ExitInfo(c.attrs["State"].get("ExitCode"), "stopped"))
            self._join(cid)
            _remove(c)
        except docker.errors.NotFound:
            pass
        self.registry.drop(cid)
        self._followers.pop(cid, None)

    def _adopt(self) -> list[Instance]:
        found = []
        listed = [*self.client.containers.list(all=True, filters={"label": LABEL_INSTANCE}),
                  *self.client.containers.list(all=True, filters={"label": LABEL_SPARE})]
        for c in listed:
            if c.labels.get(LABEL_DATA_DIR, self.owner) != self.owner:
                continue  # another installation's
            rec = self.registry.get(c.id) if LABEL_SPARE in c.labels else None
            if c.status == "paused":  # frozen when spacehost stopped: it serves again from the start
                c.unpause()
            elif c.status != "running" or (LABEL_SPARE in c.labels and rec is None):
                _remove(c)  # ended while nobody watched, or a spare nobody took: nothing to adopt
                self.registry.drop(c.id)
                continue
            labels = self._labels(c)
            found.append(self._instance(c))
            if rec is not None:
                secrets = list(rec["secrets"])
            else:
                env = dict(e.split("=", 1) for e in c.attrs["Config"].get("Env") or () if "=" in e)
                secrets = [env.get(k, "") for k in labels.get(LABEL_SECRETS, "").split(",") if k]
            if labels.get(LABEL_LOG):
                self._follow(c.id, labels[LABEL_LOG], masker(secrets), since=int(time.time()))
        sweep_homes(self.client, self.owner)  # of containers that went while nobody watched
        return found

    # -- logs -------------------------------------------------------------------------------------------------

    def _follow(self, cid: str, log_path: str, mask: Any, since: int | None) -> None:
        with self._lock:
            if cid in self._followers and self._followers[cid].is_alive():
                return
            t = threading.Thread(target=self._copy_logs, args=(cid, log_path, mask, since),
                                 name=f"docker-logs-{cid[:12]}", daemon=True)
            self._followers[cid] = t
        t.start()

    def _copy_logs(self, cid: str, log_path: str, mask: Any, since: int | None) -> None:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        try:
            stream = self.client.api.logs(cid, stream=True, follow=True, stdout=True, stderr=True,
                                          since=since)
            with open(log_path, "a", encoding="utf-8") as out:
                pending = ""
                for chunk in stream:
                    pending += chunk.decode("utf-8", "replace")
                    *lines, pending = pending.split("\n")
                    out.writelines(mask(line) + "\n" for line in lines)
                    out.flush()
                if pending:
                    out.write(mask(pending) + "\n")
        except (docker.errors.APIError, OSError):
            return

    def _join(self, cid: str) -> None:
        t = self._followers.get(cid)
        if t is not None:
            t.join(timeout=3)

    def _remove_stale(self, name: str) -> None:
        try:
            _remove(self.client.containers.get(name))
        except docker.errors.NotFound:
            pass


def _run_kwargs(plan: ContainerPlan) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "image": plan.image, "name": plan.name, "detach": True, "init": True,
        "user": "1000:1000", "environment": dict(plan.env), "labels": dict(plan.labels),
        "ports": {f"{plan.port}/tcp": ("127.0.0.1", None)},
        "cap_drop": ["ALL"], "security_opt": ["no-new-privileges"], "read_only": True, "privileged": False,
        "mem_limit": plan.memory_bytes, "memswap_limit": plan.memory_bytes, "nano_cpus": plan.nano_cpus,
        "pids_limit": plan.pids_limit, "tmpfs": dict(plan.tmpfs),
        "mounts": [*(docker.types.Mount(target=v, source=None, type="volume") for v in plan.volumes),
                   *(docker.types.Mount(target=dst, source=src, type="bind", read_only=ro)
                     for src, dst, ro in plan.binds)],
        "log_config": docker.types.LogConfig(type="json-file", config=LOG_CONFIG),
    }
    if plan.network:
        kwargs["network"] = plan.network
        kwargs["extra_hosts"] = dict(plan.extra_hosts)
    if plan.gpus:
        kwargs["device_requests"] = [docker.types.DeviceRequest(count=plan.gpus, capabilities=[["gpu"]])]
    return kwargs


def container_address(attrs: dict[str, Any], network: str) -> str | None:
    """The container's own address on the Spaces' `network` (where its reload server listens, beside the app),
    from its inspected attrs; None when it is not on that network."""
    net = ((attrs.get("NetworkSettings") or {}).get("Networks") or {}).get(network) or {}
    return str(net.get("IPAddress") or "") or None


def _published_port(attrs: dict[str, Any]) -> int:
    """The host port of the one port published (on 127.0.0.1); images may EXPOSE others, unpublished."""
    for bindings in (attrs["NetworkSettings"]["Ports"] or {}).values():
        for b in bindings or ():
            if b.get("HostIp") == "127.0.0.1":
                return int(b["HostPort"])
    return 0


def _remove(c: Any) -> None:
    """Remove the container, its anonymous volumes and its capped homes."""
    homes = homes_of(c.attrs)
    try:
        c.remove(v=True, force=True)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as e:  # removal already in progress
        if "in progress" not in str(e):
            raise
    for name in homes:
        release_home(c.client, name)

