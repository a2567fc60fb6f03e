"""Site-wide Space catalogs in Hugging Face's shapes: templates, text search, the caller's ZeroGPU quota at HF's
path, and the agent-harness registry every `hf` run asks for."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from fastapi import APIRouter, Request

from core.errors import BadRequest, NotFound
from core.stages import SpaceStage
from hub.accounts import can_see
from hub.api.views import runtime_view, space_view
from hub.control import Hub
from hub.deps import caller, hub_of
from hub.templates import SHIPPED, Template, load_templates
from state.community import like_counts
from state.store import SpaceRecord

router = APIRouter()


def templates_of(hub: Hub) -> list[Template]:
    return load_templates((SHIPPED, hub.settings.path("templates")))


@router.get("/api/spaces/templates")
async def templates(request: Request) -> dict[str, Any]:
    found = await asyncio.to_thread(templates_of, hub_of(request))
    return {"templates": [t.as_json() for t in found]}


def search_score(space: SpaceRecord, card: dict[str, Any] | None, words: list[str]) -> float:
    """Share of the query's words found in the Space's id, title or short description (0 when none)."""
    text = " ".join([space.space_id, *(str((card or {}).get(k) or "") for k in ("title", "short_description"))])
    text = text.lower()
    return sum(1 for w in words if w in text) / len(words) if words else 0.0


@router.get("/api/spaces/semantic-search")
async def semantic_search(request: Request, q: str = "", sdk: str | None = None,
                          includeNonRunning: bool = False, limit: int = 20) -> list[dict[str, Any]]:
    """A plain word search over id, title and short description, answered as HF's semantic search is."""
    words = q.lower().split()
    if not words:
        raise BadRequest("send a query: ?q=<words>")
    p = await caller(request)
    hub = hub_of(request)

    def find() -> list[dict[str, Any]]:
        hits = []
        likes = like_counts(hub.store)
        for s in hub.store.list_spaces():
            if not can_see(p, s.owner, s.private) or (sdk and s.sdk != sdk):
                continue
            if not includeNonRunning and s.stage != SpaceStage.RUNNING:
                continue
            view = space_view(hub, s, full=False, likes=likes.get(s.id, 0))
            from hub.api.views import card_data

            card = card_data(hub, s)
            score = search_score(s, card, words)
            if score > 0:
                hits.append((score, s, view, card or {}))
        hits.sort(key=lambda h: (-h[0], h[1].space_id))
        return [{"id": s.space_id, "author": s.owner, "title": card.get("title") or s.name,
                 "emoji": card.get("emoji"), "sdk": s.sdk, "likes": view["likes"], "private": s.private,
                 "tags": view["tags"], "runtime": runtime_view(hub, s),
                 "ai_short_description": card.get("short_description"), "ai_category": None,
                 "semanticRelevancyScore": round(score, 3), "trendingScore": 0}
                for score, s, view, card in hits[:max(1, min(limit, 100))]]

    return await asyncio.to_thread(find)


def hf_quota(quota: dict[str, Any]) -> dict[str, Any]:
    """The broker's quota (`daily_s`, `left_s`, `resets_at` epoch seconds) in HF's shape."""
    resets = quota.get("resets_at")
    at = None if resets is None else dt.datetime.fromtimestamp(float(resets), dt.UTC).isoformat().replace(
        "+00:00", "Z")
    return {"base": float(quota["daily_s"]), "current": float(quota["left_s"]), "resetsAt": at, "overquotaUsed": 0.0}


@router.get("/api/spaces/zero-gpu/quota")
async def zero_gpu_quota(request: Request) -> dict[str, Any]:
    """The caller's ZeroGPU quota in GPU-seconds (`hf spaces zero-gpu quota`; also /api/zerogpu/quota)."""
    p = await caller(request)
    ip = request.headers.get("x-forwarded-for", request.client.host if request.client else "").split(",")[0].strip()
    quota = await asyncio.to_thread(hub_of(request).control.zerogpu_quota,  # cluster: a Redis read
                                    f"user:{p.user}" if p else f"ip:{ip}")
    if quota is None:
        raise NotFound("this spacehost has no ZeroGPU pool (start it with --zerogpu-devices N or on a GPU host)")
    return hf_quota(quota)


@router.get("/api/agent-harnesses")
async def agent_harnesses() -> dict[str, Any]:
    return {"standardEnvVars": [], "harnesses": {}}


def seed_from_template(hub: Hub, sid: Any, wanted: str, user: str) -> str:
    """Commit the files of template `wanted` as the first commit of the new Space `sid`; its sha."""
    from hub.repos import Author, PutFile, commit_ops
    from hub.templates import pick_template

    t = pick_template(templates_of(hub), wanted)
    ops: list[Any] = [PutFile(path, src) for path, src in t.files()]
    author = Author(user, f"{user}@users.noreply.{hub.settings.domain}")
    sha, _ = commit_ops(hub.repos, sid, "main", ops, f"Initial commit from template {t.repo_id}\n", author)
    return sha
