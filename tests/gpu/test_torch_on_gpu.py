"""A torch model moved to CUDA inside `@spaces.GPU`, on a real NVIDIA GPU leased by the broker from NVML.

Skips without an NVIDIA driver or without torch. On a GPU machine:
    VIRTUAL_ENV=.venv uv pip install torch && .venv/bin/pytest tests/gpu -q -m gpu
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from core.iptoken import Visitor, sign
from tests.zerogpu.harness import ThreadedBroker, free_port
from zerogpu.broker import Broker
from zerogpu.pool import nvml_pool

pytestmark = pytest.mark.gpu
SECRET = b"zerogpu-gpu-test-secret-32-bytes!!"


def _why_skip() -> str | None:
    if not Path("/proc/driver/nvidia/gpus").is_dir():
        return "no NVIDIA GPU (no /proc/driver/nvidia/gpus)"
    if importlib.util.find_spec("torch") is None:
        return "torch is not installed (VIRTUAL_ENV=.venv uv pip install torch)"
    pool = nvml_pool()
    if pool is None or len(pool) == 0:
        return "NVML sees no GPU"
    return None


def test_torch_model_runs_on_the_leased_gpu(tmp_path: Path) -> None:
    if (why := _why_skip()) is not None:
        pytest.skip(why)
    from gradio_client import Client

    pool = nvml_pool()
    assert pool is not None
    broker = Broker(pool, SECRET, state_dir=tmp_path)
    tb = ThreadedBroker(broker).start()
    port = free_port()
    env = {**os.environ, "SPACES_ZERO_GPU": "true", "SPACES_ZERO_DEVICE_API_URL": tb.server.register_space("g/pu"),
           "GRADIO_SERVER_PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1", "HOME": str(tmp_path)}
    log = (tmp_path / "app.log").open("w")
    proc = subprocess.Popen([sys.executable, str(Path(__file__).parent / "apps" / "torch_app.py")], env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    broker.set_root_pid("g/pu", proc.pid)
    try:
        url, deadline = f"http://127.0.0.1:{port}/", time.time() + 180
        while True:
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.time() < deadline, (tmp_path / "app.log").read_text()[-3000:]
            time.sleep(0.5)
        token = sign(SECRET, Visitor(user="gpu-user", ip="203.0.113.7"), time.time())
        client = Client(url, headers={"X-IP-Token": token}, verbose=False)
        first = client.predict(1.0, api_name="/infer")
        second = client.predict(2.0, api_name="/infer")  # reuses the idle worker on the same device
        device, name, _ = first.split("|")
        assert device == "cuda:0" and name, first
        assert second.startswith("cuda:0|")
        assert broker.quota_for("user:gpu-user").used_s > 0
    finally:
        proc.terminate()
        proc.wait(20)
        tb.stop()
        log.close()
