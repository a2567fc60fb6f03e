"""Pure pieces of a bubblewrap command line, shared by the process runtime's app sandbox
(scheduler/runtimes/sandbox.py) and the builder's build sandbox (builder/build_sandbox.py). No I/O beyond
`os.path.lexists`/`realpath` on the host's own system paths.

Every sandbox built from these sees `/usr` and `/etc` read-only, `/bin /lib /lib64 /sbin` as the usual
symlinks into `/usr`, a fresh `/proc` and a minimal `/dev`, a private `/tmp` and `/dev/shm`, and runs its
command as uid/gid 1000 without groups, capabilities or the right to regain them (`no_new_privs`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

BWRAP = os.environ.get("SPACEHOST_BWRAP_PATH") or "/usr/bin/bwrap"  # another path: for non-standard installs
SETPRIV = "/usr/bin/setpriv"
APP_UID = 1000
SYSTEM_DIRS = ("/usr", "/etc")
SYSTEM_LINKS = (("usr/bin", "/bin"), ("usr/sbin", "/sbin"), ("usr/lib", "/lib"), ("usr/lib64", "/lib64"))


def base_argv() -> list[str]:
    """bwrap with its own pid, ipc and uts namespaces, the system directories read-only, a fresh /proc and
    /dev, and private tmpfs /tmp and /dev/shm. Further mounts follow; `unprivileged_tail` ends the argv."""
    argv = [BWRAP, "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    for d in SYSTEM_DIRS:
        argv += ["--ro-bind", d, d]
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
