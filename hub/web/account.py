"""Account pages: tokens (create with a role, list, revoke), organizations (create, members and roles), the
ZeroGPU quota, and the admin page (users, quotas, the cluster's nodes). Reads only: forms write through the
JSON API (`/api/users/{user}/tokens`, `/api/organizations/…`, `/api/zerogpu/quotas/…`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from core.errors import Forbidden, NotFound
from hub.accounts import Principal
from hub.deps import hub_of
from hub.web.cards import all_spaces
from hub.web.render import render, viewer_of
from hub.web.space import api_has

router = APIRouter()


async def account_page(request: Request, template: str, title: str,
                       load: Callable[[Principal], dict[str, Any]]) -> Response:
    """Render `template` with what `load` reads (in a thread) for the signed-in viewer; sign in first."""
    viewer = await viewer_of(request)
    if viewer is None:
        return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
    context = await asyncio.to_thread(load, viewer)
    return render(request, template, viewer, title=f"{title} · spacehost", **context)


@router.get("/settings/tokens")
async def tokens_page(request: Request) -> Response:
    accounts = hub_of(request).accounts
    return await account_page(request, "tokens.html", "Access tokens",
                              lambda v: {"tokens": accounts.tokens(v.user)})


@router.get("/organizations")
async def orgs_page(request: Request) -> Response:
    accounts = hub_of(request).accounts
    return await account_page(request, "orgs.html", "Organizations",
                              lambda v: {"orgs": [(o, v.orgs.get(o.name, "")) for o in accounts.orgs_of(v.user)]})


@router.get("/organizations/{org}")
async def org_page(request: Request, org: str) -> Response:
    hub = hub_of(request)

    def load(viewer: Principal) -> dict[str, Any]:
        acct = hub.accounts.get(org)
        if acct is None or acct.kind != "org" or not viewer.can_read(org):
            raise NotFound(f"no organization {org!r}")
        return {"org": acct, "members": hub.accounts.members(org), "is_admin": viewer.can_admin(org),
                "spaces": [s for s in all_spaces(hub.store) if s.owner == org]}

    return await account_page(request, "org.html", org, load)


@router.get("/settings/quota")
async def quota_page(request: Request) -> Response:
    control = hub_of(request).control
    return await account_page(request, "quota.html", "ZeroGPU quota",
                              lambda v: {"quota": control.zerogpu_quota(f"user:{v.user}")})


@router.get("/admin")
async def admin_page(request: Request) -> Response:
    from hub.api.runtime import quota_settings

    hub, quotas = hub_of(request), quota_settings(request)
    has_nodes = api_has(request, "/api/admin/nodes")

    def load(viewer: Principal) -> dict[str, Any]:
        if not viewer.is_admin:
            raise Forbidden("the admin page is for spacehost admins")
        return {"users": hub.accounts.all("user"), "orgs": hub.accounts.all("org"), "quotas": quotas.load(),
                "spaces": len(all_spaces(hub.store)), "settings": hub.settings, "has_nodes": has_nodes}

    return await account_page(request, "admin.html", "Admin", load)
