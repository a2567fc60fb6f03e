"""NDJSON commit bodies, read as they stream in, without ever holding a large line in one piece.

huggingface_hub sends each file of a commit as one line, `{"key": "file", "value": {"content": "<base64>",
"path": ..., "encoding": "base64"}}`, so a 64 MB file is an 85 MB line. Joining such a line and scanning it (or
`json.loads` of it) holds the event loop for ~0.1-0.2 s. Here each line is cut as chunks arrive: once a line
outgrows `LARGE_LINE` without its end, the string after `"content":` is kept as the chunks it arrived in (a
`RawString`, never joined) while only the JSON around it is parsed. Every byte is scanned once, by `find`, as it
arrives; a content string over the limit is refused as soon as it is (413), before the rest is read.

A content string with a backslash in it (JSON escapes, which only `json.loads` decodes right; base64 has none)
falls back to keeping the whole line and parsing it at its end, within `max_line`."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from starlette.requests import Request

from core.errors import BadRequest, PayloadTooLarge
from hub.bodies import check_declared

LARGE_LINE = 1 << 20
_STEP = 1 << 20  # decoded per turn of the loop: ~1 ms of base64
_CONTENT = b'"content":'
_MAX_TAIL = 64 * 1024  # the JSON after a large content string: path, encoding, braces


@dataclass(frozen=True)
class RawString:
    """The bytes between the quotes of a large JSON string without escapes, as the chunks they arrived in."""

    parts: tuple[bytes, ...]
    size: int


class _Mode(Enum):
    HEAD = "head"  # the start of a line: kept until its end or until it is large
    CONTENT = "content"  # inside a large content string: kept as parts, never joined
    TAIL = "tail"  # after the content string's closing quote: kept until the line ends
    WHOLE = "whole"  # a large line of another shape: kept whole and parsed at its end


def parse_line(line: bytes) -> dict[str, Any]:
    """One NDJSON commit line → `{"key": ..., "value": {...}}`; BadRequest for anything else."""
    try:
        item = json.loads(line)
    except RecursionError:
        raise BadRequest("commit body: a line nests too deeply") from None
    except ValueError as e:
        raise BadRequest(f"commit body must be NDJSON: {e}") from None
    if not isinstance(item, dict) or not isinstance(item.get("value"), dict):
        raise BadRequest("each NDJSON line must be {\"key\": ..., \"value\": {...}}")
    return item


def content_start(head: bytes) -> int:
    """Index just past the opening quote of the `"content":` string in `head`, or -1."""
    key = head.find(_CONTENT)
    if key < 0:
        return -1
    i = key + len(_CONTENT)
    while i < len(head) and head[i] in b" \t":
        i += 1
    return i + 1 if i < len(head) and head[i] == ord('"') else -1


class LineReader:
    """Bytes in (`feed`), parsed commit items out; `finish` at the end of the body.

    `max_line` bounds what is kept for one line: the content string of a file, or a whole line of another shape.
    """

    def __init__(self, max_line: int) -> None:
        self.max_line = max_line
        self._reset()

    def _reset(self) -> None:
        self._mode = _Mode.HEAD
        self._parts: list[bytes] = []
        self._size = 0
        self._head = b""  # the line up to and including the content string's opening quote

    def feed(self, chunk: bytes) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        while chunk:
            chunk = self._step(chunk, items)
        return items

    def finish(self) -> list[dict[str, Any]]:
        if self._mode is _Mode.CONTENT:
            raise BadRequest("commit body must be NDJSON: the body ends inside a string")
        items: list[dict[str, Any]] = []
        self._end_line(items)
        return items

    def _step(self, chunk: bytes, items: list[dict[str, Any]]) -> bytes:
        """Consume a prefix of `chunk` in the current mode; the rest, for the next step."""
        if self._mode is _Mode.CONTENT:
            return self._content(chunk)
        nl = chunk.find(b"\n")
        piece, rest = (chunk, b"") if nl < 0 else (chunk[:nl], chunk[nl + 1:])
        self._keep(piece)
        if nl >= 0:
            self._end_line(items)
            return rest
        if self._mode is _Mode.HEAD and self._size > LARGE_LINE:
            return self._enter_content()
        return b""

    def _keep(self, piece: bytes) -> None:
        if not piece:
            return
        self._size += len(piece)
        limit = _MAX_TAIL if self._mode is _Mode.TAIL else self.max_line
        if self._size > limit:
            raise PayloadTooLarge(f"an NDJSON line is over this server's limit of {self.max_line} bytes "
                                  "(set by SPACEHOST_MAX_FILE_BYTES)")
        self._parts.append(piece)

    def _enter_content(self) -> bytes:
        """A large line: from its content string on, keep parts; another shape is kept whole."""
        head = b"".join(self._parts)  # at most LARGE_LINE and one chunk
        start = content_start(head)
        if start < 0:
            self._mode, self._parts = _Mode.WHOLE, [head]
            return b""
        self._mode, self._head = _Mode.CONTENT, head[:start]
        self._parts, self._size = [], 0
        return head[start:]

    def _content(self, chunk: bytes) -> bytes:
        quote, escape = chunk.find(b'"'), chunk.find(b"\\")
        if escape >= 0 and (quote < 0 or escape < quote):
            # JSON escapes: only json.loads decodes those right; keep the whole line from here on
            self._parts.insert(0, self._head)
            self._size += len(self._head)
            self._mode = _Mode.WHOLE
            return chunk
        if quote < 0:
            self._keep(chunk)
            return b""
        self._keep(chunk[:quote])
        self._content_parts, self._content_size = tuple(self._parts), self._size
        self._mode, self._parts, self._size = _Mode.TAIL, [], 0
        return chunk[quote:]

    def _end_line(self, items: list[dict[str, Any]]) -> None:
        line = b"".join(self._parts)
        if self._mode is _Mode.TAIL:
            item = parse_line(self._head + line)
            item["value"]["content"] = RawString(self._content_parts, self._content_size)
            items.append(item)
        elif line.strip():
            items.append(parse_line(line))
        self._reset()


async def ndjson_items(request: Request, max_body: int, max_line: int) -> AsyncIterator[dict[str, Any]]:
    """The items of an NDJSON body, as they stream in; 413 once the body passes `max_body`."""
    check_declared(request, max_body, "the commit body")
    reader, seen = LineReader(max_line), 0
    async for chunk in request.stream():
        seen += len(chunk)
        if seen > max_body:
            raise PayloadTooLarge(f"the commit body is over this server's limit of {max_body} bytes")
        for item in reader.feed(chunk):
            yield item
    for item in reader.finish():
        yield item


def quanta(parts: tuple[bytes, ...], step: int) -> Iterator[bytes]:
    """The parts re-cut into pieces of whole base64 quanta (multiples of 4 bytes), each at most ~`step`."""
    carry = b""
    for part in parts:
        buf = carry + part if carry else part
        cut = len(buf) - len(buf) % 4
        for i in range(0, cut, step):
            yield buf[i:min(i + step, cut)]
        carry = buf[cut:]
    if carry:
        yield carry


async def write_content(content: str | RawString, encoding: str, dest: Path, max_file: int, path: str) -> None:
    """Decode a commit file's content (base64 unless `encoding` says otherwise) into `dest`, within `max_file`
    bytes; BadRequest for invalid base64. Large content is decoded step by step, yielding to the loop."""
    parts = content.parts if isinstance(content, RawString) else (content.encode(),)
    raw_size = content.size if isinstance(content, RawString) else len(parts[0])
    size = raw_size * 3 // 4 if encoding == "base64" else raw_size
    if size > max_file + 2:
        raise PayloadTooLarge(f"file {path} is over this server's limit of {max_file} bytes "
                              "(SPACEHOST_MAX_FILE_BYTES)")
    with dest.open("wb") as out:
        for step in quanta(parts, _STEP) if encoding == "base64" else parts:
            try:
                out.write(base64.b64decode(step, validate=True) if encoding == "base64" else step)
            except binascii.Error:
                raise BadRequest(f"file {path}: content is not valid base64") from None
            if raw_size > _STEP:
                await asyncio.sleep(0)
