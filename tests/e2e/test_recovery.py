"""State lives in the store: kill spacehost at any moment, start it again, and every Space comes back."""

from __future__ import annotations

import secrets
import signal
import time
import uuid

import httpx
import pytest

from tests.e2e.harness import Server, free_port

pytestmark = pytest.mark.e2e

APP = """import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class H(BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("pid=%d" % os.getpid()).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)

ThreadingHTTPServer(("0.0.0.0", int(os.environ["GRADIO_SERVER_PORT"])), H).serve_forever()
"""


def test_killed_server_restarts_and_serves_every_space(tmp_path_factory: pytest.TempPathFactory) -> None:
    srv = Server(tmp_path_factory.mktemp("recovery"), free_port(), "hf_rec_" + secrets.token_hex(6))
    srv.start()
    try:
        sid = f"admin/survivor-{uuid.uuid4().hex[:6]}"
        static = f"admin/static-{uuid.uuid4().hex[:6]}"
        srv.create_space(sid.split("/")[1])
        srv.create_space(static.split("/")[1], sdk="static")
        assert srv.push(sid, {"app.py": APP, "README.md": "---\nsdk: gradio\n---\n"}).returncode == 0
        assert srv.push(static, {"index.html": "<p>still here</p>"}).returncode == 0
        assert srv.wait_stage(sid)["stage"] == "RUNNING"
        assert srv.wait_stage(static)["stage"] == "RUNNING"
        host, static_host = srv.host(sid), srv.host(static)
        assert httpx.get(host + "/", timeout=10).text.startswith("pid=")

        srv.stop(signal.SIGKILL)
        srv.start()
        assert srv.wait_stage(sid, {"RUNNING"}, timeout=120)["stage"] == "RUNNING"
        deadline = time.monotonic() + 60
        while True:
            try:
                r = httpx.get(host + "/", timeout=5)
                if r.status_code == 200 and r.text.startswith("pid="):
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the Space did not serve again after the restart"
            time.sleep(0.2)
        assert "still here" in httpx.get(static_host + "/", timeout=10).text
        with srv.api() as c:
            spaces = {s["id"] for s in c.get("/api/spaces", params={"author": "admin"}).json()}
        assert {sid, static} <= spaces
    finally:
        srv.close()
