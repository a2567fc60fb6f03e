"""`spacehost ssh OWNER/NAME`: a shell (or one command) inside a running Space, as `docker exec` gives.

Process runtime: the command enters the namespaces of the Space's app process (mount, uts, ipc, net, pid,
cgroup namespace; its root and working directory) with `nsenter`, joins its cgroups (the Space's limits hold),
and drops to uid 1000 without groups or capabilities with `setpriv`, exactly as the app runs. Docker runtime:
`docker exec -u 1000` into its container. The hub runs it on behalf of a caller who may write the Space.

Wire protocol over the WebSocket (`/api/spaces/{owner}/{name}/shell`): the client sends binary frames of stdin
(an empty one: end of input) and text frames `{"resize": [rows, cols]}`; the server sends binary frames whose
first byte says the stream (1 stdout, 2 stderr) and ends with a text frame `{"exit": code}`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from sandbox.bwrap import APP_UID, unprivileged_tail

NSENTER = "/usr/bin/nsenter"
STDOUT, STDERR = 1, 2
SHELL = ("/bin/bash", "-l")


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return out


def _uid(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Uid:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _ns(pid: int | str, kind: str) -> str:
    try:
        return os.readlink(f"/proc/{pid}/ns/{kind}")
    except OSError:
        return ""


def sandboxed_process(leader: int) -> int | None:
    """The first process at or under `leader` (breadth first) that runs as uid 1000 in a mount namespace other
    than ours: the app inside its sandbox (the leader itself is bubblewrap's outer process or a helper)."""
    ours = _ns("self", "mnt")
    queue, seen = [leader], set()
    while queue:
        pid = queue.pop(0)
        if pid in seen:
            continue
        seen.add(pid)
        if _uid(pid) == APP_UID and _ns(pid, "mnt") not in ("", ours):
            return pid
        queue += _children(pid)
    return None


def app_environ(pid: int) -> dict[str, str]:
    """The environment the app was started with (the Space's own: its owner may read it)."""
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in pairs}


def cgroup_procs(pid: int) -> list[str]:
    """The `cgroup.procs` files of the cgroups `pid` is in (v1 and v2), under /sys/fs/cgroup."""
    out = []
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if path in ("", "/"):
            continue
        base = "/sys/fs/cgroup" + (f"/{controllers.split(',')[0].removeprefix('name=')}" if controllers else "")
        procs = f"{base}{path}/cgroup.procs"
        if os.path.exists(procs):
            out.append(procs)
    return out


def enter_argv(target: int, command: Sequence[str], procs_files: Sequence[str] = ()) -> list[str]:
    """argv running `command` in the sandbox of process `target`, as uid 1000 without privileges."""
    join = ['/bin/sh', '-c', 'while [ "$1" != -- ]; do echo $$ > "$1" 2>/dev/null; shift; done; shift; exec "$@"',
            "sh", *procs_files, "--"]
    return [*join, NSENTER, "-t", str(target), "-m", "-u", "-i", "-n", "-p", "-C", "-r", "-w", "--",
            *unprivileged_tail(["/bin/sh", "-c", 'cd /home/user/app 2>/dev/null; exec "$@"', "sh", *command])]


def docker_argv(container: str, command: Sequence[str], tty: bool) -> list[str]:
    return ["docker", "exec", "-i", *(["-t"] if tty else []), "-u", f"{APP_UID}:{APP_UID}", "-w", "/home/user/app",
            container, *command]


def frame(stream: int, data: bytes) -> bytes:
    return bytes([stream]) + data
