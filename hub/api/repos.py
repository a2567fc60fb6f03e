"""Repos and identity: create / delete / info / list Spaces, whoami."""

from __future__ import annotations

import asyncio
import shutil
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.errors import BadRequest, Conflict, Forbidden, RepoNotFound
from core.ids import SpaceId
from core.stages import Sdk, SpaceStage
from hub.accounts import Principal, can_see
from hub.api.fields import hardware_name, json_object, kv_items, visibility
from hub.api.hints import ssh_hint
from hub.api.views import hardware_list, runtime_view, space_view
from hub.deps import base_url, caller, hub_of, required_caller, visible_space
from state.community import like_counts
from state.store import Space, SpaceKV, SpaceRecord, Store, utcnow

router = APIRouter()


def allocate_direct_port(s: Any, base: int) -> int:
    used = set(s.scalars(select(Space.direct_port).where(Space.direct_port.is_not(None))))
    port = base
    while port in used:
        port += 1
    return port


def address_taken(sid: SpaceId, holder: SpaceRecord, visible: bool) -> str:
    """The 409 message when `holder` has the address `sid` would get; a Space the caller may not see is not
    named (its name would leak)."""
    who = f"the Space {holder.space_id}" if visible else "another (private) Space"
    return (f"{sid} would be served at {sid.subdomain}, which {who} already holds: names that differ only in "
            "case, '_', '.', '-' or where the '/' falls share one address")


def check_address(store: Store, s: Session, p: Principal | None, sid: SpaceId, *, moving: int | None = None) -> None:
    """Conflict if a Space other than the one being `moving` (its primary key) holds `sid`'s address."""
    holder = store.space_at(s, sid.subdomain)
    if holder is not None and holder.id != moving:
        rec = SpaceRecord.of(holder)
        raise Conflict(address_taken(sid, rec, can_see(p, rec.owner, rec.private)))


def flush_or_conflict(s: Session, sid: SpaceId) -> None:
    """Flush; a unique key taken meanwhile by a concurrent request (the store's last word) is a Conflict."""
    try:
        s.flush()
    except IntegrityError:
        raise Conflict(f"{sid} or its address {sid.subdomain} was just taken by another request") from None


def create_space_row(request: Request, p: Principal, sid: SpaceId, body: dict[str, Any]) -> SpaceRecord:
    """Insert a Space (and its bare repo); 409 if it exists. Shared by create and duplicate."""
    hub = hub_of(request)
    sdk = body.get("sdk")
    if sdk is not None and sdk not in [s.value for s in Sdk]:
        raise BadRequest(f"Invalid sdk {sdk!r}: one of gradio, streamlit, docker, static")
    hardware = hardware_name(body["hardware"]) if body.get("hardware") else "cpu-basic"
    secrets, variables = kv_items(body, "secrets"), kv_items(body, "variables")
    with hub.store.session() as s:
        if hub.store.space(s, sid.owner, sid.name) is not None:
            raise Conflict("You already created this space repo")
        check_address(hub.store, s, p, sid)
        row = Space(owner=sid.owner, name=sid.name, private=bool(visibility(body)), sdk=sdk, hardware=hardware,
                    sleep_time=body.get("sleepTimeSeconds"), stage=SpaceStage.NO_APP_FILE,
                    direct_port=allocate_direct_port(s, hub.settings.direct_port_base or hub.settings.port + 1000))
        s.add(row)
        flush_or_conflict(s, sid)
        for k, v, d in secrets:
            s.add(SpaceKV(space_id=row.id, kind="secret", key=k, value=hub.box.seal(v), description=d))
        for k, v, d in variables:
            s.add(SpaceKV(space_id=row.id, kind="variable", key=k, value=v, description=d))
        hub.repos.init(sid)
        return SpaceRecord.of(row)


def space_url(request: Request, sid: SpaceId) -> str:
    return f"{base_url(request)}/spaces/{sid}"


@router.post("/api/repos/create")
async def create_repo(request: Request) -> JSONResponse:
    p = await required_caller(request)
    body = await json_object(request)
    if body.get("type") != "space":
        raise BadRequest("spacehost hosts Spaces only: send type 'space'")
    sid = SpaceId.of(body.get("organization") or p.user, str(body.get("name", "")))
    if not p.can_write(sid.owner):
        raise Forbidden(f"You don't have the rights to create a Space under {sid.owner}")
    template = body.get("template")
    if template is not None:
        from hub.api.catalog import templates_of
        from hub.templates import pick_template

        pick_template(await asyncio.to_thread(templates_of, hub_of(request)), str(template))  # 400 before creating
    try:
        rec = await asyncio.to_thread(create_space_row, request, p, sid, body)
    except Conflict as e:
        return JSONResponse({"error": e.message, "url": space_url(request, sid)}, status_code=409)
    if template is not None:
        from hub.api.catalog import seed_from_template

        sha = await asyncio.to_thread(seed_from_template, hub_of(request), sid, str(template), p.user)
        await hub_of(request).control.pushed(str(sid), sha)
    return JSONResponse({"url": space_url(request, sid), "name": str(sid), "id": f"space-{rec.id}"})


