"""Warm interpreters shared by every Space on one env (`--zygote per-env`; issue 16, part 1).

One zygote per (env, SDK) (sdk_templates/warm_main.py with "shared" requests) runs as uid 0 of a user namespace
of its own that owns nothing on the host, in a bubblewrap sandbox with no Space's files, env or network
(sandbox/userns.py). Per start, spacehost prepares the instance as a cold start does (its own writable tree, home
and cgroups: `ProcessRuntime.prepare`), creates its network namespace under the zygote's user namespace, and
hands the zygote detached mounts of the tree and home, the namespace and a reply socket; the forked child enters
that sandbox (sdk_templates/space_entry.py), reports its pid, which spacehost writes into the instance's
cgroups, and after "go" drops to uid 1000 without capabilities and runs the app with exactly its env.

The instance is then tracked as a cold one is (instances.py): its own cgroups and network namespace (removed
when it ends), its pid (the app, pid 1 of its own pid namespace), the exit code that the zygote writes to its
status dir. Any failure before "go" raises LaunchFailed, and the runtime starts the Space cold instead.

The zygote's files live under /run/spacehost-shz/<install tag>/<id> (traversable by its host uid, unlike the data dir): its
status dir, copies of warm_main.py and space_entry.py, and bind mounts of its env and interpreter (from
which its sandbox binds them; they stay while it runs: their unmount would propagate into its mount namespace).
It exits when idle for `idle_s`.

A Space does not depend on its zygote once forked. If the interpreter dies (killed, crashed) its Spaces keep
serving (bubblewrap's init, pid 1 of the zygote's pid namespace, stays while any process is left in it); the
next start on that env sees it dead (`alive` follows the interpreter itself, zygote_procs.py), retires it and
spawns a new one. A retired zygote takes no more requests; it is killed (its init: the whole namespace goes)
and its dir removed once the last instance it forked ended. Its Spaces' exit codes are lost (the reaper was the
interpreter): they end "status unknown", and the controller restarts them as after any crash. If the whole
namespace dies (its init killed), so do its Spaces, and the controller restarts them on a new zygote.
A spacehost that stops with --keep-spaces (or crashes) leaves its zygotes serving their Spaces without a
control socket; the next run's pool retires each one that an adopted instance's state reads its exit status
from, and sweeps what else an earlier run left. Killing a live zygote (`close`) kills its init: nothing of it
is left.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import sdk_templates
from core.crypto import SecretBox
from core.errors import LaunchFailed
from core.stages import Sdk
from sandbox.bwrap import APP_UID, interpreter_roots
from sandbox.netns import NetAddress, NetworkError
from sandbox.userns import (
    ZYGOTE_HOST_UID,
    UsernsError,
    detached_tree,
    peer_pid,
    shared_zygote_argv,
    spawn_in_userns,
)
from scheduler.env import rebase_host_urls
from scheduler.runtimes.base import Instance, LaunchSpec
from scheduler.runtimes.instances import InstanceState, free_port, save_env, start_ticks
from scheduler.runtimes.sandbox import app_command, app_env
from scheduler.runtimes.sandbox_cgroup import SpaceCgroup
from scheduler.runtimes.zygote import READY_TIMEOUT_S, _read_message
from scheduler.runtimes.zygote_procs import ProcRef, interpreter_of, kill_zygote_of, middle_of
from sdk_templates import TEMPLATES

if TYPE_CHECKING:
    from scheduler.runtimes.process import ProcessRuntime

log = logging.getLogger(__name__)

ROOT = Path("/run/spacehost-shz")
TEMPLATE_DIR = Path(sdk_templates.__file__).parent
ENTER_TIMEOUT_S = 30.0
UMOUNT = "/usr/bin/umount"


@dataclass
class Retired:
    """A zygote that takes no more requests, kept while instances it forked run (module docstring)."""

    users: set[str]  # instance ids
    zygote: SharedZygote | None = None  # this run's (None: an earlier run's, found by its dir)


@dataclass(frozen=True)
class EnvKey:
    env_dir: str
    sdk: Sdk


@dataclass
class SharedZygote:
    key: EnvKey
    zid: str
    dir: Path  # ROOT/<zid>: status/, the templates, zygote.log
    pid: int  # the process spawned into the user namespace (bubblewrap); our child
    sock: socket.socket
    children: set[str] = field(default_factory=set)  # instance ids
    last_used: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)  # one request at a time on `sock`
    reaped: bool = False  # `pid` ended and was waited for
    init: ProcRef | None = None  # pid 1 of its pid namespace (bubblewrap's init): killing it ends them all
    main: ProcRef | None = None  # the warm interpreter

    def alive(self) -> bool:
        """Whether its interpreter runs (the outer process alone may have been killed: it is reaped here)."""
        if not self.reaped:
            try:
                self.reaped = os.waitpid(self.pid, os.WNOHANG)[0] != 0
            except ChildProcessError:
                self.reaped = True
        return self.main.alive() if self.main is not None else not self.reaped

    def kill(self) -> None:
        """Kill its pid namespace (the interpreter and every Space it forked) and reap the outer process."""
        for proc in (self.init, self.main):
            if proc is not None:
                proc.kill()
        if not self.reaped:
            _kill_pid(self.pid)
            self.reaped = True


def zygote_env(env_dir: str, host_urls: dict[str, str]) -> dict[str, str]:
    """The zygote's environment: what any app on `env_dir` gets, without a Space's env or port."""
    env = rebase_host_urls(app_env({}, env_dir, 0, listen="0.0.0.0"), host_urls)
    return {k: v for k, v in env.items() if k not in ("PORT", "GRADIO_SERVER_PORT")}


class SharedZygotePool:
    """Same surface as zygote.ZygotePool (start, released, forget, close), one zygote per env."""

    idle_s = 24 * 3600.0

    def __init__(self, runtime: ProcessRuntime) -> None:
        self.rt = runtime
        self.box = SecretBox(runtime.settings.secret_key())  # seals the env kept for `spacehost ssh`
        self._zygotes: dict[EnvKey, SharedZygote] = {}
        self._by_instance: dict[str, SharedZygote] = {}
        self._retired: dict[Path, Retired] = {}  # by zygote dir
        self._lock = threading.Lock()
        self.root = ROOT / runtime.settings.install_tag
        self._sweep()

    def _sweep(self) -> None:
        """Take stock of what zygotes of an earlier run of this install left (a restart with --keep-spaces, a
        crash): a zygote dir that an instance's state file reads its exit status from is retired (kept, with
        its zygote, until those instances ended); every other one goes, with any process of its zygote."""
        if not self.root.is_dir():
            return
        states = ({p.name[: -len(".json")]: p.read_text(errors="replace") for p in self.rt.run_dir.glob("*.json")}
                  if self.rt.run_dir.is_dir() else {})
        for zdir in self.root.glob("shz-*"):
            users = {iid for iid, text in states.items() if str(zdir) + "/" in text}
            if users:
                self._retired[zdir] = Retired(users)
            else:
                _end_dir(zdir)

    def can_serve(self, spec: LaunchSpec) -> bool:
        return (spec.artifact.sdk in (Sdk.GRADIO, Sdk.STREAMLIT) and bool(spec.artifact.env_dir)
                and not spec.volumes and self.rt.net is not None)

    def zygote_pids(self) -> dict[str, int]:
        """env dir → the pid of its zygote (bubblewrap in the zygote's user namespace)."""
        with self._lock:
            return {k.env_dir: z.pid for k, z in self._zygotes.items() if z.alive()}

    def start(self, spec: LaunchSpec) -> Instance:
        art = spec.artifact
        key = EnvKey(art.env_dir or "", art.sdk)
        z = self._zygote_for(key)
        assert self.rt.net is not None  # can_serve
        try:
            addr = self.rt.net.create("sh-" + uuid.uuid4().hex[:12], owner_pid=z.pid)
        except NetworkError as e:
            raise LaunchFailed(f"could not start {art.space_id} from the shared interpreter: {e}") from None
        cg: SpaceCgroup | None = None
        try:
            inst_dir, limits, cg = self.rt.prepare(spec)
            state = self._fork(z, spec, inst_dir, addr, cg, limits.home_bytes)
        except (OSError, LaunchFailed, TimeoutError, EOFError, ValueError) as e:
            if cg is not None:
                cg.kill_all()
            self.rt._cleanup_dir(spec.instance_id, cg)
            self.rt.drop_network(addr.name)
            why = e.message if isinstance(e, LaunchFailed) else str(e)
            raise LaunchFailed(f"could not start {art.space_id} from the shared interpreter: {why}") from None
        self.rt.save_state(state)
        with self._lock:
            z.children.add(spec.instance_id)
            self._by_instance[spec.instance_id] = z
        return state.instance()

    def _fork(self, z: SharedZygote, spec: LaunchSpec, inst_dir: Path, addr: NetAddress,
              cg: SpaceCgroup | None, home_bytes: int) -> InstanceState:
        """Have `z` fork a child that enters this instance's sandbox; place it in `cg`; say "go". Its home is a
        tmpfs of `home_bytes` (as a cold start's: in memory, charged to the Space, never the host's disk)."""
        art = spec.artifact
        port = free_port()
        python = os.path.join(z.key.env_dir, "bin", "python")
        argv = app_command(python, TEMPLATES[art.sdk].command(python, art.app_file, port), listen="0.0.0.0")
        env = self.rt.space_env(spec.env, z.key.env_dir, port, addr)
        req = {"shared": True, "env": env, "argv": argv, "cwd": "/home/user/app"}
        _, w = self.rt.log_filter(spec, inst_dir)
        fds = [w]
        mine, child = socket.socketpair()
        try:
            fds += [detached_tree(str(inst_dir / "app")), _detached_home(inst_dir / "home", home_bytes),
                    os.open(addr.netns_path, os.O_RDONLY)]
            mine.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
            with z.lock:
                socket.send_fds(z.sock, [json.dumps(req).encode() + b"\n"], [*fds, child.fileno()])
                ns_pid = int(str(_read_message(z.sock, 10.0).get("started")))
            for fd in fds:
                os.close(fd)
            fds = []
            child.close()
            pid = peer_pid(mine, ENTER_TIMEOUT_S)
            if cg is not None:  # the middle process too: the Space's limits count every process of its tree
                middle = middle_of(pid, ns_pid)
                if middle is None:
                    raise LaunchFailed(f"the child {ns_pid} of the shared interpreter is not the app's parent")
                cg.join(middle)
                cg.join(pid)
            mine.sendall(b"go\n")
            save_env(inst_dir, env, self.box)  # its /proc environ is the zygote's: `spacehost ssh` reads this
        finally:
            for fd in fds:
                os.close(fd)
            child.close()
            mine.close()
        return InstanceState(spec.instance_id, art.space_id, art.sha, pid, start_ticks(pid) or 0, port,
                             spec.log_path, cg.version if cg else 0, cg.dirs if cg else (),
                             cg.memory_limit if cg else 0, status_path=str(z.dir / "status" / f"{ns_pid}.json"),
                             ip=addr.ip, netns=addr.name)

    def released(self, instance_id: str) -> None:
        """An instance ended. A retired zygote goes with the last instance it forked."""
        done: list[tuple[Path, Retired]] = []
        with self._lock:
            z = self._by_instance.pop(instance_id, None)
            if z is not None:
                z.children.discard(instance_id)
                z.last_used = time.monotonic()
            for zdir, r in list(self._retired.items()):
                r.users.discard(instance_id)
                if not r.users:
                    done.append((zdir, r))
                    del self._retired[zdir]
        for zdir, r in done:
            _end_retired(zdir, r)

    def forget(self, space_id: str) -> None:
        """Nothing to do: a shared zygote holds nothing of any Space."""

    def close(self) -> None:
        """Kill every zygote, live and retired (with whatever still runs in their pid namespaces)."""
        with self._lock:
            for z in list(self._zygotes.values()):
                self._kill(z)
            retired, self._retired = self._retired, {}
        for zdir, r in retired.items():
            _end_retired(zdir, r)

    # -- zygotes ------------------------------------------------------------------------------------------------

    def _zygote_for(self, key: EnvKey) -> SharedZygote:
        with self._lock:
            now = time.monotonic()
            for other in list(self._zygotes.values()):
                if not other.alive() and other.children:
                    self._retire(other)
                elif not other.alive() or (not other.children and now - other.last_used > self.idle_s):
                    self._kill(other)
            z = self._zygotes.get(key)
            if z is None:
                try:
                    z = self._spawn(key)
                except (OSError, TimeoutError, EOFError) as e:
                    raise LaunchFailed(f"the shared interpreter for {key.env_dir} did not start: {e}") from None
                self._zygotes[key] = z
            z.last_used = now
            return z

    def _spawn(self, key: EnvKey) -> SharedZygote:
        zid = "shz-" + uuid.uuid4().hex[:12]
        zdir = self.root / zid
        for d in (ROOT, self.root):
            d.mkdir(mode=0o711, exist_ok=True)
        zdir.mkdir(mode=0o711)
        (zdir / "status").mkdir(mode=0o700)
        os.chown(zdir / "status", ZYGOTE_HOST_UID, ZYGOTE_HOST_UID)
        for name in ("warm_main.py", "space_entry.py"):
            shutil.copyfile(TEMPLATE_DIR / name, zdir / name)
            (zdir / name).chmod(0o644)
        ro = [key.env_dir, *interpreter_roots(key.env_dir)]
        staged = {path: str(zdir / "ro" / str(i)) for i, path in enumerate(ro)}
        ours, theirs = socket.socketpair()
        pid = 0
        try:
            for path, at in staged.items():
                Path(at).mkdir(parents=True, mode=0o755)
                _mount_bind(path, at)
            argv = shared_zygote_argv(os.path.join(key.env_dir, "bin", "python"), key.sdk.value, theirs.fileno(),
                                      ro, str(zdir / "warm_main.py"), str(zdir / "space_entry.py"),
                                      str(zdir / "status"), sources=staged)
            with open(zdir / "zygote.log", "ab") as out:
                pid = spawn_in_userns(argv, pass_fds=[theirs.fileno()], env=zygote_env(key.env_dir, self.rt.host_urls),
                                      stdout=out.fileno())
            theirs.close()
            z = SharedZygote(key, zid, zdir, pid, ours)
            try:
                _read_message(ours, READY_TIMEOUT_S)
            except (TimeoutError, EOFError):
                tail = (zdir / "zygote.log").read_text(errors="replace")[-2000:]
                raise EOFError(f"the warm interpreter did not start: {tail.strip()}") from None
            procs = interpreter_of(pid)
            if procs is None:
                raise EOFError("the warm interpreter is not where its sandbox runs it")
            z.init, z.main = procs
        except (OSError, TimeoutError, EOFError, UsernsError):
            theirs.close()
            ours.close()
            if pid:
                kill_zygote_of(zdir)  # its init too, not only the outer process
                _kill_pid(pid)
            _unmount_staged(zdir)
            if not (zdir / "ro").exists():
                shutil.rmtree(zdir, ignore_errors=True)
            raise
        log.info("shared warm interpreter %s (pid %d) for %s", zid, pid, key.env_dir)
        return z

    def _retire(self, z: SharedZygote) -> None:
        """`z`'s interpreter died, Spaces it forked still run: keep its namespace and dir for them."""
        log.warning("the shared warm interpreter %s for %s ended; %d Spaces keep running, new starts get a new one",
                    z.zid, z.key.env_dir, len(z.children))
        self._zygotes.pop(z.key, None)
        z.sock.close()
        self._retired[z.dir] = Retired(set(z.children), z)

    def _kill(self, z: SharedZygote) -> None:
        """Kill a zygote (and with it every child still running: they live in its pid namespace)."""
        if self._zygotes.get(z.key) is z:
            self._zygotes.pop(z.key, None)
        z.kill()
        z.sock.close()
        _unmount_staged(z.dir)
        if not (z.dir / "ro").exists():
            shutil.rmtree(z.dir, ignore_errors=True)


def _end_retired(zdir: Path, r: Retired) -> None:
    if r.zygote is not None:
        r.zygote.kill()
    _end_dir(zdir)


def _end_dir(zdir: Path) -> None:
    """Kill the zygote of `zdir` (not this run's: found by its command line), unstage its mounts, remove it."""
    kill_zygote_of(zdir)
    _unmount_staged(zdir)
    if not (zdir / "ro").exists():
        shutil.rmtree(zdir, ignore_errors=True)


def _detached_home(home: Path, size: int) -> int:
    """A detached tmpfs of `size` bytes for uid 1000 with an empty app/ (where the tree is attached): mounted at
    `home`, cloned, unmounted again (the clone keeps it; nothing stays mounted on the host)."""
    opts = f"size={size},mode=0700,uid={APP_UID},gid={APP_UID},nosuid,nodev"
    run = subprocess.run(["/usr/bin/mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(home)], capture_output=True,
                         text=True, check=False)
    if run.returncode:
        raise OSError(f"could not make the Space's home: {run.stderr.strip()}")
    try:
        (home / "app").mkdir(mode=0o755)
        os.chown(home / "app", APP_UID, APP_UID)
        return detached_tree(str(home))
    finally:
        subprocess.run([UMOUNT, "--lazy", str(home)], capture_output=True, check=False)


def _mount_bind(path: str, at: str) -> None:
    run = subprocess.run(["/usr/bin/mount", "--bind", path, at], capture_output=True, text=True, check=False)
    if run.returncode:
        raise OSError(f"could not stage {path} for the shared interpreter: {run.stderr.strip()}")


def _unmount_staged(zdir: Path) -> None:
    """Unmount the staged binds; rmdir only (never a recursive removal: a bind left mounted is the env)."""
    ro = zdir / "ro"
    if ro.is_dir():
        for d in ro.iterdir():
            subprocess.run([UMOUNT, "--lazy", str(d)], capture_output=True, check=False)
            with contextlib.suppress(OSError):
                d.rmdir()
        with contextlib.suppress(OSError):
            ro.rmdir()


def _kill_pid(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)
