"""The frozen tier: an idle Space is frozen (cgroup freezer) after --freeze-after seconds, uses no CPU while
frozen, and the first request thaws it — a plain HTTP request, Gradio's SSE queue stream, Streamlit's
WebSocket. Under memory pressure (MemAvailable below --min-available-mb) a frozen Space falls to the killed
tier (stage SLEEPING), and a request wakes it as before."""

from __future__ import annotations

import json
import secrets
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.corpus_checks import config
from tests.e2e.harness import Server, free_port
from tests.e2e.streamlit_ws import run_script

pytestmark = pytest.mark.e2e

GREET = """import gradio as gr

def greet(name):
    return "Hello " + name + "!"

gr.Interface(fn=greet, inputs="text", outputs="text", api_name="greet").launch()
"""
README = "---\nsdk: {sdk}\n---\n"
FREEZE_AFTER_S = 2


def _server(tmp: Path, **env: str) -> Iterator[Server]:
    srv = Server(tmp, free_port(), "hf_admin_" + secrets.token_hex(8), env=env)
    srv.start()
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def freezing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from _server(tmp_path_factory.mktemp("frozen"), SPACEHOST_FREEZE_AFTER=str(FREEZE_AFTER_S),
                       SPACEHOST_MIN_AVAILABLE_MB="0")


def deploy(server: Server, sdk: str, app: str) -> tuple[str, str]:
    sid = f"admin/{sdk}-{uuid.uuid4().hex[:6]}"
    assert server.create_space(sid.split("/")[1], sdk=sdk).status_code == 200
    assert server.push(sid, {"README.md": README.format(sdk=sdk), "app.py": app}).returncode == 0
    rt = server.wait_stage(sid, timeout=600)
    assert rt["stage"] == "RUNNING", rt
    return sid, server.host(sid)


def wait_tier(server: Server, sid: str, tier: str, timeout: float = 60) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    rt: dict[str, object] = {}
    while time.monotonic() < deadline:
        rt = server.runtime(sid)  # the hub's API: not a visit to the Space
        if rt.get("tier") == tier:
            return rt
        time.sleep(0.2)
    raise TimeoutError(f"{sid} never reached tier {tier}: {rt}\n{server.log_tail()}")


def cpuacct_dir(server: Server, sid: str) -> Path:
    """The cpuacct cgroup of the Space's instance (a warm one's is its zygote's: only this Space's processes)."""
    for state in (server.data_dir / "run").glob("*.json"):
        data = json.loads(state.read_text())
        if data.get("space_id") == sid:
            return Path(next(d for d in data["cgroup_dirs"] if "/cpuacct/" in d or "cpuacct," in d))
    raise AssertionError(f"no instance state of {sid}")


def instances(server: Server, sid: str) -> set[str]:
    return {p.stem for p in (server.data_dir / "run").glob("*.json")
            if json.loads(p.read_text()).get("space_id") == sid}


def cpu_ns_over(cg: Path, seconds: float) -> int:
    before = int((cg / "cpuacct.usage").read_text())
    time.sleep(seconds)
    return int((cg / "cpuacct.usage").read_text()) - before


def test_frozen_gradio_space_uses_no_cpu_and_thaws_on_http_and_on_its_sse_stream(freezing: Server) -> None:
    sid, host = deploy(freezing, "gradio", GREET)
    cg = cpuacct_dir(freezing, sid)
    rt = wait_tier(freezing, sid, "frozen")
    assert rt["stage"] == "RUNNING"  # HF's stage: the frozen tier is invisible to clients
    assert cpu_ns_over(cg, 5.0) < 1_000_000  # under 1 ms of CPU in 5 s (a running idle Gradio: ~100+ ms)

    before = instances(freezing, sid)
    t0 = time.perf_counter()
    page = httpx.get(host + "/", timeout=10)
    thawed_in = time.perf_counter() - t0
    assert page.status_code == 200 and "gradio" in page.text.lower()
    assert freezing.runtime(sid)["tier"] == "running"
    assert instances(freezing, sid) == before  # thawed, not started again
    t0 = time.perf_counter()
    assert httpx.get(host + "/", timeout=10).status_code == 200
    assert thawed_in - (time.perf_counter() - t0) < 1.0, thawed_in  # the thaw adds milliseconds (shared CPU)

    # Gradio's queue: join while it runs, let it freeze, then the SSE stream of queue/data is the request that
    # thaws it, and the event's result (computed after the thaw) arrives on that stream.
    fn = next(int(d["id"]) for d in config(host)["dependencies"] if d.get("api_name") == "greet")
    session = uuid.uuid4().hex
    with httpx.Client(base_url=host, timeout=30) as c:
        wait_tier(freezing, sid, "frozen")
        join = c.post("/gradio_api/queue/join", json={"data": ["Ada"], "fn_index": fn, "event_data": None,
                                                      "session_hash": session, "trigger_id": None})
        assert join.status_code == 200, join.text
        wait_tier(freezing, sid, "frozen")
        before = instances(freezing, sid)
        got = None
        with c.stream("GET", "/gradio_api/queue/data", params={"session_hash": session}) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            for line in stream.iter_lines():
                if line.startswith("data:") and (msg := json.loads(line[5:])).get("msg") == "process_completed":
                    got = msg["output"]["data"]
                    break
        assert got == ["Hello Ada!"]
        assert instances(freezing, sid) == before


def test_frozen_streamlit_space_thaws_on_its_websocket(freezing: Server) -> None:
    app = "import streamlit as st\nst.title('Hello from Streamlit')\nst.write(41 + 1)\n"
    sid, host = deploy(freezing, "streamlit", app)
    wait_tier(freezing, sid, "frozen")
    texts = run_script(host)  # the first request after the freeze is the WebSocket upgrade of /_stcore/stream
    assert any("42" in t for t in texts)


@pytest.fixture(scope="module")
def pressed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # A threshold above any machine's memory: MemAvailable, read for real, is always below it.
    yield from _server(tmp_path_factory.mktemp("pressure"), SPACEHOST_FREEZE_AFTER=str(FREEZE_AFTER_S),
                       SPACEHOST_MIN_AVAILABLE_MB=str(1 << 30))


def test_frozen_space_falls_to_the_killed_tier_under_memory_pressure(pressed: Server) -> None:
    sid, host = deploy(pressed, "gradio", GREET)
    rt = pressed.wait_stage(sid, {"SLEEPING"}, timeout=60)
    assert rt["tier"] == "sleeping"
    with pressed.api() as c:
        log = c.get(f"/api/spaces/{sid}/logs/run", params={"follow": "false"}).text
    assert "Sleeping under memory pressure" in log, log
    assert not any(json.loads(p.read_text()).get("space_id") == sid for p in (pressed.data_dir / "run").glob("*.json"))
    r = httpx.get(host + "/config", timeout=120)  # an API client is held while the killed tier wakes
    assert r.status_code == 200
