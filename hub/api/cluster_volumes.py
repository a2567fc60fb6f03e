"""The cluster API of volume moves (scheduler/volume_move.py): a draining node uploads a bucket, the node it moves
to fetches it and confirms, the old node says it deleted its copy. Node credentials as for the rest of the cluster
API (an admin's token or the join token); bodies stream to and from disk, never whole in memory."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse

from core.errors import BadRequest, NotFound
from hub.api.cluster import _body, _plane
from scheduler.volume_carry import SHA_HEADER
from scheduler.volume_move import VolumeMoves, bucket_of

router = APIRouter()
PREFIX = "/api/cluster/nodes/{node}/volumes/{owner}/{name}"


async def _moves(request: Request, owner: str, name: str) -> tuple[VolumeMoves, str]:
    plane: Any = await _plane(request)
    moves = plane.runtime.moves if plane.runtime is not None else None
    if moves is None:
        raise NotFound("this server moves no volumes")
    try:
        return moves, bucket_of(owner, name)
    except ValueError as e:
        raise BadRequest(str(e)) from None


@router.put(PREFIX)
async def upload(request: Request, node: str, owner: str, name: str) -> dict[str, Any]:
    """The node's image of the bucket, streamed; answers the SHA-256 and size the server read."""
    moves, bucket = await _moves(request, owner, name)
    staged = await moves.receive(node, bucket, request.stream())
    return {"sha256": staged.sha256, "size": staged.size}


@router.get(PREFIX)
async def download(request: Request, node: str, owner: str, name: str) -> Response:
    """The bucket's staged copy, its SHA-256 in a header; 202 while it is on its way to this node; 404: none (the
    node makes a new bucket, unless it expects this one)."""
    moves, bucket = await _moves(request, owner, name)
    staged = moves.staged(bucket)
    if staged is None and moves.asked(node, bucket):
        return Response(status_code=202)  # on its way: ask again
    if staged is None:
        raise NotFound(f"no copy of volume {bucket} is on its way")
    return FileResponse(staged.path, media_type="application/octet-stream", headers={SHA_HEADER: staged.sha256})


@router.post(PREFIX + "/{event}")
async def event(request: Request, node: str, owner: str, name: str, event: str) -> dict[str, Any]:
    """`received` (the node checked and holds its copy), `dropped` (the old node deleted its own), `failed`
    (the old node could not upload it: {"reason"})."""
    moves, bucket = await _moves(request, owner, name)
    if event == "received":
        await moves.received(node, bucket)
    elif event == "dropped":
        await moves.dropped(node, bucket)
    elif event == "failed":
        moves.export_failed(node, bucket, str((await _body(request)).get("reason", "")))
    else:
        raise NotFound(f"no volume event {event!r}: received, dropped or failed")
    moves.changed()
    return {"ok": True}
