"""`spacehost up --zygote per-env`: two Gradio Spaces on the same requirements are served by ONE warm interpreter
(a zygote in a user namespace of its own, sandbox/userns.py), each app its child in its own sandbox: both
RUNNING and answering through the proxy, each seeing only its own files, env and secret."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import cast

import httpx
import pytest
from gradio_client import Client

from core.settings import Settings
from sandbox.userns import ZYGOTE_HOST_UID
from scheduler.runtimes.shared_zygote import ROOT
from scheduler.runtimes.zygote_procs import mentioning
from tests.e2e.harness import Server, free_port

# In file order: the last test stops the module's server (pytest-random-order would otherwise run it anywhere,
# and every test after it found the server gone).
pytestmark = [pytest.mark.e2e, pytest.mark.random_order(disabled=True)]

APP = """import json, os
import gradio as gr

def report():
    env = {k: os.environ.get(k, "") for k in ("SPACE_ID", "MY_SECRET")}
    with open("/proc/self/comm", "w") as f:  # its /proc files are its own, as after a cold start's exec
        f.write("{name}")
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


def _uid(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])


def _zygotes(data_dir: Path) -> list[int]:
    """Host pids of the shared zygotes (warm_main.py, run as /opt/spacehost/zygote.py) whose env lies in
    `data_dir`: such processes of the zygotes' host uid whose parent is not one (their forked children carry the
    same command line)."""
    found = set()
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if (b"/opt/spacehost/zygote.py" in cmd and cmd[0].startswith(str(data_dir).encode())
                    and _uid(int(d.name)) == ZYGOTE_HOST_UID):  # not its children (uid 1000 once they entered)
                found.add(int(d.name))
    return sorted(p for p in found if _ppid(p) not in found)


