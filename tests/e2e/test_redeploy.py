"""Redeploys: the previous good version keeps serving; a newer push supersedes a build in progress."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest
from gradio_client import Client

from tests.e2e.harness import Server

pytestmark = pytest.mark.e2e

APP = """import gradio as gr

def greet(name):
    return "{tag} " + name

gr.Interface(fn=greet, inputs="text", outputs="text").launch()
"""


def head(server: Server, sid: str) -> str:
    with server.api() as c:
        return str(c.get(f"/api/spaces/{sid}").json()["sha"])


def test_broken_push_keeps_old_version_and_newer_push_wins(server: Server, tmp_path_factory: pytest.TempPathFactory) -> None:
    sid = f"admin/redeploy-{uuid.uuid4().hex[:6]}"
    server.create_space(sid.split("/")[1])
    work = tmp_path_factory.mktemp("work")
    assert server.push(sid, {"app.py": APP.format(tag="v1")}, workdir=work).returncode == 0
    server.wait_stage(sid, {"RUNNING"}, after_sha=head(server, sid))
    host = server.host(sid)

    # a failing build: the old version keeps serving, the failure shows in the runtime info
    server.push(sid, {"requirements.txt": "no-such-package-spacehost-test==1.0\n"}, workdir=work)
    bad = head(server, sid)
    deadline = time.monotonic() + 240
    rt = server.runtime(sid)
    while not rt.get("errorMessage") and time.monotonic() < deadline:
        time.sleep(0.25)
        rt = server.runtime(sid)
    assert rt["stage"] == "RUNNING", rt
    assert "BUILD_ERROR" in str(rt.get("errorMessage")) and bad[:12] in str(rt.get("errorMessage")), rt
    assert Client(host, verbose=False).predict("x", api_name="/greet") == "v1 x"

    # two pushes in a row: the second supersedes the first; the last commit is what serves
    server.push(sid, {"requirements.txt": "", "app.py": APP.format(tag="v2")}, workdir=work)
    server.push(sid, {"app.py": APP.format(tag="v3")}, workdir=work)
    last = head(server, sid)
    server.wait_stage(sid, {"RUNNING"}, after_sha=last)
    assert Client(host, verbose=False).predict("x", api_name="/greet") == "v3 x"
    assert httpx.get(host + "/", timeout=10).status_code == 200
