"""Event-loop lag: how late a task that asks to sleep `interval` wakes up. The hub, the proxy and the scheduler
share one loop in embedded mode, so a request that holds it (a parse, a blocking call) shows here as lag for
everyone. Started on first use; kept samples are the last `keep`.

A stall (the loop `stall_s` late) is also caught in the act: a watchdog thread takes the loop thread's stack
while it is still stuck, so a stall says where it happened (the last `STALLS_KEPT`, in `stalls`)."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass, field

STALLS_KEPT = 5
STACK_FRAMES = 14


@dataclass(frozen=True)
class LagStats:
    samples: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    stalls: tuple[str, ...] = field(default=())  # where the loop was stuck, innermost frame last

    def as_json(self) -> dict[str, object]:
        return {"samples": self.samples, "p50Ms": self.p50_ms, "p99Ms": self.p99_ms, "maxMs": self.max_ms,
                "stalls": list(self.stalls)}


def stats(lags_s: list[float], stalls: tuple[str, ...] = ()) -> LagStats:
    """Percentiles (nearest rank) of lags in seconds, in milliseconds."""
    if not lags_s:
        return LagStats(0, 0.0, 0.0, 0.0, stalls)
    xs = sorted(lags_s)

    def rank(q: float) -> float:
        return round(xs[min(len(xs) - 1, int(q * len(xs)))] * 1000, 3)

    return LagStats(len(xs), rank(0.5), rank(0.99), round(xs[-1] * 1000, 3), stalls)


def stuck_at(thread_id: int, late_s: float) -> str:
    """The stack of thread `thread_id` now, headed by how late its loop is."""
    frame = sys._current_frames().get(thread_id)
    stack = "".join(traceback.format_stack(frame)[-STACK_FRAMES:]) if frame is not None else "(thread gone)\n"
    return f"loop {late_s * 1000:.0f} ms late, at:\n{stack}"


class LoopLag:
    def __init__(self, interval: float = 0.005, keep: int = 100_000, stall_s: float = 0.1) -> None:
        self.interval = interval
        self.stall_s = stall_s
        self.lags: deque[float] = deque(maxlen=keep)
        self.stalls: deque[str] = deque(maxlen=STALLS_KEPT)
        self._task: asyncio.Task[None] | None = None
        self._beat = time.perf_counter()  # when the sampler last woke (written by the loop, read by the watchdog)
        self._stop = threading.Event()

    def ensure_started(self) -> None:
        if self._task is None or self._task.done():
            self._beat, self._stop = time.perf_counter(), threading.Event()
            self._task = asyncio.get_running_loop().create_task(self._sample())
            threading.Thread(target=self._watch, args=(threading.get_ident(), self._stop), daemon=True,
                             name="loop-lag-watchdog").start()

    def reset(self) -> None:
        self.lags.clear()
        self.stalls.clear()

    def snapshot(self) -> LagStats:
        return stats(list(self.lags), tuple(self.stalls))

    async def _sample(self) -> None:
        try:
            while True:
                start = time.perf_counter()
                await asyncio.sleep(self.interval)
                self._beat = now = time.perf_counter()
                self.lags.append(max(0.0, now - start - self.interval))
        finally:
            self._stop.set()

    def _watch(self, loop_thread: int, stop: threading.Event) -> None:
        """Once per stall, the loop thread's stack while it is still stuck."""
        caught = 0.0  # the beat whose stall was caught
        while not stop.wait(self.stall_s / 4):
            beat = self._beat
            late = time.perf_counter() - beat - self.interval
            if late >= self.stall_s and beat != caught:
                caught = beat
                self.stalls.append(stuck_at(loop_thread, late))

    async def close(self) -> None:
        self._stop.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
