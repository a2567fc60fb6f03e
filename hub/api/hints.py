"""Hints the hub adds to its answers for the clients that read them: `X-HF-Warning`, which huggingface_hub
prints once per run (here: where `hf spaces ssh` would take a user instead of this server)."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request

from hub.deps import hub_of
from state.space_settings import dev_mode


def ssh_warning(space_id: str) -> str:
    """`X-HF-Warning` (printed by huggingface_hub): `hf spaces ssh` dials Hugging Face's own host."""
    return (f"spacehost-ssh; `hf spaces ssh` connects to Hugging Face's ssh.hf.space, not to this server: "
            f"for a shell in this Space run `spacehost ssh {space_id}` (HF_ENDPOINT and HF_TOKEN set as for hf)")


async def ssh_hint(request: Request, space: Any) -> None:
    """Ask for the warning on the answer to this request when the Space is in dev mode (where `hf spaces ssh`
    goes next); shown once per `hf` run."""
    if await asyncio.to_thread(dev_mode, hub_of(request).store, space.id):
        request.state.hf_warning = ssh_warning(space.space_id)


def install_warnings(app: Any) -> None:
    """Send `request.state.hf_warning`, where a route set one, as the `X-HF-Warning` header."""

    @app.middleware("http")  # type: ignore[untyped-decorator]
    async def hf_warning(request: Request, call_next: Any) -> Any:
        response = await call_next(request)
        if warning := getattr(request.state, "hf_warning", None):
            response.headers["X-HF-Warning"] = warning
        return response
