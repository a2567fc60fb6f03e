"""Issue 5 through a real `spacehost up --runtime docker`, driven from outside: git push a Gradio Space, call it
with gradio_client, redeploy it under a client loop, push a broken commit, restart spacehost. The Space runs on
`zero-a10g` (one declared device) so that its env carries a broker URL; from inside its container it reaches the
hub and the broker on the bridge gateway, and nothing else private.

One Space, one server, reused step after step (module scope): the steps build on each other, in file order."""

from __future__ import annotations

import datetime as dt
import errno
import json
import secrets
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from builder.docker_backend import LABEL_SPACE
from builder.dockerfile import WARM_IN_IMAGE, image_tag
from core.settings import Settings
from scheduler.controller import KEEP_IMAGES
from scheduler.runtimes.docker import HOST_ALIAS, DockerRuntime
from scheduler.runtimes.docker_warm import LABEL_SPARE
from tests.docker.conftest import BASE_IMAGE
from tests.e2e.harness import Server, free_port
from tests.e2e.streamlit_ws import run_script

# the module keeps its order: one Space and one server, step after step (a push, then a redeploy, a broken
# commit, a SIGKILL and readoption, a rollback, image GC, and last the Space deleted); modules still shuffle
pytestmark = [pytest.mark.docker, pytest.mark.random_order(disabled=True)]

CA = "/etc/ssl/certs/ca-certificates.crt"
ZERO_APP = (Path(__file__).resolve().parents[1] / "zerogpu" / "apps" / "zero_app.py").read_text()
APP = '''import os
import urllib.request

import gradio as gr

VERSION = "{version}"


def greet(name: str) -> str:
    return VERSION + " " + name


def probe(which: str) -> str:
    """GET a spacehost service at the URL this app was given; the status, or why not."""
    url = {{"hub": os.environ["HF_ENDPOINT"] + "/api/spaces/" + os.environ["SPACE_ID"],
           "broker": os.environ["SPACES_ZERO_DEVICE_API_URL"] + "/queue-size"}}[which]
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return f"{{r.status}} {{url}}"
    except Exception as e:
        return f"failed {{url}}: {{e!r}}"


with gr.Blocks(title=VERSION) as demo:
    box, out = gr.Textbox(), gr.Textbox()
    gr.Button("greet").click(greet, box, out, api_name="greet")
    gr.Button("probe").click(probe, box, out, api_name="probe")

demo.launch()
'''
BROKEN = 'raise RuntimeError("broken on purpose")\n'
# Becomes ready, then dies: a crash after a good start, again and again.
CRASHY = """import os, time
import gradio as gr
gr.Interface(fn=lambda s: s, inputs="text", outputs="text").launch(prevent_thread_lock=True)
time.sleep(3)
print("crashing on purpose", flush=True)
os._exit(3)
"""
# Connects from inside the container: one line "<errno or 0> <seconds>" per target.
CONNECT = """import socket, sys, time
for target in sys.argv[1:]:
    host, port = target.rsplit(":", 1)
    t0 = time.monotonic()
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
        code = 0
    except OSError as e:
        code = e.errno or -1
    print(code, round(time.monotonic() - t0, 3))
"""


@dataclass
class Up:
    server: Server
    space_id: str
    host: str
    network: str
    work: Path
    docker: Any
    first_sha: str
    timings: dict[str, float] = field(default_factory=dict)

    def containers(self, *, all: bool = False, space_id: str | None = None) -> list[Any]:
        """The containers of a Space (this one by default), found by name: a warm start runs in a spare
        container, whose labels name no Space, renamed after the instance (`spacehost-owner--name--sha7--n`)."""
        prefix = "spacehost-" + (space_id or self.space_id).replace("/", "--") + "--"
        return [c for c in self.docker.containers.list(all=all, filters={"name": prefix})
                if c.name.startswith(prefix)]

    def sha(self) -> str:
        return srv_sha(self.server, self.space_id)

    def images(self) -> list[dict[str, Any]]:
        """The Space's images as listed (the SDK's images.list() inspects each one after listing, which fails
        for an image removed in between: the collector runs while this polls)."""
        return list(self.docker.api.images(filters={"label": f"{LABEL_SPACE}={self.space_id}"}))

    def predict(self, *args: str, api_name: str = "/greet") -> str:
        return str(Client(self.host, verbose=False).predict(*args, api_name=api_name))

    def ports(self) -> dict[str, int]:
        return {k: int(v) for k, v in json.loads((self.server.data_dir / "ports.json").read_text()).items()}

    def gateway(self) -> str:
        return str(self.docker.networks.get(self.network).attrs["IPAM"]["Config"][0]["Gateway"])


