"""Issue 4 through a real `spacehost up`: a Gradio Space on `zero-a10g` that uses the unmodified `spaces`
package, pushed with git, sandboxed, reached through the proxy (which signs the X-IP-Token the package forwards)
and called by `gradio_client`; the pool is one declared device, so concurrent callers queue."""

from __future__ import annotations

import secrets
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import httpx
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from tests.e2e.harness import Server, free_port

# the module keeps its order: its last test restarts the module's server (modules still shuffle among themselves)
pytestmark = [pytest.mark.e2e, pytest.mark.random_order(disabled=True)]

APP = (Path(__file__).resolve().parents[1] / "zerogpu" / "apps" / "zero_app.py").read_text()


@dataclass
class ZeroSpace:
    server: Server
    space_id: str
    host: str
    user: str
    token: str

    def client(self, token: str | None) -> Client:
        return Client(self.host, token=token, verbose=False)


@pytest.fixture(scope="module")
def zero(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZeroSpace]:
    srv = Server(tmp_path_factory.mktemp("zerogpu-up"), free_port(), "hf_admin_" + secrets.token_hex(8),
                 extra_args=("--zerogpu-devices", "1", "--zerogpu-quota-anonymous", "5"))
    srv.start()
    try:
        sid = f"admin/zero-{secrets.token_hex(3)}"
        created = srv.create_space(sid.split("/")[1], hardware="zero-a10g")
        assert created.status_code == 200, f"{created.text}\n{srv.log_tail()}"
        pushed = srv.push(sid, {"app.py": APP, "requirements.txt": f"spaces=={version('spaces')}\n"})
        assert pushed.returncode == 0, f"{pushed.stderr}\n{srv.log_tail()}"
        with srv.api() as c:
            sha = c.get(f"/api/spaces/{sid}").json()["sha"]
            user = "gpu-" + secrets.token_hex(3)
            assert c.post("/api/users", json={"name": user}).status_code == 200
            token = c.post(f"/api/users/{user}/tokens", json={"role": "read"}).json()["token"]
        rt = srv.wait_stage(sid, {"RUNNING"}, after_sha=sha, timeout=400)
        assert rt["stage"] == "RUNNING", f"{rt}\n{srv.build_log(sid)[-3000:]}"
        yield ZeroSpace(srv, sid, srv.host(sid), user, token)
    finally:
        srv.close()


def test_concurrent_callers_share_one_device_and_are_charged_what_they_used(zero: ZeroSpace) -> None:
    clients = [zero.client(zero.token) for _ in range(2)]
    t0 = time.monotonic()
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda c: c.predict(1.5, api_name="/work"), clients))
    took = time.monotonic() - t0
    assert all(r.startswith("pid=") for r in results), results
    assert took >= 3.0, took  # one device: the second call waited for the first lease to end
    info = zero.server.runtime(zero.space_id)["zeroGpu"]
    assert isinstance(info, dict) and info["leases"] >= 2 and info["gpuSeconds"] >= 3.0 and info["poolDevices"] == 1
    assert info["deviceAccess"] == "devices cgroup"  # the Space's own devices cgroup denies unleased GPUs
    with httpx.Client(base_url=zero.server.url, headers={"Authorization": f"Bearer {zero.token}"}) as c:
        quota = c.get("/api/zerogpu/quota").json()
    assert quota["visitor"] == f"user:{zero.user}"
    assert 3.0 <= quota["used_s"] < 6.0, quota  # two 1.5 s calls: charged use, not the 2 x 10 s requested


def test_anonymous_visitor_over_quota_gets_the_message(zero: ZeroSpace) -> None:
    # anonymous quota is 5 s a day here; `work` asks for 10 s
    with pytest.raises(AppError, match=r"exceeded your (free )?ZeroGPU quota \(10s requested vs\. 5s left\)"):
        zero.client(None).predict(0.1, api_name="/work")


def test_overrunning_lease_is_ended(zero: ZeroSpace) -> None:
    t0 = time.monotonic()
    with pytest.raises(AppError, match="GPU task aborted"):  # asks 1 s, would take 20 s; ended after 1 s + 5 s grace
        zero.client(zero.token).predict(20, api_name="/overrun")
    assert time.monotonic() - t0 < 15
    assert zero.server.runtime(zero.space_id)["zeroGpu"]["activeLeases"] == 0


def test_space_keeps_its_gpu_after_spacehost_is_killed_and_restarted(zero: ZeroSpace) -> None:
    """Runs last (it restarts the module's server): the re-adopted Space keeps its device-API URL, so the broker
    must admit it again; its next `@spaces.GPU` call is granted, not refused as an unknown Space."""
    pid_before = zero.client(zero.token).predict(0.1, api_name="/work")
    zero.server.stop(signal.SIGKILL)
    zero.server.start()
    assert zero.server.wait_stage(zero.space_id, {"RUNNING"}, timeout=120)["stage"] == "RUNNING"
    deadline = time.monotonic() + 60
    while True:
        try:
            result = zero.client(zero.token).predict(0.1, api_name="/work")
            break
        except (httpx.HTTPError, ValueError, ConnectionError):
            assert time.monotonic() < deadline, zero.server.log_tail()
            time.sleep(0.5)
    assert result.startswith("pid="), result
    assert pid_before.startswith("pid=")
    assert zero.server.runtime(zero.space_id)["zeroGpu"]["leases"] >= 1
