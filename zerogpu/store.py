"""Quota usage that survives a broker restart: one small JSON file, replaced atomically by `flush()` (the
broker's timer calls it, so a crash loses at most one tick of charges; a file write per release would cost
more than the rest of the lease round trip). Leases are not persisted on purpose — a restarted broker
knows no grants, so stale ones are gone."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from zerogpu.quota import Usage

log = logging.getLogger(__name__)


class UsageStore:
    """Visitor key → `Usage`. With `path=None` it lives in memory only."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._usage: dict[str, Usage] = {}
        self._dirty = False
        if path is not None and path.exists():
            try:
                raw = json.loads(path.read_text())
                self._usage = {k: Usage(float(v["window_start"]), float(v["used_s"])) for k, v in raw.items()}
            except (ValueError, KeyError, TypeError) as e:
                log.warning("ignoring unreadable quota file %s: %s", path, e)

    def get(self, key: str) -> Usage | None:
        return self._usage.get(key)

    def put(self, key: str, usage: Usage) -> None:
        self._usage[key] = usage
        self._dirty = True

    def prune(self, now: float) -> None:
        """Forget windows that have reset."""
        self._usage = {k: u for k, u in self._usage.items() if u.current(now) is not None}
        self._dirty = True

    def flush(self) -> None:
        if self.path is None or not self._dirty:
            return
        self._dirty = False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({k: {"window_start": u.window_start, "used_s": u.used_s}
                                   for k, u in self._usage.items()}))
        os.replace(tmp, self.path)
