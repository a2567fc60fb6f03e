"""Browser sessions are opaque and revocable; tokens can be listed and revoked (API, page, CLI), and a revoked
token is refused everywhere (the real-server part — git, the proxy — is in test_spaces_domain.py). A private
Space's proxy cookie dies with the token or browser session that minted it, within seconds (real server)."""

from __future__ import annotations

import contextlib
import hashlib
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import select

from hub.store import BrowserSession
from tests.e2e.harness import ROOT, Server, free_port
from tests.security.inprocess import HUB, Browser, InProcessHub, inproc, run

__all__ = ["inproc"]
ORIGIN = {"Origin": HUB, "Sec-Fetch-Site": "same-origin"}


def test_session_cookie_is_an_opaque_revocable_id(inproc: InProcessHub) -> None:
    user, token = inproc.user(token_name="laptop")

    async def scenario() -> None:
        async with inproc.client() as c:
            r = await Browser(c).sign_in(token)
            cookie = r.headers["set-cookie"]
            session_id = c.cookies["spacehost_session"]
            assert token not in cookie and session_id.startswith("sh_") and len(session_id) > 40
            attrs = {a.strip().split("=")[0].lower() for a in cookie.split(";")}
            assert {"httponly", "samesite", "path", "max-age"} <= attrs and "samesite=lax" in cookie.lower()
            assert "secure" not in attrs  # plain HTTP here; under TLS see the next test
            with inproc.hub.store.session() as s:
                digests = set(s.scalars(select(BrowserSession.digest)))
            assert hashlib.sha256(session_id.encode()).hexdigest() in digests and session_id not in digests
            assert (await c.get("/api/whoami-v2")).json()["name"] == user
            out = await c.post("/logout", headers=ORIGIN)
            assert out.status_code == 303 and "spacehost_session" not in c.cookies
        async with inproc.client() as replay:  # a copy of the cookie taken before sign-out is worthless
            replay.cookies.set("spacehost_session", session_id)
            assert (await replay.get("/api/whoami-v2")).status_code == 401
        async with inproc.client() as raw:  # and the token is no session id
            raw.cookies.set("spacehost_session", token)
            assert (await raw.get("/api/whoami-v2")).status_code == 401

    run(scenario())


def test_session_cookie_is_secure_under_tls(inproc: InProcessHub) -> None:
    _, token = inproc.user()
    inproc.hub.settings = type(inproc.hub.settings)(**{**inproc.hub.settings.__dict__, "tls": "self-signed"})
    try:
        async def scenario() -> str:
            async with inproc.client() as c:
                c.base_url = c.base_url.copy_with(scheme="https")
                r = await c.post("/login", data={"token": token}, headers={"Origin": "https://hub.test"})
                return r.headers["set-cookie"]
        assert "secure" in {a.strip().lower() for a in run(scenario()).split(";")}
    finally:
        inproc.hub.settings = type(inproc.hub.settings)(**{**inproc.hub.settings.__dict__, "tls": None})


def test_revoking_a_token_ends_its_sessions_and_gets_401(inproc: InProcessHub) -> None:
    user, laptop = inproc.user(token_name="laptop")
    ci = inproc.hub.accounts.create_token(user, display_name="ci")

    async def scenario() -> None:
        async with inproc.client() as browser, inproc.client(Authorization=f"Bearer {ci}") as program:
            await Browser(browser).sign_in(laptop)
            listed = (await program.get("/api/settings/tokens")).json()
            assert [(t["name"], t["current"]) for t in listed] == [("laptop", False), ("ci", True)]
            assert all(set(t) == {"id", "name", "role", "createdAt", "current"} for t in listed)
            laptop_id = listed[0]["id"]
            assert (await program.delete(f"/api/settings/tokens/{laptop_id}")).json()["name"] == "laptop"
            assert (await browser.get("/api/whoami-v2")).status_code == 401  # its session went with it
            async with inproc.client(Authorization=f"Bearer {laptop}") as revoked:
                r = await revoked.get("/api/whoami-v2")
                assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")

    run(scenario())


def test_a_read_token_revokes_itself_only(inproc: InProcessHub) -> None:
    user, _ = inproc.user(token_name="write")
    read = inproc.hub.accounts.create_token(user, role="read", display_name="read")
    ids = {t.display_name: t.id for t in inproc.hub.accounts.tokens(user)}

    async def scenario() -> None:
        async with inproc.client(Authorization=f"Bearer {read}") as c:
            assert (await c.delete(f"/api/settings/tokens/{ids['write']}")).status_code == 403
            assert (await c.delete(f"/api/settings/tokens/{ids['read']}")).status_code == 200
            assert (await c.get("/api/settings/tokens")).status_code == 401

    run(scenario())


def test_the_tokens_page_lists_and_revokes(inproc: InProcessHub) -> None:
    user, laptop = inproc.user(token_name="laptop")
    inproc.hub.accounts.create_token(user, display_name="old-ci")
    old_ci = next(t.id for t in inproc.hub.accounts.tokens(user) if t.display_name == "old-ci")

    async def scenario() -> None:
        async with inproc.client() as c:
            await Browser(c).sign_in(laptop)
            page = (await c.get("/settings/tokens")).text
            assert "old-ci" in page and "laptop" in page and f'action="/settings/tokens/{old_ci}/revoke"' in page
            r = await c.post(f"/settings/tokens/{old_ci}/revoke", headers=ORIGIN)
            assert (r.status_code, r.headers["location"]) == (303, "/settings/tokens")
            assert [t.display_name for t in inproc.hub.accounts.tokens(user)] == ["laptop"]
            own = inproc.hub.accounts.tokens(user)[0].id  # revoking the session's own token signs it out
            r = await c.post(f"/settings/tokens/{own}/revoke", headers=ORIGIN)
            assert r.headers["location"] == "/login" and (await c.get("/api/whoami-v2")).status_code == 401

    run(scenario())


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "spacehost.cli", *args], check=False, cwd=ROOT, capture_output=True, text=True,
                          timeout=60)


