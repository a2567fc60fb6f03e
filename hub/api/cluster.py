"""The cluster API: what node agents and remote proxies call on the server, and the admin's node commands.
The routes of nodes, workers and proxies take an admin's token or the join token (`spacehost nodes token`);
the admin's node commands and the join token itself take an admin's only. Long-polls (`since` a
version, `wait` seconds) return as soon as something changed."""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from fastapi import APIRouter, Request, Response

from core.errors import BadRequest, Forbidden, NotFound
from hub.accounts import join_token
from hub.bodies import json_body
from hub.deps import hub_of, required_caller

router = APIRouter()
MAX_WAIT_S = 30.0


class ClusterPlane(Protocol):
    """What these routes need from the server (spacehost/cluster.py)."""

    async def register(self, info: dict[str, Any]) -> dict[str, Any]: ...
    async def node_assignments(self, node: str, since: int, wait: float) -> dict[str, Any]: ...
    async def report(self, node: str, data: dict[str, Any]) -> bool: ...
    async def run_log(self, node: str, instance_id: str, lines: list[str]) -> bool: ...
    async def routes(self, since: int, wait: float) -> dict[str, Any]: ...
    async def static_tree(self, space_id: str) -> bytes | None: ...
    async def wake(self, space_id: str) -> None: ...
    def activity(self, space_ids: list[str]) -> None: ...
    async def auth(self, token: str) -> str | None: ...
    async def can_view(self, space_id: str, user: str | None) -> bool: ...
    async def credential_live(self, cred: str) -> bool: ...
    async def writer_of(self, token: str, space_id: str) -> bool: ...
    async def nodes(self) -> list[dict[str, Any]]: ...
    async def node_command(self, name: str, command: str) -> dict[str, Any] | None: ...


async def _plane(request: Request, *, admin: bool = False) -> ClusterPlane:
    p = await required_caller(request)
    if not (p.is_admin or (p.joins_cluster and not admin)):
        raise Forbidden("this needs an admin's token" if admin else
                        "the cluster API needs an admin's token or the join token (`spacehost nodes token`)")
    plane = getattr(request.app.state, "cluster", None)
    if plane is None:
        raise NotFound("this server is not in cluster mode")
    return plane  # type: ignore[no-any-return]


async def _body(request: Request) -> dict[str, Any]:
    body = await json_body(request, hub_of(request).settings.max_json_bytes)
    if not isinstance(body, dict):
        raise BadRequest("expected a JSON object")
    return body


def _wait(wait: float) -> float:
    return max(0.0, min(MAX_WAIT_S, wait))


@router.post("/api/cluster/nodes/register")
async def register(request: Request) -> dict[str, Any]:
    plane = await _plane(request)
    body = await _body(request)
    try:
        return await plane.register(body)
    except (KeyError, ValueError, TypeError) as e:
        raise BadRequest(f"bad node registration: {e!r}") from None


@router.get("/api/cluster/nodes/{name}/assignments")
async def node_assignments(request: Request, name: str, since: int = -1, wait: float = 0.0) -> dict[str, Any]:
    return await (await _plane(request)).node_assignments(name, since, _wait(wait))


@router.post("/api/cluster/nodes/{name}/report")
async def report(request: Request, name: str) -> dict[str, Any]:
    plane = await _plane(request)
    body = await _body(request)
    try:
        return {"accepted": await plane.report(name, body)}
    except (KeyError, ValueError, TypeError) as e:
        raise BadRequest(f"bad report: {e!r}") from None


@router.post("/api/cluster/nodes/{name}/logs")
async def run_log(request: Request, name: str) -> dict[str, Any]:
    plane = await _plane(request)
    body = await _body(request)
    lines = body.get("lines")
    if not isinstance(lines, list) or not all(isinstance(x, str) for x in lines):
        raise BadRequest("lines: a list of strings")
    return {"accepted": await plane.run_log(name, str(body.get("instance_id", "")), lines)}


@router.get("/api/cluster/routes")
async def routes(request: Request, since: int = -1, wait: float = 0.0) -> dict[str, Any]:
    return await (await _plane(request)).routes(since, _wait(wait))


@router.get("/api/cluster/static/{owner}/{name}")
async def static_tree(request: Request, owner: str, name: str) -> Response:
    """The tree a static Space serves, as a tar: remote proxies keep a copy and serve it themselves."""
    data = await (await _plane(request)).static_tree(f"{owner}/{name}")
    if data is None:
        raise NotFound(f"{owner}/{name} serves no static files now")
    return Response(data, media_type="application/x-tar")


@router.post("/api/cluster/proxy/wake")
async def wake(request: Request) -> dict[str, Any]:
    plane = await _plane(request)
    body = await _body(request)
    await asyncio.shield(plane.wake(str(body["space_id"])))
    return {"ok": True}


@router.post("/api/cluster/proxy/activity")
async def activity(request: Request) -> dict[str, Any]:
    body = await _body(request)
    (await _plane(request)).activity([str(s) for s in body.get("space_ids", [])])
    return {"ok": True}


@router.post("/api/cluster/proxy/auth")
async def auth(request: Request) -> dict[str, Any]:
    body = await _body(request)
    return {"user": await (await _plane(request)).auth(str(body.get("token", "")))}


@router.post("/api/cluster/proxy/can-view")
async def can_view(request: Request) -> dict[str, Any]:
    body = await _body(request)
    user = body.get("user")
    return {"ok": await (await _plane(request)).can_view(str(body["space_id"]), str(user) if user else None)}


@router.post("/api/cluster/proxy/credential")
async def credential_live(request: Request) -> dict[str, Any]:
    """Whether the hub credential a private Space's cookie names still stands (proxy/auth.py)."""
    body = await _body(request)
    return {"live": await (await _plane(request)).credential_live(str(body.get("cred", "")))}


@router.post("/api/cluster/proxy/writer")
async def writer_of(request: Request) -> dict[str, Any]:
    """Whether a visitor's hub token may change the Space (a write token of its owner, a write member of its org,
    an admin): the gate of the Space's reload server (`{subdomain}--7887`, core/routes.reload_route)."""
    body = await _body(request)
    token, space_id = body.get("token"), body.get("space_id")
    if not isinstance(token, str) or not isinstance(space_id, str):
        raise BadRequest("expected {\"token\": str, \"space_id\": str}")
    return {"writer": await (await _plane(request)).writer_of(token, space_id)}


@router.get("/api/admin/nodes")
async def nodes(request: Request) -> list[dict[str, Any]]:
    return await (await _plane(request, admin=True)).nodes()


@router.get("/api/admin/cluster/join-token")
async def cluster_join_token(request: Request) -> dict[str, str]:
    """The token node agents, build workers and proxies join with (`spacehost nodes token` prints it)."""
    await _plane(request, admin=True)
    return {"token": join_token(hub_of(request).settings.secret_key())}


@router.post("/api/admin/nodes/{name}/{command}")
async def node_command(request: Request, name: str, command: str) -> dict[str, Any]:
    if command not in ("cordon", "uncordon", "drain"):
        raise NotFound(f"no node command {command!r}: cordon, uncordon or drain")
    node = await (await _plane(request, admin=True)).node_command(name, command)
    if node is None:
        raise NotFound(f"no node {name!r}")
    return node
