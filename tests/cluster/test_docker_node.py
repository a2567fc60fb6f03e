"""Docker nodes and the registry, on real parts: a `sdk: docker` Space pushed to a cluster is built by a Celery
worker with the docker backend, pushed to the registry (Debian's `docker-registry`) and pinned by digest; the
docker node, not the process node beside it, pulls it by that digest, runs it in a container and serves it
through the cluster's proxy. A second start on the node takes the image from the engine's cache."""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import docker.errors
import httpx
import pytest

from deploy.cluster.services import Service
from tests.cluster.harness import Cluster
from tests.cluster.test_control_plane import wait_serving
from tests.docker.conftest import engine  # noqa: F401  (dockerd running, base image made)

pytestmark = pytest.mark.e2e

DOCKERFILE = """FROM spacehost/base:bookworm
RUN useradd -m -u 1000 user
USER user
ENV HOME=/home/user
WORKDIR /home/user/app
COPY --chown=user . /home/user/app
CMD ["python3", "server.py"]
"""
SERVER = """import http.server, os

class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("served from a container of %s" % os.environ.get("SPACE_ID", "?")).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)

print("docker Space up", flush=True)
http.server.ThreadingHTTPServer(("0.0.0.0", 7860), H).serve_forever()
"""
README = "---\nsdk: docker\napp_port: 7860\n---\n"
MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


@pytest.fixture
def docker_cluster(tmp_path: Path, fresh_postgres_url: str, redis_url: str, registry: Service,
                   engine: None) -> Iterator[Cluster]:  # noqa: F811
    # A Redis database of its own: no other test's worker takes this cluster's builds from the queue.
    c = Cluster(tmp_path, fresh_postgres_url, redis_url.rsplit("/", 1)[0] + "/6")
    c.env["SPACEHOST_BUILD_QUEUE"] = "celery"
    try:
        c.start_server()
        c.start_proxy()
        c.start_worker("--runtime", "docker", "--registry", registry.url)
        yield c
    finally:  # the roles' logs are in the failing assertion's message
        c.close()
        remove_docker_leftovers(c)


def remove_docker_leftovers(c: Cluster) -> None:
    """The containers the killed node agents left (they carry their data dir) and the Spaces' images."""
    client = docker.from_env()
    try:
        for name in c.procs:
            for ctr in client.containers.list(all=True, filters={"label": f"spacehost.data-dir={c.node_dir(name)}"}):
                with contextlib.suppress(docker.errors.APIError):
                    ctr.remove(force=True, v=True)
        for image in client.images.list(filters={"label": "spacehost.space"}):
            if any(t.startswith(("spacehost/admin--d-", "127.0.0.1:")) for t in image.tags + image.attrs["RepoDigests"]):
                with contextlib.suppress(docker.errors.APIError):
                    client.images.remove(image.id, force=True)
    finally:
        client.close()


def manifest_gets(registry: Service, repo: str) -> int:
    """How many times an engine fetched the repository's manifest: one per pull (pushes PUT it)."""
    return registry.log.read_text(errors="replace").count(f'"GET /v2/{repo}/manifests/')


def wait_for(what: str, check: Callable[[], bool], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_a_docker_node_pulls_the_image_the_worker_pushed(docker_cluster: Cluster, registry: Service) -> None:
    c = docker_cluster
    c.start_node("a-proc", "127.0.0.2")  # first by name: placement must skip it (it runs no images)
    c.start_node("d1", "127.0.0.3", "--runtime", "docker", "--registry", registry.url)
    name = f"d-{uuid.uuid4().hex[:6]}"
    sid, repo = f"admin/{name}", f"spaces/admin--{name}"
    assert c.api.create_space(name, sdk="docker").status_code == 200
    t0 = time.monotonic()
    pushed = c.api.push(sid, {"Dockerfile": DOCKERFILE, "server.py": SERVER, "README.md": README})
    assert pushed.returncode == 0, pushed.stderr
    rt = c.api.wait_stage(sid, timeout=240)
    assert rt["stage"] == "RUNNING", f"{rt}\n{c.logs()}"
    wait_serving(c, sid)
    print(f"push → serving from the docker node: {time.monotonic() - t0:.1f}s")
    assert c.get(sid).text == f"served from a container of {sid}"
    assert c.node_of(sid) == "d1"
    assert "spacehost.build[admin--" in c.procs["worker"].tail(400)  # built by the Celery worker

    # The registry holds it: listed in the catalog, tagged with the commit, and the artifact pins its digest.
    sha = str(rt["sha"])
    assert repo in httpx.get(f"http://{registry.url}/v2/_catalog").json()["repositories"]
    assert sha[:12] in httpx.get(f"http://{registry.url}/v2/{repo}/tags/list").json()["tags"]
    head = httpx.head(f"http://{registry.url}/v2/{repo}/manifests/{sha[:12]}", headers={"Accept": MANIFEST})
    digest = head.headers["Docker-Content-Digest"]
    artifact = json.loads((c.root / "server" / "spaces" / sid / "builds" / f"{sha}.json").read_text())
    assert artifact["image"] == f"{registry.url}/{repo}@{digest}"

    # The node pulled it by digest, once; its container serves the Space.
    assert manifest_gets(registry, repo) == 1
    node_log = c.procs["d1"].tail(400)
    assert f"image {registry.url}/{repo}@{digest} pulled" in node_log, node_log
    client = docker.from_env()
    try:
        (ctr,) = client.containers.list(filters={"label": [f"spacehost.space={sid}",
                                                           f"spacehost.data-dir={c.node_dir('d1')}"]})
        assert ctr.attrs["Config"]["Image"] == f"{registry.url}/{repo}@{digest}"
    finally:
        client.close()

    # A second start (restart: start the new instance, swap, stop the old) takes the image from the cache.
    with c.api.api() as api:
        assert api.post(f"/api/spaces/{sid}/restart").status_code == 200
    wait_for("the restarted instance", lambda: "in this node's cache" in c.procs["d1"].tail(400))
    assert c.api.wait_stage(sid, timeout=120)["stage"] == "RUNNING"
    wait_serving(c, sid)
    assert manifest_gets(registry, repo) == 1