@router.delete("/api/repos/delete")
async def delete_repo(request: Request) -> PlainTextResponse:
    p = await required_caller(request)
    body = await json_object(request)
    sid = SpaceId.of(body.get("organization") or p.user, str(body.get("name", "")))
    hub = hub_of(request)
    space = await asyncio.to_thread(hub.store.get_space, str(sid))
    if space is None or not can_see(p, sid.owner, space.private):
        raise RepoNotFound(f"Repository not found: spaces/{sid}")
    if not p.can_admin(sid.owner):
        raise Forbidden(f"You don't have the rights to delete {sid}")

    def drop() -> None:
        domains: tuple[str, ...] = ()
        with hub.store.session() as s:
            row = hub.store.space(s, sid.owner, sid.name)
            if row is not None:
                domains = hub.store.domains().get(row.id, ())
                s.delete(row)
        hub.repos.delete(sid)
        for domain in domains:  # its custom domains' certificates and keys
            shutil.rmtree(hub.settings.cert_dir(domain), ignore_errors=True)

    await asyncio.to_thread(drop)  # the row first: nothing starts the Space again while it is cleaned up
    await hub.control.deleted(str(sid))  # processes, route, images, builds and logs; answered once all are gone
    return PlainTextResponse("OK")


@router.get("/api/spaces/{owner}/{name}")
@router.get("/api/spaces/{owner}/{name}/revision/{revision:path}")
async def space_info(request: Request, owner: str, name: str, revision: str | None = None) -> dict[str, Any]:
    space, _ = await visible_space(request, owner, name)
    hub = hub_of(request)
    if revision and revision != "main" and space.head_sha:
        await asyncio.to_thread(hub.repos.resolve, SpaceId(owner, name), revision)
    await ssh_hint(request, space)
    return await asyncio.to_thread(space_view, hub, space)


@router.get("/api/spaces/{owner}/{name}/runtime")
async def space_runtime(request: Request, owner: str, name: str) -> dict[str, Any]:
    space, _ = await visible_space(request, owner, name)
    return runtime_view(hub_of(request), space)


@router.get("/api/spaces/{owner}/{name}/host")
async def space_host(request: Request, owner: str, name: str) -> dict[str, Any]:
    space, _ = await visible_space(request, owner, name)
    return {"subdomain": SpaceId(owner, name).subdomain, "host": hub_of(request).app_url(space)}


@router.get("/api/spaces")
async def list_spaces(request: Request, author: str | None = None, search: str | None = None,
                      limit: int | None = None, full: bool = False) -> list[dict[str, Any]]:
    p = await caller(request)
    hub = hub_of(request)
    spaces = [s for s in await asyncio.to_thread(hub.store.list_spaces) if can_see(p, s.owner, s.private)]
    if author:
        spaces = [s for s in spaces if s.owner == author]
    if search:
        spaces = [s for s in spaces if search.lower() in s.space_id.lower()]
    spaces = spaces[:limit] if limit else spaces
    likes = await asyncio.to_thread(like_counts, hub.store)
    return [await asyncio.to_thread(space_view, hub, s, full=full, likes=likes.get(s.id, 0)) for s in spaces]


@router.get("/api/spaces-hardware")
@router.get("/api/spaces/hardware")
async def hardware() -> list[dict[str, Any]]:
    return hardware_list()


@router.get("/api/whoami-v2")
async def whoami(request: Request) -> dict[str, Any]:
    p = await required_caller(request)
    orgs = await asyncio.to_thread(hub_of(request).accounts.orgs_of, p.user)
    return {
        "type": "user", "id": p.user, "name": p.user, "fullname": p.user, "email": None,
        "emailVerified": False, "isPro": False, "canPay": False, "avatarUrl": "", "periodEnd": None,
        "orgs": [{"type": "org", "id": o.name, "name": o.name, "fullname": o.fullname, "email": None,
                  "canPay": False, "avatarUrl": "", "periodEnd": None, "roleInOrg": p.orgs.get(o.name)}
                 for o in orgs],
        "auth": {"type": "access_token", "accessToken": {"displayName": p.token_name, "role": p.token_role}},
    }


def touch(request: Request, space_id: str) -> None:
    hub_of(request).store.update_space(space_id, last_modified=utcnow())
