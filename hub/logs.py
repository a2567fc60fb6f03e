"""Build and run logs streamed as SSE in Hugging Face's format (`data: {"data": "<line>", "timestamp": "..."}`).
The files themselves are the log index in state/logs.py."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from state.logs import LogFile

__all__ = ["LogFile", "sse"]  # LogFile lives in state/logs.py (the scheduler writes logs, the hub reads them)


def _event(raw: str) -> str:
    stamp, _, text = raw.partition("\t")
    if not _:
        stamp, text = "", raw
    return "data: " + json.dumps({"data": text, "timestamp": stamp}) + "\n\n"


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _read_from(path: Path, pos: int) -> tuple[int, list[str]]:
    """(the offset after the last whole line, the whole lines from `pos` on)."""
    with path.open("rb") as f:
        f.seek(pos)
        chunk = f.read()
    last_nl = chunk.rfind(b"\n") + 1
    return pos + last_nl, chunk[:last_nl].decode("utf-8", errors="replace").splitlines()


async def sse(path: Path, *, follow: bool, tail: int | None, is_done: Callable[[], bool]) -> AsyncIterator[str]:
    """Stream a log file as SSE. With `follow`, keep streaming new lines (and keep-alives) until `is_done()`
    and nothing more arrives."""
    pos = 0
    if path.exists():  # file reads happen in a thread: a run log can be large, the loop serves everyone
        pos, lines = await asyncio.to_thread(_read_from, path, 0)
        for raw in lines[-tail:] if tail else lines:
            yield _event(raw)
    if not follow:
        return
    idle = 0.0
    while True:
        await asyncio.sleep(0.2)
        size = await asyncio.to_thread(_size, path)
        if size < pos:  # truncated: a new build started
            pos = 0
        if size > pos:
            pos, lines = await asyncio.to_thread(_read_from, path, pos)
            for raw in lines:
                yield _event(raw)
            idle = 0.0
        else:
            idle += 0.2
            if idle >= 15:
                yield "data:\n\n"  # keep-alive, as Hugging Face sends
                idle = 0.0
            if is_done() and idle >= 0.4:
                return
