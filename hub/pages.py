"""Web pages of the hub: the Space list, sign-in with a token (opening a browser session), each Space's page
(the app in an iframe, its status, an embed snippet), its logs page, and the signed-in user's tokens. Every
form posts same-origin (`hub.csrf` refuses the rest)."""

from __future__ import annotations

import asyncio
import html
import time

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from core.errors import Forbidden, RepoNotFound
from core.ids import SpaceId
from hub.accounts import Principal, can_see
from hub.api.tokens import may_revoke
from hub.api.views import card_data
from hub.csrf import SESSION_COOKIE
from hub.deps import hub_of
from hub.sessions import Sessions, set_session_cookie
from hub.store import SpaceRecord, utcnow

router = APIRouter()
SIGNED_URL_TTL_S = 3600

STYLE = """
body{font-family:system-ui,sans-serif;margin:0;background:#f7f7f8;color:#111}
header{display:flex;gap:1rem;align-items:center;padding:.6rem 1rem;background:#fff;border-bottom:1px solid #ddd}
header a{color:#111;text-decoration:none;font-weight:600}
main{padding:1rem}.badge{padding:.1rem .5rem;border-radius:1rem;font-size:.8rem;background:#eee}
.RUNNING{background:#d1fadf}.BUILDING,.APP_STARTING,.RUNNING_BUILDING,.RUNNING_APP_STARTING{background:#fef3c7}
.BUILD_ERROR,.RUNTIME_ERROR,.CONFIG_ERROR,.NO_APP_FILE{background:#fee2e2}.SLEEPING,.PAUSED{background:#e0e7ff}
iframe.app{border:0;width:100%;height:calc(100vh - 130px);background:#fff}
pre{background:#111;color:#eee;padding:1rem;overflow:auto;height:38vh;margin:.3rem 0 1rem}
.insecure{background:#b91c1c;color:#fff;padding:.6rem 1rem;font-weight:600;margin:0 0 .6rem}
textarea{width:100%;font-family:monospace}.bar{display:flex;gap:1rem;align-items:center;flex-wrap:wrap}
"""


def page(title: str, body: str, viewer: Principal | None = None) -> HTMLResponse:
    who = (f"{html.escape(viewer.user)} · <a href='/settings/tokens'>tokens</a> · <form method=post "
           "action=/logout style='display:inline'><button>sign out</button></form>" if viewer
           else "<a href='/login'>sign in</a>")
    return HTMLResponse(
        f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body><header><a href='/'>🚀 spacehost</a>"
        f"<span style='flex:1'></span>{who}</header><main>{body}</main></body></html>"
    )


async def _viewer(request: Request) -> Principal | None:
    session_id = request.cookies.get(SESSION_COOKIE)
    if not session_id:
        return None
    return await asyncio.to_thread(Sessions(hub_of(request).accounts).principal, session_id, utcnow())


async def _visible(request: Request, owner: str, name: str) -> tuple[SpaceRecord, Principal | None]:
    viewer = await _viewer(request)
    space = await asyncio.to_thread(hub_of(request).store.get_space, f"{owner}/{name}")
    if space is None or not can_see(viewer, owner, space.private):
        raise RepoNotFound(f"Space {owner}/{name} not found")
    return space, viewer


@router.get("/", response_class=HTMLResponse)
async def index(request: Request) -> HTMLResponse:
    hub = hub_of(request)
    viewer = await _viewer(request)
    spaces = [s for s in await asyncio.to_thread(hub.store.list_spaces) if can_see(viewer, s.owner, s.private)]
    items = "".join(
        f"<li><a href='/spaces/{html.escape(s.space_id)}'>{html.escape(s.space_id)}</a> "
        f"<span class='badge {s.stage}'>{s.stage}</span>{' 🔒' if s.private else ''}</li>" for s in spaces
    )
    return page("spacehost", f"<h1>Spaces</h1><ul>{items or '<li>No Space yet.</li>'}</ul>", viewer)


@router.get("/login", response_class=HTMLResponse)
async def login_form(error: int = 0) -> HTMLResponse:
    msg = "<p style='color:#b91c1c'>That token is not valid.</p>" if error else ""
    return page("Sign in", f"<h1>Sign in</h1>{msg}<form method=post action=/login>"
                "<label>Access token <input name=token type=password size=50 autocomplete=off></label> "
                "<button>Sign in</button></form><p>Make one with <code>spacehost token create USER</code>.</p>")


@router.post("/login")
async def login(request: Request, token: str = Form(...), next: str = Form("/")) -> RedirectResponse:
    opened = await asyncio.to_thread(Sessions(hub_of(request).accounts).open, token, utcnow())
    if opened is None:
        return RedirectResponse("/login?error=1", status_code=303)
    resp = RedirectResponse(next if next.startswith("/") and not next.startswith("//") else "/", status_code=303)
    set_session_cookie(resp, opened[0], secure=hub_of(request).settings.scheme == "https")
    return resp


@router.get("/logout", response_class=HTMLResponse)
async def logout_form(request: Request) -> HTMLResponse:
    return page("Sign out", "<form method=post action=/logout><button>Sign out</button></form>",
                await _viewer(request))


@router.post("/logout")
async def logout(request: Request) -> RedirectResponse:
    """Ends the session in the store (a copied cookie is worthless after this), then drops the cookie."""
    if session_id := request.cookies.get(SESSION_COOKIE):
        await asyncio.to_thread(Sessions(hub_of(request).accounts).close, session_id)
    resp = RedirectResponse("/", status_code=303)
    resp.delete_cookie(SESSION_COOKIE, path="/")
    return resp


