"""Routing by host and port, and the pages for each route state."""

from __future__ import annotations

import socket

import httpx
import pytest

from core.routes import Route, RouteState
from proxy import RateLimit
from tests.proxy.conftest import Env, free_port
from tests.waits import eventually

HTML = {"Accept": "text/html,application/xhtml+xml"}


def get(env: Env, host: str, path: str = "/echo", **kw: object) -> httpx.Response:
    headers = {"Host": host, **kw.pop("headers", {})}  # type: ignore[dict-item]
    return httpx.get(f"http://127.0.0.1:{env.port}{path}", headers=headers, timeout=10, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("host", "status", "reaches"),
    [
        ("a-b.spaces.test", 200, "a/b"),
        ("A-B.Spaces.Test:8080", 200, "a/b"),
        ("spaces.test", 200, "hub"),
        ("www.example.org", 200, "a/b"),
        ("nobody-here.spaces.test", 404, None),
        ("other.example", 404, None),
    ],
    ids=["subdomain", "case-and-port", "hub", "custom-domain", "unknown-sub", "unknown-host"],
)
def test_host_routing(env: Env, host: str, status: int, reaches: str | None) -> None:
    env.update(env.table(env.serving("a/b", custom_domains=("www.example.org",))))
    r = get(env, host)
    assert r.status_code == status
    if reaches == "a/b":
        assert "x-ip-token" in dict(r.json()["headers"])
    elif reaches == "hub":
        assert "x-ip-token" not in dict(r.json()["headers"])
    else:
        assert "no Space here" in r.text


def port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_direct_port_opens_and_closes_with_the_table(env: Env) -> None:
    port = free_port()
    env.update(env.table(env.serving("a/b", direct_port=port)))
    # any Host: the port names the Space (it opens on the proxy's loop, soon after the swap)
    r = eventually(lambda: httpx.get(f"http://127.0.0.1:{port}/echo", timeout=5), timeout=10, every=0.05)
    assert r.status_code == 200 and "x-ip-token" in dict(r.json()["headers"])
    env.update(env.table())
    eventually(lambda: not port_open(port), timeout=10, every=0.05)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/echo", timeout=5)


@pytest.mark.parametrize(
    ("state", "browser", "status", "needle"),
    [
        (RouteState.STARTING, True, 503, "Starting"),
        (RouteState.STARTING, False, 503, "building"),
        (RouteState.STOPPED, True, 503, "paused by its owner"),
        (RouteState.STOPPED, False, 503, "paused by its owner"),
    ],
    ids=["starting-browser", "starting-api", "stopped-browser", "stopped-api"],
)
def test_state_pages(env: Env, state: RouteState, browser: bool, status: int, needle: str) -> None:
    message = "paused by its owner" if state is RouteState.STOPPED else ""
    env.update(env.table(Route("a/b", "a-b", state, message=message)))
    r = get(env, "a-b.spaces.test", "/", headers=HTML if browser else {})
    assert r.status_code == status and needle in r.text
    if state is RouteState.STARTING:
        assert r.headers["retry-after"]
    assert env.hooks.activities == []


def test_activity_reported_but_not_for_probes(env: Env) -> None:
    env.update(env.table(env.serving("a/b")))
    assert get(env, "a-b.spaces.test", headers={"X-Spacehost-Probe": "1"}).status_code == 200
    assert env.hooks.activities == []
    assert get(env, "a-b.spaces.test").status_code == 200
    assert env.hooks.activities == ["a/b"]


def test_upstream_down_is_502(env: Env) -> None:
    from core.routes import Upstream

    env.update(env.table(Route("a/b", "a-b", RouteState.SERVING, upstream=Upstream("127.0.0.1", free_port()))))
    r = get(env, "a-b.spaces.test")
    assert r.status_code == 502 and r.headers["retry-after"]


@pytest.mark.parametrize("env", [{"rate_limit": RateLimit(rate=1, burst=3)}], indirect=True, ids=["burst3"])
def test_rate_limit_per_ip(env: Env) -> None:
    env.update(env.table(env.serving("a/b")))
    codes = [get(env, "a-b.spaces.test").status_code for _ in range(5)]
    assert codes == [200, 200, 200, 429, 429]
