"""Request bodies read within limits, in time linear in their size, without holding the event loop.

Limits (413 `PayloadTooLarge` beyond them) come from `Settings`: `max_json_bytes` for a JSON body,
`max_body_bytes` for a whole commit body, `max_file_bytes` for one file in it. A declared `Content-Length` over
the limit is refused before a byte is read; a body without one is counted as it streams.
NDJSON commit bodies are read by `hub.ndjson`."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from core.errors import BadRequest, PayloadTooLarge


def declared_length(request: Request) -> int | None:
    raw = request.headers.get("content-length")
    return int(raw) if raw is not None and raw.isdigit() else None


def check_declared(request: Request, limit: int, what: str) -> None:
    size = declared_length(request)
    if size is not None and size > limit:
        raise PayloadTooLarge(f"{what} is {size} bytes, over this server's limit of {limit} bytes")


async def read_limited(request: Request, limit: int, what: str = "the request body") -> bytes:
    """The whole body, or PayloadTooLarge as soon as it is known to exceed `limit`."""
    check_declared(request, limit, what)
    buf = bytearray()
    async for chunk in request.stream():
        buf += chunk
        if len(buf) > limit:
            raise PayloadTooLarge(f"{what} is over this server's limit of {limit} bytes")
    return bytes(buf)


def parse_json(data: bytes) -> Any:
    """JSON → value; BadRequest for anything that is not JSON, including nesting too deep to parse."""
    try:
        return json.loads(data)
    except RecursionError:
        raise BadRequest("request body nests too deeply") from None
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError
        raise BadRequest(f"request body is not JSON: {e}") from None


async def json_body(request: Request, limit: int) -> Any:
    return parse_json(await read_limited(request, limit, "the JSON body"))
