"""The control plane of cluster mode on real processes: server, proxy and node agents over PostgreSQL and
Redis; Spaces pushed with git land on nodes and serve through the proxy."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cluster.harness import Cluster

pytestmark = pytest.mark.e2e

APP = """import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class H(BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("node=%s" % os.environ.get("SPACEHOST_NODE", "?")).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        print("request", self.path, flush=True)

print("hello from the app", flush=True)
ThreadingHTTPServer(("0.0.0.0", int(os.environ["GRADIO_SERVER_PORT"])), H).serve_forever()
"""
README = "---\nsdk: gradio\n---\n"


@pytest.fixture
def cluster(tmp_path: Path, fresh_postgres_url: str, redis_url: str) -> Iterator[Cluster]:
    c = Cluster(tmp_path, fresh_postgres_url, redis_url)
    try:
        c.start_server()
        c.start_proxy()
        yield c
    except BaseException:
        print(c.logs())
        raise
    finally:
        c.close()


def push_space(c: Cluster, hardware: str | None = None) -> str:
    name = f"s-{uuid.uuid4().hex[:6]}"
    extra: dict[str, Any] = {"hardware": hardware} if hardware else {}
    assert c.api.create_space(name, **extra).status_code == 200
    sid = f"admin/{name}"
    pushed = c.api.push(sid, {"app.py": APP, "README.md": README})
    assert pushed.returncode == 0, pushed.stderr
    return sid


def wait_serving(c: Cluster, sid: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if c.get(sid).status_code == 200:
                return
        time.sleep(0.2)
    raise TimeoutError(f"{sid} does not serve: {c.api.runtime(sid)}\n{c.logs()}")


def test_push_lands_on_a_node_and_serves_through_the_proxy(cluster: Cluster) -> None:
    cluster.start_node("n1", "127.0.0.2")
    sid = push_space(cluster)
    assert cluster.api.wait_stage(sid, timeout=400)["stage"] == "RUNNING", cluster.logs()
    wait_serving(cluster, sid)
    assert cluster.node_of(sid) == "n1"
    (node,) = cluster.nodes()
    assert node["ready"] and node["allocated"]["cpu"] == 2
    # the app's own lines, written on the node, reach the hub's run log (SSE)
    with cluster.api.api() as api:
        deadline = time.monotonic() + 20
        while "hello from the app" not in (text := api.get(f"/api/spaces/{sid}/logs/run",
                                                           params={"follow": "false"}).text):
            assert time.monotonic() < deadline, text
            time.sleep(0.3)


def test_node_killed_with_its_spaces_serves_again_elsewhere(cluster: Cluster) -> None:
    cluster.start_node("n1", "127.0.0.2")
    cluster.start_node("n2", "127.0.0.3")
    first = push_space(cluster)
    assert cluster.api.wait_stage(first, timeout=400)["stage"] == "RUNNING", cluster.logs()
    # the second Space (same environment) on the other node, whose environment cache then holds it too (placed
    # there with n1 cordoned: locality would put it beside the first)
    with cluster.api.api() as api:
        assert api.post("/api/admin/nodes/n1/cordon").status_code == 200
        second = push_space(cluster)
        assert cluster.api.wait_stage(second, timeout=400)["stage"] == "RUNNING", cluster.logs()
        assert api.post("/api/admin/nodes/n1/uncordon").status_code == 200
    for sid in (first, second):
        wait_serving(cluster, sid)
    victim, survivor = "n1", "n2"
    assert (cluster.node_of(first), cluster.node_of(second)) == (victim, survivor)

    t0 = time.monotonic()
    cluster.kill_node(str(victim))
    deadline = t0 + 90
    lost_at = None
    while True:
        if lost_at is None and any(n["name"] == victim and n["lost"] for n in cluster.nodes()):
            lost_at = time.monotonic() - t0
        with contextlib.suppress(httpx.HTTPError):
            if cluster.get(first, timeout=2).status_code == 200 and cluster.node_of(first) == survivor:
                break
        assert time.monotonic() < deadline, f"{first} not serving again: {cluster.api.runtime(first)}\n{cluster.logs()}"
        time.sleep(0.1)
    took = time.monotonic() - t0
    assert lost_at is not None
    print(f"\nnode loss: declared lost after {lost_at:.1f}s, serving again on {survivor} {took:.1f}s after kill -9, "
          f"{took - lost_at:.1f}s after the loss was declared")
    assert lost_at <= 15
    assert took - lost_at <= 30  # environment cached on the survivor


def test_a_moved_space_prefers_the_node_that_caches_its_environment(cluster: Cluster) -> None:
    """Placement's locality: the drained Space goes to the node whose heartbeat says it caches the Space's
    environment (it runs another Space on it), not to the emptier node that would build it first."""
    cluster.start_node("n1", "127.0.0.2")
    cluster.start_node("n2", "127.0.0.3")
    moved = push_space(cluster)
    assert cluster.api.wait_stage(moved, timeout=400)["stage"] == "RUNNING", cluster.logs()
    assert cluster.node_of(moved) == "n1"
    with cluster.api.api() as api:  # the second Space (same environment) on n2: its cache holds it too
        assert api.post("/api/admin/nodes/n1/cordon").status_code == 200
        other = push_space(cluster)
        assert cluster.api.wait_stage(other, timeout=400)["stage"] == "RUNNING", cluster.logs()
        assert api.post("/api/admin/nodes/n1/uncordon").status_code == 200
    assert cluster.node_of(other) == "n2"
    cluster.start_node("n3", "127.0.0.4")
    env_key = next(str(n["cached"][0]) for n in cluster.nodes() if n["name"] == "n1")
    deadline = time.monotonic() + 30
    while env_key not in next(n["cached"] for n in cluster.nodes() if n["name"] == "n2"):
        assert time.monotonic() < deadline, cluster.nodes()
        time.sleep(0.3)

    with cluster.api.api() as api:
        assert api.post("/api/admin/nodes/n1/drain").status_code == 200
    deadline = time.monotonic() + 300
    while cluster.node_of(moved) in ("n1", None) or cluster.api.runtime(moved)["stage"] != "RUNNING":
        assert time.monotonic() < deadline, f"{cluster.api.runtime(moved)}\n{cluster.logs()}"
        time.sleep(0.5)
    assert cluster.node_of(moved) == "n2", cluster.nodes()  # spread alone would pick the empty n3
    assert f"environment {env_key} in this node's cache" in cluster.procs["n2"].log.read_text()
    wait_serving(cluster, moved)


def test_drain_moves_spaces_without_a_failed_request_and_unschedulable_says_why(cluster: Cluster) -> None:
    import threading

    cluster.start_node("n1", "127.0.0.2")
    sid = push_space(cluster)
    assert cluster.api.wait_stage(sid, timeout=400)["stage"] == "RUNNING", cluster.logs()
    wait_serving(cluster, sid)
    cluster.start_node("n2", "127.0.0.3")
    assert cluster.node_of(sid) == "n1"

    failures: list[str] = []
    done = threading.Event()
    count = [0]

    def visitor() -> None:
        while not done.is_set():
            try:
                r = cluster.get(sid, timeout=10)
                if r.status_code != 200:
                    failures.append(f"{r.status_code} {r.text[:100]}")
            except httpx.HTTPError as e:
                failures.append(repr(e))
            count[0] += 1
            time.sleep(0.02)

    t = threading.Thread(target=visitor)
    t.start()
    try:
        with cluster.api.api() as api:
            r = api.post("/api/admin/nodes/n1/drain")
            assert r.status_code == 200 and r.json()["cordoned"], r.text
        deadline = time.monotonic() + 300
        while cluster.node_of(sid) != "n2" or "n1" in {n["name"] for n in cluster.nodes() if sid in n["spaces"]}:
            assert time.monotonic() < deadline, cluster.logs()
            time.sleep(0.5)
        time.sleep(1.0)
    finally:
        done.set()
        t.join()
    assert count[0] > 50 and failures == [], (count, failures[:5])

    # a GPU flavor fits no CPU node: the runtime info says why, per node, until a node with that GPU joins
    gpu = push_space(cluster, hardware="t4-small")
    deadline = time.monotonic() + 300
    while "0/2 nodes are available" not in str(cluster.api.runtime(gpu).get("scheduling", "")):
        assert time.monotonic() < deadline, cluster.api.runtime(gpu)
        time.sleep(0.3)
    why = str(cluster.api.runtime(gpu)["scheduling"])
    assert "insufficient gpu" in why, why
    cluster.start_node("g1", "127.0.0.4", "--gpus", "1", "--accelerator", "t4")
    assert cluster.api.wait_stage(gpu, timeout=400)["stage"] == "RUNNING", cluster.logs()
    assert cluster.node_of(gpu) == "g1"
    assert "scheduling" not in cluster.api.runtime(gpu)


def _running(pid: int) -> bool:
    """Whether `pid` runs (a zombie waiting for its parent to reap it does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_returning_node_stops_its_stale_instances(cluster: Cluster) -> None:
    n1 = cluster.start_node("n1", "127.0.0.2")
    sid = push_space(cluster)
    assert cluster.api.wait_stage(sid, timeout=400)["stage"] == "RUNNING", cluster.logs()
    wait_serving(cluster, sid)
    (state,) = (cluster.node_dir("n1") / "run").glob("*.json")
    pid = int(json.loads(state.read_text())["pid"])  # the app's sandbox on n1, a host process
    assert _running(pid)
    cluster.start_node("n2", "127.0.0.3")

    # n1's agent freezes (a partition, a stalled VM): no heartbeat, so it is lost and its Space moves, while the
    # app it started keeps running there
    assert n1.proc is not None
    os.kill(n1.proc.pid, signal.SIGSTOP)
    try:
        deadline = time.monotonic() + 120
        while cluster.node_of(sid) != "n2" or cluster.api.runtime(sid)["stage"] != "RUNNING":
            assert time.monotonic() < deadline, f"{cluster.api.runtime(sid)}\n{cluster.logs()}"
            time.sleep(0.5)
        wait_serving(cluster, sid)
        assert _running(pid)  # stale: its assignment now has a newer epoch on n2
    finally:
        os.kill(n1.proc.pid, signal.SIGCONT)

    # back: n1 beats again, sees that the instance is no longer its own and stops it; n2 keeps serving
    deadline = time.monotonic() + 60
    while _running(pid):
        assert time.monotonic() < deadline, cluster.logs()
        time.sleep(0.3)
    (n1_view,) = [n for n in cluster.nodes() if n["name"] == "n1"]
    assert n1_view["spaces"] == [] and "no longer assigned here" in n1.log.read_text()
    assert cluster.node_of(sid) == "n2" and cluster.get(sid).status_code == 200
