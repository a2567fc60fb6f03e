"""Password sign-in throttle on a fake clock: failures block a client or an account with a doubling, capped
block; other accounts and other clients go on; a stranger's failures never lock an account for longer than its
cap at a time; the strikes live in the store (a real SQLite file): a restart and a second server see them, and
rows that no longer matter go."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from hub.login_limit import ACCOUNT, CLIENT, LoginLimiter, Policy, Strikes, after_failure, verdict
from state.login_strikes import LoginStrikeRow
from state.store import Store

P = Policy(free=5, window_s=60, block_s=60, cap_s=300)


def fail_at(times: list[float], p: Policy = P) -> Strikes:
    s = Strikes()
    for t in times:
        s = after_failure(s, t, p)
    return s


@pytest.mark.parametrize(("times", "now", "retry_after"), [
    ([0, 1, 2, 3], 4, 0),  # four failures: still free
    ([0, 1, 2, 3, 4], 5, 59),  # the fifth blocks for block_s from the fifth
    ([0, 1, 2, 3, 4], 64, 0),  # and the block ends
    ([0, 15, 30, 45, 61, 76, 91, 106], 107, 0),  # four a minute never blocks: the window starts again
    ([0, 1, 2, 3, 4, 70, 71, 72, 73, 74], 75, 119),  # the second block doubles
    ([*range(5), *range(70, 75), *range(200, 205), *range(450, 455)], 455, 299),  # 60, 120, 240, then the cap
    ([*range(5), *range(70, 75), *range(500, 505)], 505, 59),  # quiet for a cap after a block: forgiven
], ids=["four-free", "fifth-blocks", "block-ends", "slow-never-blocks", "doubles", "capped", "forgiven"])
def test_failures_block_with_a_doubling_capped_block(times: list[float], now: float, retry_after: int) -> None:
    v = verdict(Strikes(), fail_at(times), now)
    assert (v.allowed, v.retry_after_s) == (retry_after == 0, retry_after)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path / 'state.db'}")
    yield s
    s.engine.dispose()


def test_an_account_block_leaves_other_accounts_and_the_client_a_block_blocks_only_that_client(store: Store) -> None:
    lim = LoginLimiter(store, client=Policy(free=8, window_s=60, block_s=60, cap_s=900), account=P)
    for t in range(5):
        lim.failed("10.0.0.1", "Alice", t)
    assert lim.check("10.0.0.1", " alice ", 5) == lim.check("10.0.0.9", "ALICE", 5)  # one account, any spelling
    assert lim.check("10.0.0.9", "alice", 5).by == "account" and not lim.check("10.0.0.9", "alice", 5).allowed
    assert lim.check("10.0.0.1", "bob", 5).allowed  # the client may still sign in as someone else
    for t in range(5, 8):
        lim.failed("10.0.0.1", "bob", t)
    assert lim.check("10.0.0.1", "carol", 8).by == "client"  # eight failures from one client: it waits
    assert lim.check("10.0.0.2", "carol", 8).allowed  # others do not


def test_a_stranger_cannot_lock_an_account_for_longer_than_its_cap() -> None:
    """An attacker who tries a wrong password for alice whenever allowed, from a new address each time, for
    six hours: alice's password sign-in waits at most the account's cap at any moment (the policy alone: the
    new address has no strikes of its own)."""
    alice, longest, t, n = Strikes(), 0, 0.0, 0
    while t < 6 * 3600:
        if verdict(Strikes(), alice, t).allowed:
            alice = after_failure(alice, t, ACCOUNT)
            n += 1
        longest = max(longest, verdict(Strikes(), alice, t).retry_after_s)
        t += 1
    assert longest == ACCOUNT.cap_s and n < 6 * 3600 / ACCOUNT.cap_s * ACCOUNT.free + ACCOUNT.free * 4
    assert CLIENT.free > ACCOUNT.free  # one NAT address is shared by many people; one account is one person


def test_a_restart_and_a_second_server_see_the_same_strikes(store: Store, tmp_path: Path) -> None:
    """What one hub process counted, a restarted one (a new Store on the same database) and another server of
    the cluster (one more Store, alive at the same time) count on from."""
    first = LoginLimiter(store, account=P)
    for t in range(3):
        first.failed("10.0.0.1", "alice", 1000 + t)
    store.engine.dispose()
    restarted = Store(f"sqlite:///{tmp_path / 'state.db'}")
    other = Store(f"sqlite:///{tmp_path / 'state.db'}")
    LoginLimiter(restarted, account=P).failed("10.0.0.2", "alice", 1003)
    LoginLimiter(other, account=P).failed("10.0.0.3", "Alice", 1004)  # the fifth failure, on another server
    for s in (restarted, other):
        v = LoginLimiter(s, account=P).check("10.0.0.9", "alice", 1005)
        assert (v.allowed, v.by, v.retry_after_s) == (False, "account", 59)
    restarted.engine.dispose()
    other.engine.dispose()


def rows(store: Store) -> int:
    with store.session() as s:
        return int(s.scalar(select(func.count()).select_from(LoginStrikeRow)) or 0)


def test_rows_that_no_longer_matter_go(store: Store) -> None:
    """A flood of made-up names leaves rows for one window; a block is remembered for a cap after it ends."""
    lim, t0 = LoginLimiter(store, account=P), 1e9  # wall-clock times
    for i in range(50):
        lim.failed(f"c{i}", f"made-up-{i}", t0 + i * 0.1)
    assert rows(store) == 100
    for t in range(5):
        lim.failed("10.0.0.1", "alice", t0 + 100 + t)  # blocks alice until t0 + 164
    assert rows(store) == 2  # the flood's rows are past their window: gone
    lim.failed("10.0.0.2", "bob", t0 + 400)  # alice's block ended 236 s ago, less than the cap: kept
    assert lim.check("10.0.0.9", "alice", t0 + 400).allowed
    assert keys(store) == ["10.0.0.2", "alice", "bob"]  # 10.0.0.1 was never blocked: gone after its window
    lim.failed("10.0.0.3", "carol", t0 + 465)  # a cap after alice's block ended: forgiven and gone
    assert keys(store) == ["10.0.0.3", "carol"]


def keys(store: Store) -> list[str]:
    with store.session() as s:
        return sorted(s.scalars(select(LoginStrikeRow.key)))
