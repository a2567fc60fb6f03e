"""kill -9 of `spacehost up` at each stage a Space passes through — building, first start, redeploy, waking,
deleting — then a restart: the Space converges to what the store says it should be (the head version serving, or
gone without a trace). Recovery is the same reconcile of desired against actual state that runs all the time."""

from __future__ import annotations

import contextlib
import secrets
import signal
import threading
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.harness import Server, free_port

pytestmark = pytest.mark.e2e

APP = """import os, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VERSION = {version!r}
time.sleep({delay})  # a slow start: a window to kill the server in while the Space is starting

class H(BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("version=" + VERSION).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)

ThreadingHTTPServer(("0.0.0.0", int(os.environ["GRADIO_SERVER_PORT"])), H).serve_forever()
"""
README = "---\nsdk: gradio\n---\n"


def files(version: str, delay: float = 0) -> dict[str, str]:
    return {"app.py": APP.format(version=version, delay=delay), "README.md": README}


@pytest.fixture
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = Server(tmp_path_factory.mktemp("recovery-stages"), free_port(), "hf_rs_" + secrets.token_hex(6))
    s.start()
    try:
        yield s
    finally:
        s.close()


def new_space(srv: Server) -> str:
    name = f"rs-{uuid.uuid4().hex[:6]}"
    assert srv.create_space(name).status_code == 200
    return f"admin/{name}"


def kill_in(srv: Server, sid: str, stages: set[str], timeout: float = 300) -> str:
    """Wait until the Space is in one of `stages`, then kill -9 the server and start it again."""
    deadline = time.monotonic() + timeout
    while (stage := str(srv.runtime(sid)["stage"])) not in stages:
        assert time.monotonic() < deadline, f"{sid} never reached {stages}: {srv.runtime(sid)}"
        time.sleep(0.1)
    srv.stop(signal.SIGKILL)
    srv.start(timeout=240)  # a restart on a loaded machine (other Spaces starting) took over 60 s once
    return stage


def serves(srv: Server, sid: str, version: str, timeout: float = 300) -> None:
    """The Space converges: RUNNING at its head commit, answering with `version`."""
    rt = srv.wait_stage(sid, {"RUNNING"}, timeout=timeout)
    assert rt["stage"] == "RUNNING", f"{rt}\n{srv.log_tail()}"
    host = srv.host(sid)
    deadline = time.monotonic() + 60
    while True:
        with contextlib.suppress(httpx.HTTPError):
            r = httpx.get(host + "/", timeout=5)
            if r.status_code == 200 and r.text == f"version={version}":
                break
        assert time.monotonic() < deadline, f"{sid} does not serve {version}: {srv.runtime(sid)}\n{srv.log_tail()}"
        time.sleep(0.3)
    with srv.api() as c:
        assert c.get(f"/api/spaces/{sid}/runtime").json()["stage"] == "RUNNING"


def test_killed_while_building(srv: Server) -> None:
    sid = new_space(srv)
    assert srv.push(sid, files("v1")).returncode == 0
    assert kill_in(srv, sid, {"BUILDING"}) == "BUILDING"
    serves(srv, sid, "v1")


def test_killed_during_the_first_start(srv: Server) -> None:
    sid = new_space(srv)
    assert srv.push(sid, files("v1", delay=12)).returncode == 0
    kill_in(srv, sid, {"APP_STARTING"})
    serves(srv, sid, "v1")


def test_killed_during_a_redeploy(srv: Server) -> None:
    sid = new_space(srv)
    assert srv.push(sid, files("v1")).returncode == 0
    serves(srv, sid, "v1")
    assert srv.push(sid, files("v2", delay=12)).returncode == 0
    kill_in(srv, sid, {"RUNNING_APP_STARTING"})
    serves(srv, sid, "v2")


def test_killed_while_waking(srv: Server) -> None:
    sid = new_space(srv)
    assert srv.push(sid, files("v1", delay=8)).returncode == 0
    serves(srv, sid, "v1")
    with srv.api() as c:
        assert c.post(f"/api/spaces/{sid}/sleeptime", json={"seconds": 2}).status_code == 200
    assert srv.wait_stage(sid, {"SLEEPING"}, timeout=120)["stage"] == "SLEEPING"
    host = srv.host(sid)
    visitor = threading.Thread(target=lambda: _quietly_get(host), daemon=True)
    visitor.start()  # wakes it; the request itself dies with the server
    kill_in(srv, sid, {"APP_STARTING"})
    with srv.api() as c:  # long enough to be seen RUNNING before it sleeps again
        assert c.post(f"/api/spaces/{sid}/sleeptime", json={"seconds": 3600}).status_code == 200
    serves(srv, sid, "v1")


def test_killed_while_deleting(srv: Server) -> None:
    sid = new_space(srv)
    assert srv.push(sid, files("v1")).returncode == 0
    serves(srv, sid, "v1")
    owner, name = sid.split("/")
    folder = srv.data_dir / "spaces" / owner / name
    assert folder.is_dir()
    deleting = threading.Thread(target=lambda: quietly_delete(srv, owner, name), daemon=True)
    deleting.start()
    deadline = time.monotonic() + 60
    while exists(srv, sid):  # the row goes first; stopping and removing follow
        assert time.monotonic() < deadline
        time.sleep(0.02)
    srv.stop(signal.SIGKILL)
    srv.start(timeout=240)
    deadline = time.monotonic() + 60
    prefix = f"{owner}--{name}--"
    while folder.exists() or any(p.name.startswith(prefix) for p in (srv.data_dir / "run").glob("*.json")):
        assert time.monotonic() < deadline, f"leftovers of {sid}:\n{srv.log_tail()}"
        time.sleep(0.3)
    assert not exists(srv, sid)


def exists(srv: Server, sid: str) -> bool:
    with srv.api() as c:
        return c.get(f"/api/spaces/{sid}").status_code != 404


def _quietly_get(url: str) -> None:
    with contextlib.suppress(httpx.HTTPError):
        httpx.get(url + "/", timeout=120)


def quietly_delete(srv: Server, owner: str, name: str) -> None:
    with contextlib.suppress(httpx.HTTPError), srv.api() as c:
        c.request("DELETE", "/api/repos/delete", json={"type": "space", "organization": owner, "name": name})
