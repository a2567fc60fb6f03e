"""Runtime control of a Space: hardware, sleep time, pause, restart, secrets, variables, logs."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import select

from core.errors import BadRequest, NotFound
from hub.api.fields import hardware_name, json_object
from hub.api.views import iso, runtime_view
from hub.deps import hub_of, visible_space, writable_space
from hub.logs import sse
from state.store import SpaceKV, utcnow

router = APIRouter()
PREFIX = "/api/spaces/{owner}/{name}"


async def _runtime(request: Request, space_id: str) -> dict[str, Any]:
    hub = hub_of(request)
    space = await asyncio.to_thread(hub.store.get_space, space_id)
    assert space is not None
    return runtime_view(hub, space)


@router.post(PREFIX + "/hardware")
async def request_hardware(request: Request, owner: str, name: str) -> dict[str, Any]:
    space, _ = await writable_space(request, owner, name)
    body = await json_object(request)
    fields: dict[str, Any] = {"hardware": hardware_name(body.get("flavor"))}
    if body.get("sleepTimeSeconds") is not None:
        fields["sleep_time"] = int(body["sleepTimeSeconds"])
    hub = hub_of(request)
    await asyncio.to_thread(hub.store.update_space, space.space_id, **fields)
    if fields["hardware"] != space.hardware:
        await hub.control.env_changed(space.space_id)
    return await _runtime(request, space.space_id)


@router.post(PREFIX + "/sleeptime")
async def set_sleep_time(request: Request, owner: str, name: str) -> dict[str, Any]:
    space, _ = await writable_space(request, owner, name)
    body = await json_object(request)
    seconds = body.get("seconds")
    if not isinstance(seconds, int) or (seconds < 0 and seconds != -1):
        raise BadRequest("seconds must be a positive integer, or -1 to never sleep")
    await asyncio.to_thread(hub_of(request).store.update_space, space.space_id, sleep_time=seconds)
    return await _runtime(request, space.space_id)


@router.post(PREFIX + "/pause")
async def pause(request: Request, owner: str, name: str) -> dict[str, Any]:
    space, _ = await writable_space(request, owner, name)
    if space.sdk == "static":
        raise BadRequest("Static Spaces cannot be paused")
    await hub_of(request).control.pause(space.space_id)
    return await _runtime(request, space.space_id)


@router.post(PREFIX + "/restart")
async def restart(request: Request, owner: str, name: str, factory: bool = False) -> dict[str, Any]:
    space, _ = await writable_space(request, owner, name)
    await hub_of(request).control.restart(space.space_id, factory=factory)
    return await _runtime(request, space.space_id)


@router.get(PREFIX + "/builds")
async def builds(request: Request, owner: str, name: str) -> dict[str, Any]:
    space, _ = await visible_space(request, owner, name)
    return {"builds": await asyncio.to_thread(hub_of(request).control.builds, space.space_id),
            "serving": space.serving_sha}


@router.post(PREFIX + "/rollback")
async def rollback(request: Request, owner: str, name: str) -> dict[str, Any]:
    """Serve a previous commit's kept build again, without rebuilding (spacehost extension)."""
    space, _ = await writable_space(request, owner, name)
    sha = (await json_object(request)).get("sha")
    if not isinstance(sha, str) or len(sha) < 7:
        raise BadRequest("send {\"sha\": \"<commit>\"} of a kept build (GET .../builds lists them)")
    kept = [b for b in await asyncio.to_thread(hub_of(request).control.builds, space.space_id) if b.startswith(sha)]
    if not kept:
        raise NotFound(f"no kept build for {sha} in {space.space_id}")
    await hub_of(request).control.rollback(space.space_id, kept[0])
    return await _runtime(request, space.space_id)


