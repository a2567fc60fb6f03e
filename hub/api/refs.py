"""Branches and tags of a Space through the HF API (`list_repo_refs`, `create_branch`, `delete_branch`,
`create_tag`, `delete_tag`) and `super_squash_history`. Only `main` deploys: a ref that is not main moves
without a build; a squash of main deploys its one new commit (same tree)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from core.errors import BadRequest
from core.ids import SpaceId
from hub import refs
from hub.accounts import Principal
from hub.api.repos import touch
from hub.bodies import parse_json, read_limited
from hub.control import Hub
from hub.deps import hub_of, visible_space, writable_space
from hub.repos import Author

router = APIRouter()
PREFIX = "/api/spaces/{owner}/{name}"


async def optional_json(request: Request) -> dict[str, Any]:
    """The JSON object of the body; {} for an empty body (huggingface_hub sends none for some calls)."""
    raw = await read_limited(request, hub_of(request).settings.max_json_bytes, "the JSON body")
    value = parse_json(raw) if raw.strip() else {}
    if not isinstance(value, dict):
        raise BadRequest("request body must be a JSON object")
    return value


def author_of(hub: Hub, p: Principal) -> Author:
    return Author(p.user, f"{p.user}@users.noreply.{hub.settings.domain}")


def ref_json(r: refs.Ref) -> dict[str, str]:
    return {"name": r.name, "ref": r.ref, "targetCommit": r.target}


@router.get(PREFIX + "/refs")
async def list_refs(request: Request, owner: str, name: str, include_prs: bool = False) -> dict[str, Any]:
    await visible_space(request, owner, name)
    found = await asyncio.to_thread(refs.list_refs, hub_of(request).repos, SpaceId.of(owner, name))
    return {"branches": [ref_json(r) for r in found["branches"]], "converts": [],
            "tags": [ref_json(r) for r in found["tags"]],
            **({"pullRequests": [ref_json(r) for r in found["pullRequests"]]} if include_prs else {})}


@router.post(PREFIX + "/branch/{branch:path}")
async def create_branch(request: Request, owner: str, name: str, branch: str) -> Response:
    await writable_space(request, owner, name)
    body = await optional_json(request)
    start = str(body.get("startingPoint") or "main")
    ref = f"refs/heads/{refs.check_ref_name(branch)}"
    await asyncio.to_thread(refs.create_ref, hub_of(request).repos, SpaceId.of(owner, name), ref, start)
    return JSONResponse({"success": True})


@router.delete(PREFIX + "/branch/{ref_name:path}")
@router.delete(PREFIX + "/tag/{ref_name:path}")
async def delete_ref(request: Request, owner: str, name: str, ref_name: str) -> Response:
    await writable_space(request, owner, name)
    kind = "heads" if "/branch/" in request.url.path else "tags"
    ref = f"refs/{kind}/{refs.check_ref_name(ref_name)}"
    await asyncio.to_thread(refs.delete_ref, hub_of(request).repos, SpaceId.of(owner, name), ref)
    return JSONResponse({"success": True})


@router.post(PREFIX + "/tag/{revision:path}")
async def create_tag(request: Request, owner: str, name: str, revision: str) -> Response:
    _, p = await writable_space(request, owner, name)
    body = await optional_json(request)
    hub = hub_of(request)
    message = body.get("message")
    await asyncio.to_thread(refs.create_tag, hub.repos, SpaceId.of(owner, name), str(body.get("tag") or ""),
                            revision, str(message) if message else None, author_of(hub, p))
    return JSONResponse({"success": True})


@router.post(PREFIX + "/super-squash/{branch:path}")
async def super_squash(request: Request, owner: str, name: str, branch: str) -> Response:
    space, p = await writable_space(request, owner, name)
    body = await optional_json(request)
    hub = hub_of(request)
    message = str(body.get("message") or "Super-squash branch '" + branch + "' using huggingface_hub")
    _, new = await asyncio.to_thread(refs.squash, hub.repos, SpaceId.of(owner, name), branch, message,
                                     author_of(hub, p))
    if branch == "main":
        await asyncio.to_thread(touch, request, space.space_id)
        await hub.control.pushed(space.space_id, new)
    return JSONResponse({"success": True, "commitOid": new})
