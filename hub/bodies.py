"""Request bodies read within limits, in time linear in their size, without holding the event loop.

Limits (413 `PayloadTooLarge` beyond them) come from `Settings`: `max_json_bytes` for a JSON body,
`max_body_bytes` for a whole commit body, `max_file_bytes` for one file in it. A declared `Content-Length` over
the limit is refused before a byte is read; a body without one is counted as it streams.

NDJSON commit bodies: lines are cut as chunks arrive (each byte is looked at once: no re-splitting of a growing
buffer). A line over `LARGE_LINE` is a file whose content string is taken out before `json.loads` (which holds
the GIL, and so the loop, for the whole line: ~0.2 s for 64 MB) and base64-decoded in 1 MiB steps that yield
to the loop between them."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.requests import Request

from core.errors import BadRequest, PayloadTooLarge

LARGE_LINE = 1 << 20
_STEP = 1 << 20  # decoded per turn of the loop: ~1 ms of base64
_CONTENT = b'"content":'


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


class LineSplitter:
    """Bytes in, complete lines out; each byte is scanned once. A line longer than `max_line` is refused."""

    def __init__(self, max_line: int) -> None:
        self.max_line = max_line
        self._parts: list[bytes] = []
        self._size = 0

    def feed(self, chunk: bytes) -> list[bytes]:
        lines: list[bytes] = []
        start = 0
        while (nl := chunk.find(b"\n", start)) >= 0:
            self._add(chunk[start:nl])
            lines.append(b"".join(self._parts))
            self._parts, self._size = [], 0
            start = nl + 1
        self._add(chunk[start:])
        return lines

    def finish(self) -> bytes:
        return b"".join(self._parts)

    def _add(self, piece: bytes) -> None:
        if not piece:
            return
        self._size += len(piece)
        if self._size > self.max_line:
            raise PayloadTooLarge(f"an NDJSON line is over this server's limit of {self.max_line} bytes "
                                  "(set by SPACEHOST_MAX_FILE_BYTES)")
        self._parts.append(piece)


@dataclass(frozen=True)
class RawString:
    """The bytes between the quotes of a large JSON string that has no escapes but `\\/`, not yet decoded."""

    data: bytes


def split_content(line: bytes) -> tuple[bytes, RawString] | None:
    """(the line with its `"content"` string emptied, that string raw), or None when the line does not have
    that shape (the caller then parses it whole)."""
    key = line.find(_CONTENT)
    if key < 0:
        return None
    open_q = key + len(_CONTENT)
    while open_q < len(line) and line[open_q] in b" \t":
        open_q += 1
    if open_q >= len(line) or line[open_q] != ord('"'):
        return None
    close_q = line.find(b'"', open_q + 1)
    if close_q < 0:
        return None
    raw = line[open_q + 1:close_q]
    if b"\\" in raw:
        if raw.replace(b"\\/", b"").find(b"\\") >= 0:
            return None  # other escapes: only json.loads decodes those right
        raw = raw.replace(b"\\/", b"/")
    return line[:open_q + 1] + line[close_q:], RawString(raw)


def parse_line(line: bytes) -> dict[str, Any]:
    """One NDJSON commit line → `{"key": ..., "value": {...}}`; a large file's content stays a RawString."""
    split = split_content(line) if len(line) > LARGE_LINE else None
    try:
        item = json.loads(split[0] if split else line)
    except RecursionError:
        raise BadRequest("commit body: a line nests too deeply") from None
    except ValueError as e:
        raise BadRequest(f"commit body must be NDJSON: {e}") from None
    if not isinstance(item, dict) or not isinstance(item.get("value"), dict):
        raise BadRequest("each NDJSON line must be {\"key\": ..., \"value\": {...}}")
    if split:
        item["value"]["content"] = split[1]
    return item


async def ndjson_items(request: Request, max_body: int, max_line: int) -> AsyncIterator[dict[str, Any]]:
    """The items of an NDJSON body, as they stream in."""
    check_declared(request, max_body, "the commit body")
    splitter, seen = LineSplitter(max_line), 0
    async for chunk in request.stream():
        seen += len(chunk)
        if seen > max_body:
            raise PayloadTooLarge(f"the commit body is over this server's limit of {max_body} bytes")
        for line in splitter.feed(chunk):
            if line.strip():
                yield parse_line(line)
    last = splitter.finish()
    if last.strip():
        yield parse_line(last)


def _steps(data: bytes) -> Iterable[bytes]:
    for i in range(0, len(data), _STEP):
        yield data[i:i + _STEP]


async def write_content(content: str | RawString, encoding: str, dest: Path, max_file: int, path: str) -> None:
    """Decode a commit file's content (base64 unless `encoding` says otherwise) into `dest`, within `max_file`
    bytes; BadRequest for invalid base64. Large content is decoded step by step, yielding to the loop."""
    raw = content.data if isinstance(content, RawString) else content.encode()
    size = len(raw) * 3 // 4 if encoding == "base64" else len(raw)
    if size > max_file + 2:
        raise PayloadTooLarge(f"file {path} is over this server's limit of {max_file} bytes "
                              "(SPACEHOST_MAX_FILE_BYTES)")
    with dest.open("wb") as out:
        for step in _steps(raw):  # _STEP is a multiple of 4: each step is whole base64 quanta
            try:
                out.write(base64.b64decode(step, validate=True) if encoding == "base64" else step)
            except binascii.Error:
                raise BadRequest(f"file {path}: content is not valid base64") from None
            if len(raw) > _STEP:
                await asyncio.sleep(0)
