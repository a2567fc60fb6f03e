"""kill -9 of `spacehost server` at each stage a Space passes through on a cluster — building, first start,
redeploy, waking, deleting — then a restart: the Space converges (its head version serving on a node, or gone
from the node without a trace). Spaces already running keep serving through the proxy while the server is down,
private ones too for visitors whose token the proxy checked in the last minutes."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable

import httpx
import pytest

from tests.cluster.harness import Cluster
from tests.cluster.test_control_plane import cluster  # noqa: F401  (the fixture)
from tests.e2e.test_recovery_stages import exists, files, quietly_delete

pytestmark = pytest.mark.e2e


def push(c: Cluster, sid: str, version: str, delay: float = 0) -> None:
    pushed = c.api.push(sid, files(version, delay))
    assert pushed.returncode == 0, pushed.stderr


def new_space(c: Cluster) -> str:
    name = f"r-{uuid.uuid4().hex[:6]}"
    assert c.api.create_space(name).status_code == 200
    return f"admin/{name}"


def kill_server_in(c: Cluster, sid: str, stages: set[str], timeout: float = 400) -> None:
    deadline = time.monotonic() + timeout
    while str(c.api.runtime(sid)["stage"]) not in stages:
        assert time.monotonic() < deadline, f"{sid} never reached {stages}: {c.api.runtime(sid)}\n{c.logs()}"
        time.sleep(0.1)
    c.procs["server"].kill()


def serves(c: Cluster, sid: str, version: str, timeout: float = 400) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(httpx.HTTPError):
            r = c.get(sid, timeout=5)
            if r.status_code == 200 and r.text == f"version={version}" and c.api.runtime(sid)["stage"] == "RUNNING":
                return
        assert time.monotonic() < deadline, f"{sid} does not serve {version}: {c.api.runtime(sid)}\n{c.logs()}"
        time.sleep(0.3)


@pytest.mark.parametrize("stage", ["building", "first start", "redeploy", "waking"])
def test_killed_server_converges(cluster: Cluster, stage: str) -> None:  # noqa: F811
    cluster.start_node("n1", "127.0.0.2")
    sid = new_space(cluster)
    if stage == "building":
        push(cluster, sid, "v1")
        kill_server_in(cluster, sid, {"BUILDING"})
        cluster.start_server()
        serves(cluster, sid, "v1")
    elif stage == "first start":
        push(cluster, sid, "v1", delay=12)
        kill_server_in(cluster, sid, {"APP_STARTING"})
        cluster.start_server()
        serves(cluster, sid, "v1")
    elif stage == "redeploy":
        push(cluster, sid, "v1")
        serves(cluster, sid, "v1")
        push(cluster, sid, "v2", delay=12)
        kill_server_in(cluster, sid, {"RUNNING_APP_STARTING"})
        for _ in range(10):  # the proxy keeps its last routes: v1 serves while the server is down
            assert cluster.get(sid).text == "version=v1"
            time.sleep(0.2)
        cluster.start_server()
        serves(cluster, sid, "v2")
    else:
        push(cluster, sid, "v1", delay=8)
        serves(cluster, sid, "v1")
        with cluster.api.api() as api:
            assert api.post(f"/api/spaces/{sid}/sleeptime", json={"seconds": 2}).status_code == 200
        assert cluster.api.wait_stage(sid, {"SLEEPING"}, timeout=120)["stage"] == "SLEEPING"
        assert cluster.node_of(sid) is None  # asleep: nothing of it runs on a node
        visitor = threading.Thread(target=lambda: _quietly(lambda: cluster.get(sid, timeout=120)), daemon=True)
        visitor.start()  # the proxy asks the server to wake it; the server dies while it starts on a node
        kill_server_in(cluster, sid, {"APP_STARTING"})
        cluster.start_server()
        with cluster.api.api() as api:  # long enough to be seen RUNNING before it sleeps again
            assert api.post(f"/api/spaces/{sid}/sleeptime", json={"seconds": 3600}).status_code == 200
        serves(cluster, sid, "v1", timeout=240)


def test_killed_server_while_deleting_stops_it_on_the_node(cluster: Cluster) -> None:  # noqa: F811
    cluster.start_node("n1", "127.0.0.2")
    sid = new_space(cluster)
    push(cluster, sid, "v1")
    serves(cluster, sid, "v1")
    owner, name = sid.split("/")
    deleting = threading.Thread(target=lambda: quietly_delete(cluster.api, owner, name), daemon=True)
    deleting.start()
    deadline = time.monotonic() + 60
    while exists(cluster.api, sid):  # the row goes first; stopping on the node follows
        assert time.monotonic() < deadline
        time.sleep(0.02)
    cluster.procs["server"].kill()
    cluster.start_server()
    deadline = time.monotonic() + 120
    while cluster.node_of(sid) is not None or cluster.get(sid, timeout=5).text == "version=v1":
        assert time.monotonic() < deadline, f"{sid} still runs on a node:\n{cluster.logs()}"
        time.sleep(0.3)
    assert not list((cluster.node_dir("n1") / "run").glob(f"{owner}--{name}--*.json"))
    assert not exists(cluster.api, sid)


def user_token(c: Cluster, user: str) -> str:
    with c.api.api() as api:
        if user != "admin":
            assert api.post("/api/users", json={"name": user}).status_code == 200
        r = api.post(f"/api/users/{user}/tokens", json={"role": "read"})
        assert r.status_code == 200, r.text
        return str(r.json()["token"])


def visit(c: Cluster, sid: str, token: str | None) -> httpx.Response:
    sub = sid.replace("/", "-").lower()
    headers = {"Host": f"{sub}.localhost:{c.public_port}", **({"Authorization": f"Bearer {token}"} if token else {})}
    return httpx.get(c.proxy_url + "/", headers=headers, timeout=5)


def test_private_space_serves_recent_visitors_while_the_server_is_down(cluster: Cluster) -> None:  # noqa: F811
    cluster.start_node("n1", "127.0.0.2")
    name = f"p-{uuid.uuid4().hex[:6]}"
    assert cluster.api.create_space(name, private=True).status_code == 200
    sid = f"admin/{name}"
    push(cluster, sid, "v1")
    assert cluster.api.wait_stage(sid, {"RUNNING"}, timeout=400)["stage"] == "RUNNING", cluster.logs()
    stranger, unseen = user_token(cluster, "stranger"), user_token(cluster, "admin")
    deadline = time.monotonic() + 60
    while (r := visit(cluster, sid, cluster.token)).text != "version=v1":
        assert time.monotonic() < deadline, (r.status_code, r.text[:200])
        time.sleep(0.3)
    assert visit(cluster, sid, stranger).status_code != 200  # checked: not allowed
    assert visit(cluster, sid, None).status_code != 200

    cluster.procs["server"].kill()
    for _ in range(10):  # the owner's token, checked a moment ago, still opens it; nobody else gets in
        r = visit(cluster, sid, cluster.token)
        assert r.status_code == 200 and r.text == "version=v1", (r.status_code, r.text[:200])
        for token in (stranger, unseen, None):
            assert visit(cluster, sid, token).status_code != 200, token
        time.sleep(0.5)
    cluster.start_server()
    deadline = time.monotonic() + 60  # the server answers again: a new token works (once refusals expire)
    while (r := visit(cluster, sid, unseen)).text != "version=v1":
        assert time.monotonic() < deadline, (r.status_code, r.text[:200])
        time.sleep(0.5)


def _quietly(call: Callable[[], object]) -> None:
    with contextlib.suppress(httpx.HTTPError):
        call()


def test_static_space_serves_from_the_proxys_copy_while_the_server_is_down(cluster: Cluster) -> None:  # noqa: F811
    name = f"st-{uuid.uuid4().hex[:6]}"
    assert cluster.api.create_space(name, sdk="static").status_code == 200
    sid = f"admin/{name}"
    pushed = cluster.api.push(sid, {"index.html": "<h1>static v1</h1>", "README.md": "---\nsdk: static\n---\n"})
    assert pushed.returncode == 0, pushed.stderr
    deadline = time.monotonic() + 300
    while "static v1" not in (r := cluster.get(sid)).text:
        assert time.monotonic() < deadline, (r.status_code, r.text[:200], cluster.logs())
        time.sleep(0.3)
    (copy,) = (cluster.root / "proxy" / "static").iterdir()  # the proxy's own copy, fetched over HTTP
    assert (copy / "index.html").read_text() == "<h1>static v1</h1>"
    cluster.procs["server"].kill()
    for _ in range(5):
        r = cluster.get(sid)
        assert r.status_code == 200 and "static v1" in r.text, (r.status_code, r.text[:200])
        time.sleep(0.3)
