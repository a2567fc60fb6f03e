"""The `process` runtime: each instance is a sandboxed process tree on this machine (see sandbox.py).

Per instance, under `settings.path("run")`: `<id>.json` (pid, its start time, port, cgroups, log path — what
`adopt()` needs after a spacehost restart) and `<id>/` (root only: `home/` owned by uid 1000 and mounted at
/home/user, `app/` the instance's writable copy of the app tree (sandbox/apptree.py) mounted at /home/user/app,
bubblewrap's exit status). The app's stdout/stderr go through a `sed` filter that replaces secret values with
`***` and appends to `spec.log_path`; its script reaches sed through a pipe (no secret at rest), and the filter
is not spacehost's child pipe, so the app keeps logging across a spacehost restart. Each instance has a network
namespace of its own (sandbox/netns.py); the proxy reaches it at that namespace's address.

Limits: cgroups (memory without swap, pids, CPU) where this host lets root create them; otherwise RLIMIT_AS
(the flavor's memory) and a host-wide RLIMIT_NPROC brake, and no CPU limit. Without root or bubblewrap no Space
starts (core/isolation.py says what to install) unless the operator passed --insecure-no-sandbox: then the app
runs as a plain process group of the current user, with no isolation, and every place that shows it says so.

With `warm` (the default where the sandbox works), starts go through shared_zygote.py (`--zygote per-env`, the
default): one zygote per environment shared by every Space on it, each child entering its own sandbox; or, with
`--zygote per-space`, through zygote.py: a pre-started sandbox per environment that imported the SDK already,
claimed by one instance (see there).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

from core.errors import LaunchFailed
from core.isolation import SandboxState
from core.settings import Settings
from core.stages import Sdk
from sandbox.apptree import writable_copy
from sandbox.bwrap import APP_UID, BWRAP, conceal, interpreter_roots
from sandbox.netns import NetAddress, NetworkError, SpaceNetwork, builds_network, enter_argv
from scheduler.env import rebase_host_urls
from scheduler.runtimes import freezer
from scheduler.runtimes.base import (
    Ability,
    ExitInfo,
    Instance,
    LaunchSpec,
    Usage,
    volume_binds,
    volume_ro_binds,
)
from scheduler.runtimes.instances import InstanceState, free_port, start_ticks
from scheduler.runtimes.sandbox import (
    PRLIMIT,
    Limits,
    SandboxMounts,
    app_command,
    app_env,
    format_bytes,
    limits_for,
    mask_script,
    sandbox_argv,
)
from scheduler.runtimes.sandbox_cgroup import CgroupHost, SpaceCgroup
from scheduler.runtimes.shared_zygote import SharedZygotePool
from scheduler.runtimes.zygote import ZygotePool, remove_zygote_dir
from sdk_templates import TEMPLATES

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Support:
    sandbox: bool  # root and a working bubblewrap
    cgroups: CgroupHost
    why_not: str = ""

    @classmethod
    @cache
    def detect(cls) -> Support:
        if os.geteuid() != 0:
            return cls(False, CgroupHost(0, ()), "spacehost does not run as root")
        if not os.path.exists(BWRAP):
            return cls(False, CgroupHost.detect(), f"{BWRAP} is not installed")
        probe = subprocess.run([BWRAP, "--ro-bind", "/", "/", "--unshare-pid", "--", "/bin/true"],
                               capture_output=True, text=True, check=False)
        if probe.returncode != 0:
            return cls(False, CgroupHost.detect(), f"bubblewrap does not work here: {probe.stderr.strip()}")
        return cls(True, CgroupHost.detect())


def describe_isolation(support: Support | None = None) -> str:
    """How Spaces are isolated on this host, in words (README, `spacehost up` banner)."""
    s = support or Support.detect()
    if not s.sandbox:
        return (f"WARNING: Spaces run as plain processes of the spacehost user without a sandbox ({s.why_not}); "
                "run spacehost as root with bubblewrap installed to isolate them.")
    limits = (f"memory (no swap), process count and CPU limits per Space via {s.cgroups.describe()}"
              if s.cgroups.version and {"memory", "pids", "cpu"} <= set(s.cgroups.controllers) else
              f"limits: {s.cgroups.describe()}; memory as RLIMIT_AS and a host-wide RLIMIT_NPROC otherwise")
    return ("Each Space runs in a bubblewrap sandbox as uid 1000 without capabilities (no_new_privs), in its "
            "own mount, pid, ipc and uts namespaces; it sees /usr and /etc read-only, its own writable copy of "
            "the app at /home/user/app (the pushed tree is never changed), its Python env read-only, a private "
            "/home/user (a tmpfs capped at half its memory limit) and /tmp — not the data dir, other Spaces or "
            "/root. Each Space has a network namespace of its "
            "own behind the spacehost bridge (an isolated port: no traffic between Spaces), where the app listens "
            "and the proxy reaches it; from there only the hub's and the broker's ports on the bridge gateway, no "
            "private or link-local range but DNS, and the public internet through NAT (iptables, fail closed). "
            f"{limits[0].upper()}{limits[1:]}.")


def exit_reason(code: int | None, oom_kills: int, memory_limit: int, cgroups: bool) -> ExitInfo:
    """Why an instance ended, from its exit status (128+N: signal N, bubblewrap's convention) and OOM count."""
    if oom_kills:
        limit = f" (limit {format_bytes(memory_limit)})" if memory_limit else ""
        return ExitInfo(code, f"killed: out of memory{limit}")
    if code is None:
        return ExitInfo(None, "exited (status unknown)")
    if code < 0 or code > 128:
        sig = -code if code < 0 else code - 128
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        hint = "; maybe out of memory" if sig == signal.SIGKILL and not cgroups else ""
        return ExitInfo(code, f"killed by signal {sig} ({name}{hint})")
    return ExitInfo(code, f"exited with code {code}")


def space_memory_cap(machine: int, operator_max: str) -> int:
    """The most memory any one Space gets: the machine's, or less where the operator says so
    (SPACEHOST_SPACE_MEMORY_MAX, bytes with an optional K/M/G suffix; flavors are clamped to it)."""
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    value = operator_max.strip().lower().removesuffix("b").removesuffix("i")
    if not value:
        return machine
    scale = units.get(value[-1], 1)
    try:
        return min(machine, int(float(value.rstrip("kmg")) * scale))
    except ValueError:
        raise LaunchFailed(f"SPACEHOST_SPACE_MEMORY_MAX={operator_max!r} is not a size") from None


class ProcessRuntime:
    name = "process"
    abilities = frozenset({Ability.FREEZE, Ability.USAGE, Ability.HOT_RELOAD, Ability.HOST_NETWORK})
    WARM_DEFAULT = True

    def __init__(self, settings: Settings, warm: bool | None = None, support: Support | None = None) -> None:
        self.settings = settings
        self.support = support or Support.detect()
        self.run_dir = settings.path("run")
        self.machine_memory = space_memory_cap(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
                                               os.environ.get("SPACEHOST_SPACE_MEMORY_MAX", ""))
        self.machine_cpus = os.cpu_count() or 1
        self._procs: dict[str, subprocess.Popen[bytes]] = {}  # instance id → sandbox leader (our children)
        self._filters: dict[str, subprocess.Popen[bytes]] = {}  # instance id → its log filter
        self._ended: dict[str, ExitInfo] = {}
        self.net = SpaceNetwork.for_install(settings.install_tag) if self.support.sandbox else None
        self.host_urls: dict[str, str] = {}  # base URL on the host → as a Space reaches it (the gateway)
        if (warning := self.sandbox_state().warning()) is not None:
            log.warning("%s", warning)
        if warm is None:
            warm = os.environ.get("SPACEHOST_PROCESS_WARM", "1" if self.WARM_DEFAULT else "0") not in ("0", "")
        self.warm = warm and self.support.sandbox
        pool = SharedZygotePool if settings.zygote == "per-env" else ZygotePool
        self._zygotes: ZygotePool | SharedZygotePool | None = pool(self) if self.warm else None

    # -- Runtime Protocol -------------------------------------------------------------------------------------

    async def start(self, spec: LaunchSpec) -> Instance:
        if (state := self.sandbox_state()).refuses:
            raise LaunchFailed(state.refusal())
        if self._zygotes is not None and self._zygotes.can_serve(spec):
            try:
                return await asyncio.to_thread(self._zygotes.start, spec)
            except LaunchFailed as e:  # a warm interpreter that did not come up must not fail the start
                log.warning("%s; starting %s cold instead", e.message, spec.artifact.space_id)
        return await asyncio.to_thread(self._start, spec)

    async def exited(self, inst: Instance) -> ExitInfo | None:
        return await asyncio.to_thread(self._exited, inst)

    async def stop(self, inst: Instance, grace_s: float = 5.0) -> None:
        await asyncio.to_thread(self._stop, inst, grace_s)

    async def adopt(self) -> list[Instance]:
        return await asyncio.to_thread(self._adopt)

    async def freeze(self, inst: Instance) -> bool:
        """Freeze the instance's cgroup (a warm instance's is its zygote's, which serves only its Space)."""
        state = self._state(inst.instance_id)
        if state is None or not state.cgroup_dirs:
            return False
        return await asyncio.to_thread(freezer.freeze, state.cgroup_dirs)

    async def thaw(self, inst: Instance) -> None:
        if (state := self._state(inst.instance_id)) is not None:
            await asyncio.to_thread(freezer.thaw, state.cgroup_dirs)

    async def usage(self, inst: Instance) -> Usage | None:
        state = self._state(inst.instance_id)
        return None if state is None else await asyncio.to_thread(freezer.usage, state.cgroup_dirs, state.pid)

    def describe_isolation(self) -> str:
        return self.sandbox_state().warning() or describe_isolation(self.support)

    def sandbox_state(self) -> SandboxState:
        return SandboxState(self.support.sandbox, self.support.why_not, self.settings.insecure_no_sandbox)

    def forget_space(self, space_id: str) -> None:
        if self._zygotes is not None:
            self._zygotes.forget(space_id)

    def pending_reason(self, space_id: str) -> str | None:
        return None

    def close(self) -> None:
        """Kill every warm interpreter (the shared zygotes, live and retired; or each Space's zygotes and the
        spares); instances are stopped already. Blocking."""
        if self._zygotes is not None:
            self._zygotes.close()

    # -- network ----------------------------------------------------------------------------------------------

    def gateway(self) -> str | None:
        """The host's address on the Spaces' bridge (made, firewalled, if missing), where spacehost binds what
        Spaces call before `expose_host_services`; None without a sandbox or when the bridge cannot be made
        (then every start fails closed, saying why). Blocking."""
        if self.net is None:
            return None
        try:
            gateway = self.net.ensure()
            if gone := self.net.prune():
                log.info("removed %d network namespaces that no process used", len(gone))
            return gateway
        except NetworkError as e:
            log.error("the Spaces' network is not available, no Space will start: %s", e)
            return None

    def expose_host_services(self, services: Mapping[str, int]) -> None:
        """Base URL on the host → the port on the gateway serving the same: the firewall opens those ports to
        Spaces and their env URLs (HF_ENDPOINT, SPACES_ZERO_DEVICE_API_URL) are rebased onto the gateway. An
        empty mapping withdraws them (at shutdown: then the bridge goes too, unless Spaces still use it). Blocking."""
        if self.net is None:
            return
        gateway = self.net.gateway
        self.host_urls = {base: f"http://{gateway}:{port}" for base, port in services.items()}
        try:
            self.net.expose(str(self.settings.data_dir), services.values())
            if not services:  # stopping: the Spaces' bridge and the builds' one go, unless still in use
                self.net.remove_if_unused()
                builds_network(self.settings.install_tag).remove_if_unused()
        except NetworkError as e:
            log.error("the Spaces' network is not available, no Space will start: %s", e)

    def network_for(self, name: str) -> NetAddress | None:
        """A fresh network namespace `name` for a sandbox (None without a sandbox). Fail closed: LaunchFailed."""
        if self.net is None:
            return None
        try:
            return self.net.create(name)
        except NetworkError as e:
            raise LaunchFailed(f"no isolated network for the Space, so it does not start: {e}") from None

    def space_env(self, env: Mapping[str, str], env_dir: str | None, port: int,
                  addr: NetAddress | None) -> dict[str, str]:
        """`app_env` for an app in namespace `addr` (listening on all its addresses, spacehost's URLs
        rebased onto the gateway), or on the host's loopback without one."""
        if addr is None:
            return app_env(env, env_dir, port)
        return rebase_host_urls(app_env(env, env_dir, port, listen="0.0.0.0"), self.host_urls)

    def drop_network(self, name: str) -> None:
        if self.net is not None and name:
            with contextlib.suppress(NetworkError):
                self.net.remove(name)

    # -- start --------------------------------------------------------------------------------------------------

    def prepare(self, spec: LaunchSpec) -> tuple[Path, Limits, SpaceCgroup | None]:
        """The instance directory (with a fresh home for uid 1000), its limits and cgroup."""
        art = spec.artifact
        if art.sdk in (Sdk.STATIC, Sdk.DOCKER) or not art.env_dir:
            raise LaunchFailed(f"{art.space_id}: the process runtime runs gradio and streamlit Spaces built by "
                               f"the process backend (this is a {art.sdk.value} Space without a Python env)")
        self.run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        inst_dir = self.run_dir / spec.instance_id
        shutil.rmtree(inst_dir, ignore_errors=True)
        (inst_dir / "home").mkdir(parents=True, mode=0o700)
        if self.support.sandbox:
            os.chown(inst_dir / "home", APP_UID, APP_UID)
        writable_copy(art.app_dir, inst_dir / "app", APP_UID if self.support.sandbox else None)
        limits = limits_for(spec.flavor, self.machine_memory, self.machine_cpus)
        cg = SpaceCgroup.create(self.support.cgroups, spec.instance_id, limits) if self.support.cgroups.version else None
        return inst_dir, limits, cg

    def log_filter(self, spec: LaunchSpec, inst_dir: Path) -> tuple[subprocess.Popen[bytes], int]:
        """Start the masking filter appending to the log; returns it and the write end of its input pipe.
        The script (it holds the secret values) reaches sed through a pipe, never a file: no secret at rest."""
        Path(spec.log_path).parent.mkdir(parents=True, exist_ok=True)
        r, w = os.pipe()
        script_r, script_w = os.pipe()
        try:
            with open(spec.log_path, "ab") as out:
                filt = subprocess.Popen(["sed", "-u", "-f", f"/dev/fd/{script_r}"], stdin=r, stdout=out,
                                        stderr=out, pass_fds=(script_r,), env={"LC_ALL": "C", "PATH": "/usr/bin:/bin"},
                                        start_new_session=True)
        finally:
            os.close(r)
            os.close(script_r)
        with os.fdopen(script_w, "wb") as f:  # sed reads its whole script before any input
            f.write(mask_script(spec.secret_values).encode())
        self._filters[spec.instance_id] = filt
        return filt, w

    def _start(self, spec: LaunchSpec) -> Instance:
        art = spec.artifact
        addr = self.network_for("sh-" + uuid.uuid4().hex[:12])
        try:
            inst_dir, limits, cg = self.prepare(spec)
        except (OSError, LaunchFailed):
            self.drop_network(addr.name if addr else "")
            raise
        port = free_port()
        python = os.path.join(art.env_dir or "", "bin", "python")
        command = app_command(python, TEMPLATES[art.sdk].command(python, art.app_file, port),
                              listen="0.0.0.0" if addr else "127.0.0.1")
        env = self.space_env(spec.env, art.env_dir, port, addr)
        _, w = self.log_filter(spec, inst_dir)
        status = os.open(inst_dir / "status.json", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        hidden: tuple[int, ...] = ()  # conceal's fds: the sandbox's argv, out of its /proc/1/cmdline
        try:
            if self.support.sandbox:
                mounts = SandboxMounts(str(inst_dir / "app"), art.env_dir, str(inst_dir / "home"),
                                       extra_ro=interpreter_roots(art.env_dir), home_size=limits.home_bytes,
                                       rw=volume_binds(spec), files_ro=volume_ro_binds(spec),
                                       app_writable=True)
                has_mem_cg = cg is not None and "memory" in self.support.cgroups.controllers
                argv, hidden = conceal(sandbox_argv(mounts, command, status_fd=status,
                                                    rlimits=None if has_mem_cg else limits))
                argv = enter_argv(addr, argv) if addr else argv
                cwd = "/"
            else:
                env["HOME"] = str(inst_dir / "home")
                argv = [PRLIMIT, f"--as={limits.memory_bytes}", "--", *command] if os.path.exists(PRLIMIT) else command
                cwd = str(inst_dir / "app")
            if cg is not None:
                argv = cg.joined(argv)
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=w, stderr=w, env=env, cwd=cwd,
                                    pass_fds=(status, *hidden), start_new_session=True)
        except OSError as e:
            self._cleanup_dir(spec.instance_id, cg)
            self.drop_network(addr.name if addr else "")
            raise LaunchFailed(f"could not start {art.space_id}: {e}") from None
        finally:
            for fd in (w, status, *hidden):
                os.close(fd)
        self._procs[spec.instance_id] = proc
        state = InstanceState(spec.instance_id, art.space_id, art.sha, proc.pid, start_ticks(proc.pid) or 0, port,
                              spec.log_path, cg.version if cg else 0, cg.dirs if cg else (),
                              cg.memory_limit if cg else limits.memory_bytes,
                              ip=addr.ip if addr else "", netns=addr.name if addr else "")
        self.save_state(state)
        return state.instance()

    def save_state(self, state: InstanceState) -> None:
        tmp = self.run_dir / f".{state.instance_id}.json.tmp"
        tmp.write_text(json.dumps(asdict(state)))
        tmp.replace(self.run_dir / f"{state.instance_id}.json")

    # -- exit, stop, adopt ------------------------------------------------------------------------------------

    def _state(self, instance_id: str) -> InstanceState | None:
        with contextlib.suppress(OSError, ValueError, TypeError):
            return InstanceState.load(self.run_dir / f"{instance_id}.json")
        return None

    def _running(self, inst: Instance) -> bool:
        proc = self._procs.get(inst.instance_id)
        if proc is not None:
            return proc.poll() is None
        state = self._state(inst.instance_id)
        return state is not None and start_ticks(state.pid) == state.start_ticks

    def _exited(self, inst: Instance) -> ExitInfo | None:
        iid = inst.instance_id
        if iid in self._ended:
            return self._ended[iid]
        if self._running(inst):
            return None
        state = self._state(iid)
        proc = self._procs.pop(iid, None)
        code = proc.returncode if proc is not None else self._status_code(iid, state)
        cg = SpaceCgroup(state.cgroup_version, state.cgroup_dirs, state.memory_limit) if state else None
        ooms = cg.oom_kills() - (state.oom_base if state else 0) if cg else 0
        info = exit_reason(code, ooms, state.memory_limit if state else 0, bool(cg and cg.dirs))
        self._ended[iid] = info
        self._cleanup(iid, state)
        return info

    def _status_code(self, instance_id: str, state: InstanceState | None) -> int | None:
        """The exit code bubblewrap (or the zygote) wrote: adopted instances are not our children."""
        path = Path(state.status_path) if state and state.status_path else self.run_dir / instance_id / "status.json"
        for _ in range(20 if state and state.status_path else 1):  # a zygote writes it just after reaping
            if path.exists():
                break
            time.sleep(0.025)
        with contextlib.suppress(OSError):
            for line in path.read_text().splitlines():
                with contextlib.suppress(ValueError):
                    data = json.loads(line)
                    if "exit-code" in data:
                        return int(data["exit-code"])
        return None

    def _stop(self, inst: Instance, grace_s: float) -> None:
        iid = inst.instance_id
        if iid in self._ended:
            return
        state = self._state(iid)
        if self._running(inst) and state is not None:
            freezer.thaw(state.cgroup_dirs)  # v1 holds signals to frozen tasks until the thaw
            self._signal(state, signal.SIGTERM)
            deadline = time.monotonic() + grace_s
            while time.monotonic() < deadline and self._running(inst):
                time.sleep(0.05)
            if self._running(inst):
                self._signal(state, signal.SIGKILL)
            proc = self._procs.get(iid)
            if proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=5)
        info = self._exited(inst)
        if info is not None:
            self._ended[iid] = ExitInfo(info.code, f"stopped ({info.reason})")

    def _signal(self, state: InstanceState, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(state.pid, sig)
        if sig == signal.SIGKILL and not state.zygote:
            SpaceCgroup(state.cgroup_version, state.cgroup_dirs).kill_all()

    def _adopt(self) -> list[Instance]:
        found: list[Instance] = []
        if not self.run_dir.exists():
            return found
        for path in sorted(self.run_dir.glob("*.json")):
            iid = path.name[: -len(".json")]
            state = self._state(iid)
            if state is not None and start_ticks(state.pid) == state.start_ticks:
                freezer.thaw(state.cgroup_dirs)  # frozen when spacehost stopped: it serves again from the start
                found.append(state.instance())
                continue
            self._cleanup(iid, state)  # stale: ended while nobody watched
        in_use = {s.zygote for i in found if (s := self._state(i.instance_id)) and s.zygote}
        for zdir in self.run_dir.glob("zygote-*"):
            if zdir.name not in in_use:  # its zygote exits with its last child; nothing to adopt
                remove_zygote_dir(zdir, self.net)
        return found

    def _cleanup(self, instance_id: str, state: InstanceState | None) -> None:
        """Kill leftovers, drop the cgroup, the instance dir and state; let the log filter drain.
        A warm instance's cgroup is its zygote's: the pool decides about that."""
        cg = SpaceCgroup(state.cgroup_version, state.cgroup_dirs) if state and not state.zygote else None
        if cg is not None:
            cg.kill_all()
        filt = self._filters.pop(instance_id, None)
        if filt is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                filt.wait(timeout=2)
        self._cleanup_dir(instance_id, cg)
        self.drop_network(state.netns if state else "")
        if self._zygotes is not None:
            self._zygotes.released(instance_id)

    def _cleanup_dir(self, instance_id: str, cg: SpaceCgroup | None) -> None:
        if cg is not None:
            for _ in range(20):
                cg.remove()
                if not any(os.path.isdir(d) for d in cg.dirs):
                    break
                time.sleep(0.05)
        shutil.rmtree(self.run_dir / instance_id, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            (self.run_dir / f"{instance_id}.json").unlink()
