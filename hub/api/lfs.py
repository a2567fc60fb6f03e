"""The Git LFS endpoint of a Space (hub/lfs.py has the storage and the decisions): the batch API at
`/spaces/{owner}/{name}[.git]/info/lfs/objects/batch` and the basic transfer's signed object URLs.

Callers: `git lfs` (Basic auth, the token as password, from the remote's URL), huggingface_hub's
`upload_file`/`create_commit` for files that preupload sent to LFS (Bearer for the batch, no credential for the
PUT: the signed URL is the credential), and the web UI's upload page (the session cookie, as huggingface_hub). Uploading needs write access to the Space, downloading read access."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, Response

from core.errors import BadRequest, Forbidden, RepoNotFound, Unauthorized
from core.ids import SpaceId
from hub.accounts import Principal, can_see
from hub.bodies import json_body
from hub.csrf import Credential
from hub.deps import base_url, caller, hub_of, request_credential
from hub.git_http import basic_token
from hub.lfs import MEDIA_TYPE, LfsStore, batch_answer, parse_objects, signature_ok
from hub.store import SpaceRecord

router = APIRouter()
LFS = "/spaces/{owner}/{name}/info/lfs/objects"


def space_id(owner: str, name: str) -> SpaceId:
    return SpaceId.of(owner, name.removesuffix(".git"))


async def lfs_space(request: Request, sid: SpaceId, write: bool) -> SpaceRecord:
    """The Space if the caller (Bearer or Basic token, or the browser session of the hub's upload page, which
    hub.csrf holds to the hub's own origin) may read it, or write it when `write`."""
    hub = hub_of(request)
    token = basic_token(request)
    principal: Principal | None
    if request_credential(request)[0] is Credential.SESSION:
        principal = await caller(request)
    else:
        principal = await asyncio.to_thread(hub.accounts.authenticate, token) if token else None
        if token and principal is None:
            raise Unauthorized("Invalid credentials: use your spacehost token as the password")
    space = await asyncio.to_thread(hub.store.get_space, str(sid))
    if space is None or not can_see(principal, sid.owner, space.private):
        raise RepoNotFound(f"Repository not found: spaces/{sid}")
    if write and principal is None:
        raise Unauthorized("Authentication required to upload Git LFS objects")
    if write and not principal.can_write(sid.owner):  # type: ignore[union-attr]
        raise Forbidden(f"{principal.user} may not push to {sid}")  # type: ignore[union-attr]
    return space


@router.post(LFS + "/batch")
async def batch(request: Request, owner: str, name: str) -> JSONResponse:
    sid = space_id(owner, name)
    body = await json_body(request, hub_of(request).settings.max_json_bytes)
    op, objects = parse_objects(body)
    await lfs_space(request, sid, write=op == "upload")
    hub = hub_of(request)
    store = LfsStore(hub.repos.path(sid))
    stored = await asyncio.to_thread(store.sizes, [o.oid for o in objects])
    href = f"{base_url(request)}/spaces/{sid}.git/info/lfs/objects"
    answer = batch_answer(op, objects, stored, href, hub.settings.secret_key(), str(sid),
                          hub.settings.max_lfs_bytes, time.time())
    return JSONResponse(answer, headers={"Content-Type": MEDIA_TYPE})


def _signed(request: Request, sid: SpaceId, oid: str, op: str) -> bool:
    q = request.query_params
    return signature_ok(hub_of(request).settings.secret_key(), str(sid), oid, op, q.get("expires", ""),
                        q.get("sig", ""), time.time())


@router.put(LFS + "/{oid}")
async def upload(request: Request, owner: str, name: str, oid: str) -> Response:
    sid = space_id(owner, name)
    if not _signed(request, sid, oid, "upload"):
        await lfs_space(request, sid, write=True)
    hub = hub_of(request)
    length = request.headers.get("content-length", "")
    if not length.isdigit():
        raise BadRequest("send the object with a Content-Length")
    writer = await asyncio.to_thread(LfsStore(hub.repos.path(sid)).writer, oid, int(length), hub.settings.max_lfs_bytes)
    try:
        async for chunk in request.stream():
            if chunk:
                await asyncio.to_thread(writer.write, chunk)
    except BaseException:
        writer.abort()
        raise
    await asyncio.to_thread(writer.commit)
    return Response(status_code=200)


@router.get(LFS + "/{oid}")
async def download(request: Request, owner: str, name: str, oid: str) -> Response:
    sid = space_id(owner, name)
    if not _signed(request, sid, oid, "download"):
        await lfs_space(request, sid, write=False)
    path = LfsStore(hub_of(request).repos.path(sid)).path(oid)
    if not path.is_file():
        return JSONResponse({"message": "Object does not exist"}, status_code=404, headers={"Content-Type": MEDIA_TYPE})
    return FileResponse(path, media_type="application/octet-stream")


@router.post("/spaces/{owner}/{name}/info/lfs/locks/verify")
async def locks_verify(owner: str, name: str) -> Any:
    # No locking API (as on Hugging Face): git-lfs then pushes without verifying locks.
    return JSONResponse({"message": "Git LFS file locking is not supported"}, status_code=404,
                        headers={"Content-Type": MEDIA_TYPE})
