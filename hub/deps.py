"""Request → caller, and access checks shared by the API modules."""

from __future__ import annotations

import asyncio

from starlette.requests import Request

from core.errors import Forbidden, RepoNotFound, Unauthorized
from core.ids import SpaceId
from hub.accounts import Principal, can_see
from hub.control import Hub
from hub.csrf import SESSION_COOKIE, Credential, credential
from hub.sessions import Sessions
from state.store import SpaceRecord, utcnow


def hub_of(request: Request) -> Hub:
    return request.app.state.hub  # type: ignore[no-any-return]


def request_credential(request: Request) -> tuple[Credential, str | None]:
    """The credential the request authenticates with (`hub.csrf.credential` decides which) and its value."""
    auth = request.headers.get("authorization", "")
    session = request.cookies.get(SESSION_COOKIE)
    kind = credential(auth, session is not None)
    if kind is Credential.BEARER:
        return kind, auth.partition(" ")[2].strip()
    return (kind, session) if kind is Credential.SESSION else (Credential.NONE, None)


async def caller(request: Request) -> Principal | None:
    """The authenticated caller, None if anonymous. A bearer token that matches nobody is a 401; a session
    cookie that is no longer live (signed out, expired, its token revoked) counts as anonymous."""
    kind, value = request_credential(request)
    if kind is Credential.SESSION:
        sessions = Sessions(hub_of(request).accounts)
        return await asyncio.to_thread(sessions.principal, value, utcnow())
    if value is None:
        return None
    principal = await asyncio.to_thread(hub_of(request).accounts.authenticate, value)
    if principal is None:
        raise Unauthorized("Invalid credentials in Authorization header")
    return principal


async def required_caller(request: Request) -> Principal:
    p = await caller(request)
    if p is None:
        raise Unauthorized("You must be authenticated: send 'Authorization: Bearer <token>'")
    return p


async def visible_space(request: Request, owner: str, name: str) -> tuple[SpaceRecord, Principal | None]:
    """The Space if the caller may see it; RepoNotFound otherwise (private Spaces do not reveal themselves)."""
    sid = SpaceId.of(owner, name)
    p = await caller(request)
    space = await asyncio.to_thread(hub_of(request).store.get_space, str(sid))
    if space is None or not can_see(p, sid.owner, space.private):
        raise RepoNotFound(f"Repository Not Found for url: {request.url.path}")
    return space, p


async def writable_space(request: Request, owner: str, name: str) -> tuple[SpaceRecord, Principal]:
    space, p = await visible_space(request, owner, name)
    if p is None:
        raise Unauthorized("You must be authenticated to change a Space")
    if not p.can_write(space.owner):
        raise Forbidden(f"You don't have the rights to change {space.space_id}")
    return space, p


def base_url(request: Request) -> str:
    """The hub's URL as this client reached it (what it set as HF_ENDPOINT): huggingface_hub parses the URLs
    it gets back (`RepoUrl`) against its own endpoint, so they must share scheme, host and port."""
    return str(request.base_url).rstrip("/")
