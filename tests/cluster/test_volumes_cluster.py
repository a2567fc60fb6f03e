"""A Space's volume in cluster mode lives on the node that runs it: the node makes the size-limited bucket
under its own data dir and binds it into the Space; the server mounts nothing. The Space stays on that node:
while the node is cordoned it waits and says why, rather than starting elsewhere without its data. A drained
node hands the volume over: the Space stops there, its bucket is copied (checked) to another node, and it starts
there with its data; the old node deletes its copy."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from huggingface_hub import Volume

from scheduler import volume_fs
from tests.cluster.harness import Cluster
from tests.e2e.hfclients import api

pytestmark = pytest.mark.e2e

APP = """import os, uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

if not os.path.exists("/data/x"):
    with open("/data/x", "w") as f:
        f.write(uuid.uuid4().hex)
BOOT = uuid.uuid4().hex

def fill():
    try:
        with open("/data/fill", "wb") as f:
            for _ in range(32):
                f.write(b"\1" * (1 << 20))
                f.flush()
                os.fsync(f.fileno())
        return "wrote"
    except OSError as e:
        return "error-%d" % e.errno
    finally:
        os.remove("/data/fill")

class H(BaseHTTPRequestHandler):
    def do_GET(self):
        body = (fill() if self.path == "/fill" else "%s %s" % (open("/data/x").read(), BOOT)).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)

ThreadingHTTPServer(("0.0.0.0", int(os.environ["GRADIO_SERVER_PORT"])), H).serve_forever()
"""


@pytest.fixture
def cluster(tmp_path: Path, fresh_postgres_url: str, redis_url: str) -> Iterator[Cluster]:
    c = Cluster(tmp_path, fresh_postgres_url, redis_url)
    c.env["SPACEHOST_VOLUME_LIMIT_BYTES"] = str(16 << 20)
    try:
        with c.serving():
            yield c
    finally:
        volume_fs.unmount_all(tmp_path)  # nodes killed with SIGKILL leave their mounts; a safety net


def serving(c: Cluster, sid: str, timeout: float = 300, not_boot: str = "") -> tuple[str, str]:
    """(the content of /data/x, the instance's boot id) once the Space answers with a boot other than `not_boot`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            r = c.get(sid, timeout=2)
            if r.status_code == 200 and (parts := r.text.split()) and parts[1] != not_boot:
                return parts[0], parts[1]
        time.sleep(0.2)
    raise TimeoutError(f"{sid} does not serve: {c.api.runtime(sid)}\n{c.logs()}")


def test_a_volume_lives_on_its_node_and_the_space_waits_for_that_node(cluster: Cluster) -> None:
    cluster.start_node("n1", "127.0.0.2")
    name, bucket = f"v-{secrets.token_hex(3)}", f"b{secrets.token_hex(3)}"
    sid = f"admin/{name}"
    assert cluster.api.create_space(name).status_code == 200
    hf = api(cluster.api)
    hf.set_space_volumes(sid, volumes=[Volume(type="bucket", source=f"admin/{bucket}", mount_path="/data")])
    assert cluster.api.push(sid, {"app.py": APP, "README.md": "---\nsdk: gradio\n---\n"}).returncode == 0
    data, boot = serving(cluster, sid)
    assert cluster.node_of(sid) == "n1"
    # the bucket is a size-limited image under the node's data dir; the server's holds nothing of it
    node_vols = cluster.node_dir("n1") / "volumes" / "admin"
    assert (node_vols / f"{bucket}.img").is_file() and (node_vols / bucket / "x").read_text() == data
    assert not (cluster.root / "server" / "volumes").exists()

    cluster.start_node("n2", "127.0.0.3")
    hf.restart_space(sid)
    data2, boot = serving(cluster, sid, not_boot=boot)
    assert data2 == data and cluster.node_of(sid) == "n1"

    with cluster.api.api() as admin:
        assert admin.post("/api/admin/nodes/n1/cordon").status_code == 200
        hf.restart_space(sid)
        why = f"its volume admin/{bucket} lives on node n1, which is unavailable"
        deadline = time.monotonic() + 60
        while why not in json.dumps(rt := cluster.api.runtime(sid)):
            assert time.monotonic() < deadline, f"{rt}\n{cluster.logs()}"
            time.sleep(0.3)
        assert cluster.node_of(sid) == "n1"  # the old instance still serves there (blue/green); none on n2
        assert not (cluster.node_dir("n2") / "volumes").exists()
        assert admin.post("/api/admin/nodes/n1/uncordon").status_code == 200
    assert serving(cluster, sid, not_boot=boot)[0] == data  # the new instance, with its data
    assert cluster.node_of(sid) == "n1"


def test_a_drain_moves_the_volume_with_its_space(cluster: Cluster) -> None:
    cluster.start_node("n1", "127.0.0.2")
    name, bucket = f"m-{secrets.token_hex(3)}", f"b{secrets.token_hex(3)}"
    sid = f"admin/{name}"
    assert cluster.api.create_space(name).status_code == 200
    api(cluster.api).set_space_volumes(sid, volumes=[Volume(type="bucket", source=f"admin/{bucket}",
                                                            mount_path="/data")])
    assert cluster.api.push(sid, {"app.py": APP, "README.md": "---\nsdk: gradio\n---\n"}).returncode == 0
    data, boot = serving(cluster, sid)
    assert cluster.node_of(sid) == "n1"
    cluster.start_node("n2", "127.0.0.3")

    with cluster.api.api() as admin:
        t0 = time.monotonic()
        assert admin.post("/api/admin/nodes/n1/drain").status_code == 200
        said: set[str] = set()  # what the runtime says while the Space moves
        deadline, last_old = time.monotonic() + 300, t0
        while True:
            if "moving" in (rt := json.dumps(cluster.api.runtime(sid))):
                said.add(rt)
            with contextlib.suppress(httpx.HTTPError):
                r = cluster.get(sid, timeout=2)
                if r.status_code == 200 and (parts := r.text.split()) and parts[1] == boot:
                    last_old = time.monotonic()
                elif r.status_code == 200 and parts:
                    data2 = parts[0]
                    break
            assert time.monotonic() < deadline, f"{cluster.api.runtime(sid)}\n{cluster.logs()}"
            time.sleep(0.1)
    now = time.monotonic()
    print(f"\ndrain of n1 -> {sid} serving on n2 with its volume: {now - t0:.1f}s, "
          f"of which down (old instance stopped -> new one answers): {now - last_old:.1f}s")
    assert data2 == data and cluster.node_of(sid) == "n2"
    assert any("moving" in w and f"admin/{bucket}" in w and "n2" in w for w in said), said

    # B's bucket is an image of its own, mounted, its limit enforced; A keeps no copy, nor does the server
    folder = cluster.node_dir("n2") / "volumes" / "admin" / bucket
    assert os.path.ismount(folder) and (folder / "x").read_text() == data
    assert cluster.get(sid, "/fill", timeout=60).text == f"error-{errno.ENOSPC}"
    old = cluster.node_dir("n1") / "volumes" / "admin"
    deadline = time.monotonic() + 60
    while (old / bucket).exists() or (old / f"{bucket}.img").exists() or any(
            k.endswith(bucket) for k in next(n for n in cluster.nodes() if n["name"] == "n1")["labels"]):
        assert time.monotonic() < deadline, cluster.logs()
        time.sleep(0.2)
    assert not list((cluster.root / "server").glob(f"volume-moves/admin/{bucket}*"))
    labels = next(n for n in cluster.nodes() if n["name"] == "n2")["labels"]
    assert labels.get(f"spacehost.volume.admin/{bucket}") == "here"
