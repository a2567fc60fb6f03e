"""Browser sessions are opaque and revocable; tokens can be listed and revoked (API, page, CLI), and a revoked
token is refused everywhere (the real-server part — git, the proxy — is in test_spaces_domain.py)."""

from __future__ import annotations

import hashlib
import subprocess
import sys

from sqlalchemy import select

from hub.store import BrowserSession
from tests.e2e.harness import ROOT
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
