"""CSRF: every write the hub accepts with the browser session cookie is refused when a browser sends it from
anywhere but the hub's own pages, or with a body type its endpoint does not expect; the hub's own pages
still work, and programs with a Bearer token are untouched."""

from __future__ import annotations

import base64
import importlib
import json
import pkgutil
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from fastapi.routing import APIRoute

import hub.api
from core.ids import SpaceId
from hub import pages
from hub.app import create_app
from tests.security.inprocess import HUB, Browser, InProcessHub, inproc, run

__all__ = ["inproc"]
SAFE = {"GET", "HEAD", "OPTIONS"}
GIT_WRITES = [("POST", "/spaces/{owner}/{name}/git-receive-pack"), ("POST", "/spaces/{owner}/{name}.git/git-upload-pack")]


def _unsafe_routes() -> list[tuple[str, str]]:
    """Every (method, path) of the hub that is not a read: the API routers, the pages, git's writes."""
    routers = [importlib.import_module(f"hub.api.{m.name}").router for m in pkgutil.iter_modules(hub.api.__path__)
               if hasattr(importlib.import_module(f"hub.api.{m.name}"), "router")]
    found = {(method, r.path) for router in [*routers, pages.router] for r in router.routes
             if isinstance(r, APIRoute) for method in (r.methods or set()) - SAFE}
    return sorted(found) + GIT_WRITES


UNSAFE = _unsafe_routes()
# Another site; a Space on the hub's own site (same-site, as alice-app.hub.test is); a browser or privacy proxy
# that sends neither Origin nor Sec-Fetch-Site.
ATTACKERS = {
    "evil-site": {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
    "space-same-site": {"Origin": "http://alice-app.hub.test", "Sec-Fetch-Site": "same-site"},
    "origin-null": {"Origin": "null", "Sec-Fetch-Site": "cross-site"},
    "no-origin-headers": {},
}


def concrete(path: str, token_id: int) -> str:
    values = {"owner": "alice", "name": "app", "revision": "main", "org": "acme", "user": "bob",
              "token_id": str(token_id)}
    # any other path parameter (routes added later) gets a plain value: the guard refuses before any route runs
    return re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: values.get(m.group(1), "x1"), path)


@pytest.fixture(scope="module")
def world(inproc: InProcessHub) -> Iterator[dict[str, object]]:
    """alice (write token, a public Space alice/app, org acme), bob; alice's browser signed in on the hub."""
    _, token = inproc.user("alice", token_name="laptop")
    inproc.user("bob")
    inproc.hub.accounts.create("acme", kind="org")
    inproc.hub.accounts.set_member("acme", "alice", "admin")
    run(inproc.create_space(token, "alice/app"))
    token_id = inproc.hub.accounts.tokens("alice")[0].id
    yield {"token": token, "token_id": token_id}


@asynccontextmanager
async def signed_in(inproc: InProcessHub, token: str, origin: str = HUB) -> AsyncIterator[Browser]:
    """A browser signed in on the hub's page, then on a page of `origin` that sends requests to the hub."""
    async with inproc.client() as c:
        b = Browser(c, HUB)
        r = await b.sign_in(token)
        assert r.status_code == 303 and "spacehost_session" in c.cookies, r.text
        b.origin = origin
        yield b


def test_the_table_covers_every_write_the_app_serves(inproc: InProcessHub) -> None:
    def walk(routes: list[Any]) -> Iterator[APIRoute]:
        for r in routes:
            if isinstance(r, APIRoute):
                yield r
            elif hasattr(r, "original_router"):  # FastAPI's included routers
                yield from walk(r.original_router.routes)

    served = {(m, r.path) for r in walk(create_app(inproc.hub).routes) for m in (r.methods or set()) - SAFE}
    assert served <= set(UNSAFE) and len(served) >= 30


@pytest.mark.parametrize("attacker", list(ATTACKERS))
@pytest.mark.parametrize(("method", "path"), UNSAFE, ids=[f"{m} {p}" for m, p in UNSAFE])
def test_cookie_write_from_elsewhere_is_refused(inproc: InProcessHub, world: dict[str, object], method: str,
                                                path: str, attacker: str) -> None:
    async def attack() -> None:
        async with signed_in(inproc, str(world["token"])) as b:
            # A <form enctype=text/plain> or a no-cors fetch: the two bodies a page elsewhere can send.
            r = await b.client.request(method, concrete(path, int(str(world["token_id"]))),
                                       content=b'{"repository": "mallory/stolen", "private": false}',
                                       headers={"Content-Type": "text/plain", **ATTACKERS[attacker]})
        assert r.status_code == 403, (r.status_code, r.text)
        assert "cross-site request refused" in r.json()["error"]

    run(attack())


@pytest.mark.parametrize(("method", "path"), UNSAFE, ids=[f"{m} {p}" for m, p in UNSAFE])
def test_cookie_write_with_a_form_body_type_is_refused_even_same_origin(
        inproc: InProcessHub, world: dict[str, object], method: str, path: str) -> None:
    """A same-origin page sends the type its endpoint expects; text/plain is what a forged form sends."""
    async def attack() -> None:
        async with signed_in(inproc, str(world["token"])) as b:
            r = await b.client.request(method, concrete(path, int(str(world["token_id"]))), content=b"{}",
                                       headers=b.headers(**{"Content-Type": "text/plain"}))
        assert r.status_code == 403, (r.status_code, r.text)
        assert "must send Content-Type" in r.json()["error"]

    run(attack())


