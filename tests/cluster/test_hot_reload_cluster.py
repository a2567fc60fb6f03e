"""Issue 14 on issue 13's cluster: `hf spaces hot-reload` (the real huggingface_hub CLI) against a Gradio Space
that runs on a node agent. The node relays the Space's reload server (the `spaces` package's, port 7887 in the
Space's network) on a port of its own and reports it; the server's hot-reload commit and the cluster proxy's
`{subdomain}--7887` reach it there. The same instance (same assignment, same pid) answers with the new code, and
only the Space's writers get through the proxy to its reload server. A client that reaches the node's address
itself gets nothing from either relay: only connections opening with the cluster's relay key are spliced."""

from __future__ import annotations

import secrets
import socket
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import httpx
import pytest

from deploy.cluster.services import Service
from state import cluster as cs
from state.store import Store
from tests.cluster.harness import Cluster
from tests.cluster.test_docker_node import docker_cluster  # noqa: F401  (worker with the docker backend, registry)
from tests.docker.conftest import engine  # noqa: F401  (dockerd running, base image made)
from tests.e2e.hfclients import gradio_call, new_user
from tests.e2e.test_hot_reload import APP, README, hf_hot_reload
from tests.waits import eventually

pytestmark = pytest.mark.e2e


@pytest.fixture
def cluster(tmp_path: Path, fresh_postgres_url: str, redis_url: str) -> Iterator[Cluster]:
    with Cluster(tmp_path, fresh_postgres_url, redis_url).serving() as c:
        yield c


def placed(store: Store, sid: str) -> list[tuple[str, int, str]]:
    """(instance, epoch, node) of every instance the server wants running for the Space."""
    return [(a.instance_id, a.epoch, a.node) for a in cs.assignments(store, desired=cs.RUNNING) if a.space_id == sid]


def reload_status(c: Cluster, sid: str, headers: dict[str, str]) -> int:
    """The status of a `get-reload` through the cluster proxy at `{subdomain}--7887` (204: an unknown reload)."""
    host = f"{sid.replace('/', '-').lower()}--7887.localhost:{c.public_port}"
    return httpx.post(f"{c.proxy_url}/get-reload", json={"reloadId": "none"}, timeout=10,
                      headers={"Host": host, **headers}).status_code


def test_hf_spaces_hot_reload_patches_the_instance_running_on_a_node(cluster: Cluster, tmp_path: Path) -> None:
    cluster.start_node("n1", "127.0.0.2")
    sid = hot_reload_on_node(cluster, "n1", tmp_path)

    # kill -9 of the agent alone (its Space runs on): restarted, it re-adopts the instance and opens both relays
    # on the ports it had (node.json), so the reload route stays valid
    store = Store(cluster.database_url)
    (before,) = [a for a in cs.assignments(store, desired=cs.RUNNING) if a.space_id == sid]
    cluster.procs["n1"].kill()
    cluster.start_node("n1", "127.0.0.2")
    auth = {"Authorization": f"Bearer {cluster.token}"}
    assert eventually(lambda: reload_status(cluster, sid, auth) == 204, timeout=60), cluster.logs()
    (after,) = [a for a in cs.assignments(store, desired=cs.RUNNING) if a.space_id == sid]
    assert (after.instance_id, after.epoch, after.reload_port) == (before.instance_id, before.epoch, before.reload_port)
    store.engine.dispose()


def test_hf_spaces_hot_reload_patches_the_container_running_on_a_docker_node(docker_cluster: Cluster,  # noqa: F811
                                                                            registry: Service,
                                                                            tmp_path: Path) -> None:
    """A docker node: the reload server listens on the container's address on the node's Spaces bridge, where
    the node's relay reaches it (the app's port is published on the node's loopback)."""
    docker_cluster.start_node("d1", "127.0.0.3", "--runtime", "docker", "--registry", registry.url)
    hot_reload_on_node(docker_cluster, "d1", tmp_path)