def test_cli_lists_and_revokes_tokens(inproc: InProcessHub) -> None:
    user, token = inproc.user(token_name="deploy")
    inproc.hub.accounts.create_token(user, display_name="twin")
    inproc.hub.accounts.create_token(user, display_name="twin")
    data = str(inproc.hub.settings.data_dir)
    listing = cli("token", "list", user, "--data-dir", data)
    assert listing.returncode == 0 and token not in listing.stdout
    assert [ln.split("\t")[1] for ln in listing.stdout.splitlines()] == ["deploy", "twin", "twin"]
    ambiguous = cli("token", "revoke", user, "twin", "--data-dir", data)
    assert ambiguous.returncode == 1 and "revoke one by id" in ambiguous.stderr
    twin_id = listing.stdout.splitlines()[1].split("\t")[0]
    assert cli("token", "revoke", user, twin_id, "--data-dir", data).returncode == 0
    assert cli("token", "revoke", user, "deploy", "--data-dir", data).returncode == 0
    assert [t.display_name for t in inproc.hub.accounts.tokens(user)] == ["twin"]

    async def api() -> int:
        async with inproc.client(Authorization=f"Bearer {token}") as c:
            return (await c.get("/api/whoami-v2")).status_code

    assert run(api()) == 401


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("spacehost"), free_port(), "hf_admin_" + secrets.token_hex(8))
    srv.start()
    yield srv
    srv.close()


def private_static_space(server: Server) -> tuple[str, str, str]:
    """(user, their token, the Space's host) of a new user's running private static Space."""
    user = "u" + secrets.token_hex(3)
    with server.api() as c:
        c.post("/api/users", json={"name": user}).raise_for_status()
        token = str(c.post(f"/api/users/{user}/tokens", json={"displayName": "laptop"}).json()["token"])
    sid = f"{user}/secret"
    assert server.create_space("secret", "static", private=True, token=token).status_code == 200
    assert server.push(sid, {"index.html": "<h1>private</h1>"}, token=token).returncode == 0
    server.wait_stage(sid, {"RUNNING"}, timeout=120)
    return user, token, f"{user}-secret.localhost:{server.port}"


@contextlib.contextmanager
def signed_in(server: Server, token: str) -> Iterator[httpx.Client]:
    """A browser signed in to the hub with `token` (a session cookie)."""
    with httpx.Client(base_url=server.url, timeout=30) as browser:
        r = browser.post("/login", data={"token": token}, headers={"Origin": server.url})
        assert r.status_code == 303 and "spacehost_session" in browser.cookies
        yield browser


def space_cookie(server: Server, browser: httpx.Client, sid: str, host: str) -> str:
    """What a browser does: the Space page's iframe URL (`__sign`), traded at the proxy for the Space cookie."""
    sign = re.search(r"__sign=([A-Za-z0-9._-]+)", browser.get(f"/spaces/{sid}").text)
    assert sign, "no signed iframe URL on the private Space's page"
    r = httpx.get(f"{server.url}/?__sign={sign.group(1)}", headers={"Host": host, "Accept": "text/html"})
    assert r.status_code == 302, r.text
    return r.headers["set-cookie"].split(";", 1)[0]


def refused_within(server: Server, host: str, cookie: str, bound_s: float) -> float:
    """Seconds until the proxy refuses the cookie (404, as for a Space one may not see); fails past `bound_s`."""
    t0 = time.monotonic()
    while (r := httpx.get(f"{server.url}/", headers={"Host": host, "Cookie": cookie})).status_code == 200:
        assert time.monotonic() - t0 < bound_s, f"the Space cookie still opens the private Space after {bound_s}s"
        time.sleep(0.1)
    assert r.status_code == 404, r.text
    return time.monotonic() - t0


@pytest.mark.e2e
def test_a_space_cookie_dies_with_its_revoked_token(server: Server) -> None:
    user, token, host = private_static_space(server)
    with signed_in(server, token) as browser:
        cookie = space_cookie(server, browser, f"{user}/secret", host)
    opened = httpx.get(f"{server.url}/", headers={"Host": host, "Cookie": cookie})
    assert opened.status_code == 200 and "private" in opened.text
    # the operator's revocation, straight into the store the running server reads
    assert cli("token", "revoke", user, "laptop", "--data-dir", str(server.data_dir)).returncode == 0
    refused_within(server, host, cookie, bound_s=5.0)  # the proxy asks again every 2 s


@pytest.mark.e2e
def test_a_space_cookie_dies_with_its_signed_out_session(server: Server) -> None:
    user, token, host = private_static_space(server)
    with signed_in(server, token) as browser:
        cookie = space_cookie(server, browser, f"{user}/secret", host)
        assert httpx.get(f"{server.url}/", headers={"Host": host, "Cookie": cookie}).status_code == 200
        assert browser.post("/logout", headers={"Origin": server.url}).status_code == 303
    refused_within(server, host, cookie, bound_s=5.0)
    with server.api(token) as c:  # the token itself was not revoked: only what the session minted died
        assert c.get("/api/whoami-v2").status_code == 200
