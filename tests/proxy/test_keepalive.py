"""One keep-alive client connection, many requests: the proxy reuses that connection's upstream socket and its
last decision for plain requests, and everything that must change per request still does."""

from __future__ import annotations

import time
from dataclasses import replace

import httpx
import pytest

from core import iptoken
from core.routes import RouteState
from proxy import Limits
from proxy.pages import STATUS_PATH
from tests.proxy.conftest import SECRET, Env

HOST = "alice-app.spaces.test"


def client(env: Env) -> httpx.Client:
    return httpx.Client(base_url=f"http://127.0.0.1:{env.port}", headers={"Host": HOST}, timeout=5)


def test_requests_of_one_connection_share_one_upstream_connection(env: Env) -> None:
    env.update(env.table(env.serving("alice/app", headers=(("Cross-Origin-Opener-Policy", "same-origin"),))))
    with client(env) as c:
        replies = [c.get("/echo") for _ in range(5)]
    assert len({r.json()["peer_port"] for r in replies}) == 1 and replies[0].json()["peer_port"]
    for r in replies:  # every request still gets the proxy's headers and every response the Space's
        headers = dict(r.json()["headers"])
        assert headers["x-forwarded-for"] == "127.0.0.1" and headers["x-forwarded-host"] == HOST
        assert iptoken.verify(SECRET, headers["x-ip-token"], time.time()) is not None
        assert r.headers["cross-origin-opener-policy"] == "same-origin"


@pytest.mark.parametrize(
    ("state", "status"),
    [(RouteState.STOPPED, 503), (RouteState.STARTING, 503)],
    ids=["stopped", "starting"],
)
def test_table_swap_applies_to_the_next_request_on_a_connection(env: Env, state: RouteState, status: int) -> None:
    serving = env.serving("alice/app")
    env.update(env.table(serving))
    with client(env) as c:
        assert c.get("/echo").status_code == 200
        env.update(env.table(replace(serving, state=state, upstream=None)))
        assert c.get("/echo").status_code == status
        env.update(env.table(serving))
        assert c.get("/echo").status_code == 200


@pytest.mark.parametrize(
    ("headers", "seen"),
    [
        ({"Cookie": "spacehost_session=hub-secret; theme=dark"}, {"cookie": "theme=dark"}),
        ({"Authorization": "Bearer tok-alice"}, {"authorization": None}),
        ({"X-IP-Token": "forged", "X-Forwarded-For": "6.6.6.6"}, {"x-forwarded-for": "127.0.0.1"}),
    ],
    ids=["hub-cookie", "hub-token", "spoofed-proxy-headers"],
)
def test_request_with_credentials_after_a_plain_one(env: Env, headers: dict[str, str],
                                                    seen: dict[str, str | None]) -> None:
    env.update(env.table(env.serving("alice/app")))
    with client(env) as c:
        assert c.get("/echo").status_code == 200
        got = dict(c.get("/echo", headers=headers).json()["headers"])
    for name, value in seen.items():
        assert got.get(name) == value
    assert got["x-ip-token"] != "forged"


def test_private_space_on_one_connection(env: Env) -> None:
    env.update(env.table(env.serving("alice/secret", private=True)))
    with httpx.Client(base_url=f"http://127.0.0.1:{env.port}", timeout=5,
                      headers={"Host": "alice-secret.spaces.test"}) as c:
        assert c.get("/echo").status_code == 404
        assert c.get("/echo", headers={"Authorization": "Bearer tok-alice"}).status_code == 200
        assert c.get("/echo").status_code == 404


def test_status_path_after_a_plain_request_is_the_proxys(env: Env) -> None:
    env.update(env.table(env.serving("alice/app")))
    with client(env) as c:
        assert c.get("/echo").status_code == 200
        assert c.get(STATUS_PATH).json() == {"state": "serving", "message": ""}


@pytest.mark.parametrize("env", [{"limits": Limits(header_timeout=1.0, wake_hold=3.0, pool_idle=0.3)}],
                         indirect=True, ids=["pool-idle-0.3s"])
def test_upstream_connection_idle_past_pool_idle_is_not_reused(env: Env) -> None:
    env.update(env.table(env.serving("alice/app")))
    with client(env) as c:
        first = c.get("/echo").json()["peer_port"]
        assert c.get("/echo").json()["peer_port"] == first
        time.sleep(1.5)  # the sweeper runs every second
        assert c.get("/echo").json()["peer_port"] != first