def answer_of_relay(host: str, port: int, request: bytes) -> bytes:
    """Everything the node's relay at `host:port` sends back to a plain TCP client that sends `request`."""
    got = b""
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(request)
        try:
            while chunk := s.recv(65536):
                got += chunk
        except ConnectionError:
            pass
    return got


def relays_refuse_plain_clients(store: Store, sid: str) -> None:
    """Straight to the node's relays, without the relay key: the app answers no page (its own, or an HTTP
    client's), and its reload server takes no code; the same Space answers through the cluster proxy."""
    (a,) = [a for a in cs.assignments(store, desired=cs.RUNNING) if a.space_id == sid]
    assert a.upstream_host and a.upstream_port and a.reload_port, a
    page = b"GET / HTTP/1.1\r\nHost: anyone\r\nUser-Agent: a client on the node's network\r\n\r\n"
    assert answer_of_relay(a.upstream_host, a.upstream_port, page) == b""
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://{a.upstream_host}:{a.upstream_port}/config", timeout=10)
    body = b'{"filepath": "app.py", "contents": "GREETING = \'pwned\'", "reloadId": "x"}'
    patch = (b"POST /create-reload HTTP/1.1\r\nHost: anyone\r\nContent-Type: application/json\r\n"
             b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    assert answer_of_relay(a.upstream_host, a.reload_port, patch) == b""


def hot_reload_on_node(c: Cluster, node: str, tmp_path: Path) -> str:
    """Push the Gradio Space (it lands on `node`), hot-reload it with `hf spaces hot-reload`, check that the same
    instance answers with the new code and that only its writers reach its reload server through the proxy.
    Returns the Space's id."""
    sid = f"admin/d-hot-{secrets.token_hex(3)}"  # d-: its images go with docker_cluster's leftovers
    assert c.api.create_space(sid.split("/")[1]).status_code == 200
    pushed = c.api.push(sid, {"app.py": APP, "README.md": README, "requirements.txt": f"spaces=={version('spaces')}\n"})
    assert pushed.returncode == 0, pushed.stderr
    rt = c.api.wait_stage(sid, {"RUNNING"}, timeout=500)
    assert rt["stage"] == "RUNNING", f"{rt}\n{c.api.build_log(sid)[-2000:]}\n{c.logs()}"
    first = str(rt["sha"])
    host = c.api.host(sid)
    before = gradio_call(host, "greet", "x")
    assert before.startswith("v1 x pid="), before
    store = Store(c.database_url)
    (instance,) = placed(store, sid)
    assert instance[2] == node
    relays_refuse_plain_clients(store, sid)
    builds = c.api.build_log(sid)

    out = hf_hot_reload(c.api, tmp_path / "home", sid, tmp_path)  # through the cluster proxy
    assert "Updated __main__.greet function" in out and 'GREETING = "one"' in out and "UI untouched" in out, out

    after = gradio_call(host, "greet", "x")
    assert after == f"v2 one x pid={before.split('pid=')[1]}", (before, after)  # same process, new code
    assert placed(store, sid) == [instance]  # no new instance, no new epoch: nothing was started or moved
    info = c.api.runtime(sid)
    assert info["stage"] == "RUNNING" and info["sha"] == first  # served without a build of the new commit
    hot = info["hotReloading"]
    assert hot == {"status": "created", "replicaStatuses": [[instance[0], "created"]]}, hot
    assert c.api.build_log(sid) == builds  # nothing was built
    with c.api.api() as api:
        assert api.get(f"/api/spaces/{sid}").json()["sha"] != first  # the commit landed

    # `{subdomain}--7887` on the cluster proxy: the Space's writers only (a Bearer token, never a cookie)
    _, reader = new_user(c.api, "write")  # a writer of their own Spaces, not of this one
    assert reload_status(c, sid, {"Authorization": f"Bearer {c.token}"}) == 204
    for headers in ({}, {"Authorization": f"Bearer {reader}"}, {"Cookie": "spacehost_session=x"}):
        assert reload_status(c, sid, headers) == 404, headers
    store.engine.dispose()
    return sid
