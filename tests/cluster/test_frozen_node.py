"""The frozen tier on cluster nodes: the server's Controller decides (its --freeze-after, the operator's idle
time), the node freezes the instance's cgroup, and a request through the cluster proxy thaws it on the node (the
proxy asks the server's wake, the node's long-poll carries the thaw) and gets its answer from the same instance.
With the server down, nodes thaw what they froze and proxies route it as serving."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.harness import Cluster
from tests.cluster.test_control_plane import push_space, wait_serving

pytestmark = pytest.mark.e2e
FREEZE_AFTER_S = 3


@pytest.fixture
def freezing(tmp_path: Path, fresh_postgres_url: str, redis_url: str) -> Iterator[Cluster]:
    c = Cluster(tmp_path, fresh_postgres_url, redis_url)
    c.env["SPACEHOST_FREEZE_AFTER"] = str(FREEZE_AFTER_S)
    with c.serving():
        yield c


def wait_tier(c: Cluster, sid: str, tier: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while (rt := c.api.runtime(sid)).get("tier") != tier:  # the hub's API: not a visit
        assert time.monotonic() < deadline, f"{sid} never reached tier {tier}: {rt}\n{c.logs()}"
        time.sleep(0.2)


def freezer_state(c: Cluster, node: str, sid: str) -> tuple[str, bool]:
    """(instance id, whether its cgroup is frozen) of the Space's instance on `node`, from the node's run dir."""
    for state in (c.node_dir(node) / "run").glob("*.json"):
        data = json.loads(state.read_text())
        if data.get("space_id") != sid:
            continue
        for d in map(Path, data["cgroup_dirs"]):
            if (d / "freezer.state").exists():
                return state.stem, (d / "freezer.state").read_text().strip() == "FROZEN"
            if (d / "cgroup.freeze").exists():
                return state.stem, (d / "cgroup.freeze").read_text().strip() == "1"
    raise AssertionError(f"no instance of {sid} with a freezer on {node}")


def test_idle_space_freezes_on_its_node_and_a_proxied_request_thaws_it(freezing: Cluster) -> None:
    c = freezing
    c.start_node("n1", "127.0.0.2")
    sid = push_space(c)
    assert c.api.wait_stage(sid, timeout=400)["stage"] == "RUNNING", c.logs()
    wait_serving(c, sid)

    wait_tier(c, sid, "frozen")
    assert c.api.runtime(sid)["stage"] == "RUNNING"  # HF's stage: the tier is spacehost's own
    instance, frozen = freezer_state(c, "n1", sid)
    assert frozen, "the node did not freeze the instance's cgroup"

    t0 = time.perf_counter()
    r = c.get(sid, timeout=30)
    first_byte = time.perf_counter() - t0
    assert r.status_code == 200 and r.text.startswith("node="), r.text
    print(f"\ncluster thaw: request through the proxy to a frozen Space on a node answered in {first_byte:.2f}s")
    assert freezer_state(c, "n1", sid) == (instance, False)  # thawed, not started again
    wait_tier(c, sid, "running", timeout=5)
    assert first_byte < 5.0  # a round trip to the node (typically well under a second)

    # frozen again, then the server dies: nobody can thaw through it, so the node thaws what it froze and the
    # proxy routes the frozen Space as serving (its last table): the Space keeps serving through the outage
    wait_tier(c, sid, "frozen")
    assert freezer_state(c, "n1", sid) == (instance, True)
    c.procs["server"].kill()
    t0 = time.perf_counter()
    r = c.get(sid, timeout=30)
    assert r.status_code == 200 and r.text.startswith("node="), r.text
    print(f"server down: the frozen Space answered in {time.perf_counter() - t0:.2f}s")
    assert freezer_state(c, "n1", sid) == (instance, False)
