"""Host side of the shared zygote's sandbox (issue 16, part 1; the child side is sdk_templates/space_entry.py).

- `spawn_in_userns(argv)`: run `argv` as uid 0 of a new user namespace that spacehost (root) owns, mapped to
  `ZYGOTE_HOST_UID` (a host uid that owns no file) with uid/gid 1000 mapped to themselves. It holds every
  capability in that namespace and none on the host; a namespace owned by root (not by uid 1000) gives no Space
  process running as uid 1000 on the host any capability over it. `argv` is normally bubblewrap, which then
  builds the zygote's mount, pid, ipc, uts and (empty) network namespaces inside it.
- `netns_in_userns(userns_pid, name)`: a network namespace at /run/netns/<name> owned by the user namespace of
  `userns_pid`, so the zygote's children can `setns` into it; root on the host still configures it (veth,
  addresses, routes: `ip -n <name>`), as for any other Space's namespace.
- `detached_tree(path, readonly)`: a detached mount of `path` (`open_tree(OPEN_TREE_CLONE)`) to pass to the
  zygote with SCM_RIGHTS; the child attaches it in its own mount namespace.
- `peer_pid(sock)`: the pid a child reported with SCM_CREDENTIALS, in spacehost's pid namespace.
"""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from core.errors import SpacehostError
from sdk_templates import space_entry

ZYGOTE_HOST_UID = 1_999_999_000  # uid 0 inside a zygote's user namespace: owns nothing on the host
APP_UID = space_entry.APP_UID
NETNS_DIR = Path("/run/netns")
NSENTER, UNSHARE, MOUNT = "/usr/bin/nsenter", "/usr/bin/unshare", "/usr/bin/mount"


class UsernsError(SpacehostError, OSError):
    """A user namespace, a namespace under it, or a detached mount could not be made."""


def id_map(inside_root_to: int = ZYGOTE_HOST_UID) -> str:
    """The uid (and gid) map of a zygote's user namespace: 0 → a host id owning nothing, 1000 → 1000."""
    return f"0 {inside_root_to} 1\n{APP_UID} {APP_UID} 1\n"


def spawn_in_userns(argv: Sequence[str], *, pass_fds: Sequence[int] = (), env: dict[str, str] | None = None,
                    stdout: int | None = None) -> int:
    """Fork, move the child into a new user namespace (module docstring), become its uid 0 and exec `argv`.
    Returns the child's pid (the caller reaps it). Fork-then-exec only: no Python runs in the child but
    syscalls, so spacehost's other threads cannot deadlock it."""
    ready_r, ready_w = os.pipe()
    mapped_r, mapped_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover — runs in the child, which execs or exits
        try:
            os.close(ready_r)
            os.close(mapped_w)
            os.setsid()  # not in spacehost's process group: a signal to it (Ctrl-C, `kill -- -PGID`) is not ours
            space_entry.unshare(space_entry.CLONE_NEWUSER)
            os.write(ready_w, b"1")
            if os.read(mapped_r, 1) != b"1":
                os._exit(space_entry.ENTRY_FAILED)
            os.setgroups([])
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
            if stdout is not None:
                os.dup2(stdout, 1)
                os.dup2(stdout, 2)
            for fd in pass_fds:  # every other fd of spacehost's is close-on-exec (Python's default)
                os.set_inheritable(fd, True)
            os.execve(argv[0], list(argv), env if env is not None else {"PATH": "/usr/bin:/bin"})
        finally:
            os._exit(space_entry.ENTRY_FAILED)
    os.close(ready_w)
    os.close(mapped_r)
    try:
        if os.read(ready_r, 1) != b"1":
            raise UsernsError("could not create a user namespace")
        for kind in ("uid", "gid"):
            Path(f"/proc/{pid}/{kind}_map").write_text(id_map())
        os.write(mapped_w, b"1")
    except OSError as e:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        raise UsernsError(f"could not map the zygote's user namespace: {e}") from None
    finally:
        os.close(ready_r)
        os.close(mapped_w)
    return pid


