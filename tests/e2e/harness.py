"""Drive a real `spacehost up` from outside: its API over HTTP, git over smart HTTP."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
TERMINAL = {"RUNNING", "BUILD_ERROR", "RUNTIME_ERROR", "CONFIG_ERROR", "NO_APP_FILE", "PAUSED", "STOPPED",
            "SLEEPING"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_port_range(n: int = 200) -> int:
    """A base port with `n` free ports after it, below the kernel's ephemeral range: a direct port taken by some
    client socket's ephemeral port would refuse connections for that Space."""
    low = 32768
    with contextlib.suppress(OSError, ValueError):
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    rng = random.Random()
    for _ in range(50):
        base = rng.randrange(10000, max(10001, low - n))
        ok = True
        for p in range(base, base + n, 7):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise RuntimeError("no free port range")


def kill_processes_mentioning(path: str) -> None:
    """SIGKILL every process whose command line names `path` (sandboxes, zygotes, apps, log filters)."""
    for _ in range(3):
        found = False
        for d in Path("/proc").iterdir():
            if not d.name.isdigit() or int(d.name) == os.getpid():
                continue
            with contextlib.suppress(OSError):
                if path.encode() in (d / "cmdline").read_bytes():
                    found = True
                    os.kill(int(d.name), signal.SIGKILL)
        if not found:
            return
        time.sleep(0.2)


@dataclass
class Server:
    data_dir: Path
    port: int
    token: str
    proc: subprocess.Popen[bytes] | None = None
    extra_args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    direct_base: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> None:
        env = {**os.environ, "SPACEHOST_ADMIN_TOKEN": self.token, "SPACEHOST_LOG_LEVEL": "INFO", **self.env}
        self.direct_base = self.direct_base or free_port_range()
        log = (self.data_dir / "server.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "spacehost.cli", "up", "--data-dir", str(self.data_dir), "--port",
             str(self.port), "--direct-port-base", str(self.direct_base), *self.extra_args],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"spacehost exited:\n{self.log_tail()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"spacehost did not come up:\n{self.log_tail()}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def close(self) -> None:
        """Stop spacehost and everything it left running. `stop()` (SIGTERM) stops the Spaces too, unless the
        server runs with --keep-spaces; `stop(SIGKILL)` leaves them running, as a crash does (a restart re-adopts
        them). Either way a test's teardown must not leak them."""
        self.stop()
        kill_processes_mentioning(str(self.data_dir))
        if "docker" in self.extra_args:
            self._remove_containers_and_images()

    def _remove_containers_and_images(self) -> None:
        """Containers of this data dir (Spaces' and spares), and the images of this server's Spaces."""
        import docker

        from builder.docker_backend import LABEL_SPACE
        from scheduler.runtimes.docker_home import sweep_homes
        from scheduler.runtimes.docker_warm import LABEL_DATA_DIR

        spaces_dir = self.data_dir / "spaces"
        space_ids = {f"{o.name}/{n.name}" for o in spaces_dir.iterdir() if o.is_dir() for n in o.iterdir()
                     if n.is_dir()} if spaces_dir.is_dir() else set()
        client = docker.from_env()
        try:
            for c in client.containers.list(all=True, filters={"label": f"{LABEL_DATA_DIR}={self.data_dir}"}):
                with contextlib.suppress(docker.errors.APIError):
                    c.remove(v=True, force=True)
            sweep_homes(client, str(self.data_dir))  # their size-capped homes, unmounted
            for sid in space_ids:
                for image in client.images.list(filters={"label": f"{LABEL_SPACE}={sid}"}):
                    with contextlib.suppress(docker.errors.APIError):
                        client.images.remove(image.id, force=True)
        finally:
            client.close()

    def log_tail(self, n: int = 60) -> str:
        p = self.data_dir / "server.log"
        return "\n".join(p.read_text(errors="replace").splitlines()[-n:]) if p.exists() else ""

    def stacks(self) -> str:
        """Every thread's stack in the server now (SIGUSR1: faulthandler, registered by spacehost.cli): what a
        server that does not answer is doing. For failure messages."""
        if self.proc is None or self.proc.poll() is not None:
            return "(the server is not running)"
        before = (self.data_dir / "server.log").stat().st_size
        os.kill(self.proc.pid, signal.SIGUSR1)
        time.sleep(1)
        with (self.data_dir / "server.log").open("rb") as f:
            f.seek(before)
            return f.read().decode(errors="replace")[-20000:]

    def api(self, token: str | None = None) -> httpx.Client:
        tok = self.token if token is None else token
        headers = {"Authorization": f"Bearer {tok}"} if tok else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def create_space(self, name: str, sdk: str = "gradio", *, private: bool = False, owner: str | None = None,
                     token: str | None = None, **extra: object) -> httpx.Response:
        body = {"type": "space", "name": name, "sdk": sdk, "private": private, **extra}
        if owner:
            body["organization"] = owner
        with self.api(token) as c:
            return c.post("/api/repos/create", json=body)

    def git_url(self, space_id: str, token: str | None = None) -> str:
        tok = self.token if token is None else token
        cred = f"user:{tok}@" if tok else ""
        return f"http://{cred}127.0.0.1:{self.port}/spaces/{space_id}"

    def push(self, space_id: str, files: Mapping[str, str | bytes], *, token: str | None = None,
             message: str = "update", workdir: Path | None = None) -> subprocess.CompletedProcess[str]:
        """Commit `files` (path → content; None deletes) on top of the Space's main and push it."""
        work = workdir or Path(tempfile.mkdtemp(prefix="push-"))
        url = self.git_url(space_id, token)
        if not (work / ".git").exists():
            clone = git("clone", "-q", url, str(work), check=False)
            if clone.returncode != 0:
                git("init", "-q", "-b", "main", str(work))
        for path, content in files.items():
            target = work / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content.encode() if isinstance(content, str) else content)
        git("-C", str(work), "add", "-A")
        git("-C", str(work), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", message,
            "--allow-empty")
        return git("-C", str(work), "push", "-q", url, "HEAD:main", check=False)

    def runtime(self, space_id: str) -> dict[str, Any]:
        with self.api() as c:
            r = c.get(f"/api/spaces/{space_id}/runtime")
            r.raise_for_status()
            return r.json()  # type: ignore[no-any-return]

    def wait_stage(self, space_id: str, stages: Iterable[str] = TERMINAL, timeout: float = 240,
                   after_sha: str | None = None) -> dict[str, object]:
        wanted = set(stages)
        deadline = time.monotonic() + timeout
        rt: dict[str, object] = {}
        while time.monotonic() < deadline:
            rt = self.runtime(space_id)
            if rt["stage"] in wanted and (after_sha is None or rt.get("sha") == after_sha):
                return rt
            time.sleep(0.25)
        raise TimeoutError(f"{space_id} stuck in {rt.get('stage')}: {rt}\n{self.log_tail()}")

    def build_log(self, space_id: str) -> str:
        with self.api() as c:
            r = c.get(f"/api/spaces/{space_id}/logs/build", params={"follow": "false"})
            return "\n".join(ln for ln in r.text.splitlines() if ln.startswith("data: {"))

    def host(self, space_id: str) -> str:
        with self.api() as c:
            return str(c.get(f"/api/spaces/{space_id}").json()["host"])


def git(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    proc = subprocess.run(["git", *args], check=False, capture_output=True, text=True, env=env)
    if check and proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)}: {proc.stderr}")
    return proc
