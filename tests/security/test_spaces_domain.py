"""`--spaces-domain D`: Spaces live at owner-name.D, never on the hub's site (as *.hf.space is apart from
huggingface.co), so no Space is same-site with the hub. And, on the same real server: a revoked token is
refused by the API, git and the proxy's private-Space auth."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator

import httpx
import pytest

from core.routes import Route, RouteState, RouteTable, Upstream
from tests.e2e.harness import Server, free_port
from tests.security.inprocess import InProcessHub, inproc, run

__all__ = ["inproc"]
SITE = Route("alice/site", "alice-site", RouteState.SERVING, Upstream("127.0.0.1", 1))
APART = RouteTable("hub.test", Upstream("127.0.0.1", 2), (SITE,), spaces_domain="spaces.test")
SHARED = RouteTable("hub.test", Upstream("127.0.0.1", 2), (SITE,))


@pytest.mark.parametrize(("table", "host", "expected"), [
    (APART, "alice-site.spaces.test:8080", SITE),
    (APART, "ALICE-SITE.spaces.test", SITE),
    (APART, "hub.test:8080", "hub"),
    (APART, "127.0.0.1:8080", "hub"),
    (APART, "alice-site.hub.test", None),  # the hub's site serves no Space
    (APART, "spaces.test", None),
    (APART, "x.alice-site.spaces.test", None),
    (SHARED, "alice-site.hub.test", SITE),  # without the flag, as before
    (SHARED, "alice-site.spaces.test", None),
], ids=["space", "case", "hub", "loopback", "hub-site-subdomain", "spaces-apex", "nested", "default", "default-other"])
def test_route_table_serves_spaces_on_their_own_domain(table: RouteTable, host: str, expected: object) -> None:
    assert table.resolve(host, 8080) == expected


def test_the_api_gives_spaces_domain_urls(inproc: InProcessHub) -> None:
    settings = inproc.hub.settings
    inproc.hub.settings = type(settings)(**{**settings.__dict__, "spaces_domain": "spaces.test"})
    try:
        _, token = inproc.user("carol")
        run(inproc.create_space(token, "carol/my_app"))

        async def info() -> dict[str, str]:
            async with inproc.client() as c:
                return (await c.get("/api/spaces/carol/my_app")).json()  # type: ignore[no-any-return]

        got = run(info())
        assert (got["host"], got["subdomain"]) == ("http://carol-my-app.spaces.test:80", "carol-my-app")
    finally:
        inproc.hub.settings = settings


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("spacehost"), free_port(), "hf_admin_" + secrets.token_hex(8),
                 extra_args=("--domain", "hub.test", "--spaces-domain", "spaces.test"))
    srv.start()
    yield srv
    srv.close()


def via_proxy(server: Server, host: str, path: str = "/", **headers: str) -> httpx.Response:
    """What curl --resolve (or a Host header to 127.0.0.1) gets: no DNS needed."""
    return httpx.get(f"{server.url}{path}", headers={"Host": f"{host}:{server.port}", **headers}, timeout=30)


def user_with_token(server: Server) -> tuple[str, str]:
    name = "u" + secrets.token_hex(3)
    with server.api() as c:
        c.post("/api/users", json={"name": name}).raise_for_status()
        r = c.post(f"/api/users/{name}/tokens", json={"displayName": "laptop"})
        r.raise_for_status()
        return name, str(r.json()["token"])


def static_space(server: Server, space_id: str, token: str, *, private: bool) -> None:
    name = space_id.split("/")[1]
    assert server.create_space(name, "static", private=private, token=token).status_code == 200
    assert server.push(space_id, {"index.html": f"<h1>{space_id}</h1>"}, token=token).returncode == 0
    server.wait_stage(space_id, {"RUNNING"}, timeout=120)


@pytest.mark.e2e
def test_spaces_are_served_on_the_spaces_domain_only(server: Server) -> None:
    user, token = user_with_token(server)
    static_space(server, f"{user}/site", token, private=False)
    on_own = via_proxy(server, f"{user}-site.spaces.test")
    assert on_own.status_code == 200 and f"{user}/site" in on_own.text
    assert via_proxy(server, f"{user}-site.hub.test").status_code == 404
    assert via_proxy(server, "hub.test", "/healthz").text == "ok"


@pytest.mark.e2e
def test_a_revoked_token_is_refused_by_api_git_and_proxy(server: Server) -> None:
    user, token = user_with_token(server)
    space = f"{user}/secret"
    static_space(server, space, token, private=True)
    host = f"{user}-secret.spaces.test"
    assert via_proxy(server, host, Authorization=f"Bearer {token}").status_code == 200
    assert via_proxy(server, host).status_code == 404
    with server.api(token) as c:
        listed = c.get("/api/settings/tokens").json()
        assert c.delete(f"/api/settings/tokens/{listed[0]['id']}").status_code == 200
        assert c.get("/api/whoami-v2").status_code == 401
    push = server.push(space, {"index.html": "pwned"}, token=token)
    assert push.returncode != 0 and ("401" in push.stderr or "Authentication failed" in push.stderr), push.stderr
    deadline = time.monotonic() + 15  # the proxy caches a token's user for 10 s
    while via_proxy(server, host, Authorization=f"Bearer {token}").status_code == 200:
        assert time.monotonic() < deadline, "the proxy still serves the private Space to a revoked token"
        time.sleep(0.5)
    assert via_proxy(server, host, Authorization=f"Bearer {token}").status_code == 404
