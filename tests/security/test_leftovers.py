"""Nothing left behind: what a Space leaves when it is deleted, moved, or when spacehost stops.

A real `spacehost up` (process runtime, sandbox on) runs a tiny app that marks its own process; the Space's
processes are found from the host (tests/security/procs.py). Routes are checked through the proxy with the
Space's Host header.
"""

from __future__ import annotations

import secrets
import signal
import time
import uuid
from collections.abc import Iterator

import pytest

from tests.e2e.harness import Server, free_port
from tests.security.procs import app, describe, in_pid_ns, marked, new_marker, sandbox_of, via_proxy, wait_for

pytestmark = pytest.mark.e2e


def delete(srv: Server, space_id: str) -> None:
    with srv.api() as c:
        r = c.request("DELETE", "/api/repos/delete", json={"type": "space", "name": space_id.split("/")[1]})
    assert r.status_code == 200, r.text


def builds(srv: Server, space_id: str) -> list[str]:
    with srv.api() as c:
        r = c.get(f"/api/spaces/{space_id}/builds")
    r.raise_for_status()
    return list(r.json()["builds"])


def run_log(srv: Server, space_id: str) -> str:
    with srv.api() as c:
        r = c.get(f"/api/spaces/{space_id}/logs/run", params={"follow": "false"})
    r.raise_for_status()
    return "\n".join(ln for ln in r.text.splitlines() if ln.startswith("data: {"))


def running_space(srv: Server, prefix: str) -> tuple[str, str]:
    """A new Space of `srv` serving the marked app: (its id, the app's process name)."""
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    sid, marker = f"admin/{name}", new_marker()
    assert srv.create_space(name).status_code == 200
    assert srv.push(sid, app(marker)).returncode == 0
    assert srv.wait_stage(sid)["stage"] == "RUNNING"
    return sid, marker


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("leftovers"), free_port(), "hf_admin_" + secrets.token_hex(8))
    srv.start()
    yield srv
    srv.close()


def test_delete_removes_every_trace_and_the_name_starts_empty(server: Server) -> None:
    sid, marker = running_space(server, "gone")
    name = sid.split("/")[1]
    ns = sandbox_of(marker)
    assert via_proxy(server, sid).text == "alive"
    assert builds(server, sid) and "==> Ready" in run_log(server, sid)
    space_dir = server.data_dir / "spaces" / sid
    assert space_dir.is_dir() and (server.data_dir / "repos" / "admin" / f"{name}.git").is_dir()

    delete(server, sid)
    wait_for("the Space's processes are gone", lambda: not marked(marker) and not in_pid_ns(ns), timeout=15)
    assert via_proxy(server, sid).status_code == 404
    assert not space_dir.exists(), sorted(str(p) for p in space_dir.rglob("*"))
    assert not (server.data_dir / "repos" / "admin" / f"{name}.git").exists()

    assert server.create_space(name).status_code == 200
    assert server.runtime(sid)["stage"] == "NO_APP_FILE"
    assert builds(server, sid) == []
    assert run_log(server, sid) == ""
    assert via_proxy(server, sid).status_code != 200


def test_a_space_deleted_while_starting_is_stopped(server: Server) -> None:
    name = f"midstart-{uuid.uuid4().hex[:6]}"
    sid, marker = f"admin/{name}", new_marker()
    assert server.create_space(name).status_code == 200
    assert server.push(sid, app(marker, delay=120)).returncode == 0  # never answers in time: stays starting
    ns = sandbox_of(marker, timeout=240)
    assert server.runtime(sid)["stage"] == "APP_STARTING"

    delete(server, sid)
    wait_for("the starting Space's processes are gone", lambda: not marked(marker) and not in_pid_ns(ns), timeout=15)
    time.sleep(2)  # the start in flight gave up: nothing starts it again
    assert not marked(marker) and not (server.data_dir / "spaces" / sid).exists()


def test_a_move_onto_a_taken_name_changes_nothing(server: Server) -> None:
    taken = f"taken-{uuid.uuid4().hex[:6]}"
    assert server.create_space(taken, sdk="static").status_code == 200
    sid, marker = running_space(server, "mover")
    before_builds, before_pids = builds(server, sid), marked(marker)

    with server.api() as c:
        r = c.post("/api/repos/move", json={"fromRepo": sid, "toRepo": f"admin/{taken}", "type": "space"})
    assert r.status_code == 409, r.text

    time.sleep(1)
    assert server.runtime(sid)["stage"] == "RUNNING"
    assert marked(marker) == before_pids, "the Space was stopped or restarted by a move that failed"
    assert builds(server, sid) == before_builds
    assert via_proxy(server, sid).text == "alive"


def test_a_move_leaves_nothing_under_the_old_name(server: Server) -> None:
    sid, marker = running_space(server, "oldname")
    old_ns, old_pids = sandbox_of(marker), set(marked(marker))
    new = f"admin/newname-{uuid.uuid4().hex[:6]}"
    with server.api() as c:
        r = c.post("/api/repos/move", json={"fromRepo": sid, "toRepo": new, "type": "space"})
    assert r.status_code == 200, r.text
    wait_for("the old name's processes are gone", lambda: not in_pid_ns(old_ns), timeout=15)
    assert via_proxy(server, sid).status_code == 404
    assert not (server.data_dir / "spaces" / sid).exists()
    with server.api() as c:
        assert c.get(f"/api/spaces/{sid}/runtime").status_code == 404
    assert server.wait_stage(new)["stage"] == "RUNNING"
    assert via_proxy(server, new).text == "alive" and builds(server, new)
    # The app runs again in a new sandbox. (Not compared by namespace: the kernel reuses a freed namespace's inode
    # number, so the new sandbox may well read 'pid:[same number]'.)
    sandbox_of(marker)
    assert old_pids and old_pids.isdisjoint(marked(marker))


def test_stopping_spacehost_stops_its_spaces_unless_told_to_keep_them(tmp_path_factory: pytest.TempPathFactory) -> None:
    srv = Server(tmp_path_factory.mktemp("stop"), free_port(), "hf_admin_" + secrets.token_hex(8))
    srv.start()
    try:
        sid, marker = running_space(srv, "stopper")
        ns = sandbox_of(marker)

        srv.stop(signal.SIGTERM)  # a plain stop: the Space goes with it, gracefully
        assert srv.proc is not None and srv.proc.returncode == 0, srv.log_tail()
        left = marked(marker) + in_pid_ns(ns)
        assert not left, f"a Space outlived `spacehost up`:\n{describe(left)}\n{srv.log_tail(30)}"
        assert "on stop:   Spaces are stopped" in srv.log_tail(200)

        srv.extra_args = ("--keep-spaces",)
        srv.start()  # the Space comes back (its goal is RUNNING) ...
        assert srv.wait_stage(sid, {"RUNNING"}, timeout=120)["stage"] == "RUNNING"
        ns = sandbox_of(marker)
        kept = marked(marker)
        srv.stop(signal.SIGINT)  # ... and with --keep-spaces survives a stop (Ctrl-C),
        assert marked(marker) == kept and in_pid_ns(ns), "--keep-spaces did not keep the Space running"

        srv.extra_args = ()
        srv.start()  # ... to be re-adopted by the next start, not restarted
        assert srv.wait_stage(sid, {"RUNNING"}, timeout=60)["stage"] == "RUNNING"
        wait_for("the Space answers again", lambda: via_proxy(srv, sid).status_code == 200)
        assert marked(marker) == kept, "the kept Space was restarted instead of re-adopted"
    finally:
        srv.close()