def srv_sha(srv: Server, space_id: str) -> str:
    with srv.api() as c:
        return str(c.get(f"/api/spaces/{space_id}").json()["sha"])


def started_to_ready(run_log: Path) -> list[float]:
    """Seconds from each `==> Starting` to the next `==> Ready` of the run log (container start → answering)."""
    out, start = [], None
    for line in run_log.read_text().splitlines():
        stamp, _, text = line.partition("\t")
        if not text.startswith("==> "):
            continue  # the app's own output
        when = dt.datetime.fromisoformat(stamp).timestamp()
        if text.startswith("==> Starting"):
            start = when
        elif text.startswith("==> Ready") and start is not None:
            out.append(when - start)
            start = None
    return out


def wait(what: str, check: Any, timeout: float = 60, every: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(every)
    raise AssertionError(f"{what}: not within {timeout}s")


@pytest.fixture(scope="module")
def up(engine: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    network = f"spacehost-e2e-{secrets.token_hex(3)}"
    srv = Server(tmp_path_factory.mktemp("up-docker"), free_port(), "hf_admin_" + secrets.token_hex(8),
                 extra_args=("--runtime", "docker", "--docker-base-image", BASE_IMAGE, "--docker-network", network,
                             "--build-ca", CA, "--zerogpu-devices", "1"))
    sid = f"admin/dock-{secrets.token_hex(3)}"
    client = docker.from_env()
    try:
        srv.start(timeout=120)
        assert srv.create_space(sid.split("/")[1], hardware="zero-a10g").status_code == 200, srv.log_tail()
        work = tmp_path_factory.mktemp("work")
        t0 = time.monotonic()
        assert srv.push(sid, {"app.py": APP.format(version="v1")}, workdir=work).returncode == 0, srv.log_tail()
        space = Up(srv, sid, srv.host(sid), network, work, client, srv_sha(srv, sid))
        rt = srv.wait_stage(sid, after_sha=space.first_sha, timeout=540)
        assert rt["stage"] == "RUNNING", f"{rt}\n{srv.build_log(sid)[-3000:]}"
        space.timings["first push → RUNNING"] = time.monotonic() - t0
        yield space
    finally:
        srv.close()  # also removes its containers and its Spaces' images
        DockerRuntime(Settings(docker_network=network)).remove_network()
        client.close()


def test_pushed_space_runs_in_a_container_and_answers_gradio_client(up: Up) -> None:
    assert up.predict("x") == "v1 x"
    (c,) = up.containers()
    assert c.attrs["HostConfig"]["NetworkMode"] == up.network
    assert c.attrs["HostConfig"]["ExtraHosts"] == [f"{HOST_ALIAS}:{up.gateway()}"]
    # The broker knows the container's init (host pid): it seals the pool's GPUs in the container's devices
    # cgroup and kills overrunning workers only in that tree.
    assert up.server.runtime(up.space_id)["zeroGpu"]["deviceAccess"] == "devices cgroup"
    (ready,) = started_to_ready(up.server.data_dir / "spaces" / up.space_id / "run.log")
    print(f"\nfirst push → RUNNING: {up.timings['first push → RUNNING']:.1f}s; container start → answering:"
          f" {ready:.1f}s")


@pytest.mark.parametrize("service", ["hub", "broker"])
def test_the_space_reaches_hub_and_broker_at_the_urls_it_is_given(up: Up, service: str) -> None:
    port = up.ports()["hub" if service == "hub" else "zerogpu"]
    assert up.predict(service, api_name="/probe").startswith(f"200 http://{HOST_ALIAS}:{port}/")


def test_hub_and_broker_listen_on_loopback_and_the_bridge_gateway_only(up: Up) -> None:
    listening = subprocess.run(["ss", "-Htln"], capture_output=True, text=True, check=True).stdout.split("\n")
    for port in up.ports().values():
        addrs = {ln.split()[3].rsplit(":", 1)[0] for ln in listening if ln and ln.split()[3].endswith(f":{port}")}
        assert addrs == {"127.0.0.1", up.gateway()}, (port, addrs)


def bridge_address(network: dict[str, Any]) -> str:
    """The host's address on a docker bridge network. IPAM names the gateway unless the daemon chose it
    itself, as 20.10 does for the default bridge: then it is the address of the bridge interface."""
    config = network["IPAM"]["Config"][0]
    if config.get("Gateway"):
        return str(config["Gateway"])
    name = network["Options"].get("com.docker.network.bridge.name", "docker0")
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "dev", name], capture_output=True, text=True,
                         check=True).stdout
    return out.split()[3].split("/")[0]


