"""The record of one running instance of the process runtime (a JSON state file per instance, so a restarted
spacehost adopts what still runs), and the host facts it is made of: a free port, a process's start time."""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from cryptography.fernet import InvalidToken

from core.crypto import SecretBox
from core.routes import Upstream
from scheduler.runtimes.base import Instance


@dataclass(frozen=True)
class InstanceState:
    """The JSON state file of one running instance."""

    instance_id: str
    space_id: str
    sha: str
    pid: int
    start_ticks: int  # /proc/<pid>/stat starttime: tells our pid from a recycled one
    port: int
    log_path: str
    cgroup_version: int = 0
    cgroup_dirs: tuple[str, ...] = ()
    memory_limit: int = 0
    zygote: str = ""  # warm start: the zygote whose child this is (its cgroup is the zygote's)
    status_path: str = ""  # where the exit code is written ({"exit-code": N} lines)
    oom_base: int = 0  # the cgroup's OOM kill count at start (a zygote's cgroup outlives instances)
    ip: str = ""  # the address of its network namespace ("": the host's loopback, no sandbox)
    netns: str = ""  # the namespace it owns (a warm instance uses its zygote's, owned by the zygote)

    def instance(self) -> Instance:
        return Instance(self.instance_id, self.space_id, self.sha, Upstream(self.ip or "127.0.0.1", self.port),
                        pid=self.pid)

    @classmethod
    def load(cls, path: Path) -> InstanceState:
        data = json.loads(path.read_text())
        data["cgroup_dirs"] = tuple(data.get("cgroup_dirs", ()))
        return cls(**data)



def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, None if it does not exist (or is a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] in ("Z", "X") else int(fields[19])


ENV_FILE = "env.json"


def save_env(inst_dir: Path, env: dict[str, str], box: SecretBox) -> None:
    """Keep the env a warm-started instance was given beside its state, sealed with the installation key (it
    holds the Space's secrets, which rest encrypted everywhere) and root-only (0600, in the 0700 run dir): its
    /proc environ is the zygote's, so `spacehost ssh` reads this one instead."""
    fd = os.open(inst_dir / ENV_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(box.seal(json.dumps(env)))


def instance_env(run_dir: Path, pid: int, box: SecretBox) -> dict[str, str]:
    """The env saved for the instance whose process is `pid` (from its state file in `run_dir`); {} if none
    (or sealed with another key)."""
    for state_file in run_dir.glob("*.json"):
        try:
            state = json.loads(state_file.read_text())
            if state.get("pid") == pid:
                env = json.loads(box.open((run_dir / str(state["instance_id"]) / ENV_FILE).read_text()))
                return {str(k): str(v) for k, v in env.items()}
        except (OSError, ValueError, KeyError, AttributeError, InvalidToken):
            continue
    return {}
