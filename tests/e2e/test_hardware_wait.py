"""Hardware honesty: a GPU flavor on a machine without that GPU waits, saying so, instead of running on CPU."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from huggingface_hub import HfApi, SpaceHardware

from tests.e2e.harness import Server

pytestmark = pytest.mark.e2e

APP = "import gradio as gr\ngr.Interface(fn=lambda x: x, inputs='text', outputs='text').launch()\n"


def test_t4_flavor_waits_for_hardware_on_a_machine_without_one(server: Server, tmp_path: Path) -> None:
    sid = f"admin/gpu-wait-{uuid.uuid4().hex[:6]}"
    server.create_space(sid.split("/")[1])
    HfApi(endpoint=server.url, token=server.token).request_space_hardware(sid, SpaceHardware.T4_SMALL)
    assert server.push(sid, {"app.py": APP}, workdir=tmp_path / "w").returncode == 0
    deadline = time.monotonic() + 240
    rt = server.runtime(sid)
    while "waiting for hardware" not in str(rt.get("errorMessage")) and time.monotonic() < deadline:
        time.sleep(0.5)
        rt = server.runtime(sid)
    assert rt["stage"] == "APP_STARTING", rt
    assert "waiting for hardware: no node has a t4 GPU" in str(rt["errorMessage"]), rt
    time.sleep(2)
    assert server.runtime(sid)["stage"] == "APP_STARTING"  # still waiting: never RUNNING on CPU
