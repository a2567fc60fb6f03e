"""Waiting on a condition, not a duration: the tests' one way to wait for something another thread or process
does (a fixed `sleep` is too short on a busy machine and too long on an idle one)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def eventually(probe: Callable[[], T | None], timeout: float = 90, every: float = 0.3) -> T:
    """The first truthy result of `probe` (exceptions count as not yet); TimeoutError after `timeout` s."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            got = probe()
            if got:
                return got
            last = got
        except Exception as e:  # noqa: BLE001 - still converging (restart in progress)
            last = e
        time.sleep(every)
    raise TimeoutError(f"not reached in {timeout}s; last: {last!r}")