@pytest.fixture(scope="module")
def decoys(up: Up) -> Iterator[dict[str, str]]:
    """Listeners of our own on the host where a Space must not connect: another port of the gateway, the
    default docker bridge. Reachable from the host itself (checked), so a refusal inside is the firewall."""
    bridge0 = bridge_address(up.docker.networks.get("bridge").attrs)
    socks = []
    for host in (up.gateway(), bridge0):
        s = socket.socket()
        s.bind((host, 0))
        s.listen(8)
        socks.append(s)
        socket.create_connection(s.getsockname()[:2], timeout=2).close()
    yield {name: "{}:{}".format(*s.getsockname()[:2]) for name, s in zip(("gateway", "docker0"), socks, strict=True)}
    for s in socks:
        s.close()


EGRESS = [
    ("hub", 0),
    ("broker", 0),
    ("gateway", errno.EHOSTUNREACH),
    ("docker0", errno.EHOSTUNREACH),
    ("169.254.169.254:80", errno.EHOSTUNREACH),  # rejected by our rule before it leaves the machine
]


@pytest.mark.parametrize(("target", "expected"), EGRESS, ids=[
    "hub-on-gateway-open", "broker-on-gateway-open", "other-gateway-port-rejected", "default-bridge-rejected",
    "metadata-address-rejected"])
def test_egress_seen_from_inside_the_container(up: Up, decoys: dict[str, str], target: str, expected: int) -> None:
    ports = up.ports()
    addr = {"hub": f"{HOST_ALIAS}:{ports['hub']}", "broker": f"{HOST_ALIAS}:{ports['zerogpu']}", **decoys}.get(
        target, target)
    (c,) = up.containers()
    code, out = c.exec_run(["python", "-c", CONNECT, addr])
    assert code == 0, out
    got, seconds = out.decode().split()
    assert int(got) == expected, (addr, out)
    assert float(seconds) < 1.0  # refused at once, not left to time out


def test_code_push_swaps_atomically_with_no_failed_request(up: Up) -> None:
    (old,) = up.containers()
    seen: list[tuple[float, str]] = []
    failures: list[str] = []
    stop = threading.Event()

    def visit() -> None:
        with httpx.Client(base_url=up.host, timeout=10) as c:
            while not stop.is_set():
                try:
                    r = c.get("/config")
                    if r.status_code == 200:
                        seen.append((time.monotonic(), r.json()["title"]))
                    else:
                        failures.append(f"{r.status_code} {r.text[:200]}")
                except httpx.HTTPError as e:
                    failures.append(repr(e))
                time.sleep(0.02)

    loop = threading.Thread(target=visit)
    loop.start()
    try:
        t0 = time.monotonic()
        assert up.server.push(up.space_id, {"app.py": APP.format(version="v2")}, workdir=up.work).returncode == 0
        up.server.wait_stage(up.space_id, {"RUNNING"}, after_sha=up.sha(), timeout=300)
        redeploy = time.monotonic() - t0
        wait("the old container drained and stopped", lambda: old.id not in {c.id for c in up.containers(all=True)})
        drained = time.monotonic() - t0
    finally:
        stop.set()
        loop.join()
    titles = [t for _, t in seen]
    assert failures == []
    assert "v2" in titles and "v1" not in titles[titles.index("v2"):], "the route switched back and forth"
    assert up.predict("x") == "v2 x"
    (new,) = up.containers()
    assert _started_warm(new), new.attrs["Config"]["Cmd"]  # a spare took it: the SDK was imported already
    starts = started_to_ready(up.server.data_dir / "spaces" / up.space_id / "run.log")
    print(f"\ncode push → new version RUNNING: {redeploy:.1f}s (container start → answering {starts[-1]:.1f}s);"
          f" old container gone after {drained:.1f}s; {len(seen)} requests, none failed")


def test_broken_commit_leaves_the_old_version_serving(up: Up) -> None:
    (serving,) = up.containers()
    assert up.server.push(up.space_id, {"app.py": BROKEN}, workdir=up.work).returncode == 0
    bad = up.sha()
    rt = wait("the failure of the new version", lambda: (r := up.server.runtime(up.space_id)).get("errorMessage")
              and r, timeout=300)
    assert rt["stage"] == "RUNNING", rt
    assert bad[:12] in str(rt["errorMessage"]) and "broken on purpose" in str(rt["errorMessage"]), rt
    assert up.predict("x") == "v2 x"
    assert [c.id for c in up.containers(all=True)] == [serving.id]  # the crashed one is removed


