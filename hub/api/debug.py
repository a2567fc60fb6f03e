"""Admin-only diagnostics: the event loop's lag (see hub/looplag.py)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from core.errors import Forbidden
from hub.deps import required_caller
from hub.looplag import LoopLag

router = APIRouter()


async def _probe(request: Request) -> LoopLag:
    p = await required_caller(request)
    if not p.is_admin:
        raise Forbidden("only a spacehost admin may read the loop lag")
    probe: LoopLag = request.app.state.__dict__.setdefault("loop_lag", LoopLag())
    probe.ensure_started()
    return probe


@router.get("/api/admin/loop-lag")
async def loop_lag(request: Request) -> dict[str, Any]:
    """Lag of the event loop since sampling started or was last reset: samples, p50/p99/max in ms."""
    return (await _probe(request)).snapshot().as_json()


@router.post("/api/admin/loop-lag/reset")
async def loop_lag_reset(request: Request) -> dict[str, Any]:
    """Start sampling (once) and forget the samples so far."""
    probe = await _probe(request)
    probe.reset()
    return probe.snapshot().as_json()
