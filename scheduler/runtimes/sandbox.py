"""The process sandbox, decided without I/O: bubblewrap argv, the app's environment, limits, log masking.

What a sandboxed Space sees (`sandbox_argv`):
- `/usr`, `/etc` read-only, `/bin /lib /lib64 /sbin` as the usual symlinks into `/usr`; a fresh `/proc`
  (its own pid namespace: pid 1 is bubblewrap's reaper, whose command line shows none of this argv when the
  runtime spawns it through sandbox.bwrap.conceal) and a minimal `/dev`;
- its app tree at `/home/user/app` (the working directory): writable where the runtime made the instance its
  own copy (`app_writable`, sandbox/apptree.py), else read-only; its Python env read-only at the same
  absolute path it has on the host (venvs embed absolute paths), plus the interpreter the env links to when
  that lies outside `/usr`;
- `/home/user` writable: a tmpfs of `home_size` bytes (world-writable, sticky; charged to the Space's memory
  cgroup, so filling it never touches the host's disk), or a per-instance host directory owned by uid 1000
  where no size is given; `/tmp` (tmpfs);
- nothing else: not the data dir, the store, other Spaces' trees, envs or homes, `/root`, the host's `/tmp`.
It runs as uid/gid 1000 without groups, capabilities (bounding set empty) or the right to regain them
(`no_new_privs`), in its own mount, pid, ipc and uts namespaces. bubblewrap keeps the caller's network
namespace: the runtime starts it inside the Space's own (sandbox/netns.py, `nsenter --net=`), where the app
listens on 0.0.0.0 (`app_env`/`app_command` with `listen`) and the proxy reaches it at the namespace's address;
its 127.0.0.1 is its own. Without a namespace (no sandbox at all) apps listen on the host's loopback.

The sandbox runs in its own session and process group without a controlling terminal (what
bubblewrap's `--new-session` is for), so `killpg` reaches every process of the Space. `--die-with-parent`
is not used: instances outlive a spacehost restart and are re-adopted (DESIGN: any process can be killed).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from core.hardware import Flavor

# Shared with the build sandbox (builder/build_sandbox.py), whose home is sandbox.bwrap.
from sandbox.bwrap import base_argv, parent_dirs, unprivileged_tail

PRLIMIT = "/usr/bin/prlimit"
HOME = "/home/user"
APP_MOUNT = HOME + "/app"
PIDS_MAX = 4096  # per Space (cgroup pids.max)
NPROC_FALLBACK = 65536  # RLIMIT_NPROC counts every uid-1000 process of every Space: only a fork-bomb brake
BASE_ENV_KEYS = ("HOME", "PATH", "PYTHONUNBUFFERED")


@dataclass(frozen=True)
class Limits:
    """Resource limits of one Space, from its flavor clamped to the machine."""

    memory_bytes: int
    cpus: float
    pids: int = PIDS_MAX
    home_bytes: int = 0  # size of the tmpfs home (counted in `memory_bytes` where cgroups charge it)


def limits_for(flavor: Flavor, machine_memory: int, machine_cpus: int) -> Limits:
    memory = min(flavor.memory_bytes, machine_memory)
    return Limits(memory, min(float(flavor.cpu), float(machine_cpus)), home_bytes=memory // 2)


@dataclass(frozen=True)
class SandboxMounts:
    app_dir: str | None  # None: no tree at /home/user/app (a zygote's children find theirs themselves)
    env_dir: str | None
    home_dir: str  # host directory mounted writable at /home/user
    extra_ro: tuple[str, ...] = ()  # further read-only paths bound at their own place (interpreter prefix)
    files_ro: tuple[tuple[str, str], ...] = ()  # (host file or dir, sandbox path), e.g. the zygote's entry point
    rw: tuple[tuple[str, str], ...] = ()  # (host dir owned by uid 1000, sandbox path), e.g. the zygote's status dir
    home_size: int = 0  # > 0: /home/user is a tmpfs of this many bytes instead of `home_dir`
    app_writable: bool = False  # `app_dir` is this instance's own copy, owned by uid 1000: bound read-write


def sandbox_argv(mounts: SandboxMounts, command: Sequence[str], *, status_fd: int | None = None,
                 rlimits: Limits | None = None) -> list[str]:
    """bubblewrap argv running `command` as uid 1000 in the sandbox described in the module docstring.
    With `rlimits` (no cgroups here), address space and process count are capped by prlimit instead."""
    argv = [*base_argv(), "--perms", "0755", "--dir", "/home"]
    if mounts.home_size > 0:
        argv += ["--size", str(mounts.home_size), "--perms", "1777", "--tmpfs", HOME]
    else:
        argv += ["--bind", mounts.home_dir, HOME]
    if mounts.app_dir is not None:
        bind = "--bind" if mounts.app_writable else "--ro-bind"
        argv += ["--perms", "0755", "--dir", APP_MOUNT, bind, mounts.app_dir, APP_MOUNT]
    own_path = (*([mounts.env_dir] if mounts.env_dir else []), *mounts.extra_ro)
    argv += _parent_dirs([*own_path, *(dst for _, dst in (*mounts.files_ro, *mounts.rw))])
    for path in own_path:
        argv += ["--ro-bind", path, path]
    for src, dst in mounts.files_ro:
        argv += ["--ro-bind", src, dst]
    for src, dst in mounts.rw:
        argv += ["--bind", src, dst]
    if status_fd is not None:
        argv += ["--json-status-fd", str(status_fd)]
    argv += ["--chdir", APP_MOUNT if mounts.app_dir is not None else HOME, "--"]
    if rlimits is not None:
        argv += [PRLIMIT, f"--as={rlimits.memory_bytes}", f"--nproc={NPROC_FALLBACK}", "--"]
    return argv + unprivileged_tail(command)


def _parent_dirs(targets: Iterable[str]) -> list[str]:
    return parent_dirs(targets, made=("/", "/tmp", "/home", HOME, APP_MOUNT))


def app_env(spec_env: Mapping[str, str], env_dir: str | None, port: int, listen: str = "127.0.0.1") -> dict[str, str]:
    """Exactly the Space's env plus what running it needs; nothing inherited from spacehost. `listen`: the
    address Gradio binds (0.0.0.0 in a network namespace of its own, loopback on the host's network)."""
    env = dict(spec_env)
    path = "/usr/local/bin:/usr/bin:/bin"
    env.update(HOME=HOME, PATH=f"{env_dir}/bin:{path}" if env_dir else path, PYTHONUNBUFFERED="1",
               PORT=str(port), GRADIO_SERVER_PORT=str(port), GRADIO_SERVER_NAME=listen)
    if env_dir:
        env["VIRTUAL_ENV"] = env_dir
    return env


def app_command(python: str, sdk_argv: Sequence[str], listen: str = "127.0.0.1") -> list[str]:
    """The SDK template's argv with the streamlit address set to `listen` (see `app_env`)."""
    argv = list(sdk_argv)
    for i, a in enumerate(argv[:-1]):
        if a == "--server.address":
            argv[i + 1] = listen
    argv[0] = python
    return argv


# -- log masking: a `sed` filter between the app and its log file, so the app never writes to a pipe
# -- that spacehost holds (instances survive a spacehost restart).

_BRE_SPECIAL = re.compile(r"([\\/.*\[\]^$])")


def mask_script(values: Iterable[str]) -> str:
    """A sed script replacing each secret value (3+ characters, longest first) with `***`, byte-wise (LC_ALL=C).
    Values spanning lines are masked line by line."""
    parts = {p for v in values if v for p in v.splitlines() if len(p) >= 3}
    lines = ["s/" + _BRE_SPECIAL.sub(r"\\\1", p) + "/***/g" for p in sorted(parts, key=len, reverse=True)]
    return "\n".join(lines) + "\n" if lines else ""


def mask_line(line: str, values: Iterable[str]) -> str:
    """What `mask_script` does to one line, in Python (tests and the fallback reader)."""
    for p in sorted({p for v in values if v for p in v.splitlines() if len(p) >= 3}, key=len, reverse=True):
        line = line.replace(p, "***")
    return line


def format_bytes(n: int) -> str:
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= size:
            return f"{n / size:g} {unit}"
    return f"{n} B"
