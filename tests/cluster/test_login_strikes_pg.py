"""The sign-in throttle's strikes on a real PostgreSQL, shared by the servers of a cluster: two servers (two
Stores) failing the same account and the same new client at once lose no failure, and the pruning of old rows
while others fail neither waits for ever nor deadlocks."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from hub.login_limit import LoginLimiter, Policy
from state.login_strikes import strikes
from state.store import Store

NEVER = Policy(free=10_000, window_s=3600, block_s=60, cap_s=3600)  # counts, never blocks


def test_two_servers_failing_at_once_lose_no_failure(fresh_postgres_url: str) -> None:
    servers = [Store(fresh_postgres_url), Store(fresh_postgres_url)]
    now = 1e9
    stale = LoginLimiter(servers[0], client=Policy(free=5, window_s=1, block_s=1, cap_s=1), account=NEVER)
    for i in range(20):
        stale.failed(f"old-{i}", "old", now - 100)  # rows the next failures prune while they count

    def fail(i: int) -> None:
        LoginLimiter(servers[i % 2], client=Policy(free=10_000, window_s=10, block_s=60, cap_s=1),
                     account=NEVER).failed("10.9.9.9", "alice", now + i * 0.001)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(fail, range(40)))
    for s in servers:
        assert strikes(s, "account", "alice").failures == 40
        assert strikes(s, "client", "10.9.9.9").failures == 40
        assert strikes(s, "client", "old-0").failures == 0  # pruned
        s.engine.dispose()
