"""Lifecycle: zero-downtime redeploy under traffic, crash-loop backoff, pause and restart, rollback."""

from __future__ import annotations

import threading
import time
import uuid

import httpx
import pytest

from tests.e2e.harness import Server

pytestmark = pytest.mark.e2e

TINY = """import os, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
VERSION = {version!r}
CRASH_AFTER = {crash_after!r}

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = VERSION.encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass

if CRASH_AFTER is not None:
    import threading
    threading.Timer(CRASH_AFTER, lambda: (print("crashing on purpose", flush=True), os._exit(3))).start()
ThreadingHTTPServer(("0.0.0.0", int(os.environ["GRADIO_SERVER_PORT"])), H).serve_forever()
"""
README = "---\nsdk: gradio\n---\n"


def tiny(version: str, crash_after: float | None = None) -> dict[str, str]:
    return {"README.md": README, "app.py": TINY.format(version=version, crash_after=crash_after)}


def head(server: Server, sid: str) -> str:
    with server.api() as c:
        return str(c.get(f"/api/spaces/{sid}").json()["sha"])


def new_space(server: Server, prefix: str) -> str:
    sid = f"admin/{prefix}-{uuid.uuid4().hex[:6]}"
    assert server.create_space(sid.split("/")[1]).status_code == 200
    return sid


def test_redeploy_under_steady_traffic_drops_no_request(server: Server, tmp_path_factory: pytest.TempPathFactory) -> None:
    sid = new_space(server, "steady")
    work = tmp_path_factory.mktemp("steady")
    server.push(sid, tiny("v1"), workdir=work)
    server.wait_stage(sid, {"RUNNING"}, after_sha=head(server, sid))
    host = server.host(sid)
    seen: list[str] = []
    failures: list[str] = []
    stop = threading.Event()

    def traffic() -> None:
        with httpx.Client(timeout=10) as c:  # keep-alive connection through the proxy
            while not stop.is_set():
                try:
                    r = c.get(host + "/")
                    (seen if r.status_code == 200 else failures).append(r.text if r.status_code == 200 else
                                                                         f"{r.status_code}")
                except httpx.HTTPError as e:
                    failures.append(repr(e))

    t = threading.Thread(target=traffic)
    t.start()
    try:
        time.sleep(0.5)
        server.push(sid, tiny("v2"), workdir=work)
        server.wait_stage(sid, {"RUNNING"}, after_sha=head(server, sid))
        deadline = time.monotonic() + 20
        while (not seen or seen[-1] != "v2") and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)
    finally:
        stop.set()
        t.join()
    assert failures == [], failures[:5]
    assert seen[0] == "v1" and seen[-1] == "v2" and len(seen) > 20
    # once switched, never back to the old version
    first_v2 = seen.index("v2")
    assert set(seen[first_v2:]) == {"v2"}


def test_crash_loop_backs_off_then_shows_runtime_error(server: Server) -> None:
    sid = new_space(server, "crashy")
    server.push(sid, tiny("crashy", crash_after=1.0))
    rt = server.wait_stage(sid, {"RUNTIME_ERROR"}, timeout=120)
    assert "crash loop" in str(rt["errorMessage"]) and "crashing on purpose" in str(rt["errorMessage"]), rt
    with server.api() as c:
        log = c.get(f"/api/spaces/{sid}/logs/run", params={"follow": "false"}).text
    assert log.count("==> Starting") >= 3  # restarted with backoff before giving up


def test_pause_stops_it_and_restart_brings_it_back(server: Server) -> None:
    sid = new_space(server, "pausable")
    server.push(sid, tiny("alive"))
    server.wait_stage(sid, {"RUNNING"})
    host = server.host(sid)
    with server.api() as c:
        assert c.post(f"/api/spaces/{sid}/pause").json()["stage"] == "PAUSED"
        r = httpx.get(host + "/", timeout=10)
        assert r.status_code != 200 and "paused" in r.text.lower()
        time.sleep(1.5)
        assert server.runtime(sid)["stage"] == "PAUSED"  # stays paused
        c.post(f"/api/spaces/{sid}/restart")
    server.wait_stage(sid, {"RUNNING"})
    assert httpx.get(host + "/", timeout=10).text == "alive"


def test_rollback_serves_a_previous_build_without_rebuilding(server: Server, tmp_path_factory: pytest.TempPathFactory) -> None:
    sid = new_space(server, "rollback")
    work = tmp_path_factory.mktemp("rollback")
    server.push(sid, tiny("one"), workdir=work)
    first = head(server, sid)
    server.wait_stage(sid, {"RUNNING"}, after_sha=first)
    server.push(sid, tiny("two"), workdir=work)
    server.wait_stage(sid, {"RUNNING"}, after_sha=head(server, sid))
    host = server.host(sid)
    assert httpx.get(host + "/", timeout=10).text == "two"
    with server.api() as c:
        assert first in c.get(f"/api/spaces/{sid}/builds").json()["builds"]
        build_log_before = server.build_log(sid)
        assert c.post(f"/api/spaces/{sid}/rollback", json={"sha": first[:12]}).status_code == 200
    server.wait_stage(sid, {"RUNNING"}, after_sha=first)
    assert httpx.get(host + "/", timeout=10).text == "one"
    assert server.build_log(sid) == build_log_before  # nothing was rebuilt
