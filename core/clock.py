"""The clock as a parameter (STYLE.md 6): wall time, monotonic time and an awaitable sleep behind one small
Protocol. `SYSTEM` reads the host's clocks; `FakeClock` is moved by hand, so code that waits (a backoff, a
sleep after idle, a probe deadline) runs in tests without waiting."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Wall-clock seconds since the epoch (for ids and timestamps, never for durations)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (for durations and deadlines)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Return after `seconds` of this clock's monotonic time (at once for 0 or less, after one yield)."""
        ...


class SystemClock:
    """The host's clocks and asyncio's sleep."""

    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


SYSTEM = SystemClock()


class FakeClock:
    """A clock that moves only when told: `advance(s)` wakes the sleepers due within `s`, earliest first (ties
    in the order they went to sleep), each at its own due time, and lets the woken tasks run before the next.
    Sleepers that a woken task starts within the window are woken in the same call."""

    def __init__(self, monotonic: float = 1000.0, wall: float = 1_700_000_000.0, *, yields: int = 20) -> None:
        self._mono = monotonic
        self._offset = wall - monotonic
        self._yields = yields  # event-loop turns given to woken tasks (and their loopback I/O) per wake
        self._seq = itertools.count()
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []

    def now(self) -> float:
        return self._offset + self._mono

    def monotonic(self) -> float:
        return self._mono

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._mono + seconds, next(self._seq), fut))
        await fut

    @property
    def sleepers(self) -> int:
        """How many tasks sleep on this clock now (cancelled ones excluded)."""
        return sum(1 for _, _, f in self._sleepers if not f.done())

    async def advance(self, seconds: float) -> None:
        """Move monotonic (and wall) time forward by `seconds`, waking each sleeper due on the way."""
        target = self._mono + max(0.0, seconds)
        await self._settle()
        while self._sleepers and self._sleepers[0][0] <= target:
            due, _, fut = heapq.heappop(self._sleepers)
            self._mono = max(self._mono, due)
            if not fut.done():
                fut.set_result(None)
                await self._settle()
        self._mono = target
        await self._settle()

    async def _settle(self) -> None:
        for _ in range(self._yields):
            await asyncio.sleep(0)
