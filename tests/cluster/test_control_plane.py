"""The control plane of cluster mode on real processes: server, proxy and node agents over PostgreSQL and
Redis; Spaces pushed with git land on nodes and serve through the proxy."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

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
    extra = {"hardware": hardware} if hardware else {}
    assert c.api.create_space(name, **extra).status_code == 200
    sid = f"admin/{name}"
    assert c.api.push(sid, {"app.py": APP, "README.md": README}).returncode == 0
    return sid


def wait_serving(c: Cluster, sid: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if c.get(sid).status_code == 200:
                return
        except Exception:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{sid} does not serve: {c.api.runtime(sid)}\n{c.logs()}")


def test_push_lands_on_a_node_and_serves_through_the_proxy(cluster: Cluster) -> None:
    cluster.start_node("n1", "127.0.0.2")
    sid = push_space(cluster)
    assert cluster.api.wait_stage(sid, timeout=400)["stage"] == "RUNNING", cluster.logs()
    wait_serving(cluster, sid)
    assert cluster.node_of(sid) == "n1"
    (node,) = cluster.nodes()
    assert node["ready"] and node["allocated"]["cpu"] == 2  # type: ignore[index]
    # the app's own lines, written on the node, reach the hub's run log (SSE)
    with cluster.api.api() as api:
        deadline = time.monotonic() + 20
        while "hello from the app" not in (text := api.get(f"/api/spaces/{sid}/logs/run",
                                                           params={"follow": "false"}).text):
            assert time.monotonic() < deadline, text
            time.sleep(0.3)
