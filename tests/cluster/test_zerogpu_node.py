"""ZeroGPU across nodes: a `zero-*` Space lands on the node that runs a broker for its own devices
(`spacehost node --zerogpu-devices 1`), not on a CPU node, and its `@spaces.GPU` calls (the real `spaces`
package, called with gradio_client through the cluster's proxy) lease from that node's broker: its /metrics
(admin only) charge the Space's GPU seconds."""

from __future__ import annotations

import re
import secrets
import time
from importlib.metadata import version
from pathlib import Path

import httpx
import pytest
from gradio_client import Client

from tests.cluster.harness import Cluster
from tests.cluster.test_control_plane import cluster  # noqa: F401  (the fixture)

pytestmark = pytest.mark.e2e

APP = (Path(__file__).resolve().parents[1] / "zerogpu" / "apps" / "zero_app.py").read_text()


def gpu_seconds(metrics: str, space_id: str) -> float:
    m = re.search(rf'^zerogpu_gpu_seconds_total{{space="{re.escape(space_id)}"}} ([0-9.]+)$', metrics, re.MULTILINE)
    return float(m.group(1)) if m else 0.0


def test_zero_gpu_space_leases_from_its_nodes_broker(cluster: Cluster) -> None:  # noqa: F811
    cluster.start_node("c1", "127.0.0.2")
    cluster.start_node("g1", "127.0.0.3", "--zerogpu-devices", "1")
    name = f"zero-{secrets.token_hex(3)}"
    assert cluster.api.create_space(name, hardware="zero-a10g").status_code == 200
    sid = f"admin/{name}"
    pushed = cluster.api.push(sid, {"app.py": APP, "requirements.txt": f"spaces=={version('spaces')}\n"})
    assert pushed.returncode == 0, pushed.stderr
    rt = cluster.api.wait_stage(sid, {"RUNNING"}, timeout=600)
    assert rt["stage"] == "RUNNING", f"{rt}\n{cluster.logs()}"
    assert cluster.node_of(sid) == "g1"  # the CPU node has no pool
    (g1,) = [n for n in cluster.nodes() if n["name"] == "g1"]
    broker = str(g1["zerogpu_url"])
    with httpx.Client(base_url=broker, headers={"Authorization": f"Bearer {cluster.token}"}) as b:
        assert b.get("/metrics").status_code == 200
        before = gpu_seconds(b.get("/metrics").text, sid)
        assert httpx.get(broker + "/metrics").status_code == 401  # admins only: it names every Space

        host = cluster.api.host(sid)  # the Space's own URL: the cluster's proxy
        deadline = time.monotonic() + 60
        while True:
            try:
                result = Client(host, token=cluster.token, verbose=False).predict(1.0, api_name="/work")
                break
            except (httpx.HTTPError, ValueError, ConnectionError):
                assert time.monotonic() < deadline, cluster.logs()
                time.sleep(1)
        assert str(result).startswith("pid="), result
        after = gpu_seconds(b.get("/metrics").text, sid)
    assert after - before >= 1.0, (before, after)  # the lease was this node's broker's
