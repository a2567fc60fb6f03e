"""A Space's page, in tabs: App (the app, "Running on …", why it is not running), Logs (live, with the build's
phases), Community, Settings (write members); its live status (SSE) and its status badge (SVG)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response, StreamingResponse

from core.errors import Forbidden
from core.ids import SpaceId
from core.stages import SpaceStage
from hub.accounts import Principal
from hub.api.views import runtime_view, sleep_seconds
from hub.csrf import SESSION_COOKIE
from hub.deps import hub_of
from hub.sessions import credential_of
from hub.store import SpaceRecord
from hub.web.home import card_cache, hardware_choices
from hub.web.render import render, templates, visible

router = APIRouter()
SIGNED_URL_TTL_S = 3600
SERVING = (SpaceStage.RUNNING, SpaceStage.RUNNING_BUILDING, SpaceStage.RUNNING_APP_STARTING)
TABS = (("app", "App", ""), ("files", "Files", "/tree/main"), ("logs", "Logs", "/logs"),
        ("community", "Community", "/discussions"), ("settings", "Settings", "/settings"))


def app_src(request: Request, space: SpaceRecord, viewer: Principal | None) -> str:
    """The iframe URL of the app; for a private Space, with a short-lived signed token that the proxy exchanges
    for a cookie scoped to the Space's own host (never the hub's credentials)."""
    hub = hub_of(request)
    url = hub.subdomain_url(SpaceId(space.owner, space.name).subdomain) + "/"
    if space.private and viewer is not None:
        from proxy.auth import sign_space_url_token

        cred = credential_of(viewer.token_id, request.cookies.get(SESSION_COOKIE))  # pages: sessions only
        token = sign_space_url_token(hub.signing_key, space.space_id, viewer.user, time.time(), SIGNED_URL_TTL_S,
                                     cred)
        url += f"?__sign={token}"
    return url


def route_paths(routes: Iterable[object]) -> Iterator[str]:
    """The path templates of `routes`, into included routers (FastAPI >= 0.16x keeps an included router whole,
    as `_IncludedRouter.original_router`, instead of copying its routes; none of ours has a prefix)."""
    for r in routes:
        if isinstance(path := getattr(r, "path", None), str):
            yield path
        if (inner := getattr(r, "original_router", None)) is not None:
            yield from route_paths(inner.routes)


def api_has(request: Request, path: str) -> bool:
    """Whether the hub serves the API route `path` (a template such as /api/spaces/{owner}/{name}/discussions)."""
    return path in route_paths(request.app.routes)


async def space_context(request: Request, owner: str, name: str, tab: str) -> dict[str, Any]:
    """What every tab shows: the Space, its card (front matter), runtime (with phases), the tabs, who looks."""
    space, viewer = await visible(request, owner, name)
    hub = hub_of(request)
    front = await asyncio.to_thread(card_cache(request).front, space)
    runtime = await asyncio.to_thread(runtime_view, hub, space)
    writer = viewer is not None and viewer.can_write(space.owner)
    tabs = [(key, label, f"/spaces/{space.space_id}{suffix}") for key, label, suffix in TABS
            if key != "settings" or writer]
    return {"space": space, "viewer": viewer, "front": front, "rt": runtime, "writer": writer, "tabs": tabs,
            "tab": tab, "title": f"{space.space_id} · spacehost", "sandbox_warning": hub.sandbox.warning(),
            "public_url": hub.subdomain_url(SpaceId(space.owner, space.name).subdomain),
            "hub_url": str(request.base_url).rstrip("/")}


def page(request: Request, name: str, ctx: dict[str, Any], **more: Any) -> Response:
    viewer = ctx.pop("viewer")
    return render(request, name, viewer, **ctx, **more)


@router.get("/spaces/{owner}/{name}")
async def app_tab(request: Request, owner: str, name: str) -> Response:
    ctx = await space_context(request, owner, name, "app")
    return page(request, "space_app.html", ctx, src=app_src(request, ctx["space"], ctx["viewer"]),
                serving=ctx["rt"]["stage"] in SERVING)


@router.get("/spaces/{owner}/{name}/logs")
async def logs_tab(request: Request, owner: str, name: str) -> Response:
    ctx = await space_context(request, owner, name, "logs")
    return page(request, "space_logs.html", ctx)


@router.get("/spaces/{owner}/{name}/discussions")
async def community_tab(request: Request, owner: str, name: str) -> Response:
    ctx = await space_context(request, owner, name, "community")
    return page(request, "space_community.html", ctx,
                has_discussions=api_has(request, "/api/spaces/{owner}/{name}/discussions"))


@router.get("/spaces/{owner}/{name}/discussions/{num}")
async def discussion_link(owner: str, name: str, num: int) -> Response:
    """A discussion's URL as huggingface_hub builds it (`Discussion.url`, `pullRequestUrl`): its entry on the tab."""
    return RedirectResponse(f"/spaces/{owner}/{name}/discussions#d{num}", status_code=302)


