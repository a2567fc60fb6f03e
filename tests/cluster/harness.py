"""A real cluster on this machine for tests: `spacehost server`, `spacehost proxy` and node agents as separate
processes (nodes on their own loopback addresses 127.0.0.N and data dirs), over the session's PostgreSQL and
Redis. The server's API is driven with tests/e2e/harness.py's Server helpers (git push, runtime, …)."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.harness import ROOT, Server, free_port, kill_processes_mentioning


@dataclass
class Proc:
    name: str
    argv: list[str]
    log: Path
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.argv, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def tail(self, n: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:]) if self.log.exists() else ""


@dataclass
class Cluster:
    root: Path
    database_url: str
    redis_url: str
    token: str = field(default_factory=lambda: "hf_cl_" + secrets.token_hex(8))
    api_port: int = field(default_factory=free_port)
    public_port: int = field(default_factory=free_port)
    procs: dict[str, Proc] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.api = Server(self.root / "server", self.api_port, self.token)  # API helpers only; never started
        self.api.data_dir.mkdir(parents=True, exist_ok=True)
        self.env = {**os.environ, "SPACEHOST_DATABASE_URL": self.database_url, "SPACEHOST_ADMIN_TOKEN": self.token,
                    "SPACEHOST_SECRET_KEY": "cluster-test-" + secrets.token_hex(8), "SPACEHOST_LOG_LEVEL": "INFO"}

    @property
    def server_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def proxy_url(self) -> str:
        return f"http://127.0.0.1:{self.public_port}"

    def _cli(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "spacehost.cli", *args]

    def start_server(self) -> None:
        p = Proc("server", self._cli("server", "--data-dir", str(self.root / "server"), "--port", str(self.public_port),
                                     "--listen", f"127.0.0.1:{self.api_port}", "--redis-url", self.redis_url),
                 self.root / "server.log", self.env)
        self.procs["server"] = p
        p.start()
        self.wait_http(self.server_url + "/healthz", p)

    def start_proxy(self) -> None:
        p = Proc("proxy", self._cli("proxy", "--server", self.server_url, "--token", self.token, "--port",
                                    str(self.public_port), "--data-dir", str(self.root / "proxy")),
                 self.root / "proxy.log", self.env)
        self.procs["proxy"] = p
        p.start()
        self.wait_http(self.proxy_url + "/healthz", p)

    def start_node(self, name: str, address: str, *extra: str) -> Proc:
        env = {k: v for k, v in self.env.items() if k != "SPACEHOST_DATABASE_URL"}  # nodes never see the store
        p = Proc(name, self._cli("node", "--server", self.server_url, "--token", self.token, "--name", name,
                                 "--address", address, "--data-dir", str(self.node_dir(name)), "--cpus", "8",
                                 "--memory-gb", "64", *extra),
                 self.root / f"{name}.log", env)
        self.procs[name] = p
        p.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if any(n["name"] == name and n["ready"] for n in self.nodes()):
                return p
            assert p.proc and p.proc.poll() is None, p.tail()
            time.sleep(0.2)
        raise TimeoutError(f"node {name} did not register:\n{p.tail()}")

    def start_worker(self, *extra: str) -> Proc:
        """A `spacehost worker` (Celery) building for this cluster; the server sends it builds when started with
        SPACEHOST_BUILD_QUEUE=celery in `env`."""
        env = {k: v for k, v in self.env.items() if k != "SPACEHOST_DATABASE_URL"}
        p = Proc("worker", self._cli("worker", "--redis-url", self.redis_url, "--server", self.server_url, "--token",
                                     self.token, "--data-dir", str(self.root / "worker"), "--name",
                                     f"worker@{self.root.name}", *extra),
                 self.root / "worker.log", env)
        self.procs["worker"] = p
        p.start()
        deadline = time.monotonic() + 60
        while "ready." not in p.tail(200):
            assert p.proc and p.proc.poll() is None and time.monotonic() < deadline, f"worker:\n{p.tail()}"
            time.sleep(0.2)
        return p

    def node_dir(self, name: str) -> Path:
        return self.root / "nodes" / name

    def kill_node(self, name: str) -> None:
        """kill -9 of the agent and of everything it started (its Spaces)."""
        self.procs[name].kill()
        kill_processes_mentioning(str(self.node_dir(name)))

    def wait_http(self, url: str, p: Proc, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert p.proc and p.proc.poll() is None, f"{p.name} exited:\n{p.tail()}"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=1).status_code == 200:
                    return
            time.sleep(0.1)
        raise TimeoutError(f"{p.name} did not come up:\n{p.tail()}")

    def nodes(self) -> list[dict[str, Any]]:
        with self.api.api() as c:
            r = c.get("/api/admin/nodes")
            r.raise_for_status()
            return list(r.json())

    def node_of(self, space_id: str) -> str | None:
        return next((str(n["name"]) for n in self.nodes() if space_id in n["spaces"]), None)

    def get(self, space_id: str, path: str = "/", timeout: float = 5) -> httpx.Response:
        """A visitor's request through the proxy, by the Space's subdomain."""
        sub = space_id.replace("/", "-").lower()
        return httpx.get(self.proxy_url + path, headers={"Host": f"{sub}.localhost:{self.public_port}"},
                         timeout=timeout)

    def close(self) -> None:
        for p in reversed(list(self.procs.values())):
            p.kill(signal.SIGTERM if p.name in ("server", "proxy") else signal.SIGKILL)
        kill_processes_mentioning(str(self.root))

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.tail()}" for p in self.procs.values())

    @contextlib.contextmanager
    def serving(self) -> Iterator[Cluster]:
        """The server and a proxy up for a test's body; the logs printed when it fails; every process stopped."""
        try:
            self.start_server()
            self.start_proxy()
            yield self
        except BaseException:
            print(self.logs())
            raise
        finally:
            self.close()