def netns_in_userns(userns_pid: int, name: str) -> str:
    """A fresh network namespace `/run/netns/<name>` owned by the user namespace of process `userns_pid`
    (module docstring); its path. Replaces nothing: the caller removes any namespace of that name first."""
    path = NETNS_DIR / name
    NETNS_DIR.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen([NSENTER, f"--user=/proc/{userns_pid}/ns/user", "--", UNSHARE, "--net", "--",
                               "/bin/sh", "-c", "read _"], stdin=subprocess.PIPE)
    try:
        host = os.readlink("/proc/self/ns/net")
        deadline = time.monotonic() + 10
        while _netns_of(holder.pid) in ("", host):
            if holder.poll() is not None or time.monotonic() > deadline:
                raise UsernsError(f"no network namespace under the user namespace of {userns_pid}")
            time.sleep(0.005)
        path.touch(0o444)
        run = subprocess.run([MOUNT, "--bind", f"/proc/{holder.pid}/ns/net", str(path)], capture_output=True,
                             text=True, check=False)
        if run.returncode:
            path.unlink(missing_ok=True)
            raise UsernsError(f"could not keep network namespace {name}: {run.stderr.strip()}")
    finally:
        holder.kill()
        holder.wait()
    return str(path)


def _netns_of(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return ""


def detached_tree(path: str, readonly: bool = False) -> int:
    """An fd of a detached copy of the mounts at `path` (nosuid, nodev; read-only when asked)."""
    try:
        fd = space_entry.open_tree(path)
        space_entry.set_mount_attrs(fd, space_entry.MOUNT_ATTR_NOSUID | space_entry.MOUNT_ATTR_NODEV
                                    | (space_entry.MOUNT_ATTR_RDONLY if readonly else 0))
    except OSError as e:
        raise UsernsError(f"could not detach {path}: {e}") from None
    return fd


def peer_pid(sock: socket.socket, timeout: float) -> int:
    """Read one message carrying SCM_CREDENTIALS from `sock` (SO_PASSCRED set by the caller) and return the
    sender's pid as this process sees it."""
    sock.settimeout(timeout)
    _, anc, _, _ = sock.recvmsg(4096, socket.CMSG_SPACE(12))
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            pid: int = struct.unpack("iII", data[:12])[0]
            if pid <= 1:  # 0: the sender's pid is not visible here; never hand that to cgroup.procs or kill
                break
            return pid
    raise UsernsError("the child sent no credentials")


def shared_zygote_argv(python: str, sdk: str, ctl_fd: int, ro_paths: Sequence[str], main: str, entry: str,
                       status_dir: str, sources: Mapping[str, str] | None = None) -> list[str]:
    """bubblewrap argv (run by `spawn_in_userns`) for a zygote shared by every Space on one env: the system
    directories and `ro_paths` (the env, its interpreter) read-only, its status dir writable, an empty network
    namespace, an empty `/home/user` where each child attaches its Space's home and tree, and `warm_main.py`
    (`main`) with `space_entry.py` (`entry`) at /opt/spacehost. `sources`: where on the host a path of `ro_paths`
    is bound from, when not from itself (its own path may lie below a directory that the zygote's host uid cannot
    traverse: spacehost binds it somewhere it can first, see scheduler/runtimes/shared_zygote.py). It stays uid 0 of its user namespace with that
    namespace's capabilities (which its children need to enter their Spaces' sandboxes, and then drop)."""
    from sandbox.bwrap import base_argv, parent_dirs

    targets = [*ro_paths, "/opt/spacehost/zygote.py", "/run/spacehost"]
    argv = [*base_argv(), "--unshare-net", "--perms", "0755", "--dir", "/home", "--perms", "0755", "--dir",
            "/home/user", *parent_dirs(targets, made=("/", "/tmp", "/home", "/home/user"))]
    for path in ro_paths:
        argv += ["--ro-bind", (sources or {}).get(path, path), path]
    argv += ["--ro-bind", main, "/opt/spacehost/zygote.py", "--ro-bind", entry, "/opt/spacehost/space_entry.py",
             "--bind", status_dir, "/run/spacehost", "--chdir", "/", "--"]
    return [*argv, python, "-I", "/opt/spacehost/zygote.py", sdk, "/run/spacehost", str(ctl_fd)]
