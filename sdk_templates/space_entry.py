"""How a child forked from a shared zygote enters its Space's sandbox before it runs a line of the Space's code
(issue 16, part 1). Stdlib only (ctypes): bound read-only into the zygote's sandbox beside warm_main.py.

The zygote runs as uid 0 of a user namespace of its own (a host uid that owns nothing: sandbox/userns.py), with
every capability there and none on the host, in a bubblewrap sandbox that holds no Space's files, no secrets and
no network (its own empty network namespace). Spacehost hands it, per start, over the control socket
(SCM_RIGHTS): a detached mount of the Space's tree and one of its home (`open_tree(OPEN_TREE_CLONE)`, made by
spacehost in the host's mount namespace), the Space's network namespace (created under the zygote's user
namespace: joining one owned by the host's would need CAP_SYS_ADMIN on the host) and a reply socket.

`enter` then, in the forked child:
1. unshares mount, pid, ipc and uts namespaces, makes every mount private, mounts fresh tmpfs at /tmp and
   /dev/shm (the zygote's are shared by all its children), attaches the tree and home at `APP`/`HOME` (`move_mount`), and joins the Space's network namespace (`setns`);
2. forks once more (the app is pid 1 of its own pid namespace) and mounts a fresh /proc there;
3. reports its pid to spacehost over the reply socket with SCM_CREDENTIALS (the kernel translates it into the
   receiver's pid namespace: a child cannot claim another pid) and waits for "go", which spacehost sends once it
   has written that pid into the Space's cgroups;
4. empties the capability bounding and ambient sets, drops to uid/gid 1000 without groups (which clears its
   permitted and effective capabilities) and sets no_new_privs; makes itself dumpable again, as an exec would
   have (the uid change cleared it, which left its /proc files owned by the zygote's root: a Space could not
   write its own /proc/self/comm, as setproctitle does); SIGTERM then ends it (pid 1 would ignore it).
The intermediate process (the pid namespace's parent) drops the same way and only waits for the app, exiting
with its status. Any failure exits the child (status 125) before the Space's code runs.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import struct

APP = "/home/user/app"
HOME_DATA = "/home/user"
APP_UID = 1000
PRIVATE_TMPFS = ("/tmp", "/dev/shm")
ENTRY_FAILED = 125

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x20000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REC, MS_PRIVATE = 2, 4, 8, 0x4000, 1 << 18
OPEN_TREE_CLONE, OPEN_TREE_CLOEXEC, AT_RECURSIVE = 1, 0o2000000, 0x8000
MOVE_MOUNT_F_EMPTY_PATH, AT_FDCWD = 4, -100
SYS_OPEN_TREE, SYS_MOVE_MOUNT, SYS_MOUNT_SETATTR = 428, 429, 442  # x86_64 and aarch64 share these numbers
MOUNT_ATTR_RDONLY, MOUNT_ATTR_NOSUID, MOUNT_ATTR_NODEV = 0x1, 0x2, 0x4
PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 24, 38, 47, 4
PR_SET_DUMPABLE = 4
CAP_LAST = 63

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


def unshare(flags: int) -> None:
    _check(_libc.unshare(ctypes.c_int(flags)), "unshare")


def setns(fd: int, nstype: int) -> None:
    _check(_libc.setns(ctypes.c_int(fd), ctypes.c_int(nstype)), "setns")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _check(_libc.mount(source and source.encode(), target.encode(), fstype and fstype.encode(),
                       ctypes.c_ulong(flags), data and data.encode()), f"mount {target}")


def open_tree(path: str, flags: int = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE) -> int:
    """A detached copy of the mount tree at `path` (an fd; needs CAP_SYS_ADMIN over the caller's mounts)."""
    return _check(_libc.syscall(SYS_OPEN_TREE, AT_FDCWD, path.encode(), ctypes.c_uint(flags)), f"open_tree {path}")


def move_mount(fd: int, target: str) -> None:
    """Attach the detached tree `fd` at `target` in the caller's mount namespace."""
    _check(_libc.syscall(SYS_MOVE_MOUNT, fd, b"", AT_FDCWD, target.encode(), ctypes.c_uint(MOVE_MOUNT_F_EMPTY_PATH)),
           f"move_mount {target}")


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64), ("propagation", ctypes.c_uint64),
                ("userns_fd", ctypes.c_uint64)]


