"""A Space's storage tier sizes its volume on the node that runs it, as in embedded mode: the server resolves the
limit (the tier's size capped by its SPACEHOST_VOLUME_LIMIT_BYTES) and the launch spec carries it to the node,
whose own, larger limit does not apply. A bucket moved by a drain gets the Space's limit on its new node (grown
there when the tier was raised meanwhile)."""

from __future__ import annotations

import errno
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from huggingface_hub import Volume

from scheduler import volume_fs
from tests.cluster.harness import Cluster
from tests.cluster.test_volumes_cluster import APP, serving
from tests.e2e.hfclients import api

pytestmark = pytest.mark.e2e
SMALL, MEDIUM = 16 << 20, 48 << 20  # the app's /fill writes 32 MiB: past small, within medium and the limit


@pytest.fixture
def cluster(tmp_path: Path, fresh_postgres_url: str, redis_url: str) -> Iterator[Cluster]:
    c = Cluster(tmp_path, fresh_postgres_url, redis_url)
    c.env.update({"SPACEHOST_VOLUME_LIMIT_BYTES": str(64 << 20), "SPACEHOST_STORAGE_SMALL_BYTES": str(SMALL),
                  "SPACEHOST_STORAGE_MEDIUM_BYTES": str(MEDIUM)})  # server and nodes alike
    try:
        with c.serving():
            yield c
    finally:
        volume_fs.unmount_all(tmp_path)  # nodes killed with SIGKILL leave their mounts; a safety net


def set_tier(c: Cluster, sid: str, tier: str) -> None:
    r = httpx.post(f"{c.server_url}/api/spaces/{sid}/storage", json={"tier": tier},
                   headers={"Authorization": f"Bearer {c.token}"}, timeout=30)
    assert r.status_code == 200 and r.json()["storage"] == tier, r.text


def test_the_storage_tier_sizes_the_volume_on_its_node_and_after_a_move(cluster: Cluster) -> None:
    cluster.start_node("n1", "127.0.0.2")
    name, bucket = f"t-{secrets.token_hex(3)}", f"b{secrets.token_hex(3)}"
    sid = f"admin/{name}"
    assert cluster.api.create_space(name).status_code == 200
    set_tier(cluster, sid, "small")
    api(cluster.api).set_space_volumes(sid, volumes=[Volume(type="bucket", source=f"admin/{bucket}",
                                                            mount_path="/data")])
    assert cluster.api.push(sid, {"app.py": APP, "README.md": "---\nsdk: gradio\n---\n"}).returncode == 0
    data, boot = serving(cluster, sid)
    assert cluster.node_of(sid) == "n1"
    image = volume_fs.image_of(cluster.node_dir("n1") / "volumes" / "admin" / bucket)
    assert image.stat().st_size == SMALL  # the tier's size, not the node's 64 MiB
    assert cluster.get(sid, "/fill", timeout=60).text == f"error-{errno.ENOSPC}"

    set_tier(cluster, sid, "medium")  # restarts the Space on n1, where the bucket stays mounted at its size
    data, boot = serving(cluster, sid, not_boot=boot)
    cluster.start_node("n2", "127.0.0.3")
    with cluster.api.api() as admin:
        assert admin.post("/api/admin/nodes/n1/drain").status_code == 200
    deadline = time.monotonic() + 300
    while cluster.node_of(sid) != "n2":
        assert time.monotonic() < deadline, cluster.logs()
        time.sleep(0.2)
    assert serving(cluster, sid, not_boot=boot)[0] == data
    moved = volume_fs.image_of(cluster.node_dir("n2") / "volumes" / "admin" / bucket)
    assert moved.stat().st_size == MEDIUM  # grown on arrival (unmounted) to the tier raised meanwhile
    assert cluster.get(sid, "/fill", timeout=60).text == "wrote"
