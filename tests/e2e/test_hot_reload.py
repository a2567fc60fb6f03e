"""Issue 14, hot reload: the real `hf spaces hot-reload` (huggingface_hub 2.4.0) against a Gradio Space that
runs the real `spaces` package's reload server (Gradio starts it on port 7887 inside the Space). The commit
lands without a build or a restart: the same process answers with the new code, the runtime reports
`hotReloading`, and only the Space's writers reach the reload server through the proxy."""

from __future__ import annotations

import secrets
from importlib.metadata import version
from pathlib import Path

import httpx
import pytest

from tests.e2e.harness import Server
from tests.e2e.hfclients import gradio_call, hf_cli, new_user
from tests.waits import eventually

pytestmark = pytest.mark.e2e

APP = """import os
import time

import gradio as gr

STARTED = time.time_ns()  # with the pid, this process's own (each sandbox numbers its pids from 1 or 2)


def greet(name):
    return f"{GREETING} {name} pid={os.getpid()}.{STARTED}"


GREETING = "v1"
demo = gr.Interface(fn=greet, inputs="text", outputs="text", api_name="greet")
demo.launch()
"""
README = f"---\ntitle: Hot\nsdk: gradio\nsdk_version: {version('gradio')}\napp_file: app.py\n---\n"
PATCHED = APP.replace('f"{GREETING} {name}', 'f"v2 {GREETING} {name}').replace('"v1"', '"one"')


def hf_hot_reload(server: Server, home: Path, sid: str, workdir: Path, source: str = PATCHED) -> str:
    """`hf spaces hot-reload` of `source` as the Space's app.py, once its reload server answers through the
    proxy (Gradio starts it in a thread of its own, after the app's port: it answers an unknown reload with
    204, to the owner's token). Asserts the command succeeded; returns its output."""
    probe = f"{server.host(sid)}/--replicas/+any/get-reload"
    auth = {"Authorization": f"Bearer {server.token}"}
    assert eventually(lambda: httpx.post(probe, json={"reloadId": "none"}, headers=auth, timeout=10)
                      .status_code == 204, timeout=120)
    local = workdir / "app.py"
    local.write_text(source)
    r = hf_cli(server, home, "spaces", "hot-reload", sid, "app.py", "-f", str(local), token=server.token)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout + r.stderr


def test_hf_spaces_hot_reload_patches_the_running_process(server: Server, tmp_path: Path) -> None:
    sid = f"admin/hot-{secrets.token_hex(3)}"
    assert server.create_space(sid.split("/")[1]).status_code == 200
    pushed = server.push(sid, {"app.py": APP, "README.md": README,
                               "requirements.txt": f"spaces=={version('spaces')}\n"})
    assert pushed.returncode == 0, pushed.stderr
    with server.api() as c:
        first = c.get(f"/api/spaces/{sid}").json()["sha"]
    rt = server.wait_stage(sid, {"RUNNING"}, after_sha=first, timeout=400)
    assert rt["stage"] == "RUNNING", f"{rt}\n{server.build_log(sid)[-2000:]}"
    host = server.host(sid)
    before = gradio_call(host, "greet", "x")
    assert before.startswith("v1 x pid="), before
    builds = server.build_log(sid)

    out = hf_hot_reload(server, tmp_path / "home", sid, tmp_path)
    assert "Updated __main__.greet function" in out and 'GREETING = "one"' in out and "UI untouched" in out, out

    after = gradio_call(host, "greet", "x")
    assert after == f"v2 one x pid={before.split('pid=')[1]}", (before, after)  # same process, new code
    info = server.runtime(sid)
    assert info["stage"] == "RUNNING" and info["sha"] == first  # served without a build of the new commit
    hot = info["hotReloading"]
    assert isinstance(hot, dict) and hot["status"] == "created" and hot["replicaStatuses"][0][1] == "created"
    with server.api() as c:
        head = c.get(f"/api/spaces/{sid}").json()["sha"]
    assert head != first
    assert server.build_log(sid) == builds  # nothing was built

    # The reload server, through the proxy, answers the Space's writers only (Bearer token, never a cookie).
    replica = f"{host}/--replicas/+{hot['replicaStatuses'][0][0]}/get-reload"
    _, reader = new_user(server, "write")  # a writer of their own Spaces, not of this one
    for headers in ({}, {"Authorization": f"Bearer {reader}"}, {"Cookie": "spacehost_session=x"}):
        denied = httpx.post(replica, json={"reloadId": head}, headers=headers, timeout=10)
        assert denied.status_code == 404, (headers, denied.status_code)
    with httpx.stream("POST", replica, json={"reloadId": head}, timeout=10,
                      headers={"Authorization": f"Bearer {server.token}"}) as s:
        assert s.status_code == 200 and "text/event-stream" in s.headers["content-type"]


def test_hot_reload_reaches_the_version_that_replaced_the_first(server: Server, tmp_path: Path) -> None:
    """A redeploy starts the new version beside the old one in the Space's network namespace, where the old
    version's reload server holds port 7887 until the swap: the new version's server takes the port once it is
    free (it used to give up with `address already in use`, leaving the Space without hot reload)."""
    sid = f"admin/hot2-{secrets.token_hex(3)}"
    assert server.create_space(sid.split("/")[1]).status_code == 200
    files = {"README.md": README, "requirements.txt": f"spaces=={version('spaces')}\n"}
    assert server.push(sid, {"app.py": APP, **files}).returncode == 0
    assert server.wait_stage(sid, {"RUNNING"}, timeout=400)["stage"] == "RUNNING"
    host = server.host(sid)
    first_pid = gradio_call(host, "greet", "x").split("pid=")[1]

    redeployed = APP.replace('"v1"', '"v1b"')
    assert server.push(sid, {"app.py": redeployed, **files}).returncode == 0
    with server.api() as c:
        second = c.get(f"/api/spaces/{sid}").json()["sha"]
    assert server.wait_stage(sid, {"RUNNING"}, after_sha=second, timeout=400)["stage"] == "RUNNING"
    served = gradio_call(host, "greet", "x")
    new_pid = served.split("pid=")[1]
    assert served.startswith("v1b x") and new_pid != first_pid, served

    out = hf_hot_reload(server, tmp_path / "home", sid, tmp_path,
                        redeployed.replace('f"{GREETING} {name}', 'f"v2 {GREETING} {name}'))
    with server.api() as c:
        log = c.get(f"/api/spaces/{sid}/logs/run", params={"follow": "false"}).text
    assert "address already in use" not in log, log[-3000:]
    assert gradio_call(host, "greet", "x") == f"v2 v1b x pid={new_pid}", (out, log[-3000:])