def set_mount_attrs(fd: int, attrs: int) -> None:
    """Set `attrs` (MOUNT_ATTR_*) on every mount of the detached tree `fd`."""
    a = _MountAttr(attrs, 0, 0, 0)
    _check(_libc.syscall(SYS_MOUNT_SETATTR, fd, b"", ctypes.c_uint(0x1000 | AT_RECURSIVE), ctypes.byref(a),
                         ctypes.c_size_t(ctypes.sizeof(a))), "mount_setattr")


def drop_privileges(uid: int = APP_UID, verify: bool = True) -> None:
    """No capabilities (bounding, ambient, permitted, effective), uid/gid `uid` without groups, no_new_privs.
    `verify`: read /proc/self/status after (not for a process that the /proc mounted in its mount namespace does
    not show: the intermediate process of `enter`)."""
    for cap in range(CAP_LAST + 1):
        if _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 and ctypes.get_errno() != 22:  # EINVAL: no such cap
            _check(-1, f"drop capability {cap}")
    _check(_libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), "clear ambient capabilities")
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)  # from uid 0 to non-zero: the kernel clears permitted and effective sets
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    if verify and _capabilities_left():
        raise OSError("capabilities left after dropping them")


def _capabilities_left() -> bool:
    with open("/proc/self/status") as f:
        caps = {k: v.strip() for k, _, v in (line.partition(":") for line in f) if k.startswith("Cap")}
    return any(int(caps.get(k, "0"), 16) for k in ("CapPrm", "CapEff", "CapBnd", "CapAmb"))


def mounts_below(path: str) -> list[str]:
    """The mount points strictly below `path` that no other of them contains (from /proc/self/mountinfo)."""
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4].encode().decode("unicode_escape") for line in f]
    below = sorted({p for p in points if p.startswith(path.rstrip("/") + "/")})
    return [p for p in below if not any(p.startswith(q + "/") for q in below if q != p)]


def fresh_tmpfs(path: str) -> None:
    """Mount a fresh tmpfs (mode 1777) at `path`, keeping the mounts below it (the env may be bound under /tmp)."""
    kept = [(p, open_tree(p)) for p in mounts_below(path)]
    mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
    for p, fd in kept:
        os.makedirs(p, 0o755, exist_ok=True)
        move_mount(fd, p)
        os.close(fd)


def enter(tree_fd: int, home_fd: int, net_fd: int, reply: socket.socket) -> None:
    """Enter the Space's sandbox (module docstring). Returns in the app process, unprivileged, after spacehost
    said "go"; the intermediate process never returns (it exits with the app's status)."""
    unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS)
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    for tmp in PRIVATE_TMPFS:  # the zygote's own are shared by all its children: each Space gets fresh ones
        fresh_tmpfs(tmp)
    move_mount(home_fd, HOME_DATA)
    move_mount(tree_fd, APP)
    setns(net_fd, CLONE_NEWNET)
    for fd in (tree_fd, home_fd, net_fd):
        os.close(fd)
    pid = os.fork()
    if pid:
        reply.close()
        drop_privileges(verify=False)  # the app mounts its own /proc in this mount namespace, without this pid
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        os._exit(128 - code if code < 0 else code)
    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    creds = struct.pack("iII", os.getpid(), os.getuid(), os.getgid())
    reply.sendmsg([b'{"entered": true}\n'], [(socket.SOL_SOCKET, socket.SCM_CREDENTIALS, creds)])
    if reply.recv(16) != b"go\n":
        raise OSError("spacehost did not place the child in its cgroups")
    reply.close()
    drop_privileges()
    _check(_libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0), "dumpable")  # as after a cold start's exec (docstring, 4.)
    # pid 1 of its namespace ignores signals it has no handler for: SIGTERM from spacehost (stop) ends it as it
    # ends any other app (exit status 128+15, which the intermediate process passes on).
    signal.signal(signal.SIGTERM, _terminated)


def _terminated(signum: int, _frame: object) -> None:
    os._exit(128 + signum)