@router.get("/settings/tokens", response_class=HTMLResponse, response_model=None)
async def tokens_page(request: Request) -> HTMLResponse | RedirectResponse:
    viewer = await _viewer(request)
    if viewer is None:
        return RedirectResponse("/login", status_code=303)
    tokens = await asyncio.to_thread(hub_of(request).accounts.tokens, viewer.user)
    rows = "".join(
        f"<tr><td>{t.id}</td><td>{html.escape(t.display_name)}</td><td>{t.role}</td>"
        f"<td>{t.created_at:%Y-%m-%d %H:%M} UTC</td><td>{'this session' if t.id == viewer.token_id else ''}</td>"
        f"<td><form method=post action='/settings/tokens/{t.id}/revoke'><button>Revoke</button></form></td></tr>"
        for t in tokens
    )
    body = ("<h1>Access tokens</h1><p>Revoking a token ends every session signed in with it.</p>"
            "<table><tr><th>id</th><th>name</th><th>role</th><th>created</th><th></th><th></th></tr>"
            f"{rows}</table><p>Make one with <code>spacehost token create {html.escape(viewer.user)}</code>.</p>")
    return page("Access tokens", body, viewer)


@router.post("/settings/tokens/{token_id}/revoke")
async def revoke_token(request: Request, token_id: int) -> RedirectResponse:
    viewer = await _viewer(request)
    if viewer is None:
        raise Forbidden("sign in to revoke a token")
    if not may_revoke(viewer, token_id):
        raise Forbidden("revoking another token needs a session signed in with a write token")
    await asyncio.to_thread(hub_of(request).accounts.revoke_token, viewer.user, str(token_id))
    return RedirectResponse("/login" if token_id == viewer.token_id else "/settings/tokens", status_code=303)


def app_src(request: Request, space: SpaceRecord, viewer: Principal | None) -> str:
    """The iframe URL of the app; for a private Space, with a short-lived signed token that the proxy exchanges
    for a cookie scoped to the Space's own host (never the hub's credentials)."""
    hub = hub_of(request)
    url = hub.subdomain_url(SpaceId(space.owner, space.name).subdomain) + "/"
    if space.private and viewer is not None:
        from proxy.auth import sign_space_url_token

        token = sign_space_url_token(hub.signing_key, space.space_id, viewer.user, time.time(), SIGNED_URL_TTL_S)
        url += f"?__sign={token}"
    return url


@router.get("/spaces/{owner}/{name}", response_class=HTMLResponse)
async def space_page(request: Request, owner: str, name: str) -> HTMLResponse:
    space, viewer = await _visible(request, owner, name)
    hub = hub_of(request)
    card = await asyncio.to_thread(card_data, hub, space) or {}
    title = f"{card.get('emoji', '')} {card.get('title') or space.name}".strip()
    public_url = hub.subdomain_url(SpaceId(space.owner, space.name).subdomain)
    src = html.escape(app_src(request, space, viewer))
    embed = html.escape(f'<iframe src="{public_url}" frameborder="0" width="850" height="450"></iframe>')
    sid = html.escape(space.space_id)
    logs = f"<a href='/spaces/{sid}/logs'>logs</a> · " if viewer and viewer.can_write(space.owner) else ""
    warning = hub.sandbox.warning()
    body = (
        (f"<p class=insecure id=sandbox role=alert>⚠ {html.escape(warning)}</p>" if warning else "") +
        f"<div class=bar><h2 style='margin:.2rem 0'>{html.escape(title)}</h2><span>{sid}</span>"
        f"<span class='badge {space.stage}' id=stage>{space.stage}</span>{' 🔒 private' if space.private else ''}"
        f"<span style='flex:1'></span>{logs}<a href='{html.escape(public_url)}/' target=_blank>open in a new tab</a>"
        f"<details><summary>Embed this Space</summary><textarea rows=3 readonly>{embed}</textarea></details></div>"
        f"<iframe class=app src='{src}' title='{sid}' allow='clipboard-write; microphone; camera'></iframe>"
        f"<script>const s=document.getElementById('stage');setInterval(async()=>{{try{{"
        f"const r=await fetch('/api/spaces/{sid}/runtime');if(r.ok){{const j=await r.json();"
        f"s.textContent=j.stage;s.className='badge '+j.stage}}}}catch(e){{}}}},3000)</script>"
    )
    return page(space.space_id, body, viewer)


@router.get("/spaces/{owner}/{name}/logs", response_class=HTMLResponse)
async def logs_page(request: Request, owner: str, name: str) -> HTMLResponse:
    space, viewer = await _visible(request, owner, name)
    sid = html.escape(space.space_id)
    stream = ("<script>for(const k of ['build','run']){const pre=document.getElementById(k);"
              f"const es=new EventSource('/api/spaces/{sid}/logs/'+k);"
              "es.onmessage=e=>{if(!e.data)return;const d=JSON.parse(e.data);pre.textContent+=d.data+'\\n';"
              "pre.scrollTop=pre.scrollHeight}}</script>")
    body = (f"<h2><a href='/spaces/{sid}'>{sid}</a> · logs</h2><h3>Build</h3><pre id=build></pre>"
            f"<h3>Run</h3><pre id=run></pre>{stream}")
    return page(f"{space.space_id} logs", body, viewer)
