"""The log index: build and run logs, one append-only file per Space and kind, each line `ISO\\ttext`.
Writers are the scheduler and builders (any thread); readers are the hub (hub/logs.py streams them as SSE)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

LAST_GOOD_BUILD = "build.last-good.log"  # the last build that finished, kept beside the one that runs
BUILD_DONE = "==> Build finished"


def keep_good_build(space_dir: Path) -> None:
    """Before a new build truncates build.log: keep it as the last good build's if that build finished."""
    log = space_dir / "build.log"
    try:
        if any(line.startswith(BUILD_DONE) for line in LogFile(log).lines()):
            log.replace(space_dir / LAST_GOOD_BUILD)
    except OSError:
        pass


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
