"""`spacehost up --zygote per-env`: two Gradio Spaces on the same requirements are served by ONE warm interpreter
(a zygote in a user namespace of its own, sandbox/userns.py), each app its child in its own sandbox: both
RUNNING and answering through the proxy, each seeing only its own files, env and secret."""

from __future__ import annotations

import json
import os
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest
from gradio_client import Client

from tests.e2e.harness import Server, free_port

pytestmark = pytest.mark.e2e

APP = """import json, os
import gradio as gr

def report():
    env = {k: os.environ.get(k, "") for k in ("SPACE_ID", "MY_SECRET")}
    return json.dumps({"files": sorted(os.listdir("/home/user/app")), "env": env, "uid": os.getuid(),
                       "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
                       "tmp": sorted(os.listdir("/tmp")),
                       "home_fs": [l.split()[2] for l in open("/proc/mounts") if l.split()[1] == "/home/user"]})

open("/tmp/{name}-was-here", "w").write("x")
with gr.Blocks() as demo:
    gr.Button("r").click(report, None, gr.Textbox(), api_name="report")
demo.launch()
"""


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("shz-e2e"), free_port(), "hf_test_" + secrets.token_hex(8),
                 extra_args=("--zygote", "per-env"))
    try:
        srv.start()
        yield srv
    finally:
        srv.close()


def _ppid(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def _ancestors(pid: int) -> list[int]:
    out = []
    while pid > 1:
        pid = _ppid(pid)
        out.append(pid)
    return out


def _zygotes(data_dir: Path) -> list[int]:
    """Host pids of the shared zygotes (warm_main.py, run as /opt/spacehost/zygote.py) whose env lies in
    `data_dir`: such processes whose parent is not one (their forked children carry the same command line)."""
    found = set()
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"/opt/spacehost/zygote.py" in cmd and cmd[0].startswith(str(data_dir).encode()):
                found.add(int(d.name))
    return sorted(p for p in found if _ppid(p) not in found)


def _report(server: Server, sid: str) -> dict[str, object]:
    client = Client(server.host(sid), verbose=False)
    return json.loads(client.predict(api_name="/report"))  # type: ignore[no-any-return]


def test_two_spaces_share_one_zygote_each_in_its_own_sandbox(shared_server: Server, tmp_path: Path) -> None:
    srv = shared_server
    sids, secret = [], {}
    for name in ("alpha", "beta"):
        sid = f"admin/shz-{name}-{uuid.uuid4().hex[:6]}"
        srv.create_space(sid.split("/")[1])
        secret[sid] = f"{name}-{secrets.token_hex(8)}"
        with srv.api() as c:
            c.post(f"/api/spaces/{sid}/secrets", json={"key": "MY_SECRET", "value": secret[sid]}).raise_for_status()
        tree = {"app.py": APP.replace("{name}", name), f"only-{name}.txt": name}
        assert srv.push(sid, tree, workdir=tmp_path / name).returncode == 0
        sids.append(sid)
    for sid in sids:
        srv.wait_stage(sid, {"RUNNING"}, timeout=300)
    zygotes = _zygotes(srv.data_dir)
    assert len(zygotes) == 1, zygotes  # one warm interpreter for the env both Spaces share
    pid_nses = set()
    for sid, name in zip(sids, ("alpha", "beta")):
        r = _report(srv, sid)
        assert r["env"] == {"SPACE_ID": sid, "MY_SECRET": secret[sid]}, r
        files, pids = cast(list[str], r["files"]), cast(list[int], r["pids"])
        assert [f for f in files if f.startswith("only-")] == [f"only-{name}.txt"], r  # its own tree only
        assert r["uid"] == 1000 and pids[0] == 1, r  # pid 1 of its own pid namespace (2: what Gradio started)
        tmp = cast(list[str], r["tmp"])  # its own /tmp, not the zygote's (which every child would share)
        assert [f for f in tmp if f.endswith("-was-here")] == [f"{name}-was-here"], r
        assert r["home_fs"] == ["tmpfs"], r  # its home in memory, charged to it: not the host's disk
        pid = _app_pid(srv, sid)
        assert zygotes[0] in _ancestors(pid), (pid, zygotes)
        pid_nses.add(os.readlink(f"/proc/{pid}/ns/pid"))
    assert len(pid_nses) == 2 and os.readlink(f"/proc/{zygotes[0]}/ns/pid") not in pid_nses


def _app_pid(server: Server, sid: str) -> int:
    """The app's host pid from the runtime's state file of the Space's running instance."""
    for state in (server.data_dir / "run").glob("*.json"):
        data = json.loads(state.read_text())
        if data["space_id"] == sid:
            return int(data["pid"])
    raise AssertionError(f"no instance state for {sid}")
