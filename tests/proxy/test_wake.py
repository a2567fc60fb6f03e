"""Sleeping Spaces: a browser gets a page that turns into the app, an API request is held until the table
says the Space serves (or a bounded wait ends in 503 + Retry-After)."""

from __future__ import annotations

import threading
import time

import httpx

from core.routes import Route, RouteState
from tests.proxy.conftest import Env
from tests.waits import eventually

HOST = "a-b.spaces.test"


def sleeping() -> Route:
    return Route("a/b", "a-b", RouteState.SLEEPING)


def test_browser_gets_waking_page_and_status_polls(env: Env) -> None:
    env.update(env.table(sleeping()))
    r = httpx.get(f"http://127.0.0.1:{env.port}/", headers={"Host": HOST, "Accept": "text/html"}, timeout=5)
    assert r.status_code == 503 and "Waking up" in r.text and "/__spacehost/status" in r.text
    deadline = time.monotonic() + 2  # the hooks run on the proxy's loop, just after the page is written
    while not (env.hooks.wakes and env.hooks.activities) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert env.hooks.wakes == ["a/b"] and env.hooks.activities == ["a/b"]
    status = httpx.get(f"http://127.0.0.1:{env.port}/__spacehost/status", headers={"Host": HOST}, timeout=5)
    assert status.json()["state"] == "sleeping"
    env.update(env.table(env.serving("a/b")))
    status = httpx.get(f"http://127.0.0.1:{env.port}/__spacehost/status", headers={"Host": HOST}, timeout=5)
    assert status.json()["state"] == "serving"


def test_api_request_held_until_serving(env: Env) -> None:
    env.update(env.table(sleeping()))
    result: dict[str, object] = {}

    def call() -> None:
        t0 = time.monotonic()
        r = httpx.post(f"http://127.0.0.1:{env.port}/echo", headers={"Host": HOST}, content=b"held", timeout=10)
        result.update(status=r.status_code, body=r.json(), waited=time.monotonic() - t0)

    t = threading.Thread(target=call)
    t.start()
    eventually(lambda: env.hooks.wakes == ["a/b"], timeout=10, every=0.02)
    assert not result
    env.update(env.table(Route("a/b", "a-b", RouteState.STARTING)))  # still waking: keep holding
    time.sleep(0.3)  # no condition to wait on: the request must still be held after a while
    assert not result
    env.update(env.table(env.serving("a/b")))
    t.join(5)
    assert result["status"] == 200 and result["body"]["body_len"] == 4  # type: ignore[index]
    assert 0.3 < result["waited"] < 10  # type: ignore[operator]


def test_api_hold_is_bounded(env: Env) -> None:  # the env's wake_hold is 3 s
    env.update(env.table(sleeping()))
    t0 = time.monotonic()
    r = httpx.get(f"http://127.0.0.1:{env.port}/echo", headers={"Host": HOST}, timeout=10)
    assert r.status_code == 503 and r.headers["retry-after"]
    assert 2.5 < time.monotonic() - t0 < 5
