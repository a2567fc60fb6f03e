"""The one translator from the error tree to HTTP: status, `X-Error-Code`, `X-Error-Message`, JSON body
`{"error": ...}` — what huggingface_hub's `hf_raise_for_status` reads."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from core.errors import SpacehostError


def error_headers(exc: SpacehostError) -> dict[str, str]:
    """`X-Error-Message`, `X-Error-Code` where the error has one, and a 401's challenge."""
    headers = {"X-Error-Message": exc.message.replace("\n", " ")[:500]}
    if exc.error_code:
        headers["X-Error-Code"] = exc.error_code
    if exc.http_status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="spacehost"'
    return headers


def error_response(exc: SpacehostError) -> JSONResponse:
    return JSONResponse({"error": exc.message}, status_code=exc.http_status, headers=error_headers(exc))


async def handle_spacehost_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, SpacehostError)
    return error_response(exc)
