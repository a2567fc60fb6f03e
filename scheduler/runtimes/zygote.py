"""Warm interpreters: one zygote per (Space, env, hardware, SDK), started inside that Space's own sandbox.

The zygote (sdk_templates/warm_main.py) runs as uid 1000 in the sandbox a cold start gets (same system view, its
own cgroup with the flavor's limits, its own network namespace named after it, which its children share: they
listen on its address, each on its own port), imports the SDK once, and forks a child per start. The child is the
instance: the app's env (secrets included) reaches only it, over a socket, and its output goes to that
start's masking log filter. The zygote outlives its children, so a wake (or a restart after a crash) forks in
~0.1-0.4 s instead of a ~4 s cold `import gradio`; while the Space sleeps it holds only the imported SDK.

Code-only pushes reuse the zygote too: its app trees live in its own directory (`<zygote>/apps/<instance>`,
each child's own writable copy of its version's checkout, owned by uid 1000: sandbox/apptree.py), bound at
/opt/spacehost/apps (the directory itself root's, so a child cannot add trees); a child runs in its tree,
reached also as /home/user/app (a symlink in the zygote's home). The tree goes when its child has ended. Only
a new env or hardware starts a new zygote; the superseded one exits when its last child has, or when it was idle
for `idle_s`.

Spares make a first start warm too: after a start, one spare zygote per (env, hardware, SDK) is made in the
background, with no Space's files or env — a fresh sandbox nobody used. The next Space to start on that
env takes it and it becomes that Space's zygote for good. Isolation equals the cold path's: a zygote never
serves two Spaces (that would need the child to re-enter a narrower sandbox without privileges).

Caveat: modules imported by the zygote saw the env of the start that created it (for a spare: no Space env);
a start gets its exact env in `os.environ`, but SDK module-level constants keep the earlier values.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import sdk_templates
from core.crypto import SecretBox
from core.errors import LaunchFailed
from core.hardware import Flavor
from core.stages import Sdk
from sandbox.apptree import writable_copy
from sandbox.bwrap import APP_UID, conceal, interpreter_roots
from sandbox.netns import NetAddress, SpaceNetwork, enter_argv
from scheduler.runtimes.base import Instance, LaunchSpec
from scheduler.runtimes.instances import InstanceState, free_port, save_env, start_ticks
from scheduler.runtimes.sandbox import (
    SandboxMounts,
    app_command,
    limits_for,
    sandbox_argv,
)
from scheduler.runtimes.sandbox_cgroup import SpaceCgroup
from sdk_templates import TEMPLATES

if TYPE_CHECKING:
    from scheduler.runtimes.process import ProcessRuntime

log = logging.getLogger(__name__)

MAIN = Path(sdk_templates.__file__).with_name("warm_main.py")
MAIN_IN_SANDBOX = "/opt/spacehost/zygote.py"
STATUS_IN_SANDBOX = "/run/spacehost"
APPS_IN_SANDBOX = "/opt/spacehost/apps"
APP_LINK = "/home/user/app"  # where HF apps expect their tree: a symlink to the child's version
READY_TIMEOUT_S = 120.0
SPARE_DELAY_S = 3.0  # let the start that asked for a spare have the CPU first
SPARE_WAIT_S = 5.0  # a start waits this long for a spare still importing its SDK, then starts cold
MAX_SPARES = 2


@dataclass(frozen=True)
class ZygoteKey:
    space_id: str  # "" for a spare
    env_dir: str
    hardware: str
    sdk: Sdk

    def spare(self) -> ZygoteKey:
        return ZygoteKey("", self.env_dir, self.hardware, self.sdk)


@dataclass
class Zygote:
    key: ZygoteKey
    zid: str
    dir: Path
    proc: subprocess.Popen[bytes]
    sock: socket.socket
    cgroup: SpaceCgroup | None
    pid_ns: str  # "pid:[inode]" of its sandbox
    children: dict[str, str] = field(default_factory=dict)  # instance id → the sha of its app tree
    last_used: float = field(default_factory=time.monotonic)
    retired: bool = False
    net: NetAddress | None = None  # its network namespace (named after it), which its children share

    def alive(self) -> bool:
        return self.proc.poll() is None

    def request(self, req: dict[str, object], log_fd: int, timeout: float = 10.0) -> int:
        socket.send_fds(self.sock, [json.dumps(req).encode() + b"\n"], [log_fd])
        return int(str(_read_message(self.sock, timeout).get("started")))  # ValueError on a garbled answer


def _read_message(sock: socket.socket, timeout: float) -> dict[str, object]:
    """One JSON line from the zygote. poll(2), not select(2): a server with many Spaces has fds above 1024."""
    data = b""
    deadline = time.monotonic() + timeout
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    while not data.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not poller.poll(left * 1000):
            raise TimeoutError("the zygote did not answer")
        chunk = sock.recv(4096)
        if not chunk:
            raise EOFError("the zygote ended")
        data += chunk
    return json.loads(data)  # type: ignore[no-any-return]


def host_pid(ns_pid: int, pid_ns: str) -> int | None:
    """The host pid of process `ns_pid` of the pid namespace `pid_ns`."""
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if os.readlink(d / "ns" / "pid") != pid_ns:
                continue
            for line in (d / "status").read_text().splitlines():
                if line.startswith("NSpid:") and int(line.split()[-1]) == ns_pid:
                    return int(d.name)
    return None


class ZygotePool:
    idle_s = 24 * 3600.0
    max_spares = MAX_SPARES

    def __init__(self, runtime: ProcessRuntime) -> None:
        self.rt = runtime
        self.box = SecretBox(runtime.settings.secret_key())  # seals the env kept for `spacehost ssh`
        self._zygotes: dict[ZygoteKey, Zygote] = {}
        self._spares: dict[ZygoteKey, Zygote] = {}
        self._spawning: set[ZygoteKey] = set()
        self._by_instance: dict[str, Zygote] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._spare_threads: list[threading.Thread] = []

    def can_serve(self, spec: LaunchSpec) -> bool:
        # A Space with volumes starts cold: a zygote (or a spare) was made without its mounts.
        return spec.artifact.sdk in (Sdk.GRADIO, Sdk.STREAMLIT) and bool(spec.artifact.env_dir) and not spec.volumes

    def start(self, spec: LaunchSpec) -> Instance:
        art = spec.artifact
        key = ZygoteKey(art.space_id, art.env_dir or "", spec.flavor.hardware.value, art.sdk)
        z = self._zygote_for(key, spec)
        inst_dir = self.rt.run_dir / spec.instance_id
        shutil.rmtree(inst_dir, ignore_errors=True)
        inst_dir.mkdir(parents=True, mode=0o700)
        port = free_port()
        python = os.path.join(key.env_dir, "bin", "python")
        argv = app_command(python, TEMPLATES[art.sdk].command(python, art.app_file, port),
                           listen="0.0.0.0" if z.net else "127.0.0.1")
        _, w = self.rt.log_filter(spec, inst_dir)
        try:
            tree = self._stage_tree(z, art.app_dir, spec.instance_id)
            env = self.rt.space_env(spec.env, key.env_dir, port, z.net)
            ns_pid = z.request({"env": env, "argv": argv, "cwd": tree, "app_link": APP_LINK}, w)
        except (OSError, TimeoutError, EOFError, ValueError) as e:
            self._kill(z)
            raise LaunchFailed(f"could not start {art.space_id}: the warm interpreter failed ({e})") from None
        finally:
            os.close(w)
        pid = host_pid(ns_pid, z.pid_ns) or 0
        save_env(inst_dir, env, self.box)
        cg = z.cgroup
        state = InstanceState(spec.instance_id, art.space_id, art.sha, pid, start_ticks(pid) or 0, port,
                              spec.log_path, cg.version if cg else 0, cg.dirs if cg else (),
                              cg.memory_limit if cg else 0, zygote=z.zid,
                              status_path=str(z.dir / "status" / f"{ns_pid}.json"),
                              oom_base=cg.oom_kills() if cg else 0, ip=z.net.ip if z.net else "")
        self.rt.save_state(state)
        with self._lock:
            z.children[spec.instance_id] = art.sha
            self._by_instance[spec.instance_id] = z
        self._replenish(key.spare(), spec)
        return state.instance()

    def released(self, instance_id: str) -> None:
        """An instance ended: forget it; a retired zygote without children goes."""
        with self._lock:
            z = self._by_instance.pop(instance_id, None)
            if z is None:
                return
            z.children.pop(instance_id, None)
            shutil.rmtree(z.dir / "apps" / instance_id, ignore_errors=True)
            z.last_used = time.monotonic()
            if z.retired and not z.children:
                self._kill(z)

    def forget(self, space_id: str) -> None:
        """Kill the zygotes of Space `space_id` (deleted or moved; its instances are stopped already)."""
        with self._lock:
            for z in [z for key, z in self._zygotes.items() if key.space_id == space_id]:
                self._kill(z)

    def close(self) -> None:
        """Kill every zygote; a spare still starting is killed once it is up (waited for, up to a minute)."""
        with self._lock:
            self._closed = True
            for z in [*self._zygotes.values(), *self._spares.values()]:
                self._kill(z)
            starting = list(self._spare_threads)
        for t in starting:
            t.join(timeout=60)

    # -- which zygote ---------------------------------------------------------------------------------------

    def _zygote_for(self, key: ZygoteKey, spec: LaunchSpec) -> Zygote:
        """The Space's zygote for this env: its own, else a spare (which becomes its own), else a new one."""
        self._await_spare(key)
        with self._lock:
            self._evict(key)
            z = self._zygotes.get(key)
            if z is None or not z.alive():
                spare = self._spares.pop(key.spare(), None)
                if spare is not None and spare.alive():
                    z = spare
                    z.key = key
                else:
                    if spare is not None:
                        self._kill(spare)
                    try:
                        z = self._spawn(key, spec.flavor, spec.env)
                    except (OSError, TimeoutError, EOFError) as e:
                        raise LaunchFailed(f"could not start {spec.artifact.space_id}: {e}") from None
                self._zygotes[key] = z
            z.last_used = time.monotonic()
            return z

    def _await_spare(self, key: ZygoteKey, wait_s: float = SPARE_WAIT_S) -> None:
        """Without a zygote of its own, wait (up to `wait_s`) for a spare of this env that is still starting:
        a second spawn beside it would slow both down (a Space moved onto a node right after the node's previous
        start). A spare not ready by then raises LaunchFailed, and the runtime starts the Space cold: on a busy
        machine a spare's SDK import can take longer than the app's own start (a Space placed on a node after
        another node's loss must serve within seconds); the spare still comes up, for the next start."""
        deadline = time.monotonic() + wait_s
        while True:
            with self._lock:
                own = self._zygotes.get(key)
                if key.spare() not in self._spawning or (own is not None and own.alive()):
                    return
            if time.monotonic() >= deadline:
                raise LaunchFailed(f"the warm interpreter of {key.space_id} is not ready within {wait_s:.0f}s")
            time.sleep(0.05)

    def _stage_tree(self, z: Zygote, app_dir: str, instance_id: str) -> str:
        """A writable copy of `app_dir` for this instance in the zygote's apps dir; drop trees no child runs."""
        apps = z.dir / "apps"
        with self._lock:
            keep = {instance_id, *z.children}
        for d in apps.iterdir():
            if d.name not in keep:
                shutil.rmtree(d, ignore_errors=True)
        shutil.rmtree(apps / instance_id, ignore_errors=True)
        writable_copy(app_dir, apps / instance_id, APP_UID)
        return f"{APPS_IN_SANDBOX}/{instance_id}"

    def _evict(self, key: ZygoteKey) -> None:
        """Retire other zygotes of the same Space (superseded) and kill idle or dead ones."""
        now = time.monotonic()
        for k, z in list(self._zygotes.items()):
            if k != key and k.space_id == key.space_id:
                z.retired = True
            idle = not z.children and now - z.last_used > self.idle_s
            if not z.alive() or idle or (z.retired and not z.children):
                self._kill(z)
        for z in list(self._spares.values()):
            if not z.alive() or now - z.last_used > self.idle_s:
                self._kill(z)

    # -- spares ---------------------------------------------------------------------------------------------

    def _replenish(self, spare_key: ZygoteKey, spec: LaunchSpec) -> None:
        """Make a spare for this env in the background, unless there is one (or enough spares)."""
        with self._lock:
            if (self._closed or spare_key in self._spares or spare_key in self._spawning
                    or len(self._spares) + len(self._spawning) >= self.max_spares):
                return
            self._spawning.add(spare_key)
        t = threading.Thread(target=self._make_spare, args=(spare_key, spec.flavor), daemon=True, name="zygote-spare")
        with self._lock:  # started under the lock: close() joins only started threads
            self._spare_threads = [x for x in self._spare_threads if x.is_alive()] + [t]
            t.start()

    def _make_spare(self, key: ZygoteKey, flavor: Flavor) -> None:
        time.sleep(SPARE_DELAY_S)
        z: Zygote | None = None
        try:
            z = self._spawn(key, flavor, {})
        except (OSError, TimeoutError, EOFError, LaunchFailed) as e:
            log.warning("no spare warm interpreter for %s: %s", key.env_dir, e)
        with self._lock:
            self._spawning.discard(key)
            if z is None:
                return
            if self._closed or key in self._spares:
                self._kill(z)
            else:
                self._spares[key] = z

    # -- processes ------------------------------------------------------------------------------------------

    def _spawn(self, key: ZygoteKey, flavor: Flavor, space_env: Mapping[str, str]) -> Zygote:
        """A new zygote in a sandbox and network namespace of its own (LaunchFailed if that has no network)."""
        rt = self.rt
        zid = "zygote-" + uuid.uuid4().hex[:12]
        addr = rt.network_for(zid)
        zdir = rt.run_dir / zid
        for sub in ("home", "status"):
            (zdir / sub).mkdir(parents=True, mode=0o700)
            os.chown(zdir / sub, APP_UID, APP_UID)
        (zdir / "apps").mkdir(mode=0o755)
        limits = limits_for(flavor, rt.machine_memory, rt.machine_cpus)
        cg = SpaceCgroup.create(rt.support.cgroups, zid, limits) if rt.support.cgroups.version else None
        (zdir / "cgroup.json").write_text(json.dumps({"version": cg.version, "dirs": cg.dirs} if cg else {}))
        mounts = SandboxMounts(None, key.env_dir, str(zdir / "home"), extra_ro=interpreter_roots(key.env_dir),
                               files_ro=((str(MAIN), MAIN_IN_SANDBOX),),
                               rw=((str(zdir / "status"), STATUS_IN_SANDBOX), (str(zdir / "apps"), APPS_IN_SANDBOX)),
                               home_size=limits.home_bytes)
        python = os.path.join(key.env_dir, "bin", "python")
        ours, theirs = socket.socketpair()
        command = [python, "-I", MAIN_IN_SANDBOX, key.sdk.value, STATUS_IN_SANDBOX, str(theirs.fileno())]
        has_mem_cg = cg is not None and "memory" in rt.support.cgroups.controllers
        status = os.open(zdir / "bwrap.json", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        argv, hidden = conceal(sandbox_argv(mounts, command, status_fd=status,
                                            rlimits=None if has_mem_cg else limits))
        argv = enter_argv(addr, argv) if addr else argv
        if cg is not None:
            argv = cg.joined(argv)
        env = {k: v for k, v in rt.space_env(space_env, key.env_dir, 0, addr).items()
               if k not in ("PORT", "GRADIO_SERVER_PORT")}
        try:
            with open(zdir / "zygote.log", "ab") as out:
                proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env, cwd="/",
                                        pass_fds=(status, theirs.fileno(), *hidden), start_new_session=True)
        finally:
            for fd in (status, *hidden):
                os.close(fd)
        theirs.close()
        z = Zygote(key, zid, zdir, proc, ours, cg, "", net=addr)
        try:
            _read_message(ours, READY_TIMEOUT_S)
        except (TimeoutError, EOFError):
            tail = (zdir / "zygote.log").read_text(errors="replace")[-2000:]
            self._kill(z)
            raise EOFError(f"the warm interpreter did not start: {tail.strip()}") from None
        z.pid_ns = _pid_ns(zdir / "bwrap.json")
        return z

    def _kill(self, z: Zygote) -> None:
        if self._zygotes.get(z.key) is z:
            self._zygotes.pop(z.key, None)
        if self._spares.get(z.key) is z:
            self._spares.pop(z.key, None)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(z.proc.pid, signal.SIGKILL)
        if z.cgroup is not None:
            z.cgroup.kill_all()
        with contextlib.suppress(subprocess.TimeoutExpired):
            z.proc.wait(timeout=5)
        z.sock.close()
        remove_zygote_dir(z.dir, self.rt.net)


def remove_zygote_dir(zdir: Path, net: SpaceNetwork | None = None) -> None:
    """Kill what is left in a zygote's cgroup, remove the cgroup, its network namespace (named after the
    directory) and the zygote's directory."""
    with contextlib.suppress(OSError, ValueError):
        data = json.loads((zdir / "cgroup.json").read_text())
        if data:
            cg = SpaceCgroup(int(data["version"]), tuple(data["dirs"]))
            cg.kill_all()
            for _ in range(20):
                cg.remove()
                if not any(os.path.isdir(d) for d in cg.dirs):
                    break
                time.sleep(0.05)
    if net is not None:
        with contextlib.suppress(OSError):
            net.remove(zdir.name)
    shutil.rmtree(zdir, ignore_errors=True)


def _pid_ns(bwrap_status: Path) -> str:
    for line in bwrap_status.read_text().splitlines():
        with contextlib.suppress(ValueError):
            data = json.loads(line)
            if "pid-namespace" in data:
                return f"pid:[{data['pid-namespace']}]"
    return ""
