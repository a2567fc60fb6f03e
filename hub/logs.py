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


async def sse(path: Path, *, follow: bool, tail: int | None, is_done: Callable[[], bool]) -> AsyncIterator[str]:
    """Stream a log file as SSE. With `follow`, keep streaming new lines (and keep-alives) until `is_done()`
    and nothing more arrives."""
    pos = 0
    if path.exists():
        text = path.read_text(encoding="utf-8", errors="replace")
        lines = text.splitlines()
        for raw in lines[-tail:] if tail else lines:
            yield _event(raw)
        pos = len(text.encode())
    if not follow:
        return
    idle = 0.0
    while True:
        await asyncio.sleep(0.2)
        size = path.stat().st_size if path.exists() else 0
        if size < pos:  # truncated: a new build started
            pos = 0
        if size > pos:
            with path.open("rb") as f:
                f.seek(pos)
                chunk = f.read()
            last_nl = chunk.rfind(b"\n") + 1
            pos += last_nl
            for raw in chunk[:last_nl].decode("utf-8", errors="replace").splitlines():
                yield _event(raw)
            idle = 0.0
        else:
            idle += 0.2
            if idle >= 15:
                yield "data:\n\n"  # keep-alive, as Hugging Face sends
                idle = 0.0
            if is_done() and idle >= 0.4:
                return
