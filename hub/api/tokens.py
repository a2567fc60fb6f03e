"""The caller's access tokens: list and revoke. Hugging Face has no public API for this; spacehost's:

- `GET /api/settings/tokens` → `[{"id", "name", "role", "createdAt", "current"}]` (never a token's value:
  only its digest is stored). `current` marks the token of this request (or of this browser session).
- `DELETE /api/settings/tokens/{id}` → the revoked token's entry. It ends every browser session opened with
  it; from then on the token gets 401 from the API and git, and the proxy refuses it for private Spaces
  (within its token cache, 10 s). Revoking needs a write token, except a token revoking itself."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request

from core.errors import Forbidden
from hub.accounts import Principal
from hub.deps import hub_of, required_caller
from state.store import TokenRecord

router = APIRouter()


def may_revoke(p: Principal, token_id: int) -> bool:
    return p.token_role == "write" or p.token_id == token_id


def token_view(t: TokenRecord, p: Principal) -> dict[str, Any]:
    return {"id": t.id, "name": t.display_name, "role": t.role,
            "createdAt": t.created_at.isoformat(timespec="seconds") + "Z", "current": t.id == p.token_id}


@router.get("/api/settings/tokens")
async def list_tokens(request: Request) -> list[dict[str, Any]]:
    p = await required_caller(request)
    return [token_view(t, p) for t in await asyncio.to_thread(hub_of(request).accounts.tokens, p.user)]


@router.delete("/api/settings/tokens/{token_id}")
async def revoke_token(request: Request, token_id: int) -> dict[str, Any]:
    p = await required_caller(request)
    if not may_revoke(p, token_id):
        raise Forbidden("revoking another token needs a write token")
    return token_view(await asyncio.to_thread(hub_of(request).accounts.revoke_token, p.user, str(token_id)), p)
