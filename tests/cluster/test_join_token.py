"""The join token (`spacehost nodes token`): what node agents, build workers and proxies use instead of the
admin's. It calls the cluster API and reads every repo (a private Space's commit, as a node fetches it), and
nothing else: no admin route, no hub write, no git push."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from proxy.remote import RemoteHooks
from tests.cluster.harness import Cluster
from tests.e2e.harness import ROOT, git

pytestmark = pytest.mark.e2e


@pytest.fixture
def server(tmp_path: Path, fresh_postgres_url: str, redis_url: str) -> Iterator[Cluster]:
    c = Cluster(tmp_path, fresh_postgres_url, redis_url)
    try:
        c.start_server()
        yield c
    except BaseException:
        print(c.logs())
        raise
    finally:
        c.close()


def nodes_token(c: Cluster, token: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "spacehost.cli", "nodes", "token", "--server", c.server_url,
                           "--token", token], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)


NODE = {"name": "j1", "address": "127.0.0.9", "cpus": 1, "memory_gb": 1, "gpus": 0, "accelerator": None,
        "labels": {}, "zerogpu_url": None}

REFUSED = [  # (method, path, json body): admin routes and hub writes
    ("GET", "/api/admin/nodes", None),
    ("POST", "/api/admin/nodes/j1/drain", None),
    ("GET", "/api/admin/cluster/join-token", None),
    ("GET", "/api/admin/loop-lag", None),
    ("POST", "/api/users", {"name": "mallory"}),
    ("POST", "/api/repos/create", {"type": "space", "name": "by-join", "sdk": "static"}),
    ("POST", "/api/organizations/new", {"name": "joinorg"}),
]


def test_join_token_joins_the_cluster_and_reads_repos_but_is_no_admin(server: Cluster, tmp_path: Path) -> None:
    out = nodes_token(server, server.token)
    assert out.returncode == 0, out.stderr
    join = out.stdout.strip()
    assert join.startswith("hf_join_") and join != server.token
    assert nodes_token(server, join).returncode == 1  # only an admin reads it

    name = f"p-{uuid.uuid4().hex[:6]}"
    assert server.api.create_space(name, "static", private=True).status_code == 200
    sid = f"admin/{name}"
    assert server.api.push(sid, {"README.md": "---\nsdk: static\n---\n", "index.html": "hi\n"}).returncode == 0

    with httpx.Client(base_url=server.server_url, headers={"Authorization": f"Bearer {join}"}, timeout=30) as c:
        # What a node agent, a worker and a proxy do.
        assert c.post("/api/cluster/nodes/register", json=NODE).status_code == 200
        assert c.get("/api/cluster/nodes/j1/assignments", params={"since": -1}).status_code == 200
        assert c.get("/api/cluster/routes", params={"since": -1}).status_code == 200
        assert c.post("/api/cluster/proxy/can-view", json={"space_id": sid, "user": None}).json() == {"ok": False}
        # The reload server's gate, as a remote proxy asks it (proxy/remote.RemoteHooks.writer_of).
        assert c.post("/api/cluster/proxy/writer", json={"token": server.token, "space_id": sid}).json() == {
            "writer": True}
        for token in (join, "hf_not_a_token"):
            assert c.post("/api/cluster/proxy/writer", json={"token": token, "space_id": sid}).json() == {
                "writer": False}
        assert c.post("/api/cluster/proxy/writer", json={"token": server.token}).status_code == 400
        hooks = RemoteHooks(server.server_url, join)
        assert hooks.writer_of(server.token, sid) and not hooks.writer_of(server.token, "admin/nope")
        # What it must not.
        for method, path, body in REFUSED:
            r = c.request(method, path, json=body)
            assert r.status_code in (400, 401, 403), (method, path, r.status_code, r.text)
        assert c.request("PUT", f"/api/spaces/{sid}/settings", json={"sleepTimeSeconds": 60}).status_code in (
            401, 403, 404)
    with server.api.api() as admin:
        assert admin.get("/api/spaces/admin/by-join").status_code == 404
        assert all(n["name"] == "j1" for n in admin.get("/api/admin/nodes").json())

    # git: a node fetches a private Space's commit with it; a push is refused.
    url = f"http://u:{join}@127.0.0.1:{server.api_port}/spaces/{sid}"
    work = tmp_path / "clone"
    assert git("clone", "-q", url, str(work), check=False).returncode == 0
    (work / "index.html").write_text("defaced\n")
    git("-C", str(work), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "x")
    pushed = git("-C", str(work), "push", "-q", "origin", "HEAD:main", check=False)
    assert pushed.returncode != 0, "a join token pushed to a Space"
