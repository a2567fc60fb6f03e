"""ZeroGPU quotas are cluster-wide: one user's `zero-*` Spaces on two GPU nodes (`--zerogpu-devices 1` each, a
broker per node) spend one daily quota, kept in the cluster's Redis. The real `spaces` package in each Space,
called with gradio_client through the cluster's proxy as the signed-in admin: seconds used on node A show in the
server's quota API and count on node B, whose broker refuses once what is left is below a call's duration."""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from gradio_client import Client
from gradio_client.exceptions import AppError

from tests.cluster.harness import Cluster
from tests.cluster.test_zerogpu_node import APP
from zerogpu.redis_ledger import held_key, usage_key

pytestmark = pytest.mark.e2e

DAILY_S = 20  # signed-in users' daily quota, the server's and both nodes' (work() asks for 10 s)


@pytest.fixture
def cluster(tmp_path: Path, fresh_postgres_url: str, redis_url: str) -> Iterator[Cluster]:
    c = Cluster(tmp_path, fresh_postgres_url, redis_url)
    c.env["SPACEHOST_ZEROGPU_QUOTA_SIGNED_IN"] = str(DAILY_S)
    r = redis.Redis.from_url(redis_url)
    r.delete(usage_key("user:admin"), held_key("user:admin"))  # the session's Redis: start from a full quota
    r.close()
    with c.serving():
        yield c


def push_zero(c: Cluster) -> str:
    name = f"zero-{secrets.token_hex(3)}"
    assert c.api.create_space(name, hardware="zero-a10g").status_code == 200
    sid = f"admin/{name}"
    pushed = c.api.push(sid, {"app.py": APP, "requirements.txt": f"spaces=={version('spaces')}\n"})
    assert pushed.returncode == 0, pushed.stderr
    return sid


def quota(c: Cluster) -> dict[str, Any]:
    """The admin's quota as the server reports it (/api/zerogpu/quota), checked against HF's route."""
    with c.api.api() as api:
        mine, hf = api.get("/api/zerogpu/quota"), api.get("/api/spaces/zero-gpu/quota")
    assert mine.status_code == 200 and hf.status_code == 200, (mine.text, hf.text)
    data = dict(mine.json())
    assert data["visitor"] == "user:admin" and hf.json()["current"] == data["left_s"], (data, hf.json())
    return data


def work(c: Cluster, sid: str, seconds: float) -> str:
    """`work(seconds)` of the Space (a `@spaces.GPU(duration=10)` function): its result, or the error's text."""
    deadline = time.monotonic() + 60
    while True:
        try:
            return str(Client(c.api.host(sid), token=c.token, verbose=False).predict(seconds, api_name="/work"))
        except (httpx.HTTPError, ConnectionError) as e:  # the Space's route not served yet
            assert time.monotonic() < deadline, f"{e}\n{c.logs()}"
            time.sleep(1)
        except AppError as e:  # the app's error: what the `spaces` package raised
            return f"error: {e}"


def refusals(c: Cluster, node: str) -> int:
    (n,) = [n for n in c.nodes() if n["name"] == node]
    r = httpx.get(f"{n['zerogpu_url']}/metrics", headers={"Authorization": f"Bearer {c.token}"})
    m = re.search(r'^zerogpu_schedule_total\{result="quota-exceeded"\} (\d+)$', r.text, re.MULTILINE)
    return int(m.group(1)) if m else 0


def test_one_users_quota_is_spent_across_both_nodes(cluster: Cluster) -> None:
    c = cluster
    c.start_node("g1", "127.0.0.2", "--zerogpu-devices", "1")
    c.start_node("g2", "127.0.0.3", "--zerogpu-devices", "1")
    on_a = push_zero(c)
    deadline = time.monotonic() + 600
    while (node_a := c.node_of(on_a)) is None:
        assert time.monotonic() < deadline, c.logs()
        time.sleep(1)
    with c.api.api() as api:  # the next Space goes to the other node
        assert api.post(f"/api/admin/nodes/{node_a}/cordon").status_code == 200
    on_b = push_zero(c)
    for sid in (on_a, on_b):
        rt = c.api.wait_stage(sid, {"RUNNING"}, timeout=600)
        assert rt["stage"] == "RUNNING", f"{rt}\n{c.logs()}"
    node_b = c.node_of(on_b)
    assert {node_a, node_b} == {"g1", "g2"}
    assert quota(c) | {"resets_at": None} == {"visitor": "user:admin", "daily_s": DAILY_S, "used_s": 0.0,
                                              "reserved_s": 0, "left_s": DAILY_S, "resets_at": None}

    assert work(c, on_a, 1.0).startswith("pid=")  # node A's broker charges the cluster's ledger
    after_a = quota(c)
    assert 1.0 <= after_a["used_s"] < 10.0 and after_a["left_s"] == pytest.approx(DAILY_S - after_a["used_s"])
    assert after_a["resets_at"] is not None

    assert work(c, on_b, 1.0).startswith("pid=")  # node B charges the same quota: the figures add up
    after_b = quota(c)
    assert after_b["used_s"] >= after_a["used_s"] + 1.0, (after_a, after_b)
    assert after_b["resets_at"] == after_a["resets_at"]  # one window, opened by the first use, on node A

    left = after_b
    while left["left_s"] >= 10:  # spend on node A until less than one call (10 s) is left
        assert work(c, on_a, 3.0).startswith("pid="), c.logs()
        left = quota(c)
    refused_before = refusals(c, str(node_b))
    out = work(c, on_b, 1.0)  # node B has served this user one call only: without a shared ledger it would grant
    m = re.search(r"quota \((\d+)s requested vs\. (\d+)s left\)", out)
    assert m is not None, f"{out}\n{c.logs()}"
    assert int(m.group(2)) == int(left["left_s"]), (out, left)  # B's figure is the cluster's
    assert refusals(c, str(node_b)) == refused_before + 1
    assert quota(c)["used_s"] == left["used_s"]  # a refusal costs nothing
    print(f"cluster-wide quota: used {left['used_s']:.1f}s of {DAILY_S}s across 2 nodes; node B refused with "
          f"{m.group(2)}s left")
