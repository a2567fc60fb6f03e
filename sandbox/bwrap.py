"""Pure pieces of a bubblewrap command line, shared by the process runtime's app sandbox
(scheduler/runtimes/sandbox.py) and the builder's build sandbox (builder/build_sandbox.py). No I/O beyond
`os.path.lexists`/`realpath` on the host's own system paths (and `conceal`'s memfds).

Every sandbox built from these sees `/usr` and `/etc` read-only, `/bin /lib /lib64 /sbin` as the usual
symlinks into `/usr`, a fresh `/proc` and a minimal `/dev`, a private `/tmp` and `/dev/shm`, and runs its
command as uid/gid 1000 without groups, capabilities or the right to regain them (`no_new_privs`). Spawned
through `conceal`, its pid 1 shows none of this argv.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterable, Sequence
from pathlib import Path

BWRAP = os.environ.get("SPACEHOST_BWRAP_PATH") or "/usr/bin/bwrap"  # another path: for non-standard installs
SETPRIV = "/usr/bin/setpriv"
APP_UID = 1000
START = "/run/start"  # the sandbox's command, as a script (`concealed`)
SYSTEM_DIRS = ("/usr", "/etc")
# The resolv.conf sandboxes see (and whose nameservers their firewall lets DNS reach, sandbox/firewall.py). Another
# file where this host's own names a resolver only its own network namespace reaches: a container's Docker DNS
# (127.0.0.11) or systemd-resolved's stub (127.0.0.53) is the sandbox's own loopback, so nothing would resolve.
RESOLV_CONF = os.environ.get("SPACEHOST_SANDBOX_RESOLV_CONF") or "/etc/resolv.conf"
SYSTEM_LINKS = (("usr/bin", "/bin"), ("usr/sbin", "/sbin"), ("usr/lib", "/lib"), ("usr/lib64", "/lib64"))


def base_argv() -> list[str]:
    """bwrap with its own pid, ipc and uts namespaces, the system directories read-only, a fresh /proc and
    /dev, and private tmpfs /tmp and /dev/shm. Further mounts follow; `unprivileged_tail` ends the argv."""
    argv = [BWRAP, "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    for d in SYSTEM_DIRS:
        argv += ["--ro-bind", d, d]
    if RESOLV_CONF != "/etc/resolv.conf":
        argv += ["--ro-bind", RESOLV_CONF, "/etc/resolv.conf"]
    for target, link in SYSTEM_LINKS:
        if os.path.lexists(link):
            argv += ["--symlink", target, link]
    argv += ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--tmpfs", "/dev/shm",
             "--perms", "1777", "--tmpfs", "/tmp"]
    return argv


def unprivileged_tail(command: Sequence[str], uid: int = APP_UID) -> list[str]:
    """The end of a sandbox argv: drop to `uid` (gid the same) without groups or capabilities, then exec."""
    return [SETPRIV, f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--bounding-set=-all",
            "--inh-caps=-all", "--no-new-privs", "--", *command]


def concealed(argv: Sequence[str], args_fd: int, start_fd: int) -> tuple[list[str], bytes, bytes]:
    """`argv` (BWRAP, its options, `--`, the command) rewritten to show nothing of itself inside the sandbox.
    The sandbox's pid 1 is bubblewrap's reaper, a fork of bwrap: every process inside reads bwrap's command line
    in /proc/1/cmdline. So bwrap reads its options (the mounts, with their host paths) from `args_fd`, and the
    command goes into a script that bwrap writes at START (root's only) and /bin/sh execs (no process is added:
    the app is still pid 2, bubblewrap's init still reaps and forwards as before). pid 1 shows
    `bwrap --args N -- /bin/sh /run/start`. Returns (that argv, the bytes for `args_fd`, for `start_fd`)."""
    end = list(argv).index("--")
    options = [*argv[1:end], "--dir", "/run", "--ro-bind-data", str(start_fd), START]
    if any("\0" in a for a in argv):
        raise ValueError("an argument holds a NUL byte")
    script = "exec " + shlex.join(argv[end + 1:]) + "\n"
    return [argv[0], "--args", str(args_fd), "--", "/bin/sh", START], nul_joined(options), script.encode()


def nul_joined(args: Iterable[str]) -> bytes:
    return b"".join(a.encode() + b"\0" for a in args)


def conceal(argv: Sequence[str]) -> tuple[list[str], tuple[int, ...]]:
    """`concealed` with its two file descriptors made (memfds, close-on-exec here): spawn the argv with them in
    `pass_fds` and close them after (bwrap closes its copies once read). Wrappers before BWRAP that exec it
    (nsenter, a cgroup joiner) stay as they are; an argv without BWRAP is returned unchanged, with no fds."""
    if BWRAP not in argv:
        return list(argv), ()
    at = list(argv).index(BWRAP)
    fds = (os.memfd_create("bwrap-args"), os.memfd_create("bwrap-start"))
    out, *data = concealed(argv[at:], *fds)
    out = [*argv[:at], *out]
    for fd, blob in zip(fds, data, strict=True):
        view = memoryview(blob)
        while view:
            view = view[os.write(fd, view):]
        os.lseek(fd, 0, os.SEEK_SET)
    return out, fds


def parent_dirs(targets: Iterable[str], made: Iterable[str] = ("/", "/tmp")) -> list[str]:
    """`--dir` for each missing ancestor of a bind target, traversable by uid 1000 (bubblewrap would copy
    the host directory's mode, often 0700). `made`: directories the argv already has."""
    seen = set(made)
    argv: list[str] = []
    for target in targets:
        for p in (str(p) for p in reversed(Path(target).parents)):
            if p in seen or any(p == d or p.startswith(d + "/") for d in SYSTEM_DIRS):
                continue
            seen.add(p)
            argv += ["--perms", "0755", "--dir", p]
    return argv


def interpreter_roots(env_dir: str | None) -> tuple[str, ...]:
    """Host paths outside /usr that the env's `bin/python` needs (a symlink into e.g. /root/.pyenv)."""
    if not env_dir:
        return ()
    return interpreter_prefix(os.path.join(env_dir, "bin", "python"), env_dir)


def interpreter_prefix(python: str, inside: str | None = None) -> tuple[str, ...]:
    """The installation prefix of the interpreter `python` resolves to, unless it lies under /usr (always
    bound) or under `inside` (bound anyway): `<prefix>/bin/python3.x` → `(<prefix>,)`."""
    real = os.path.realpath(python)
    roots = ["/usr/"] + ([str(Path(inside).resolve()) + "/"] if inside else [])
    if real.startswith(tuple(roots)):
        return ()
    return (str(Path(real).parent.parent),)


def probe() -> str:
    """Why bubblewrap cannot sandbox here, or "" when it can (root, installed, and it runs)."""
    import subprocess

    if os.geteuid() != 0:
        return "spacehost does not run as root"
    if not os.path.exists(BWRAP):
        return f"{BWRAP} is not installed"
    run = subprocess.run([BWRAP, "--ro-bind", "/", "/", "--unshare-pid", "--", "/bin/true"], capture_output=True,
                         text=True, check=False)
    return "" if run.returncode == 0 else f"bubblewrap does not work here: {run.stderr.strip()}"