def test_restarted_spacehost_readopts_the_running_container(up: Up) -> None:
    (before,) = up.containers()
    up.server.stop(signal.SIGKILL)
    up.server.start(timeout=120)
    assert up.server.wait_stage(up.space_id, {"RUNNING"}, timeout=60)["stage"] == "RUNNING"
    assert [c.id for c in up.containers(all=True)] == [before.id]  # adopted, not started again
    assert wait("the Space answers again", lambda: _answers(up)) == "v2 x"
    assert up.predict("hub", api_name="/probe").startswith("200 ")  # the hub kept its port on the gateway
    assert up.predict("broker", api_name="/probe").startswith("200 ")  # and the broker admitted it again


def test_rollback_runs_the_kept_image_of_a_previous_commit_without_building(up: Up) -> None:
    build_log = up.server.build_log(up.space_id)
    with up.server.api() as c:
        assert up.first_sha in c.get(f"/api/spaces/{up.space_id}/builds").json()["builds"]
        r = c.post(f"/api/spaces/{up.space_id}/rollback", json={"sha": up.first_sha[:12]})
        assert r.status_code == 200, r.text
    up.server.wait_stage(up.space_id, {"RUNNING"}, after_sha=up.first_sha, timeout=120)
    assert wait("the rolled-back version answers", lambda: _answers(up) == "v1 x" or None, timeout=60)
    assert up.server.build_log(up.space_id) == build_log  # nothing was rebuilt
    (serving,) = wait("the newer version drained and stopped", lambda: len(c := up.containers()) == 1 and c)
    assert serving.name.split("--")[2] == up.first_sha[:7]  # the container runs the rolled-back commit


def test_old_images_are_collected_after_redeploys(up: Up) -> None:
    for v in ("v3", "v4"):
        assert up.server.push(up.space_id, {"app.py": APP.format(version=v)}, workdir=up.work).returncode == 0
        up.server.wait_stage(up.space_id, {"RUNNING"}, after_sha=up.sha(), timeout=300)
    # five builds so far (v1, v2, the broken one, v3, v4): once the replaced version has drained, the newest
    # KEEP_IMAGES stay for rollback and the older ones go
    wait("old images removed", lambda: len(up.images()) <= KEEP_IMAGES, timeout=90)
    tags = {t for image in up.images() for t in image["RepoTags"] or ()}
    assert image_tag(up.space_id, up.sha()) in tags  # the serving version's
    assert image_tag(up.space_id, up.first_sha) not in tags  # the oldest
    assert up.predict("x") == "v4 x"


def test_crash_loop_backs_off_then_shows_runtime_error(up: Up) -> None:
    sid = f"admin/crashy-{secrets.token_hex(3)}"
    assert up.server.create_space(sid.split("/")[1]).status_code == 200
    assert up.server.push(sid, {"app.py": CRASHY}).returncode == 0
    rt = up.server.wait_stage(sid, {"RUNTIME_ERROR"}, timeout=300)
    assert "crash loop" in str(rt["errorMessage"]) and "exited with code 3" in str(rt["errorMessage"]), rt
    with up.server.api() as c:
        log = c.get(f"/api/spaces/{sid}/logs/run", params={"follow": "false"}).text
    assert log.count("==> Starting") >= 3, log[-3000:]  # restarted with backoff before giving up
    assert not up.containers(all=True, space_id=sid)  # none left behind


def _started_warm(container: Any) -> bool:
    """Whether the container began as a spare (its command is the warm launcher, not the image's CMD)."""
    return WARM_IN_IMAGE in (container.attrs["Config"]["Cmd"] or ())


def _answers(up: Up) -> str | None:
    try:
        return up.predict("x")
    except (httpx.HTTPError, ValueError, ConnectionError):  # gradio_client wraps some in ValueError
        return None


STREAMLIT = "import streamlit as st\nst.title('Hello from a container')\nst.write(41 + 1)\n"
AUTHOR_DOCKERFILE = """FROM {base}
RUN useradd -m -u 1000 user
USER user
WORKDIR /home/user/app
COPY --chown=user . /home/user/app
CMD ["python3", "-m", "http.server", "8000"]
"""


