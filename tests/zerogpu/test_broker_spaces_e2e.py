"""The unmodified `spaces` package against the broker: a real Gradio app with `@spaces.GPU` functions,
called by several `gradio_client` clients at once, each with its own signed X-IP-Token."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from core.iptoken import Visitor, sign
from tests.zerogpu.harness import ThreadedBroker, free_port
from zerogpu.broker import Broker
from zerogpu.policy import PolicyConfig
from zerogpu.pool import declared_pool
from zerogpu.quota import Limits

pytestmark = pytest.mark.e2e
SECRET = b"zerogpu-e2e-secret-of-32-bytes-or-more"
APP = Path(__file__).parent / "apps" / "zero_app.py"
SPACE = "alice/zero"


class Zero:
    def __init__(self, broker: Broker, app_url: str) -> None:
        self.broker, self.app_url = broker, app_url

    def client(self, user: str) -> Client:
        token = sign(SECRET, Visitor(user=user, ip="203.0.113.9"), time.time())
        return Client(self.app_url, headers={"X-IP-Token": token}, verbose=False)


@pytest.fixture(scope="module")
def zero(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Zero]:
    tmp = tmp_path_factory.mktemp("zerogpu")
    broker = Broker(declared_pool(2), SECRET, limits=Limits(overrides={"user:poor": 5}),
                    config=PolicyConfig(space_concurrency=2, queue_timeout_s=3, grace_s=1), state_dir=tmp)
    tb = ThreadedBroker(broker, ping_s=0.5, tick_s=0.1).start()
    port = free_port()
    env = {**os.environ, "SPACES_ZERO_GPU": "true", "SPACES_ZERO_DEVICE_API_URL": tb.server.register_space(SPACE),
           "GRADIO_SERVER_PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_ANALYTICS_ENABLED": "False",
           "HOME": str(tmp)}
    log = (tmp / "app.log").open("w")
    proc = subprocess.Popen([sys.executable, str(APP)], env=env, stdout=log, stderr=subprocess.STDOUT)
    broker.set_root_pid(SPACE, proc.pid)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 60
    while True:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            tb.stop()
            pytest.fail(f"app did not start:\n{(tmp / 'app.log').read_text()[-3000:]}")
        time.sleep(0.2)
    try:
        yield Zero(broker, url)
    finally:
        proc.terminate()
        proc.wait(10)
        tb.stop()
        log.close()


def test_more_callers_than_devices_queue_and_all_get_a_gpu(zero: Zero) -> None:
    clients = [zero.client(f"u{i}") for i in range(3)]
    waits_before = zero.broker.metrics.wait_count
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda c: c.predict(1.5, api_name="/work"), clients))
    assert all(r.startswith("pid=") for r in results)
    assert zero.broker.metrics.wait_count - waits_before == 3
    assert max(list(zero.broker.metrics.recent_waits)[-3:]) >= 0.4  # the third caller waited for a device
    assert zero.broker.queue_size() == 0 and zero.broker.space_summary(SPACE)["activeLeases"] == 0


def test_quota_is_charged_for_time_used_not_requested(zero: Zero) -> None:
    zero.client("thrifty").predict(0.5, api_name="/work")  # requests 10 s, uses about 0.5 s
    used = zero.broker.quota_for("user:thrifty").used_s
    assert 0.4 <= used < 3.0


def test_quota_exceeded_message_reaches_the_client(zero: Zero) -> None:
    with pytest.raises(AppError, match=r"exceeded your free ZeroGPU quota \(10s requested vs\. 5s left\)"):
        zero.client("poor").predict(0.1, api_name="/work")


def test_queue_timeout_fails_the_waiting_caller(zero: Zero) -> None:
    hogs = [zero.client("hog1"), zero.client("hog2")]
    late = zero.client("late")
    with ThreadPoolExecutor(2) as pool:
        running = [pool.submit(c.predict, 5, api_name="/work") for c in hogs]
        time.sleep(1.0)
        with pytest.raises(AppError, match="No GPU was available after"):
            late.predict(0.1, api_name="/work")
        assert all(f.result().startswith("pid=") for f in running)
    assert zero.broker.metrics.outcomes["queue-timeout"] >= 1


def test_lease_past_its_duration_is_ended_and_its_worker_killed(zero: Zero) -> None:
    t0 = time.monotonic()
    with pytest.raises(AppError, match="GPU task aborted"):
        zero.client("greedy").predict(8, api_name="/overrun")  # asks 1 s, would take 8 s
    assert time.monotonic() - t0 < 6
    assert zero.broker.metrics.outcomes["expired"] >= 1
    assert zero.broker.quota_for("user:greedy").used_s <= 1.0  # charged the requested second, no more