def _kv_map(request: Request, space_pk: int, kind: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, row in sorted(hub_of(request).store.kv(space_pk, kind).items()):
        entry: dict[str, Any] = {"updatedAt": iso(row.updated_at)}
        if kind == "variable":
            entry["value"] = row.value
        if row.description:
            entry["description"] = row.description
        out[key] = entry
    return out


def _upsert(request: Request, space_pk: int, kind: str, key: str, value: str, description: str | None) -> bool:
    """Set a secret or variable; True when it changed."""
    hub = hub_of(request)
    stored = hub.box.seal(value) if kind == "secret" else value
    with hub.store.session() as s:
        row = s.scalar(select(SpaceKV).where(SpaceKV.space_id == space_pk, SpaceKV.kind == kind, SpaceKV.key == key))
        if row is None:
            s.add(SpaceKV(space_id=space_pk, kind=kind, key=key, value=stored, description=description))
            return True
        old = hub.box.open(row.value) if kind == "secret" else row.value
        row.value, row.updated_at = stored, utcnow()
        if description is not None:
            row.description = description
        return old != value


def _delete(request: Request, space_pk: int, kind: str, key: str) -> bool:
    hub = hub_of(request)
    with hub.store.session() as s:
        row = s.scalar(select(SpaceKV).where(SpaceKV.space_id == space_pk, SpaceKV.kind == kind, SpaceKV.key == key))
        if row is None:
            return False
        s.delete(row)
        return True


def _key_value(body: dict[str, Any], need_value: bool) -> tuple[str, str, str | None]:
    key = body.get("key")
    if not isinstance(key, str) or not key or not key.replace("_", "").isalnum() or key[0].isdigit():
        raise BadRequest("key must be a name of letters, digits and '_' (not starting with a digit)")
    value = body.get("value")
    if need_value and value is None:
        raise BadRequest("value is required")
    return key, "" if value is None else str(value), body.get("description")


def _kv_routes(kind: str, path: str) -> None:
    @router.get(PREFIX + path, name=f"list_{kind}s")
    async def list_kv(request: Request, owner: str, name: str) -> dict[str, Any]:
        space, _ = await (writable_space if kind == "secret" else visible_space)(request, owner, name)
        return await asyncio.to_thread(_kv_map, request, space.id, kind)

    @router.post(PREFIX + path, name=f"add_{kind}")
    async def add_kv(request: Request, owner: str, name: str) -> dict[str, Any]:
        space, _ = await writable_space(request, owner, name)
        key, value, desc = _key_value(await json_object(request), need_value=True)
        if await asyncio.to_thread(_upsert, request, space.id, kind, key, value, desc):
            await hub_of(request).control.env_changed(space.space_id)
        return {} if kind == "secret" else await asyncio.to_thread(_kv_map, request, space.id, kind)

    @router.delete(PREFIX + path, name=f"delete_{kind}")
    async def delete_kv(request: Request, owner: str, name: str) -> dict[str, Any]:
        space, _ = await writable_space(request, owner, name)
        key, _v, _d = _key_value(await json_object(request), need_value=False)
        if not await asyncio.to_thread(_delete, request, space.id, kind, key):
            raise NotFound(f"no {kind} {key!r} in {space.space_id}")
        await hub_of(request).control.env_changed(space.space_id)
        return {} if kind == "secret" else await asyncio.to_thread(_kv_map, request, space.id, kind)


_kv_routes("secret", "/secrets")
_kv_routes("variable", "/variables")


@router.get(PREFIX + "/logs/{kind}")
async def logs(request: Request, owner: str, name: str, kind: str, follow: bool = True,
               tail: int | None = None) -> StreamingResponse:
    space, _ = await writable_space(request, owner, name)
    if kind not in ("build", "run"):
        raise NotFound("logs are 'build' or 'run'")
    hub = hub_of(request)
    log = hub.build_log(space.space_id) if kind == "build" else hub.run_log(space.space_id)
    sid = space.space_id
    done = (lambda: not hub.control.building(sid)) if kind == "build" else (lambda: False)
    return StreamingResponse(sse(log.path, follow=follow, tail=tail, is_done=done), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.get("/api/zerogpu/quota")
async def zerogpu_quota(request: Request) -> dict[str, Any]:
    """The caller's remaining ZeroGPU quota today: signed-in users by name, others by client IP."""
    from hub.deps import caller

    p = await caller(request)
    ip = request.headers.get("x-forwarded-for", request.client.host if request.client else "").split(",")[0].strip()
    key = f"user:{p.user}" if p else f"ip:{ip}"
    quota = await asyncio.to_thread(hub_of(request).control.zerogpu_quota, key)  # cluster: a Redis read
    if quota is None:
        raise NotFound("this spacehost has no ZeroGPU pool (start it with --zerogpu-devices N or on a GPU host)")
    return {"visitor": key, **quota}


def quota_settings(request: Request) -> Any:
    from hub.quotas import QuotaSettings

    hub = hub_of(request)
    return QuotaSettings(hub.settings.path("zerogpu", "quotas.json"), hub.accounts)


async def _site_admin(request: Request) -> None:
    from core.errors import Forbidden
    from hub.deps import required_caller

    p = await required_caller(request)
    if not (p.is_admin and p.token_role == "write"):
        raise Forbidden("Only a spacehost admin (with a write token) may read or set ZeroGPU quotas")


@router.get("/api/zerogpu/quotas")
async def zerogpu_quotas(request: Request) -> dict[str, Any]:
    """Admin: the daily ZeroGPU seconds set per user or organization, and the defaults per tier."""
    await _site_admin(request)
    s = hub_of(request).settings
    return {"quotas": await asyncio.to_thread(quota_settings(request).load),
            "defaults": {"anonymous": s.zerogpu_quota_anonymous_s, "signed-in": s.zerogpu_quota_signed_in_s}}


@router.put("/api/zerogpu/quotas/{name}")
async def set_zerogpu_quota(request: Request, name: str) -> dict[str, Any]:
    """Admin: `{"dailySeconds": N}` gives user or org `name` N GPU-seconds a day (an org: each member that has
    no setting of its own gets the largest of its orgs'); `{"dailySeconds": null}` goes back to the default."""
    await _site_admin(request)
    hub = hub_of(request)
    seconds = (await json_object(request)).get("dailySeconds")
    if seconds is not None and (not isinstance(seconds, int) or isinstance(seconds, bool) or seconds < 0):
        raise BadRequest('send {"dailySeconds": <non-negative integer>} or {"dailySeconds": null}')
    if await asyncio.to_thread(hub.accounts.get, name) is None:
        raise NotFound(f"no user or organization {name!r}")
    qs = quota_settings(request)
    await asyncio.to_thread(qs.set, name, seconds)
    await apply_quotas(request)
    return {"name": name, "dailySeconds": seconds}


async def apply_quotas(request: Request) -> None:
    """Push the resolved per-user quotas to the broker (after a quota or a membership changed)."""
    resolved = await asyncio.to_thread(quota_settings(request).resolved)
    hub_of(request).control.set_zerogpu_overrides(resolved)
