"""`make cluster` (deploy/cluster/up.py): every role comes up as its own process, both node agents register
from their own loopback addresses, a static Space pushed to it is built by the Celery worker and served through
the proxy, and Ctrl-C stops all of it: no role, no port, and no process of a Space (a node agent stops its Spaces
and their warm interpreters on SIGTERM unless --keep-spaces)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from deploy.cluster.services import free_port
from tests.e2e.harness import ROOT, git
from tests.security.procs import app, describe, in_pid_ns, marked, new_marker, pid_ns


def _wait_for(pred, timeout: float, what: str, log: Path) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.3)
    raise TimeoutError(f"{what}:\n{log.read_text(errors='replace')[-4000:]}")


def started(pid: int) -> str | None:
    """The process's start time (field 22 of /proc/PID/stat), None once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def push(token: str, port: int, work: Path, name: str, files: dict[str, str]) -> None:
    git("init", "-q", "-b", "main", str(work))
    for path, text in files.items():
        (work / path).write_text(text)
    git("-C", str(work), "add", "-A")
    git("-C", str(work), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", name)
    git("-C", str(work), "push", "-q", f"http://u:{token}@127.0.0.1:{port}/spaces/admin/{name}", "HEAD:main")


def test_make_cluster_runs_every_role_and_ctrl_c_stops_them(tmp_path: Path) -> None:
    root = Path(os.environ.get("TMPDIR", "/tmp")) / f"shc-{os.getpid()}"  # PostgreSQL must reach it
    port, api_port = free_port(), free_port()
    out = tmp_path / "up.log"
    with out.open("wb") as f:
        up = subprocess.Popen([sys.executable, "-m", "deploy.cluster.up", "--data-dir", str(root), "--port", str(port),
                               "--api-port", str(api_port)], cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
    try:
        _wait_for(lambda: "spacehost cluster is up" in out.read_text(), 120, "cluster did not come up", out)
        token = (root / "admin-token").read_text().strip()
        api = httpx.Client(base_url=f"http://127.0.0.1:{api_port}", headers={"Authorization": f"Bearer {token}"},
                           timeout=10)

        def nodes_ready() -> bool:
            nodes = api.get("/api/admin/nodes").json()
            return sorted((n["name"], n["address"], n["ready"]) for n in nodes) == [
                ("node1", "127.0.0.2", True), ("node2", "127.0.0.3", True)]

        _wait_for(nodes_ready, 60, "nodes did not register", out)
        proxy = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"},
                             timeout=10)
        proxy.post("/api/repos/create", json={"type": "space", "name": "hello", "sdk": "static"}).raise_for_status()
        push(token, port, tmp_path / "hello", "hello", {"README.md": "---\nsdk: static\n---\n",
                                                        "index.html": "<h1>hello from the cluster</h1>\n"})
        marker = new_marker()  # a Space with a process of its own (and a warm interpreter) on a node
        proxy.post("/api/repos/create", json={"type": "space", "name": "app", "sdk": "gradio"}).raise_for_status()
        push(token, port, tmp_path / "app", "app", app(marker))

        def serving(name: str, text: str) -> bool:
            r = httpx.get(f"http://127.0.0.1:{port}/", headers={"Host": f"admin-{name}.localhost:{port}"}, timeout=5)
            return r.status_code == 200 and text in r.text

        _wait_for(lambda: serving("hello", "hello from the cluster"), 120, "the static Space is not served",
                  root / "logs" / "server.log")
        assert "spacehost.build[admin--hello--" in (root / "logs" / "worker.log").read_text()  # built by Celery
        _wait_for(lambda: serving("app", "alive"), 400, "the app Space is not served", root / "logs" / "server.log")
        pids = marked(marker)
        assert pids, "the app's process is not found on this host"
        # Every process of its sandbox (the app, its warm interpreter), by pid and start time: a namespace's id
        # alone may be reused by another sandbox once this one is gone.
        sandbox = {p: started(p) for ns in {pid_ns(p) for p in pids} for p in in_pid_ns(ns)}
    finally:
        up.send_signal(signal.SIGINT)
        up.wait(120)
    assert "stopping the cluster" in out.read_text()

    def left() -> list[int]:
        out = subprocess.run(["pgrep", "-f", str(root)], check=False, capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    deadline = time.monotonic() + 10  # a process signalled by the last role to stop may still be exiting
    while left() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert left() == [], f"processes left: {describe(left())}"
    stayed = sorted(set(marked(marker)) | {p for p, t in sandbox.items() if started(p) == t})
    assert stayed == [], f"Space processes left after Ctrl-C: {describe(stayed)}"
    with httpx.Client() as c:
        for p in (port, api_port):
            try:
                c.get(f"http://127.0.0.1:{p}/", timeout=2)
                raise AssertionError(f"port {p} still answers")
            except httpx.ConnectError:
                pass
    shutil.rmtree(root, ignore_errors=True)
