"""The `docker` runtime: one hardened container per instance, through the docker SDK.

Hardening (decided by the pure `container_plan`): uid 1000, every capability dropped, no-new-privileges,
read-only root file system, memory (no swap), CPU and pid limits from the flavor clamped to the machine, the
app port published on 127.0.0.1 only, no docker socket, no host directory. Writable: `/tmp` (tmpfs) and, as on
Hugging Face, `$HOME` — an anonymous volume that Docker fills from the image, so the app's files under
`$HOME/app` stay where the image put them and stay writable (also the working directory, when it lies outside
`$HOME`). The volumes go with the container.

Containers carry the labels `spacehost.space`, `spacehost.sha`, `spacehost.instance`, so `adopt()` finds them
after a spacehost restart. The app's output is followed into `spec.log_path` with secret values masked.
A container that ended is removed once `exited()` has read why.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors
import docker.types

from builder.docker_backend import masker
from core.errors import LaunchFailed
from core.routes import Upstream
from core.settings import Settings
from scheduler.runtimes.base import ExitInfo, Instance, LaunchSpec

LABEL_SPACE, LABEL_SHA, LABEL_INSTANCE = "spacehost.space", "spacehost.sha", "spacehost.instance"
LABEL_LIMIT, LABEL_LOG = "spacehost.memory-limit", "spacehost.log"
LABEL_SECRETS = "spacehost.secret-names"  # names only: after adopt(), values are read back from the env
PIDS_LIMIT = 4096
LOG_CONFIG = {"max-size": "10m", "max-file": "2"}  # the engine's own copy; the Space log is spec.log_path


@dataclass(frozen=True)
class Machine:
    memory_bytes: int
    cpus: int

    @classmethod
    def this(cls) -> Machine:
        return cls(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), os.cpu_count() or 1)


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


def container_plan(spec: LaunchSpec, home: str, workdir: str, machine: Machine) -> ContainerPlan:
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
        env=tuple(sorted(spec.env.items())),
        labels=((LABEL_SPACE, art.space_id), (LABEL_SHA, art.sha), (LABEL_INSTANCE, spec.instance_id),
                (LABEL_LIMIT, str(memory)), (LABEL_LOG, spec.log_path),
                (LABEL_SECRETS, ",".join(sorted(k for k, v in spec.env.items() if v in secret_values)))),
        port=art.port,
        memory_bytes=memory,
        nano_cpus=int(min(fl.cpu, machine.cpus) * 1e9),
        pids_limit=PIDS_LIMIT,
        tmpfs=(("/tmp", f"rw,nosuid,nodev,size={memory // 2}"),),
        volumes=tuple(volumes),
        gpus=fl.gpus,
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

    def __init__(self, settings: Settings, machine: Machine | None = None) -> None:
        self.settings = settings
        self.machine = machine or Machine.this()
        self._client: Any = None
        self._followers: dict[str, threading.Thread] = {}  # container id → log follower
        self._ended: dict[str, ExitInfo] = {}  # container id → why it ended (container already removed)
        self._lock = threading.Lock()

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

    # -- blocking parts ---------------------------------------------------------------------------------------

    def _start(self, spec: LaunchSpec) -> Instance:
        image = spec.artifact.image or ""
        try:
            cfg = self.client.images.get(image).attrs.get("Config") or {}
        except docker.errors.ImageNotFound:
            raise LaunchFailed(f"image {image!r} is gone: rebuild the Space") from None
        env = dict(e.split("=", 1) for e in cfg.get("Env") or () if "=" in e)
        home = env.get("HOME", "/home/user")
        plan = container_plan(spec, home, cfg.get("WorkingDir") or "", self.machine)
        self._remove_stale(plan.name)
        try:
            c = self.client.containers.run(**_run_kwargs(plan))
        except docker.errors.APIError as e:
            raise LaunchFailed(f"docker could not start {image}: {e.explanation or e}") from None
        inst = self._instance(c)
        self._follow(c.id, spec.log_path, masker(spec.secret_values), since=None)
        return inst

    def _instance(self, c: Any) -> Instance:
        labels = c.labels
        host_port = _published_port(c.attrs)
        if not host_port:  # the engine fills the bindings in a moment after the start
            c.reload()
            host_port = _published_port(c.attrs)
        return Instance(labels[LABEL_INSTANCE], labels[LABEL_SPACE], labels[LABEL_SHA],
                        Upstream("127.0.0.1", host_port), container_id=c.id)

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
        return info

    def _stop(self, inst: Instance, grace_s: float) -> None:
        cid = inst.container_id or ""
        try:
            c = self.client.containers.get(cid)
            c.stop(timeout=math.ceil(max(0.0, grace_s)))
            self._ended.setdefault(cid, ExitInfo(c.attrs["State"].get("ExitCode"), "stopped"))
            self._join(cid)
            _remove(c)
        except docker.errors.NotFound:
            pass
        self._followers.pop(cid, None)

    def _adopt(self) -> list[Instance]:
        found = []
        for c in self.client.containers.list(all=True, filters={"label": LABEL_INSTANCE}):
            if c.status != "running":
                _remove(c)  # ended while nobody watched: nothing to adopt
                continue
            found.append(self._instance(c))
            env = dict(e.split("=", 1) for e in c.attrs["Config"].get("Env") or () if "=" in e)
            secrets = [env.get(k, "") for k in c.labels.get(LABEL_SECRETS, "").split(",") if k]
            if c.labels.get(LABEL_LOG):
                self._follow(c.id, c.labels[LABEL_LOG], masker(secrets), since=int(time.time()))
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
        "mounts": [docker.types.Mount(target=v, source=None, type="volume") for v in plan.volumes],
        "log_config": docker.types.LogConfig(type="json-file", config=LOG_CONFIG),
    }
    if plan.gpus:
        kwargs["device_requests"] = [docker.types.DeviceRequest(count=plan.gpus, capabilities=[["gpu"]])]
    return kwargs


def _published_port(attrs: dict[str, Any]) -> int:
    """The host port of the one port published (on 127.0.0.1); images may EXPOSE others, unpublished."""
    for bindings in (attrs["NetworkSettings"]["Ports"] or {}).values():
        for b in bindings or ():
            if b.get("HostIp") == "127.0.0.1":
                return int(b["HostPort"])
    return 0


def _remove(c: Any) -> None:
    try:
        c.remove(v=True, force=True)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as e:  # removal already in progress
        if "in progress" not in str(e):
            raise

