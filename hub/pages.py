"""Web pages of the hub (templates in hub/web/templates): this router gathers the page routers of hub.web and
holds the browser-only form writes — sign-in by token or user+password (opening a browser session), sign-out,
token revocation, a new Space. Every form posts same-origin (`hub.csrf` refuses the rest); every other write of
the pages goes through the JSON API."""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from core.errors import BadRequest, Forbidden, SpacehostError
from core.ids import SpaceId
from hub.api.repos import create_space_row
from hub.api.tokens import may_revoke
from hub.csrf import SESSION_COOKIE
from hub.deps import hub_of
from hub.login_limit import LoginLimiter
from hub.sessions import Sessions, set_session_cookie
from hub.web import account, files, home, space
from hub.web.create import first_commit, starter_readme
from hub.web.render import render, viewer_of
from hub.web.space import app_src
from state.store import utcnow

__all__ = ["app_src", "router"]
router = APIRouter()
for sub in (home.router, space.router, files.router, account.router):
    router.include_router(sub)


def safe_next(url: str) -> str:
    """Where to go after signing in: a path on this site only."""
    return url if url.startswith("/") and not url.startswith("//") and "\\" not in url else "/"


@router.get("/login")
async def login_form(request: Request, error: int = 0, next: str = "/") -> Response:
    return render(request, "login.html", await viewer_of(request), title="Sign in · spacehost", error=error,
                  next=safe_next(next))


def login_limiter(request: Request) -> LoginLimiter:
    """The failed password sign-ins, in the store (shared by restarts and by the servers of a cluster)."""
    return LoginLimiter(hub_of(request).store)


def password_token(request: Request, user: str, password: str) -> str | None:
    """A fresh token for a browser session of `user`, if `password` is theirs (the session acts with it, and
    revoking it on the tokens page signs the browser out)."""
    accounts = hub_of(request).accounts
    if not accounts.check_password(user, password):
        return None
    return accounts.create_token(user, role="write", display_name=f"web sign-in {utcnow():%Y-%m-%d %H:%M}")


@router.post("/login")
async def login(request: Request, token: str = Form(""), username: str = Form(""), password: str = Form(""),
                next: str = Form("/")) -> Response:
    """Open a browser session for a token, or for a user's password (throttled: `hub.login_limit`)."""
    if username and password:
        limiter, client, now = login_limiter(request), request.client.host if request.client else "", time.time()
        if not (v := await asyncio.to_thread(limiter.check, client, username, now)).allowed:
            page = render(request, "login.html", await viewer_of(request), status_code=429,
                          title="Sign in · spacehost", limited=v, next=safe_next(next))
            page.headers["Retry-After"] = str(v.retry_after_s)
            return page
        minted = await asyncio.to_thread(password_token, request, username.strip(), password)
        if minted is None:
            await asyncio.to_thread(limiter.failed, client, username, now)
        token = minted or ""
    opened = await asyncio.to_thread(Sessions(hub_of(request).accounts).open, token, utcnow()) if token else None
    if opened is None:
        return RedirectResponse(f"/login?error=1&next={safe_next(next)}", status_code=303)
    resp = RedirectResponse(safe_next(next), status_code=303)
    set_session_cookie(resp, opened[0], secure=hub_of(request).settings.scheme == "https")
    return resp


@router.get("/logout")
async def logout_form(request: Request) -> Response:
    return render(request, "logout.html", await viewer_of(request), title="Sign out · spacehost")


@router.post("/logout")
async def logout(request: Request) -> RedirectResponse:
    """Ends the session in the store (a copied cookie is worthless after this), then drops the cookie."""
    if session_id := request.cookies.get(SESSION_COOKIE):
        await asyncio.to_thread(Sessions(hub_of(request).accounts).close, session_id)
    resp = RedirectResponse("/", status_code=303)
    resp.delete_cookie(SESSION_COOKIE, path="/")
    return resp


@router.post("/settings/tokens/{token_id}/revoke")
async def revoke_token(request: Request, token_id: int) -> RedirectResponse:
    viewer = await viewer_of(request)
    if viewer is None:
        raise Forbidden("sign in to revoke a token")
    if not may_revoke(viewer, token_id):
        raise Forbidden("revoking another token needs a session signed in with a write token")
    await asyncio.to_thread(hub_of(request).accounts.revoke_token, viewer.user, str(token_id))
    return RedirectResponse("/login" if token_id == viewer.token_id else "/settings/tokens", status_code=303)


@router.post("/new", response_model=None)
async def create_space(request: Request, owner: str = Form(...), name: str = Form(...), sdk: str = Form("gradio"),
                       description: str = Form(""), license: str = Form(""), hardware: str = Form("cpu-basic"),
                       visibility: str = Form("public"), template: str = Form("")) -> Response:
    """Create the Space with a README (front matter from the form) and the starter template's files; then its
    page, which says how to clone, push and upload."""
    viewer = await viewer_of(request)
    if viewer is None:
        return RedirectResponse("/login?next=/new", status_code=303)
    hub = hub_of(request)
    try:
        sid = SpaceId.of(owner, name)
        if not viewer.can_write(sid.owner):
            raise Forbidden(f"You don't have the rights to create a Space under {sid.owner}")
        if sdk not in home.SDKS:
            raise BadRequest(f"unknown SDK {sdk!r}")
        body = {"sdk": sdk, "hardware": hardware, "private": visibility == "private"}
        await asyncio.to_thread(create_space_row, request, viewer, sid, body)
    except SpacehostError as e:
        owners = [viewer.user, *sorted(o for o, r in viewer.orgs.items() if r in ("write", "admin"))]
        return render(request, "new.html", viewer, status_code=e.http_status,
                      title="New Space · spacehost", owners=owners, sdks=home.SDKS, hardware=home.hardware_choices(),
                      licenses=home.LICENSES, starters=home.starters(), error=e.message)
    readme = starter_readme(sid, sdk, description.strip(), license)
    sha = await asyncio.to_thread(first_commit, hub, sid, viewer.user, readme, template)
    await hub.control.pushed(str(sid), sha)
    return RedirectResponse(f"/spaces/{sid}", status_code=303)
