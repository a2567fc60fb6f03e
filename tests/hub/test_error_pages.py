"""Error pages: a browser that opens a missing Space, a private one it may not see, a page it may not use, an
address with no page, or hits a server bug gets a page in the site's layout with the status kept and a way home
(and to sign in); API clients, git and the pages' own fetch() calls keep getting the JSON or plain text they
parse today (huggingface_hub maps them to its errors)."""

from __future__ import annotations

import httpx
import pytest
from huggingface_hub import HfApi
from huggingface_hub.errors import RepositoryNotFoundError

from hub.app import create_app
from hub.web.errors import wants_html
from tests.hub.conftest import LiveHub
from tests.security.inprocess import HUB, Browser, InProcessHub, inproc, run

__all__ = ["inproc"]
BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"


@pytest.mark.parametrize(("path", "accept", "html"), [
    ("/spaces/a/b", BROWSER, True),
    ("/organizations/x", BROWSER, True),
    ("/no/such/page", BROWSER, True),
    ("/spaces/a/b", "*/*", False),  # huggingface_hub, curl, fetch()
    ("/spaces/a/b", "application/json", False),
    ("/api/spaces/a/b", BROWSER, False),
    ("/spaces/a/b.git/info/refs", BROWSER, False),
    ("/spaces/a/b/info/refs", BROWSER, False),
    ("/spaces/a/b.git/info/lfs/objects/batch", BROWSER, False),
    ("/static/app.css", BROWSER, False),
    ("/spaces/a/b/status-stream", "text/event-stream", False),
], ids=["space", "org", "no-route", "any-client", "json-client", "api-path", "git", "git-no-suffix", "lfs",
        "static", "sse"])
def test_who_gets_a_page(path: str, accept: str, html: bool) -> None:
    assert wants_html(path, accept) is html


def page_of(r: httpx.Response) -> str:
    assert r.headers["content-type"].startswith("text/html"), (r.status_code, r.headers, r.text[:200])
    assert '<a class="brand" href="/">' in r.text and 'href="/"' in r.text  # the site's layout, a way home
    return r.text


def test_browser_gets_pages_and_clients_keep_json(inproc: InProcessHub) -> None:
    owner, token = inproc.user()
    _, stranger = inproc.user()
    run(inproc.create_space(token, f"{owner}/secret", private=True))
    run(inproc.create_space(token, f"{owner}/open"))

    async def go() -> None:
        async with inproc.client(Accept=BROWSER) as anon:
            r = await anon.get(f"/spaces/{owner}/missing")
            assert r.status_code == 404 and r.headers["x-error-code"] == "RepoNotFound"
            text = page_of(r)
            assert f"Space {owner}/missing not found" in text
            assert f'href="/login?next=/spaces/{owner}/missing"' in text  # signed out: a way to sign in
            private = await anon.get(f"/spaces/{owner}/secret")
            assert private.status_code == 404 and f"Space {owner}/secret not found" in page_of(private)
            nowhere = await anon.get("/no/such/page")
            assert nowhere.status_code == 404 and "There is no page at this address" in page_of(nowhere)
        async with inproc.client(Accept=BROWSER) as c:
            tab = Browser(c)
            assert (await tab.sign_in(stranger)).status_code == 303
            r = await c.get(f"/spaces/{owner}/secret")
            assert r.status_code == 404 and "/login?next" not in page_of(r)  # signed in: no sign-in link
            r = await c.get(f"/spaces/{owner}/open/settings")
            assert r.status_code == 403 and "Only members with write access" in page_of(r)
            r = await c.get("/organizations/no-such-org")
            assert r.status_code == 404 and "no organization" in page_of(r)
            # The pages' own fetch() calls (Accept */*) and any /api/ path stay JSON, with the HF headers.
            r = await c.get(f"/api/spaces/{owner}/secret")
            assert r.status_code == 404 and r.headers["x-error-code"] == "RepoNotFound"
            assert r.json()["error"].startswith("Repository Not Found")
            r = await c.get(f"/spaces/{owner}/secret", headers={"Accept": "*/*"})
            assert r.status_code == 404 and r.json()["error"] == f"Space {owner}/secret not found"
            r = await c.get("/no/such/page", headers={"Accept": "application/json"})
            assert (r.status_code, r.json()) == (404, {"detail": "Not Found"})
            # git keeps its answer, whatever the Accept header says.
            r = await c.get(f"/spaces/{owner}/missing.git/info/refs", params={"service": "git-upload-pack"})
            assert r.status_code == 404 and r.headers["content-type"] == "application/json"

    run(go())


def test_a_server_bug_is_a_page_for_a_browser_and_plain_text_for_clients(inproc: InProcessHub) -> None:
    app = create_app(inproc.hub)

    @app.get("/boom")
    @app.get("/api/boom")
    async def boom() -> None:
        raise RuntimeError("secret detail of the bug")

    async def go() -> None:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url=HUB) as c:
            r = await c.get("/boom", headers={"Accept": BROWSER})
            assert r.status_code == 500
            text = page_of(r)
            assert "Something went wrong" in text and "secret detail" not in text
            for path, accept in (("/boom", "*/*"), ("/api/boom", BROWSER)):
                r = await c.get(path, headers={"Accept": accept})
                assert (r.status_code, r.text) == (500, "Internal Server Error")

    run(go())


def test_huggingface_hub_still_maps_the_errors(live_hub: LiveHub) -> None:
    """The real client over HTTP: a missing Space is still its RepositoryNotFoundError."""
    with pytest.raises(RepositoryNotFoundError):
        HfApi(endpoint=live_hub.url, token=live_hub.admin).space_info("nobody/nothing")
