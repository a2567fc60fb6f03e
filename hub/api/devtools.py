"""What a Space's developer uses while working on it: persistent volumes (`hf spaces volumes`), dev mode
(`hf spaces dev-mode`), and a shell inside the running Space (`spacehost ssh`, over a WebSocket)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request

from core.errors import BadRequest, Forbidden
from hub.api.repos import _json
from hub.api.views import runtime_view
from hub.deps import hub_of, writable_space
from hub.space_settings import set_dev_mode, set_volumes
from hub.volumes import parse_volumes

router = APIRouter()
PREFIX = "/api/spaces/{owner}/{name}"
RUNNING = ("RUNNING", "RUNNING_BUILDING", "RUNNING_APP_STARTING", "APP_STARTING")


async def _runtime(request: Request, space_id: str) -> dict[str, Any]:
    hub = hub_of(request)
    space = await asyncio.to_thread(hub.store.get_space, space_id)
    assert space is not None
    return await asyncio.to_thread(runtime_view, hub, space)


@router.put(PREFIX + "/volumes")
async def put_volumes(request: Request, owner: str, name: str) -> dict[str, Any]:
    """Replace the Space's volumes (buckets of its owner's) and restart it with them mounted."""
    space, p = await writable_space(request, owner, name)
    vols = parse_volumes(await _json(request))
    for v in vols:
        if not p.can_write(v.owner):
            raise Forbidden(f"You cannot write to buckets of {v.owner}")
    hub = hub_of(request)
    if await asyncio.to_thread(set_volumes, hub.store, space.id, vols):
        await hub.control.env_changed(space.space_id)
    return await _runtime(request, space.space_id)


@router.delete(PREFIX + "/volumes")
async def delete_volumes(request: Request, owner: str, name: str) -> dict[str, Any]:
    """Unmount every volume (their files stay in the bucket) and restart the Space without them."""
    space, _ = await writable_space(request, owner, name)
    hub = hub_of(request)
    if await asyncio.to_thread(set_volumes, hub.store, space.id, ()):
        await hub.control.env_changed(space.space_id)
    return await _runtime(request, space.space_id)


@router.post(PREFIX + "/dev-mode")
async def dev_mode(request: Request, owner: str, name: str) -> dict[str, Any]:
    """`{"enabled": bool}`. On: the Space never sleeps, and one that is not running starts (so `hf spaces
    dev-mode` can wait for RUNNING); `spacehost ssh` opens a shell in it. Off: it sleeps as its hardware says."""
    space, _ = await writable_space(request, owner, name)
    enabled = (await _json(request)).get("enabled")
    if not isinstance(enabled, bool):
        raise BadRequest('send {"enabled": true} or {"enabled": false}')
    hub = hub_of(request)
    await asyncio.to_thread(set_dev_mode, hub.store, space.id, enabled)
    if enabled and space.stage not in RUNNING and space.head_sha:
        await hub.control.restart(space.space_id)
    return await _runtime(request, space.space_id)
