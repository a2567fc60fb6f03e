"""Rendering: the Jinja2 environment (FastAPI's `Jinja2Templates`), the signed-in viewer, and the context every
page shares (viewer, sandbox warning, asset versions)."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

from fastapi.templating import Jinja2Templates
from starlette.requests import Request
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from core.errors import RepoNotFound
from hub.accounts import Principal, can_see
from hub.csrf import SESSION_COOKIE
from hub.deps import hub_of
from hub.sessions import Sessions
from state.store import SpaceRecord, utcnow

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
templates = Jinja2Templates(directory=str(HERE / "templates"))
# Asset URLs carry a digest of the file: a new release is a new URL, so browsers may cache for a year.
VERSIONS = {p.name: hashlib.sha256(p.read_bytes()).hexdigest()[:10] for p in STATIC.iterdir() if p.is_file()}
templates.env.globals["asset"] = lambda name: f"/static/{name}?v={VERSIONS.get(name, '0')}"


class CachedStatic(StaticFiles):
    """Static files with `Cache-Control`: immutable when the URL names the file's version, an hour otherwise."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        resp = await super().get_response(path, scope)
        versioned = b"v=" in scope.get("query_string", b"")
        resp.headers["Cache-Control"] = "public, max-age=31536000, immutable" if versioned else "public, max-age=3600"
        return resp


async def viewer_of(request: Request) -> Principal | None:
    """Who the browser session signs in as; None when signed out (or the session is dead)."""
    session_id = request.cookies.get(SESSION_COOKIE)
    if not session_id:
        return None
    return await asyncio.to_thread(Sessions(hub_of(request).accounts).principal, session_id, utcnow())


async def visible(request: Request, owner: str, name: str) -> tuple[SpaceRecord, Principal | None]:
    """The Space if the viewer may see it; 404 otherwise (a private Space does not reveal itself)."""
    viewer = await viewer_of(request)
    space = await asyncio.to_thread(hub_of(request).store.get_space, f"{owner}/{name}")
    if space is None or not can_see(viewer, owner, space.private):
        raise RepoNotFound(f"Space {owner}/{name} not found")
    return space, viewer


def render(request: Request, name: str, viewer: Principal | None, status_code: int = 200,
           **context: Any) -> Response:
    """Render `name` with the shared context: `viewer`, `title`, and the page's own values."""
    context.setdefault("title", "spacehost")
    return templates.TemplateResponse(request, name, {"viewer": viewer, **context}, status_code=status_code)
