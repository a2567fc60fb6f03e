"""The build reaper's decision (builder/celery_queue.reap): a pure function of what Redis shows."""

from __future__ import annotations

import pytest

from builder.celery_queue import LOST_GRACE_S, MAX_ATTEMPTS, Seen, Step, reap

CASES = {
    "never enqueued": (Seen(queued=False, leased=False, absent_s=None, attempts=0), Step.ENQUEUE),
    "waiting in the queue": (Seen(queued=True, leased=False, absent_s=None, attempts=1), Step.WAIT),
    "a worker builds it": (Seen(queued=False, leased=True, absent_s=None, attempts=1), Step.WAIT),
    "just popped, lease not yet taken": (Seen(False, False, LOST_GRACE_S / 2, 1), Step.WAIT),
    "worker vanished": (Seen(False, False, LOST_GRACE_S + 0.1, 1), Step.ENQUEUE),
    "vanished again": (Seen(False, False, LOST_GRACE_S + 0.1, MAX_ATTEMPTS - 1), Step.ENQUEUE),
    "vanished too often": (Seen(False, False, LOST_GRACE_S + 0.1, MAX_ATTEMPTS), Step.GIVE_UP),
    "re-queued after a restart": (Seen(queued=True, leased=False, absent_s=None, attempts=MAX_ATTEMPTS), Step.WAIT),
}


@pytest.mark.parametrize(("seen", "step"), CASES.values(), ids=CASES.keys())
def test_reap(seen: Seen, step: Step) -> None:
    assert reap(seen) is step
