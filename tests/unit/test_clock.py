"""FakeClock: time moves only when advanced, sleepers wake in due order, at their due time."""

from __future__ import annotations

import asyncio

from core.clock import SYSTEM, Clock, FakeClock


def test_fake_clock_wakes_sleepers_in_due_order_at_their_due_time() -> None:
    async def main() -> list[tuple[str, float]]:
        clock = FakeClock(monotonic=100.0)
        woke: list[tuple[str, float]] = []

        async def sleeper(name: str, s: float) -> None:
            await clock.sleep(s)
            woke.append((name, clock.monotonic()))

        tasks = [asyncio.create_task(sleeper(n, s)) for n, s in (("c", 3.0), ("a", 1.0), ("b", 2.0), ("a2", 1.0))]
        await clock.advance(0)
        assert clock.sleepers == 4
        await clock.advance(1.5)
        assert woke == [("a", 101.0), ("a2", 101.0)] and clock.monotonic() == 101.5
        await clock.advance(10)
        await asyncio.gather(*tasks)
        return woke

    assert asyncio.run(main()) == [("a", 101.0), ("a2", 101.0), ("b", 102.0), ("c", 103.0)]


def test_fake_clock_wakes_a_sleep_started_by_a_woken_task_within_the_window() -> None:
    async def main() -> float:
        clock = FakeClock(monotonic=0.0)

        async def twice() -> float:
            await clock.sleep(1.0)
            await clock.sleep(1.0)
            return clock.monotonic()

        task = asyncio.create_task(twice())
        await clock.advance(2.5)
        assert task.done()
        return task.result()

    assert asyncio.run(main()) == 2.0


def test_fake_wall_time_moves_with_monotonic_time() -> None:
    async def main() -> None:
        clock = FakeClock(monotonic=5.0, wall=1000.0)
        await clock.advance(2.0)
        assert (clock.now(), clock.monotonic()) == (1002.0, 7.0)

    asyncio.run(main())


def test_system_clock_is_a_clock() -> None:
    clock: Clock = SYSTEM
    assert clock.monotonic() > 0 and clock.now() > 1e9
    asyncio.run(clock.sleep(0))
