"""Credentials stay out of logs and open metrics.

- A signed iframe token (`?__sign=…`, a credential for a private Space) sent to the proxy is not written to the
  access log, on the Python path and on the fast lane's (a keep-alive GET, which the lane would take).
- The ZeroGPU broker's `/metrics` is reachable from every Space: it answers only an admin's token, and no label
  names a visitor (user or client IP).
A real `spacehost up` with `--access-log FILE` and one declared GPU serves both.
"""

from __future__ import annotations

import json
import secrets
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.harness import Server, free_port


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("logcreds")
    srv = Server(data, free_port(), "hf_admin_" + secrets.token_hex(8),
                 extra_args=("--access-log", str(data / "access.log"), "--zerogpu-devices", "1"))
    srv.start()
    yield srv
    srv.close()


def get_raw(port: int, host: str, target: str, keep_alive: bool) -> bytes:
    head = f"GET {target} HTTP/1.1\r\nHost: {host}\r\n" + ("Connection: keep-alive\r\n" if keep_alive else
                                                           "Connection: close\r\n") + "\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head.encode())
        return sock.recv(65536)


@pytest.mark.parametrize("keep_alive", [False, True], ids=["python-path", "fast-lane-candidate"])
def test_a_signed_token_never_reaches_the_access_log(server: Server, keep_alive: bool) -> None:
    name = f"priv-{int(keep_alive)}"
    assert server.create_space(name, sdk="static", private=True).status_code == 200
    token = "SIGNEDTOKEN" + secrets.token_hex(16)
    host = f"admin-{name}.localhost:{server.port}"
    answer = get_raw(server.port, host, f"/index.html?x=1&__sign={token}&y=2", keep_alive)
    assert answer.startswith(b"HTTP/1.1 ")
    log = server.data_dir / "access.log"
    deadline = time.monotonic() + 5  # the access log is written in batches, at least once a second
    while time.monotonic() < deadline and f"admin-{name}" not in (log.read_text() if log.exists() else ""):
        time.sleep(0.2)
    text = log.read_text()
    lines = [ln for ln in text.splitlines() if f"admin-{name}" in ln]
    assert lines, text[-2000:]
    assert token not in text and "__sign=REDACTED" in lines[-1] and "x=1" in lines[-1]


def broker_url(server: Server) -> str:
    ports = json.loads((server.data_dir / "ports.json").read_text())
    return f"http://127.0.0.1:{ports['zerogpu']}"


def user_token(server: Server, user: str) -> str:
    with server.api() as c:
        c.post("/api/users", json={"name": user})
        return str(c.post(f"/api/users/{user}/tokens", json={"role": "write"}).json()["token"])


def test_broker_metrics_refuse_anonymous_and_non_admin_callers(server: Server) -> None:
    url = broker_url(server)
    assert httpx.get(url + "/metrics").status_code == 401
    bob = user_token(server, "bob")
    assert httpx.get(url + "/metrics", headers={"Authorization": f"Bearer {bob}"}).status_code == 403
    assert httpx.get(url + "/metrics", headers={"Authorization": "Bearer hf_not_a_token"}).status_code == 403


def test_broker_metrics_serve_an_admin_without_visitor_labels(server: Server) -> None:
    r = httpx.get(broker_url(server) + "/metrics", headers={"Authorization": f"Bearer {server.token}"})
    assert r.status_code == 200 and "zerogpu_queue_wait_seconds_count" in r.text
    assert "visitor=" not in r.text and "ip=" not in r.text and "user=" not in r.text


def test_metrics_aggregate_visitors_into_tiers() -> None:
    from zerogpu.metrics import Metrics, render

    m = Metrics()
    for i in range(50):
        m.charge("a/space", f"ip:10.0.0.{i}", 1.0, 0.0)
        m.charge("a/space", f"user:u{i}", 2.0, 0.0)
    text = render(m, {}, None)
    assert "10.0.0." not in text and "u49" not in text
    assert 'zerogpu_tier_gpu_seconds_total{tier="anonymous"} 50.000' in text
    assert 'zerogpu_tier_gpu_seconds_total{tier="signed-in"} 100.000' in text
