"""Issue 2, end to end: git push → detect → build → run sandboxed → served by the proxy at its own URL."""

from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path

import httpx
import pytest
from gradio_client import Client

from tests.e2e.harness import Server
from tests.e2e.streamlit_ws import run_script

pytestmark = pytest.mark.e2e

GREET = """import gradio as gr

def greet(name):
    return "{prefix} " + name + "!"

gr.Interface(fn=greet, inputs="text", outputs="text").launch()
"""
README = "---\ntitle: {title}\nemoji: 🚀\nsdk: gradio\n---\n# demo\n"


def name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def test_gradio_push_serves_and_code_only_repush_installs_nothing(server: Server, tmp_path: Path) -> None:
    sid = f"admin/{name('greeter')}"
    assert server.create_space(sid.split("/")[1]).status_code == 200
    push = server.push(sid, {"README.md": README.format(title="Greeter"), "app.py": GREET.format(prefix="Hello"),
                             "requirements.txt": "six==1.16.0\n"}, workdir=tmp_path)
    assert push.returncode == 0, push.stderr
    rt = server.wait_stage(sid)
    assert rt["stage"] == "RUNNING", rt
    host = server.host(sid)
    client = Client(host, verbose=False)
    assert client.predict("Ada", api_name="/greet") == "Hello Ada!"
    assert access_logged(server, host, "/config")  # what gradio_client asked, in the proxy's access log
    first_log = server.build_log(sid)
    assert "six" in first_log

    push = server.push(sid, {"app.py": GREET.format(prefix="Bonjour")}, workdir=tmp_path)
    assert push.returncode == 0, push.stderr
    head = server.runtime(sid)
    server.wait_stage(sid, {"RUNNING"}, after_sha=_head(server, sid))
    assert Client(host, verbose=False).predict("Ada", api_name="/greet") == "Bonjour Ada!"
    log = server.build_log(sid)
    assert "reused" in log and "Installed" not in log, log
    assert head  # the runtime answered during the rebuild


def access_logged(server: Server, host: str, path: str) -> bool:
    """Whether the proxy's access log (buffered: written within about a second) has a 200 for `path` on
    `host`, in the format of proxy.accesslog."""
    authority = re.escape(host.split("://", 1)[1].rstrip("/"))
    line = re.compile(rf"^\S+Z 127\.0\.0\.1 GET {authority}{re.escape(path)}\S* 200 \d+\.\dms$", re.MULTILINE)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if line.search((server.data_dir / "server.log").read_text(errors="replace")):
            return True
        time.sleep(0.2)
    return False


def _head(server: Server, sid: str) -> str:
    with server.api() as c:
        return str(c.get(f"/api/spaces/{sid}").json()["sha"])


def test_streamlit_page_and_websocket_through_the_proxy(server: Server) -> None:
    sid = f"admin/{name('stream')}"
    server.create_space(sid.split("/")[1], sdk="streamlit")
    app = "import streamlit as st\nst.title('Hello from Streamlit')\nst.write(41 + 1)\n"
    assert server.push(sid, {"app.py": app, "README.md": "---\nsdk: streamlit\n---\n"}).returncode == 0
    assert server.wait_stage(sid)["stage"] == "RUNNING"
    host = server.host(sid)
    page = httpx.get(host + "/", timeout=10)
    assert page.status_code == 200 and "<div id=\"root\">" in page.text.replace("'", '"')

    texts = run_script(host)
    assert any("Hello from Streamlit" in t for t in texts)
    assert any("42" in t for t in texts)


def test_static_space(server: Server) -> None:
    sid = f"admin/{name('static')}"
    server.create_space(sid.split("/")[1], sdk="static")
    html = "<!doctype html><title>static</title><h1>Static works</h1>"
    assert server.push(sid, {"index.html": html, "style.css": "h1{color:red}"}).returncode == 0
    assert server.wait_stage(sid)["stage"] == "RUNNING"
    host = server.host(sid)
    assert "Static works" in httpx.get(host + "/", timeout=10).text
    css = httpx.get(host + "/style.css", timeout=10)
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")


def test_push_with_wrong_token_is_refused_and_changes_nothing(server: Server) -> None:
    sid = f"admin/{name('guarded')}"
    server.create_space(sid.split("/")[1], sdk="static")
    bad = server.push(sid, {"index.html": "x"}, token="hf_not_a_token")
    assert bad.returncode != 0
    assert re.search(r"401|Authentication failed|Invalid credentials", bad.stderr), bad.stderr
    assert server.runtime(sid)["stage"] == "NO_APP_FILE"
    anonymous = server.push(sid, {"index.html": "x"}, token="")
    assert anonymous.returncode != 0


@pytest.mark.parametrize(
    ("files", "stage", "needle"),
    [
        ({"README.md": "---\nsdk: gradio\ncolorFrom: mauve\n---\n", "app.py": "import gradio\n"},
         "CONFIG_ERROR", "colorFrom"),
        ({"README.md": "---\nsdk: [gradio\n---\n", "app.py": "import gradio\n"}, "CONFIG_ERROR", "line"),
        ({"README.md": "# nothing to run\n"}, "NO_APP_FILE", "app"),
        ({"app.py": "import gradio as gr\n", "requirements.txt": "surely-not-a-real-package-xyz==9.9\n"},
         "BUILD_ERROR", "surely-not-a-real-package-xyz"),
        ({"app.py": "import gradio as gr\nraise RuntimeError('boom at import')\n"}, "RUNTIME_ERROR",
         "boom at import"),
    ],
    ids=["invalid-value", "broken-yaml", "no-app-file", "missing-requirement", "raises-at-import"],
)
def test_error_stages_say_what_is_wrong(server: Server, files: dict[str, str], stage: str, needle: str) -> None:
    sid = f"admin/{name('broken')}"
    server.create_space(sid.split("/")[1])
    assert server.push(sid, files).returncode == 0
    rt = server.wait_stage(sid)
    assert rt["stage"] == stage, rt
    assert needle in str(rt.get("errorMessage", "")), rt
    if stage == "CONFIG_ERROR" and needle == "colorFrom":
        assert "line 3" in str(rt["errorMessage"])
    page = httpx.get(server.host(sid) + "/", headers={"Accept": "text/html"}, timeout=10)
    assert page.status_code in (502, 503) and "not running" in page.text.lower()
    json.dumps(rt)