def _report(server: Server, sid: str) -> dict[str, object]:
    client = Client(server.host(sid), verbose=False)
    return json.loads(client.predict(api_name="/report"))  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def two_spaces(shared_server: Server, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Two Spaces on the same env, RUNNING: Space id → its secret."""
    srv, work = shared_server, tmp_path_factory.mktemp("shz-push")
    secret = {}
    for name in ("alpha", "beta"):
        sid = f"admin/shz-{name}-{uuid.uuid4().hex[:6]}"
        srv.create_space(sid.split("/")[1])
        secret[sid] = f"{name}-{secrets.token_hex(8)}"
        with srv.api() as c:
            c.post(f"/api/spaces/{sid}/secrets", json={"key": "MY_SECRET", "value": secret[sid]}).raise_for_status()
        tree = {"app.py": APP.replace("{name}", name), f"only-{name}.txt": name}
        assert srv.push(sid, tree, workdir=work / name).returncode == 0
    for sid in secret:
        srv.wait_stage(sid, {"RUNNING"}, timeout=300)
    return secret


def test_two_spaces_share_one_zygote_each_in_its_own_sandbox(shared_server: Server,
                                                              two_spaces: dict[str, str]) -> None:
    srv, secret = shared_server, two_spaces
    zygotes = _zygotes(srv.data_dir)
    assert len(zygotes) == 1, zygotes  # one warm interpreter for the env both Spaces share
    pid_nses = set()
    for sid, name in zip(secret, ("alpha", "beta")):
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
        # Every process of the Space's tree, from the zygote's child (the middle process, parent of the app)
        # down, counts against the Space's limits, as a cold start's whole sandbox does.
        middle = _ppid(pid)
        tree = _tree(middle)
        assert middle != zygotes[0] and pid in tree, (middle, tree)
        in_cgroup = _cgroup_pids(srv, sid)
        assert set(tree) <= in_cgroup, (sid, tree, in_cgroup)
    assert len(pid_nses) == 2 and os.readlink(f"/proc/{zygotes[0]}/ns/pid") not in pid_nses


def test_spaces_come_back_after_their_apps_are_killed(shared_server: Server, two_spaces: dict[str, str]) -> None:
    """kill -9 of the apps a shared zygote forked: the controller restarts both, from the same zygote."""
    srv = shared_server
    zygotes, apps = _zygotes(srv.data_dir), {sid: _app_pid(srv, sid) for sid in two_spaces}
    t0 = time.monotonic()
    for pid in apps.values():
        os.kill(pid, signal.SIGKILL)
    _all_answer_again(srv, two_spaces, apps, t0, "of both apps")
    assert _zygotes(srv.data_dir) == zygotes
    for sid in two_spaces:
        assert zygotes[0] in _ancestors(_app_pid(srv, sid))


def test_spaces_outlive_a_killed_interpreter_and_new_starts_get_a_new_one(
        shared_server: Server, two_spaces: dict[str, str], tmp_path: Path) -> None:
    """kill -9 of the shared zygote's interpreter: its Spaces keep serving (they do not need it once forked); a
    new Space on that env starts from a new zygote; the old one's namespace goes with the last Space it forked."""
    srv = shared_server
    [old], apps = _zygotes(srv.data_dir), {sid: _app_pid(srv, sid) for sid in two_spaces}
    old_init = _ppid(old)
    os.kill(old, signal.SIGKILL)
    for sid, secret in two_spaces.items():
        assert _report(srv, sid)["env"] == {"SPACE_ID": sid, "MY_SECRET": secret}
        assert _app_pid(srv, sid) == apps[sid]

    gamma = f"admin/shz-gamma-{uuid.uuid4().hex[:6]}"
    srv.create_space(gamma.split("/")[1])
    assert srv.push(gamma, {"app.py": APP.replace("{name}", "gamma")}, workdir=tmp_path / "g").returncode == 0
    srv.wait_stage(gamma, {"RUNNING"}, timeout=300)
    assert _report(srv, gamma)["env"] == {"SPACE_ID": gamma, "MY_SECRET": ""}
    [new] = _zygotes(srv.data_dir)
    assert new != old and new in _ancestors(_app_pid(srv, gamma))
    assert _alive(old_init)  # kept: alpha and beta still run in its namespace

    for sid in two_spaces:
        with srv.api() as c:
            c.post(f"/api/spaces/{sid}/restart").raise_for_status()
    for sid in two_spaces:
        _until(partial(_restarted, srv, sid, apps[sid]), 120, f"{sid} restarted")
        assert new in _ancestors(_app_pid(srv, sid))
    _until(lambda: not _alive(old_init), 30, "the old zygote's namespace gone with its last Space")


def test_spaces_come_back_after_their_zygote_namespace_is_killed(shared_server: Server,
                                                                 two_spaces: dict[str, str]) -> None:
    """kill -9 of the zygote's init (pid 1 of its pid namespace): every Space it forked dies with it; the
    controller restarts them, from a new zygote, and they answer through the proxy again within a bound."""
    srv = shared_server
    [old], apps = _zygotes(srv.data_dir), {sid: _app_pid(srv, sid) for sid in two_spaces}
    t0 = time.monotonic()
    os.kill(_ppid(old), signal.SIGKILL)
    _all_answer_again(srv, two_spaces, apps, t0, "of the zygote's pid namespace")
    [new] = _zygotes(srv.data_dir)
    assert new != old
    for sid in two_spaces:
        assert new in _ancestors(_app_pid(srv, sid))


def _all_answer_again(srv: Server, spaces: dict[str, str], apps: dict[str, int], t0: float, what: str) -> None:
    for sid, secret in spaces.items():
        _until(partial(_restarted, srv, sid, apps[sid]), 120, f"{sid} answers again")
        assert _report(srv, sid)["env"] == {"SPACE_ID": sid, "MY_SECRET": secret}
        assert srv.runtime(sid)["stage"] == "RUNNING"
    took = time.monotonic() - t0
    print(f"\nkill -9 {what}: both Spaces restarted and answer through the proxy after {took:.1f} s")
    assert took < 120


def test_stopping_the_server_leaves_no_process_of_its_data_dir(shared_server: Server,
                                                               two_spaces: dict[str, str]) -> None:
    """Last in this module: spacehost stops (SIGTERM) and with its Spaces go the shared zygotes, their pid
    namespaces and whatever else runs from the data dir (the apps' command line is the zygote's)."""
    srv = shared_server
    assert _zygotes(srv.data_dir)
    srv.stop()
    assert srv.proc is not None and srv.proc.returncode == 0, srv.log_tail()
    _until(lambda: not mentioning(str(srv.data_dir)), 10, "no process of the data dir left")
    zygote_dirs = ROOT / Settings(data_dir=srv.data_dir).install_tag
    assert not list(zygote_dirs.glob("shz-*")), "a zygote's dir was left behind"


def _state(server: Server, sid: str) -> dict[str, object] | None:
    """The runtime's state file of the Space's running instance (the newest, should two overlap briefly)."""
    found = []
    for state in (server.data_dir / "run").glob("*.json"):
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(state.read_text())
            if data["space_id"] == sid and _alive(int(data["pid"])):
                found.append((state.stat().st_mtime, data))
    return max(found, key=lambda f: f[0])[1] if found else None


def _restarted(server: Server, sid: str, old_pid: int) -> bool:
    """The Space runs a new app process, and it answers through the proxy."""
    if _app_pid(server, sid, default=0) in (0, old_pid):
        return False
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(server.host(sid) + "/", timeout=5).status_code == 200
    return False


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").is_dir()


def _app_pid(server: Server, sid: str, default: int | None = None) -> int:
    """The app's host pid from the runtime's state file of the Space's running instance."""
    state = _state(server, sid)
    if state is None:
        if default is not None:
            return default
        raise AssertionError(f"no instance state for {sid}")
    return int(cast(int, state["pid"]))


def _cgroup_pids(server: Server, sid: str) -> set[int]:
    """The pids in every cgroup of the Space's running instance (intersected: v1 has one per controller)."""
    state = _state(server, sid)
    assert state is not None and state["cgroup_dirs"], state
    sets = [{int(p) for p in Path(d, "cgroup.procs").read_text().split()} for d in cast(list[str],
                                                                                        state["cgroup_dirs"])]
    return set.intersection(*sets)


def _tree(root: int) -> list[int]:
    """`root` and its descendants."""
    parents = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                parents[int(d.name)] = _ppid(int(d.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += [p for p, pp in parents.items() if pp == pid]
    return sorted(out)


def _until(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        time.sleep(0.1)
