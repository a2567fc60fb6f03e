"""deploy/compose.yaml run for real by Debian's docker-compose 1.29: the image builds FROM the local base image
(no registry), every role comes up as a container (PostgreSQL, Redis, server, Celery worker, proxy, node1), node1
registers Ready, a static Space pushed over git smart HTTP through the proxy reaches RUNNING and is served through
the proxy on 127.0.0.1:8080 (from the server's own checkout: it shares no volume with the worker), the roles
but the server join with the join token, and a Gradio Space (gradio from PyPI, built by the worker, run on node1) answers
gradio_client through the proxy; `docker-compose down -v` removes every container and volume. One cluster for the
module: the image build and `up` are the slow part."""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from gradio_client import Client

from tests.cluster.test_cluster_up import push
from tests.e2e.harness import ROOT

pytestmark = pytest.mark.docker
PROJECT = f"shc{os.getpid()}"
PORT = 8080  # compose.yaml publishes the proxy on 127.0.0.1:8080
TOKEN = "hf_" + secrets.token_hex(16)


def compose_env() -> dict[str, str]:
    """Debian's docker CLI (BuildKit built in) for compose's builds; the machine's CA bundle for the image's."""
    return {**os.environ, "PATH": f"/usr/bin:{os.environ['PATH']}", "COMPOSE_DOCKER_CLI_BUILD": "1",
            "DOCKER_BUILDKIT": "1", "SPACEHOST_ADMIN_TOKEN": TOKEN,
            "SPACEHOST_SECRET_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()}


def compose(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker-compose", "-p", PROJECT, "-f", str(ROOT / "deploy/compose.yaml"), *args],
                          env=compose_env(), capture_output=True, text=True, timeout=timeout, check=False)


def wait_for(pred: Callable[[], bool], timeout: float, what: str) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            if pred():
                return time.monotonic() - t0
        except httpx.HTTPError:
            pass
        time.sleep(1)
    logs = compose("logs", "--tail", "40", timeout=60)
    raise AssertionError(f"{what} within {timeout}s:\n{logs.stdout[-6000:]}")


def role_env(service: str) -> dict[str, str]:
    """The environment compose gave `service`'s container."""
    cid = compose("ps", "-q", service, timeout=60).stdout.strip()
    out = subprocess.run(["docker", "inspect", "--format", "{{json .Config.Env}}", cid], capture_output=True,
                         text=True, check=True)
    return dict(e.split("=", 1) for e in json.loads(out.stdout))


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    subprocess.run([ROOT / "deploy/start-dockerd.sh"], check=True)
    subprocess.run([ROOT / "deploy/make-base-image.sh", "spacehost/base:trixie"], env={**os.environ, "SUITE": "trixie"},
                   check=True)
    ca = os.environ.get("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt")
    shutil.copyfile(ca, ROOT / "deploy/build-ca.crt")  # git-ignored; the build's and the roles' trust
    t0 = time.monotonic()
    up = compose("up", "--build", "-d")
    print(f"docker-compose up --build -d: {time.monotonic() - t0:.1f}s")
    try:
        assert up.returncode == 0, up.stderr[-4000:]
        yield
    finally:
        down = compose("down", "-v", timeout=180)
        assert down.returncode == 0, down.stderr[-4000:]
        left = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={PROJECT}"],
                              capture_output=True, text=True, check=True).stdout.split()
        assert left == [], f"containers left: {left}"


def test_compose_runs_every_role_and_serves_a_pushed_space(cluster: None, tmp_path: Path) -> None:
    t0 = time.monotonic()
    api = httpx.Client(base_url=f"http://127.0.0.1:{PORT}", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)

    def node_ready() -> bool:
        return [(n["name"], n["ready"]) for n in api.get("/api/admin/nodes").json()] == [("node1", True)]

    wait_for(node_ready, 120, "node1 did not register Ready")
    # The node (Ready), the worker and the proxy joined with the join token derived from the installation key:
    # neither the admin's token nor the database is theirs
    for service in ("worker", "proxy", "node1"):
        env = role_env(service)
        assert TOKEN not in env.values() and not {"SPACEHOST_TOKEN", "SPACEHOST_DATABASE_URL"} & env.keys(), service
    api.post("/api/repos/create", json={"type": "space", "name": "hello", "sdk": "static"}).raise_for_status()
    push(TOKEN, PORT, tmp_path / "hello", "hello", {"README.md": "---\nsdk: static\n---\n",
                                                    "index.html": "<h1>hello from compose</h1>\n"})

    def stage() -> str:
        return str(api.get("/api/spaces/admin/hello/runtime").json()["stage"])

    wait_for(lambda: stage() == "RUNNING", 180, "the Space did not reach RUNNING")

    def served() -> bool:
        r = httpx.get(f"http://127.0.0.1:{PORT}/", headers={"Host": f"admin-hello.localhost:{PORT}"}, timeout=5)
        return r.status_code == 200 and "hello from compose" in r.text

    wait_for(served, 120, "the Space is not served through the proxy")
    print(f"node Ready → push → served through the proxy: {time.monotonic() - t0:.1f}s")


GRADIO_APP = """import gradio as gr


def shout(text):
    return text.upper() + "!"


gr.Interface(fn=shout, inputs="text", outputs="text").launch()
"""


def test_compose_builds_and_runs_a_gradio_space_on_the_node(cluster: None, tmp_path: Path) -> None:
    """The main use case: the worker installs gradio from PyPI in its build sandbox (a network namespace of its
    own inside the container: forwarding, DNS), node1 materialises the environment and runs the app in its
    sandbox (cgroups writable), and gradio_client's prediction through the proxy gets the app's answer."""
    t0 = time.monotonic()
    api = httpx.Client(base_url=f"http://127.0.0.1:{PORT}", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    wait_for(lambda: api.get("/api/admin/nodes").json()[0]["ready"] is True, 120, "node1 did not register Ready")
    api.post("/api/repos/create", json={"type": "space", "name": "shout", "sdk": "gradio"}).raise_for_status()
    push(TOKEN, PORT, tmp_path / "shout", "shout", {"README.md": "---\nsdk: gradio\napp_file: app.py\n---\n",
                                                    "app.py": GRADIO_APP})

    def stage() -> str:
        runtime = api.get("/api/spaces/admin/shout/runtime").json()
        assert runtime["stage"] not in ("BUILD_ERROR", "RUNTIME_ERROR", "CONFIG_ERROR"), runtime
        return str(runtime["stage"])

    wait_for(lambda: stage() == "RUNNING", 900, "the Gradio Space did not reach RUNNING")
    print(f"node Ready → push → RUNNING (gradio installed by the worker and on node1): {time.monotonic() - t0:.1f}s")
    assert "admin/shout" in api.get("/api/admin/nodes").json()[0]["spaces"]
    # gradio_client (unmodified) through the proxy; the Host header picks the Space (no wildcard DNS needed)
    client = Client(f"http://127.0.0.1:{PORT}", headers={"Host": f"admin-shout.localhost:{PORT}"}, verbose=False)
    assert client.predict("hello compose", api_name="/shout") == "HELLO COMPOSE!"
    # The Space's processes are in cgroups of its own, nested in node1's container (its cgroups writable there)
    procs = compose("exec", "-T", "node1", "sh", "-c",
                    "cat $(find /sys/fs/cgroup -path '*/spacehost/admin--shout-*/cgroup.procs')", timeout=60)
    assert procs.returncode == 0 and procs.stdout.split(), procs.stdout + procs.stderr