def test_streamlit_space_page_and_websocket_through_the_proxy(up: Up) -> None:
    sid = f"admin/stream-{secrets.token_hex(3)}"
    assert up.server.create_space(sid.split("/")[1], sdk="streamlit").status_code == 200
    assert up.server.push(sid, {"app.py": STREAMLIT, "README.md": "---\nsdk: streamlit\n---\n"}).returncode == 0
    rt = up.server.wait_stage(sid, timeout=540)
    assert rt["stage"] == "RUNNING", f"{rt}\n{up.server.build_log(sid)[-3000:]}"
    assert up.containers(space_id=sid), "not in a container"
    host = up.server.host(sid)
    page = httpx.get(host + "/", timeout=10)
    assert page.status_code == 200 and '<div id="root">' in page.text.replace("'", '"')
    texts = run_script(host)
    assert any("Hello from a container" in t for t in texts) and any("42" in t for t in texts)

    # A code-only push: the new version starts warm, in the spare its first start left behind.
    assert up.server.push(sid, {"app.py": STREAMLIT.replace("a container", "a warm container")}).returncode == 0
    sha = srv_sha(up.server, sid)
    assert up.server.wait_stage(sid, after_sha=sha, timeout=300)["stage"] == "RUNNING"
    (container,) = wait("one container left", lambda: len(c := up.containers(space_id=sid)) == 1 and c)
    assert _started_warm(container), container.attrs["Config"]["Cmd"]
    assert any("Hello from a warm container" in t for t in run_script(host))


def test_docker_sdk_space_serves_its_app_port_through_the_proxy(up: Up) -> None:
    sid = f"admin/own-{secrets.token_hex(3)}"
    assert up.server.create_space(sid.split("/")[1], sdk="docker").status_code == 200
    files = {"Dockerfile": AUTHOR_DOCKERFILE.format(base=BASE_IMAGE), "hello.txt": "from my own Dockerfile\n",
             "README.md": "---\nsdk: docker\napp_port: 8000\n---\n"}
    assert up.server.push(sid, files).returncode == 0
    rt = up.server.wait_stage(sid, timeout=300)
    assert rt["stage"] == "RUNNING", f"{rt}\n{up.server.build_log(sid)[-3000:]}"
    (container,) = up.containers(space_id=sid)
    assert "8000/tcp" in container.attrs["NetworkSettings"]["Ports"]
    r = httpx.get(up.server.host(sid) + "/hello.txt", timeout=10)
    assert r.status_code == 200 and r.text == "from my own Dockerfile\n"


def test_static_space_is_served_without_a_container(up: Up) -> None:
    sid = f"admin/static-{secrets.token_hex(3)}"
    assert up.server.create_space(sid.split("/")[1], sdk="static").status_code == 200
    assert up.server.push(sid, {"index.html": "<h1>Static in docker mode</h1>"}).returncode == 0
    assert up.server.wait_stage(sid, timeout=120)["stage"] == "RUNNING"
    assert "Static in docker mode" in httpx.get(up.server.host(sid) + "/", timeout=10).text
    assert not up.containers(all=True, space_id=sid)


def test_zerogpu_space_in_a_container_gets_a_lease_and_an_overrun_is_killed(up: Up) -> None:
    """The unmodified `spaces` package inside a container: its worker's pid (as the container sees it) is
    mapped into the container's process tree on the host, and the overrunning worker is killed there."""
    sid = f"admin/zero-{secrets.token_hex(3)}"
    assert up.server.create_space(sid.split("/")[1], hardware="zero-a10g").status_code == 200
    files = {"app.py": ZERO_APP, "requirements.txt": f"spaces=={version('spaces')}\n"}
    assert up.server.push(sid, files).returncode == 0
    rt = up.server.wait_stage(sid, timeout=540)
    assert rt["stage"] == "RUNNING", f"{rt}\n{up.server.build_log(sid)[-3000:]}"
    client = Client(up.server.host(sid), verbose=False)
    assert str(client.predict(0.1, api_name="/work")).startswith("pid=")
    t0 = time.monotonic()
    with pytest.raises(AppError, match="GPU task aborted"):  # asks 1 s, would take 20 s: 1 s + 5 s grace
        client.predict(20, api_name="/overrun")
    assert time.monotonic() - t0 < 15
    info = up.server.runtime(sid)["zeroGpu"]
    assert isinstance(info, dict) and info["activeLeases"] == 0 and info["leases"] >= 2, info


def test_deleting_the_space_removes_its_containers_images_and_spares(up: Up) -> None:
    """Last: it deletes the module's Space."""
    owner, name = up.space_id.split("/")
    with up.server.api() as c:
        r = c.request("DELETE", "/api/repos/delete", json={"type": "space", "name": name, "organization": owner})
    assert r.status_code == 200, r.text
    wait("its containers removed", lambda: not up.containers(all=True), timeout=60)
    wait("its images removed", lambda: not up.images(), timeout=60)
    spares = up.docker.containers.list(all=True, filters={"label": LABEL_SPARE})
    assert not [c for c in spares if c.image.labels.get(LABEL_SPACE) == up.space_id]
