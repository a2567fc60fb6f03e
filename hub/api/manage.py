"""Managing Spaces and who may touch them: duplicate, move, settings (visibility); organizations with members
and roles; users and tokens (spacehost extensions: Hugging Face does these in its web UI)."""

from __future__ import annotations

import asyncio
import subprocess
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from core.errors import BadRequest, Conflict, Forbidden, NotFound, RepoNotFound, Unauthorized
from core.ids import SpaceId
from core.stages import SpaceStage
from hub.accounts import Principal, can_see
from hub.api.fields import json_object, visibility
from hub.api.repos import check_address, create_space_row, flush_or_conflict, space_url
from hub.control import Hub
from hub.deps import hub_of, required_caller, visible_space, writable_space
from state.store import SpaceRecord, utcnow

router = APIRouter()
PREFIX = "/api/spaces/{owner}/{name}"


# ---- duplicate ----------------------------------------------------------------------------------------------

def duplicate_body(hub: Hub, src: SpaceRecord, body: dict[str, Any]) -> dict[str, Any]:
    """The create body of a duplicate: the source's SDK, visibility and variables (public, so they travel, as
    on Hugging Face) unless the request says otherwise; secrets only those the request brings."""
    variables = {k: {"key": k, "value": row.value, "description": row.description}
                 for k, row in hub.store.kv(src.id, "variable").items()}
    for item in body.get("variables") or []:
        if isinstance(item, dict) and isinstance(item.get("key"), str):
            variables[item["key"]] = item
    private = visibility(body)
    return {"sdk": src.sdk, "hardware": body.get("hardware"), "sleepTimeSeconds": body.get("sleepTimeSeconds"),
            "private": src.private if private is None else private, "secrets": body.get("secrets") or [],
            "variables": list(variables.values())}


def copy_history(hub: Hub, src: SpaceId, dst: SpaceId) -> str | None:
    head = hub.repos.head(src)
    if head is not None:
        subprocess.run(["git", "-C", str(hub.repos.path(dst)), "fetch", "-q", "--no-tags", str(hub.repos.path(src)),
                        "+refs/heads/main:refs/heads/main"], check=True, capture_output=True)
    return head


@router.post(PREFIX + "/duplicate")
async def duplicate(request: Request, owner: str, name: str) -> JSONResponse:
    src, p = await visible_space(request, owner, name)
    if p is None:
        raise Unauthorized("You must be authenticated to duplicate a Space")
    body = await json_object(request)
    dst = SpaceId.parse(str(body.get("repository") or f"{p.user}/{name}"))
    if not p.can_write(dst.owner):
        raise Forbidden(f"You don't have the rights to create a Space under {dst.owner}")
    hub = hub_of(request)
    try:
        create = await asyncio.to_thread(duplicate_body, hub, src, body)
        await asyncio.to_thread(create_space_row, request, p, dst, create)
    except Conflict as e:
        return JSONResponse({"error": e.message, "url": space_url(request, dst)}, status_code=409,
                            headers={"X-Error-Message": e.message})
    head = await asyncio.to_thread(copy_history, hub, SpaceId(src.owner, src.name), dst)
    if head is not None:
        await hub.control.pushed(str(dst), head)
    return JSONResponse({"url": space_url(request, dst)})


# ---- move ---------------------------------------------------------------------------------------------------

@router.post("/api/repos/move")
async def move(request: Request) -> JSONResponse:
    p = await required_caller(request)
    body = await json_object(request)
    if body.get("type", "space") != "space":
        raise BadRequest("spacehost hosts Spaces only: send type 'space'")
    src, dst = SpaceId.parse(str(body.get("fromRepo", ""))), SpaceId.parse(str(body.get("toRepo", "")))
    hub = hub_of(request)
    space = await asyncio.to_thread(hub.store.get_space, str(src))
    if space is None or not can_see(p, src.owner, space.private):
        raise RepoNotFound(f"Repository not found: spaces/{src}")
    if not p.can_admin(src.owner) or not p.can_write(dst.owner):
        raise Forbidden(f"You don't have the rights to move {src} to {dst}")
    if src == dst:
        raise BadRequest("fromRepo and toRepo are the same")

    def rename() -> str | None:
        with hub.store.session() as s:
            if hub.store.space(s, dst.owner, dst.name) is not None:
                raise Conflict(f"You already have a Space named {dst}")
            row = hub.store.space(s, src.owner, src.name)
            if row is None:
                raise RepoNotFound(f"Repository not found: spaces/{src}")
            check_address(hub.store, s, p, dst, moving=row.id)
            row.owner, row.name, row.last_modified = dst.owner, dst.name, utcnow()
            flush_or_conflict(s, dst)
            row.serving_sha = row.artifact_dir = None
            hub.repos.move(src, dst)
        return hub.repos.head(dst)

    head = await asyncio.to_thread(rename)  # every check first: a move that fails changes nothing
    await hub.control.deleted(str(src))  # stop what ran under the old name, drop its traces; it builds anew
    hub.control.routes_changed()
    if head is not None:
        await hub.control.pushed(str(dst), head)
    else:
        await asyncio.to_thread(hub.store.update_space, str(dst), stage=SpaceStage.NO_APP_FILE)
    return JSONResponse({"url": space_url(request, dst)})


