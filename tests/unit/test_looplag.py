"""The loop-lag probe: percentiles of how late the loop wakes, and a stall caught in the act with its stack."""

from __future__ import annotations

import asyncio
import time

from hub.looplag import LoopLag, stats


def test_percentiles_are_nearest_rank_in_ms() -> None:
    s = stats([0.001] * 98 + [0.2, 0.3])
    assert (s.samples, s.p50_ms, s.p99_ms, s.max_ms) == (100, 1.0, 300.0, 300.0)
    assert stats([]).samples == 0


def _hold_the_loop(seconds: float) -> None:
    time.sleep(seconds)  # what a blocking call in a request handler does to everybody


async def _a_stall_then_quiet(probe: LoopLag) -> None:
    probe.ensure_started()
    await asyncio.sleep(0.05)
    _hold_the_loop(0.4)
    await asyncio.sleep(0.1)
    await probe.close()


def test_a_stall_is_caught_with_the_stack_it_was_stuck_in() -> None:
    probe = LoopLag(stall_s=0.1)
    asyncio.run(_a_stall_then_quiet(probe))
    snap = probe.snapshot()
    assert snap.max_ms >= 350
    assert len(snap.stalls) == 1, snap.stalls  # one stall, caught once
    assert "_hold_the_loop" in snap.stalls[0] and "time.sleep(seconds)" in snap.stalls[0], snap.stalls[0]
    assert snap.as_json()["stalls"] == list(snap.stalls)
    probe.reset()
    assert probe.snapshot().stalls == () and probe.snapshot().samples == 0


async def _quiet(probe: LoopLag) -> None:
    probe.ensure_started()
    await asyncio.sleep(0.3)
    await probe.close()


def test_a_quiet_loop_has_no_stalls() -> None:
    probe = LoopLag(stall_s=0.1)
    asyncio.run(_quiet(probe))
    assert probe.snapshot().samples > 10 and probe.snapshot().stalls == ()
