"""The device API in-process (httpx over ASGI): per-Space isolation, statuses the package expects,
restart behaviour, the kill guard."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import httpx
import pytest

from zerogpu.broker import Broker
from zerogpu.gate import TreeKiller, resolve_in_tree
from zerogpu.pool import declared_pool
from zerogpu.server import create_app

SECRET = b"broker-http-test-secret-32-bytes!!"


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Kills:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def kill(self, space_id: str, pid: int) -> bool:
        self.calls.append((space_id, pid))
        return True


async def _call(broker: Broker, method: str, path: str) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(broker)),
                                 base_url="http://broker") as c:
        return await c.request(method, path)


def run(broker: Broker, method: str, path: str) -> httpx.Response:
    return asyncio.run(_call(broker, method, path))


def test_a_space_sees_only_its_own_leases() -> None:
    b = Broker(declared_pool(1), SECRET, clock=Clock(), killer=Kills())
    a, other = b.device_api_path("a/one"), b.device_api_path("b/two")
    b.register_space("a/one")
    b.register_space("b/two")
    grant = run(b, "POST", f"{a}/schedule?durationSeconds=10&taskId=1").json()
    assert set(grant) == {"idle", "nvidiaIndex", "nvidiaUUID", "allowToken"}
    tok = grant["allowToken"]
    assert run(b, "POST", f"{other}/allow?allowToken={tok}&pid=5").status_code == 404
    assert run(b, "POST", f"{other}/release?allowToken={tok}&fail=false").status_code == 404
    assert run(b, "POST", f"{a}/allow?allowToken={tok}&pid=5").status_code == 200
    assert run(b, "POST", f"{a}/release?allowToken={tok}&fail=false").status_code == 200
    assert run(b, "POST", f"{a}/release?allowToken={tok}&fail=false").status_code == 404


STATUS_CASES = [
    ("unknown-space-404", "POST", "/s/nope/schedule", 404),
    ("startup-report-200", "POST", "{a}/startup-report", 200),
    ("queue-size-200", "GET", "{a}/queue-size", 200),
    ("illegal-duration-429", "POST", "{a}/schedule?durationSeconds=100000", 429),
    ("bad-size-400", "POST", "{a}/schedule?gpuSize=huge", 400),
    ("metrics-anonymous-401", "GET", "/metrics", 401),
]


@pytest.mark.parametrize("method,path,code", [c[1:] for c in STATUS_CASES], ids=[c[0] for c in STATUS_CASES])
def test_statuses(method: str, path: str, code: int) -> None:
    b = Broker(declared_pool(1), SECRET, clock=Clock())
    b.register_space("a/one")
    assert run(b, method, path.format(a=b.device_api_path("a/one"))).status_code == code


def test_illegal_duration_wait_is_negative_and_headers_are_literals() -> None:
    b = Broker(declared_pool(1), SECRET, clock=Clock())
    r = run(b, "POST", f"/s/{b.register_space('a/one')}/schedule?durationSeconds=100000")
    assert r.json()["wait"] < 0
    assert r.headers["X-Approve-Result"] == "illegal-duration"


def test_restart_keeps_quota_and_forgets_grants(tmp_path: Path) -> None:
    clock = Clock()
    b = Broker(declared_pool(1), SECRET, clock=clock, state_dir=tmp_path)
    a = b.register_space("a/one")
    tok = run(b, "POST", f"/s/{a}/schedule?durationSeconds=60").json()["allowToken"]
    clock.t += 20
    run(b, "POST", f"/s/{a}/release?allowToken={tok}&fail=false")
    b.tick()  # the timer persists usage
    b2 = Broker(declared_pool(1), SECRET, clock=clock, state_dir=tmp_path)
    assert b2.register_space("a/one") == a  # same URL for a running Space after a restart
    assert b2.quota_for("ip:127.0.0.1").used_s == pytest.approx(20)
    assert b2.space_summary("a/one")["activeLeases"] == 0


def test_space_death_releases_its_leases() -> None:
    clock = Clock()
    b = Broker(declared_pool(1), SECRET, clock=clock)
    a = b.register_space("a/one")
    run(b, "POST", f"/s/{a}/schedule?durationSeconds=60")
    clock.t += 3
    b.space_died("a/one")
    assert b.space_summary("a/one")["activeLeases"] == 0
    assert b.quota_for("ip:127.0.0.1").used_s == pytest.approx(3)


def test_failed_release_kills_the_worker_and_expiry_kills_overrun() -> None:
    clock, kills = Clock(), Kills()
    b = Broker(declared_pool(1), SECRET, clock=clock, killer=kills)
    a = b.register_space("a/one")
    for fail, pid in (("true", 11), ("false", 12)):
        tok = run(b, "POST", f"/s/{a}/schedule?durationSeconds=10&taskId=1").json()["allowToken"]
        run(b, "POST", f"/s/{a}/allow?allowToken={tok}&pid={pid}")
        run(b, "POST", f"/s/{a}/release?allowToken={tok}&fail={fail}")
    assert kills.calls == [("a/one", 11)]  # pid 12 stays warm for reuse
    grant = run(b, "POST", f"/s/{a}/schedule?durationSeconds=10&taskId=1").json()
    assert grant["idle"] is True
    clock.t += 10 + b.config.grace_s
    b.tick()
    assert kills.calls[-1] == ("a/one", 12)


TREE = {1: (0, [1]), 100: (1, [100]), 101: (100, [101, 2]), 102: (101, [102, 7]), 200: (1, [200])}
TREE_CASES = [
    ("descendant-host-pid", 100, 101, None),  # namespaced child is matched by its inner pid, not host pid
    ("namespaced-inner-pid", 100, 7, 102),
    ("not-in-tree", 100, 200, None),
    ("no-escape-to-root", 100, 1, None),
]


@pytest.mark.parametrize("root,pid,host", [c[1:] for c in TREE_CASES], ids=[c[0] for c in TREE_CASES])
def test_kill_only_inside_the_space_tree(root: int, pid: int, host: int | None) -> None:
    assert resolve_in_tree(root, pid, TREE) == host


def test_tree_killer_refuses_without_root() -> None:
    sent: list[tuple[int, int]] = []
    k = TreeKiller(send=lambda p, s: sent.append((p, s)))
    assert k.kill("a/one", 12345) is False and sent == []


def test_tree_killer_sigkills_a_real_child_of_the_root(tmp_path: Path) -> None:
    import os
    import subprocess

    child = subprocess.Popen(["sleep", "30"])
    sent: list[tuple[int, int]] = []
    k = TreeKiller(send=lambda p, s: sent.append((p, s)))
    k.roots["a/one"] = os.getpid()
    try:
        assert k.kill("a/one", child.pid) is True
        assert sent == [(child.pid, signal.SIGKILL)]
    finally:
        child.kill()
        child.wait()
