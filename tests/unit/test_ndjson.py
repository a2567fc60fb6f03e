"""The NDJSON commit-body reader (hub/ndjson.py): lines cut in any chunking give the items `json.loads` gives,
a large file's content is kept as its arriving parts, and a content string over the limit is refused as soon as
it is over, not at the end of the line."""

from __future__ import annotations

import base64
import json
import random
from typing import Any

import pytest

from core.errors import BadRequest, PayloadTooLarge
from hub.ndjson import LARGE_LINE, LineReader, RawString, quanta


def body_of(*items: dict[str, Any]) -> bytes:
    return b"".join(json.dumps(x).encode() + b"\n" for x in items)


def read(body: bytes, max_line: int, seed: int = 0) -> list[dict[str, Any]]:
    """Feed `body` in random chunk sizes (1 byte to 256 KiB), as a socket might deliver it."""
    rng, reader, out, i = random.Random(seed), LineReader(max_line), [], 0
    while i < len(body):
        n = rng.choice([1, 7, 4096, 65536, 262144])
        out += reader.feed(body[i:i + n])
        i += n
    return out + reader.finish()


def content_of(value: dict[str, Any]) -> bytes:
    c = value["content"]
    return b"".join(c.parts) if isinstance(c, RawString) else str(c).encode()


def file_item(data: bytes, path: str = "big.bin") -> dict[str, Any]:
    return {"key": "file", "value": {"content": base64.b64encode(data).decode(), "path": path, "encoding": "base64"}}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_small_and_large_lines_in_any_chunking(seed: int) -> None:
    big = random.Random(seed).randbytes(3 * LARGE_LINE)
    items = [{"key": "header", "value": {"summary": "s", "description": ""}}, file_item(b"tiny", "a.txt"),
             file_item(big), {"key": "deletedFile", "value": {"path": "old.txt"}}]
    got = read(body_of(*items) + b"\n\n", max_line=8 * LARGE_LINE, seed=seed)
    assert [g["key"] for g in got] == ["header", "file", "file", "deletedFile"]
    assert got[1]["value"]["content"] == base64.b64encode(b"tiny").decode()  # a small line: json.loads as is
    large = got[2]["value"]
    assert isinstance(large["content"], RawString) and len(large["content"].parts) > 1  # never joined
    assert base64.b64decode(content_of(large)) == big
    assert large["path"] == "big.bin" and large["encoding"] == "base64"


def test_escaped_content_falls_back_to_the_whole_line() -> None:
    text = "a/b\\c\"d" * LARGE_LINE  # json.dumps escapes the backslash and the quote
    item = {"key": "file", "value": {"content": text, "path": "t.txt", "encoding": "utf-8"}}
    got = read(body_of(item), max_line=16 * LARGE_LINE)
    assert got[0]["value"]["content"] == text


def test_content_over_the_limit_is_refused_before_the_line_ends() -> None:
    body = body_of(file_item(b"\0" * (4 * LARGE_LINE)))
    reader = LineReader(max_line=2 * LARGE_LINE)
    with pytest.raises(PayloadTooLarge):
        for i in range(0, 3 * LARGE_LINE, 65536):  # the first 3 MiB of a ~5.3 MiB line
            reader.feed(body[i:i + 65536])


def test_a_body_ending_inside_a_string_is_a_400() -> None:
    body = body_of(file_item(b"x" * (2 * LARGE_LINE)))
    reader = LineReader(max_line=4 * LARGE_LINE)
    reader.feed(body[:len(body) // 2])
    with pytest.raises(BadRequest):
        reader.finish()


def test_a_long_tail_after_the_content_is_413() -> None:
    item = file_item(b"x" * (2 * LARGE_LINE))
    item["value"]["pad"] = "p" * (128 * 1024)
    with pytest.raises(PayloadTooLarge):
        read(body_of(item), max_line=4 * LARGE_LINE)


def test_quanta_recut_parts_into_whole_base64_quanta() -> None:
    data = random.Random(3).randbytes(100_003)
    enc = base64.b64encode(data)
    parts = tuple(enc[i:i + 997] for i in range(0, len(enc), 997))
    pieces = list(quanta(parts, 4096))
    assert all(len(p) % 4 == 0 for p in pieces[:-1]) and max(map(len, pieces)) <= 4096
    assert b"".join(base64.b64decode(p) for p in pieces) == data