@router.get("/spaces/{owner}/{name}/settings")
async def settings_tab(request: Request, owner: str, name: str) -> Response:
    ctx = await space_context(request, owner, name, "settings")
    if not ctx["writer"]:
        raise Forbidden(f"Only members with write access may change {ctx['space'].space_id}")
    hub = hub_of(request)
    space = ctx["space"]
    secrets = await asyncio.to_thread(hub.store.kv, space.id, "secret")
    variables = await asyncio.to_thread(hub.store.kv, space.id, "variable")
    domains = (await asyncio.to_thread(hub.store.domains)).get(space.id, ())
    return page(request, "space_settings.html", ctx, secrets=sorted(secrets), hardware=hardware_choices(),
                variables=sorted((k, v.value) for k, v in variables.items()), domains=domains,
                sleep=sleep_seconds(space), can_admin=ctx["viewer"].can_admin(space.owner),
                has_storage=api_has(request, "/api/spaces/{owner}/{name}/storage"),
                has_dev_mode=api_has(request, "/api/spaces/{owner}/{name}/dev-mode"))


def live_fragment(runtime: dict[str, Any]) -> dict[str, Any]:
    """What the page swaps in when the status changes: the stage, the phases and the why-not-running box,
    rendered by the same macros as the page."""
    macros = templates.env.get_template("macros.html").module
    return {"stage": runtime["stage"], "serving": runtime["stage"] in SERVING,
            "phasesHtml": str(macros.phases(runtime.get("phases"), runtime.get("lastGoodBuild"))),  # type: ignore[attr-defined]
            "whyHtml": str(macros.why(runtime))}  # type: ignore[attr-defined]


@router.get("/spaces/{owner}/{name}/status-stream")
async def status_stream(request: Request, owner: str, name: str) -> StreamingResponse:
    """SSE: the Space's stage and phases whenever they change (and every few seconds while a phase runs, so
    its clock moves); ends when the client goes away."""
    space, _ = await visible(request, owner, name)
    hub = hub_of(request)

    async def events() -> AsyncIterator[str]:
        last, quiet = "", 0.0
        while not await request.is_disconnected():
            rec = await asyncio.to_thread(hub.store.get_space, space.space_id)
            if rec is None:
                yield "event: gone\ndata: {}\n\n"
                return
            data = json.dumps(live_fragment(await asyncio.to_thread(runtime_view, hub, rec)))
            if data != last or quiet >= 15:
                yield f"data: {data}\n\n"
                last, quiet = data, 0.0
            await asyncio.sleep(0.5)
            quiet += 0.5

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


BADGE_COLORS: dict[str, str] = {
    SpaceStage.RUNNING: "#16a34a", SpaceStage.SLEEPING: "#4f46e5", SpaceStage.PAUSED: "#4f46e5",
    SpaceStage.BUILDING: "#ca8a04", SpaceStage.APP_STARTING: "#ca8a04",
    SpaceStage.RUNNING_BUILDING: "#16a34a", SpaceStage.RUNNING_APP_STARTING: "#16a34a"}


def badge_svg(label: str, value: str, color: str) -> str:
    """A shields.io-style flat badge (text widths approximated at 6.5 px per character)."""
    lw, vw = 10 + int(6.5 * len(label)), 10 + int(6.5 * len(value))
    from html import escape

    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{lw + vw}" height="20" role="img" '
            f'aria-label="{escape(label)}: {escape(value)}"><title>{escape(label)}: {escape(value)}</title>'
            f'<rect width="{lw}" height="20" fill="#555"/><rect x="{lw}" width="{vw}" height="20" fill="{color}"/>'
            f'<g fill="#fff" font-family="Verdana,DejaVu Sans,sans-serif" font-size="11">'
            f'<text x="5" y="14">{escape(label)}</text><text x="{lw + 5}" y="14">{escape(value)}</text></g></svg>')


@router.get("/spaces/{owner}/{name}/badge.svg")
async def badge(request: Request, owner: str, name: str) -> Response:
    space, _ = await visible(request, owner, name)
    stage = space.stage.lower().replace("_", " ")
    svg = badge_svg(space.space_id, stage, BADGE_COLORS.get(space.stage, "#dc2626"))
    return Response(svg, media_type="image/svg+xml", headers={"Cache-Control": "no-cache, max-age=0"})
