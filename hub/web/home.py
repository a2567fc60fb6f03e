"""Home (Space cards with search, filters, sort, "your Spaces") and New Space (owner, name checked live, SDK
with starter templates, hardware, visibility; then how to clone and push, and a browser upload)."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from core.errors import SpacehostError
from core.hardware import FLAVORS
from core.ids import SpaceId
from core.stages import SpaceStage
from hub.api.views import card_data
from hub.deps import hub_of
from hub.web.cards import PAGE_SIZE, SORTS, CardCache, Query, all_spaces, card_of, select
from hub.web.render import render, viewer_of
from state.store import SpaceRecord

router = APIRouter()
SDKS = ("gradio", "streamlit", "static", "docker")
STAGES = (  # the filter's choices
    SpaceStage.RUNNING, SpaceStage.BUILDING, SpaceStage.APP_STARTING, SpaceStage.SLEEPING, SpaceStage.PAUSED,
    SpaceStage.BUILD_ERROR, SpaceStage.RUNTIME_ERROR, SpaceStage.CONFIG_ERROR, SpaceStage.NO_APP_FILE,
)
LICENSES = ("mit", "apache-2.0", "bsd-3-clause", "gpl-3.0", "cc-by-4.0", "openrail", "other")


def card_cache(request: Request) -> CardCache:
    state = request.app.state
    if not hasattr(state, "cards"):
        hub = hub_of(request)
        state.cards = CardCache(lambda s: card_data(hub, s))
    return state.cards  # type: ignore[no-any-return]


def hardware_choices() -> list[tuple[str, str]]:
    return [(h.value, f.pretty_name) for h, f in FLAVORS.items()]


@router.get("/")
async def home(request: Request, q: str = "", sdk: str = "", hardware: str = "", stage: str = "", owner: str = "",
               sort: str = "modified", mine: bool = False, page: int = 1) -> Response:
    viewer = await viewer_of(request)
    query = Query(q.strip(), sdk, hardware, stage, owner, sort if sort in SORTS else "modified", mine, max(1, page))
    cache = card_cache(request)
    spaces = await asyncio.to_thread(all_spaces, hub_of(request).store)
    shown, total = select(spaces, query, viewer, cache.cached_title)
    cards = await asyncio.to_thread(lambda: [card_of(s, cache.front(s)) for s in shown])
    return render(request, "home.html", viewer, title="Spaces · spacehost", cards=cards, total=total, query=query,
                  sorts=SORTS, sdks=SDKS, stages=STAGES, hardware=hardware_choices(), pages=-(-total // PAGE_SIZE),
                  owners=sorted({s.owner for s in spaces}))


def name_check(spaces: list[SpaceRecord], owner: str, name: str) -> tuple[bool, str]:
    """Whether `owner/name` can be created: valid, not taken, its address not another Space's."""
    try:
        sid = SpaceId.of(owner, name)
    except SpacehostError as e:
        return False, e.message
    for s in spaces:
        if s.owner.lower() == sid.owner.lower() and s.name.lower() == sid.name.lower():
            return False, f"{s.space_id} already exists"
        if SpaceId(s.owner, s.name).subdomain == sid.subdomain:
            return False, f"its address {sid.subdomain} is already {s.space_id}'s"
    return True, f"{sid} is available"


@router.get("/new/check")
async def check_name(request: Request, owner: str = "", name: str = "") -> JSONResponse:
    viewer = await viewer_of(request)
    if viewer is None:
        return JSONResponse({"ok": False, "reason": "sign in first"})
    if not viewer.can_write(owner):
        return JSONResponse({"ok": False, "reason": f"you cannot create Spaces under {owner}"})
    spaces = await asyncio.to_thread(all_spaces, hub_of(request).store)
    ok, reason = name_check(spaces, owner, name)
    return JSONResponse({"ok": ok, "reason": reason})


@functools.cache
def starters() -> list[dict[str, Any]]:
    """Starter templates (hub.templates, where present), else none: the page then offers an empty Space."""
    try:
        from hub.templates import SHIPPED, load_templates
    except ImportError:
        return []
    return [t.as_json() for t in load_templates([SHIPPED])]


@router.get("/new")
async def new_space(request: Request) -> Response:
    viewer = await viewer_of(request)
    if viewer is None:
        return RedirectResponse("/login?next=/new", status_code=303)
    owners = [viewer.user, *sorted(o for o, role in viewer.orgs.items() if role in ("write", "admin"))]
    return render(request, "new.html", viewer, title="New Space · spacehost", owners=owners, sdks=SDKS,
                  hardware=hardware_choices(), licenses=LICENSES, starters=starters())
