"""Web pages of the hub: the Space list, sign-in with a token, and each Space's page (the app in an iframe)."""

from __future__ import annotations

import asyncio
import html

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from core.errors import RepoNotFound
from hub.accounts import can_see
from hub.deps import SESSION_COOKIE, hub_of

router = APIRouter()

STYLE = """
body{font-family:system-ui,sans-serif;margin:0;background:#f7f7f8;color:#111}
header{display:flex;gap:1rem;align-items:center;padding:.6rem 1rem;background:#fff;border-bottom:1px solid #ddd}
header a{color:#111;text-decoration:none;font-weight:600}
main{padding:1rem}.badge{padding:.1rem .5rem;border-radius:1rem;font-size:.8rem;background:#eee}
.RUNNING{background:#d1fadf}.BUILDING,.APP_STARTING,.RUNNING_BUILDING{background:#fef3c7}
.BUILD_ERROR,.RUNTIME_ERROR,.CONFIG_ERROR,.NO_APP_FILE{background:#fee2e2}
iframe{border:0;width:100%;height:calc(100vh - 110px);background:#fff}
pre{background:#111;color:#eee;padding:1rem;overflow:auto;max-height:40vh}
textarea{width:100%;font-family:monospace}
"""


def page(title: str, body: str) -> HTMLResponse:
    return HTMLResponse(
        f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body><header><a href='/'>🚀 spacehost</a>"
        f"<span style='flex:1'></span><a href='/login'>sign in</a></header><main>{body}</main></body></html>"
    )


async def _viewer(request: Request) -> object:
    token = request.cookies.get(SESSION_COOKIE)
    return await asyncio.to_thread(hub_of(request).accounts.authenticate, token) if token else None


@router.get("/", response_class=HTMLResponse)
async def index(request: Request) -> HTMLResponse:
    hub = hub_of(request)
    viewer = await _viewer(request)
    spaces = [s for s in await asyncio.to_thread(hub.store.list_spaces) if can_see(viewer, s.owner, s.private)]  # type: ignore[arg-type]
    items = "".join(
        f"<li><a href='/spaces/{html.escape(s.space_id)}'>{html.escape(s.space_id)}</a> "
        f"<span class='badge {s.stage}'>{s.stage}</span></li>" for s in spaces
    )
    return page("spacehost", f"<h1>Spaces</h1><ul>{items or '<li>No Space yet.</li>'}</ul>")


@router.get("/login", response_class=HTMLResponse)
async def login_form() -> HTMLResponse:
    return page("Sign in", "<h1>Sign in</h1><form method=post action=/login>"
                "<label>Access token <input name=token type=password size=50></label> "
                "<button>Sign in</button></form>")


@router.post("/login")
async def login(request: Request, token: str = Form(...)) -> RedirectResponse:
    p = await asyncio.to_thread(hub_of(request).accounts.authenticate, token)
    if p is None:
        return RedirectResponse("/login?error=1", status_code=303)
    resp = RedirectResponse("/", status_code=303)
    resp.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="lax",
                    secure=hub_of(request).settings.scheme == "https", max_age=30 * 86400)
    return resp


@router.get("/spaces/{owner}/{name}", response_class=HTMLResponse)
async def space_page(request: Request, owner: str, name: str) -> HTMLResponse:
    hub = hub_of(request)
    space = await asyncio.to_thread(hub.store.get_space, f"{owner}/{name}")
    viewer = await _viewer(request)
    if space is None or not can_see(viewer, owner, space.private):  # type: ignore[arg-type]
        raise RepoNotFound(f"Space {owner}/{name} not found")
    url = hub.subdomain_url(f"{owner}-{name}".lower().replace("_", "-").replace(".", "-"))
    src = html.escape(url + "/")
    embed = html.escape(f'<iframe src="{url}" frameborder="0" width="850" height="450"></iframe>')
    body = (
        f"<h2>{html.escape(space.space_id)} <span class='badge {space.stage}' id=stage>{space.stage}</span></h2>"
        f"<p><a href='{src}' target=_blank>open the app</a> · <details style='display:inline'>"
        f"<summary>Embed this Space</summary><textarea rows=2 readonly>{embed}</textarea></details></p>"
        f"<iframe src='{src}' title='{html.escape(space.space_id)}' allow='clipboard-write; microphone; camera'></iframe>"
    )
    return page(space.space_id, body)