# ---- settings -----------------------------------------------------------------------------------------------

@router.put(PREFIX + "/settings")
async def settings(request: Request, owner: str, name: str) -> dict[str, Any]:
    space, p = await writable_space(request, owner, name)
    body = await json_object(request)
    if body.get("gated") not in (None, False):
        raise BadRequest("Spaces cannot be gated")
    private = visibility(body)
    if private is not None:
        if not p.can_admin(space.owner):
            raise Forbidden(f"Only admins of {space.owner} may change the visibility of {space.space_id}")
        hub = hub_of(request)
        await asyncio.to_thread(hub.store.update_space, space.space_id, private=private)
        hub.control.routes_changed()
    return {"private": space.private if private is None else private}


# ---- organizations, users, tokens ---------------------------------------------------------------------------

def _user_json(name: str, fullname: str, role: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"user": name, "fullname": fullname, "avatarUrl": "", "type": "user", "isPro": False}
    if role is not None:
        out["role"] = role
    return out


def _org_admin(p: Principal, org: str) -> None:
    if not (p.can_admin(org) or (p.is_admin and p.token_role == "write")):
        raise Forbidden(f"Only admins of {org} may manage its members (with a write token)")


@router.get("/api/organizations/{org}/members")
async def members(request: Request, org: str) -> list[dict[str, Any]]:
    rows = await asyncio.to_thread(hub_of(request).accounts.members, org)
    return [_user_json(a.name, a.fullname, role) for a, role in rows]


@router.get("/api/organizations/{org}/overview")
async def org_overview(request: Request, org: str) -> dict[str, Any]:
    hub = hub_of(request)
    acct = await asyncio.to_thread(hub.accounts.get, org)
    if acct is None or acct.kind != "org":
        raise NotFound(f"no organization {org!r}")
    rows = await asyncio.to_thread(hub.accounts.members, org)
    return {"name": acct.name, "fullname": acct.fullname, "avatarUrl": "", "type": "org", "numUsers": len(rows),
            "isFollowing": False, "isVerified": False}


@router.get("/api/users/{user}/overview")
async def user_overview(request: Request, user: str) -> dict[str, Any]:
    acct = await asyncio.to_thread(hub_of(request).accounts.get, user)
    if acct is None or acct.kind != "user":
        raise NotFound(f"no user {user!r}")
    return _user_json(acct.name, acct.fullname)


@router.post("/api/organizations/new")
async def create_org(request: Request) -> dict[str, Any]:
    """Create an organization; its creator becomes its first admin."""
    p = await required_caller(request)
    if p.token_role != "write":
        raise Forbidden("creating an organization needs a write token")
    body = await json_object(request)
    org = str(body.get("name", ""))
    hub = hub_of(request)

    def create() -> None:
        hub.accounts.create(org, kind="org", fullname=str(body.get("fullname") or org))
        hub.accounts.set_member(org, p.user, "admin")

    await asyncio.to_thread(create)
    return {"name": org, "url": f"/{org}"}


@router.put("/api/organizations/{org}/members/{user}")
async def set_member(request: Request, org: str, user: str) -> dict[str, Any]:
    p = await required_caller(request)
    _org_admin(p, org)
    role = str((await json_object(request)).get("role", "read"))
    await asyncio.to_thread(hub_of(request).accounts.set_member, org, user, role)
    from hub.api.runtime import apply_quotas

    await apply_quotas(request)  # an org's ZeroGPU quota follows its members
    return {"user": user, "role": role}


@router.delete("/api/organizations/{org}/members/{user}")
async def remove_member(request: Request, org: str, user: str) -> dict[str, Any]:
    p = await required_caller(request)
    _org_admin(p, org)
    if not await asyncio.to_thread(hub_of(request).accounts.remove_member, org, user):
        raise NotFound(f"{user} is not a member of {org}")
    return {}


@router.post("/api/users")
async def create_user(request: Request) -> dict[str, Any]:
    p = await required_caller(request)
    if not (p.is_admin and p.token_role == "write"):
        raise Forbidden("only a spacehost admin (with a write token) may create users")
    body = await json_object(request)
    acct = await asyncio.to_thread(hub_of(request).accounts.create, str(body.get("name", "")),
                                   admin=bool(body.get("admin")), fullname=str(body.get("fullname") or ""))
    return {"name": acct.name, "fullname": acct.fullname, "isAdmin": acct.is_admin}


@router.post("/api/users/{user}/tokens")
async def create_token(request: Request, user: str) -> dict[str, Any]:
    """A new token for `user` (the user themself, or an admin); `role` is `read` or `write`."""
    p = await required_caller(request)
    if p.token_role != "write" or not (p.user == user or p.is_admin):
        raise Forbidden("a token is made by its user or an admin, with a write token")
    body = await json_object(request)
    role, display = str(body.get("role", "write")), str(body.get("displayName") or "token")
    token = await asyncio.to_thread(hub_of(request).accounts.create_token, user, role=role, display_name=display)
    return {"token": token, "role": role, "displayName": display}
