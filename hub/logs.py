"""Build and run logs: append-only files per Space, streamed as SSE in Hugging Face's format
(`data: {"data": "<line>", "timestamp": "..."}`)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path


class LogFile:
    """One log: lines with a timestamp prefix `ISO\\t` on disk; writers from any thread."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, line: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        stamp = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        with self.path.open("a", encoding="utf-8") as f:
            for part in line.rstrip("\n").split("\n"):
                f.write(f"{stamp}\t{part}\n")

    def reset(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("")

    def lines(self) -> list[str]:
        if not self.path.exists():
            return []
        return [ln.split("\t", 1)[-1] for ln in self.path.read_text(encoding="utf-8", errors="replace").splitlines()]

    def tail(self, n: int = 30) -> str:
        return "\n".join(self.lines()[-n:])


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
