"""Event-loop lag: how late a task that asks to sleep `interval` wakes up. The hub, the proxy and the scheduler
share one loop in embedded mode, so a request that holds it (a parse, a blocking call) shows here as lag for
everyone. Started on first use; kept samples are the last `keep`."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class LagStats:
    samples: int
    p50_ms: float
    p99_ms: float
    max_ms: float

    def as_json(self) -> dict[str, float | int]:
        return {"samples": self.samples, "p50Ms": self.p50_ms, "p99Ms": self.p99_ms, "maxMs": self.max_ms}


def stats(lags_s: list[float]) -> LagStats:
    """Percentiles (nearest rank) of lags in seconds, in milliseconds."""
    if not lags_s:
        return LagStats(0, 0.0, 0.0, 0.0)
    xs = sorted(lags_s)

    def rank(q: float) -> float:
        return round(xs[min(len(xs) - 1, int(q * len(xs)))] * 1000, 3)

    return LagStats(len(xs), rank(0.5), rank(0.99), round(xs[-1] * 1000, 3))


class LoopLag:
    def __init__(self, interval: float = 0.005, keep: int = 100_000) -> None:
        self.interval = interval
        self.lags: deque[float] = deque(maxlen=keep)
        self._task: asyncio.Task[None] | None = None

    def ensure_started(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._sample())

    def reset(self) -> None:
        self.lags.clear()

    def snapshot(self) -> LagStats:
        return stats(list(self.lags))

    async def _sample(self) -> None:
        while True:
            start = time.perf_counter()
            await asyncio.sleep(self.interval)
            self.lags.append(max(0.0, time.perf_counter() - start - self.interval))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