def test_forged_commit_and_duplicate_change_nothing(inproc: InProcessHub, world: dict[str, object]) -> None:
    """The two attacks of the issue: a text/plain commit to main, a duplicate of a private Space to public."""
    async def attack() -> None:
        token = str(world["token"])
        await inproc.create_space(token, "alice/secret-app", private=True)
        head = inproc.hub.repos.head(SpaceId("alice", "app"))  # the hub's own pages may have committed before
        header = json.dumps({"key": "header", "value": {"summary": "pwned"}})
        file = json.dumps({"key": "file", "value": {"path": "app.py", "encoding": "base64",
                                                    "content": base64.b64encode(b"evil").decode()}})
        async with signed_in(inproc, token, origin="https://evil.example") as b:
            commit = await b.client.post("/api/spaces/alice/app/commit/main", content=f"{header}\n{file}\n",
                                         headers=b.headers(**{"Content-Type": "text/plain"}))
            dup = await b.client.post("/api/spaces/alice/secret-app/duplicate",
                                      content=json.dumps({"repository": "alice/leak", "private": False}),
                                      headers=b.headers(**{"Content-Type": "text/plain"}))
        assert (commit.status_code, dup.status_code) == (403, 403)
        assert inproc.hub.repos.head(SpaceId("alice", "app")) == head
        assert inproc.hub.store.get_space("alice/leak") is None

    run(attack())


def test_the_hubs_own_pages_can_write(inproc: InProcessHub, world: dict[str, object]) -> None:
    """Same-origin, with the endpoint's own body type: secrets, settings, an NDJSON commit, a duplicate, a
    bodyless restart; Origin alone or Sec-Fetch-Site alone is enough."""
    async def own_pages() -> None:
        header = json.dumps({"key": "header", "value": {"summary": "from the browser"}})
        file = json.dumps({"key": "file", "value": {"path": "index.html", "encoding": "base64",
                                                    "content": base64.b64encode(b"<h1>hi</h1>").decode()}})
        async with signed_in(inproc, str(world["token"])) as b:
            c = b.client
            ok = [
                await c.post("/api/spaces/alice/app/secrets", json={"key": "K", "value": "v"}, headers=b.headers()),
                await c.put("/api/spaces/alice/app/settings", json={"private": False},
                            headers={"Origin": HUB}),
                await c.post("/api/spaces/alice/app/commit/main", content=f"{header}\n{file}\n",
                             headers={"Sec-Fetch-Site": "same-origin", "Content-Type": "application/x-ndjson"}),
                await c.post("/api/spaces/alice/app/duplicate", json={"repository": "alice/app-copy"},
                             headers=b.headers()),
                await c.post("/api/spaces/alice/app/restart", headers=b.headers()),
            ]
        assert [r.status_code for r in ok] == [200] * len(ok), [r.text for r in ok]
        space = inproc.hub.store.get_space("alice/app")
        assert space is not None and set(inproc.hub.store.kv(space.id, "secret")) == {"K"}
        assert inproc.hub.store.get_space("alice/app-copy") is not None

    run(own_pages())


def test_programs_with_a_bearer_token_are_untouched(inproc: InProcessHub, world: dict[str, object]) -> None:
    """No Origin, no Sec-Fetch-Site, any body type: the token in the header is not ambient."""
    async def program() -> None:
        async with inproc.client(Authorization=f"Bearer {world['token']}") as c:
            restart = await c.post("/api/spaces/alice/app/restart", content=b"", headers={"Content-Type": "text/plain"})
            yaml = await c.post("/api/validate-yaml", content=json.dumps({"content": "---\ntitle: x\n---\n"}),
                                headers={"Content-Type": "text/plain"})
        assert (restart.status_code, yaml.status_code) == (200, 200), (restart.text, yaml.text)

    run(program())


def test_git_writes_with_basic_credentials_need_gits_body_type(inproc: InProcessHub,
                                                                world: dict[str, object]) -> None:
    """A browser replays Basic credentials it was once challenged for: a forged form cannot send git's type."""
    async def attack() -> None:
        basic = "Basic " + base64.b64encode(f"alice:{world['token']}".encode()).decode()
        async with inproc.client(Authorization=basic) as c:
            forged = await c.post("/spaces/alice/app/git-receive-pack", content=b"0000",
                                  headers={"Content-Type": "text/plain", "Origin": "https://evil.example"})
            real = await c.post("/spaces/alice/app/git-upload-pack", content=b"0000",
                                headers={"Content-Type": "application/x-git-upload-pack-request"})
        assert forged.status_code == 403 and "git-receive-pack-request" in forged.json()["error"]
        assert real.status_code == 200, real.text

    run(attack())


def test_sign_in_from_another_site_is_refused(inproc: InProcessHub, world: dict[str, object]) -> None:
    """Login CSRF: a page elsewhere signing the victim in as the attacker."""
    async def attack() -> None:
        async with inproc.client() as c:
            r = await c.post("/login", data={"token": str(world["token"])},
                             headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"})
        assert r.status_code == 403 and "spacehost_session" not in r.headers.get("set-cookie", "")

    run(attack())
