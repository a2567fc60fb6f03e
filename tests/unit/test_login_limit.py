"""Password sign-in throttle on a fake clock: failures block a client or an account with a doubling, capped
block; other accounts and other clients go on; a stranger's failures never lock an account for longer than its
cap at a time; the table stays bounded."""

from __future__ import annotations

import pytest

from hub.login_limit import ACCOUNT, CLIENT, LoginLimiter, Policy, Strikes, after_failure, verdict

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


def test_an_account_block_leaves_other_accounts_and_the_client_a_block_blocks_only_that_client() -> None:
    lim = LoginLimiter(client=Policy(free=8, window_s=60, block_s=60, cap_s=900), account=P)
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
    six hours: alice's password sign-in waits at most the account's cap at any moment."""
    lim = LoginLimiter()
    longest, t, n = 0, 0.0, 0
    while t < 6 * 3600:
        v = lim.check(f"10.1.{n // 250}.{n % 250}", "alice", t)
        if v.allowed:
            lim.failed(f"10.1.{n // 250}.{n % 250}", "alice", t)
            n += 1
        longest = max(longest, lim.check("192.0.2.7", "alice", t).retry_after_s)
        t += 1
    assert longest == ACCOUNT.cap_s and n < 6 * 3600 / ACCOUNT.cap_s * ACCOUNT.free + ACCOUNT.free * 4


def test_the_table_stays_bounded() -> None:
    lim = LoginLimiter(max_keys=100)
    for i in range(1000):
        lim.failed(f"c{i}", f"a{i}", i * 0.01)
    assert len(lim.tables["client"]) <= 100 and len(lim.tables["account"]) <= 100
    assert "c999" in lim.tables["client"]  # the newest stay
    assert CLIENT.free > ACCOUNT.free  # one NAT address is shared by many people; one account is one person
