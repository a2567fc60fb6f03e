"""The cluster's ZeroGPU quota ledger (zerogpu/redis_ledger.py) on a real redis-server: charges accumulate in one
24 h window whose key expires with it, concurrent charges of two brokers all count, a broker's admission sees what
other brokers hold and charged, and a Redis outage fails new leases closed (HTTP 503) while a lease in progress
ends and its charge reaches the ledger once Redis is back."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from deploy.cluster.services import Service, start_redis
from zerogpu.broker import Broker, Granted, Identity, Rejected
from zerogpu.ledger import Hold, LedgerQuota, LedgerUnavailable
from zerogpu.policy import ApproveResult
from zerogpu.pool import declared_pool
from zerogpu.quota import WINDOW_S, GpuSize, Limits
from zerogpu.redis_ledger import RedisLedger, usage_key
from zerogpu.server import create_app

SECRET = b"ledger-test-secret-32-bytes-long!!"
NO_HOLD = Hold(0.0, 0.0)


class Clock:
    """Wall time that a test moves forward (Redis expiries are absolute, so it starts at the real time)."""

    def __init__(self) -> None:
        self.t = time.time()

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def visitor() -> str:
    return f"user:u{time.monotonic_ns()}"


def test_charges_accumulate_in_one_window_whose_key_expires_with_it(redis_url: str, visitor: str) -> None:
    ledger, now = RedisLedger("a", redis_url), time.time()
    ledger.charge(visitor, 2.5, now, NO_HOLD)
    ledger.charge(visitor, 4.0, now + 10, NO_HOLD)
    acct = ledger.account(visitor, now + 10)
    assert acct.usage is not None and (acct.usage.window_start, acct.usage.used_s) == (now, 6.5)
    ttl = redis.Redis.from_url(redis_url).ttl(usage_key(visitor))
    assert WINDOW_S - 60 < ttl <= WINDOW_S + 1, ttl  # the key lives as long as its window
    later = ledger.charge(visitor, 1.0, now + WINDOW_S + 5, NO_HOLD)  # the window reset: a new one opens
    assert (later.window_start, later.used_s) == (now + WINDOW_S + 5, 1.0)


def test_concurrent_charges_of_two_brokers_all_count(redis_url: str, visitor: str) -> None:
    now = time.time()

    def spend(name: str) -> None:
        ledger = RedisLedger(name, redis_url)
        for _ in range(100):
            ledger.charge(visitor, 0.5, now, NO_HOLD)

    threads = [threading.Thread(target=spend, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    usage = RedisLedger("reader", redis_url).account(visitor, now).usage
    assert usage is not None and usage.used_s == 100.0  # 200 × 0.5, none lost to a race


def test_each_broker_admits_against_what_the_others_charged_and_hold(redis_url: str, visitor: str) -> None:
    clock = Clock()
    a, b = (Broker(declared_pool(1), SECRET, clock=clock, ledger=RedisLedger(n, redis_url)) for n in ("a", "b"))
    who = Identity(visitor, signed_in=True)  # daily 300 s

    got = a.schedule("o/s1", who, 100, GpuSize.LARGE, 1)
    assert isinstance(got, Granted)
    clock.t += 60
    assert a.release("o/s1", got.lease.token, fail=False)  # charged 60 s
    assert b.quota_for(visitor).as_json() | {"resets_at": None} == {
        "daily_s": 300, "used_s": 60.0, "reserved_s": 0, "left_s": 240.0, "resets_at": None}

    on_b = b.schedule("o/s2", who, 200, GpuSize.LARGE, 1)  # on node B, held there while it runs
    assert isinstance(on_b, Granted)
    seen_by_a = a.quota_for(visitor)
    assert (seen_by_a.used_s, seen_by_a.reserved_s, seen_by_a.left_s) == (60.0, 200.0, 40.0)
    refused = a.schedule("o/s1", who, 50, GpuSize.LARGE, 2)
    assert isinstance(refused, Rejected)
    assert (refused.admission.result, refused.admission.left_s) == (ApproveResult.QUOTA_EXCEEDED, 40)

    clock.t += 30
    assert b.release("o/s2", on_b.lease.token, fail=False)  # 30 of B's 200 s used: the rest is free again
    after = a.quota_for(visitor)
    assert (after.used_s, after.reserved_s, after.left_s) == (90.0, 0.0, 210.0)
    assert isinstance(a.schedule("o/s1", who, 50, GpuSize.LARGE, 3), Granted)


def test_a_quota_override_the_server_sets_reaches_every_broker(redis_url: str, visitor: str) -> None:
    """The hub resolves who gets more (a PRO user, an org's members) on the server; node brokers apply it from
    the ledger at their next admission, and the server's own quota answer agrees."""
    clock = Clock()
    server = LedgerQuota(RedisLedger("server", redis_url), Limits(), clock)
    node = Broker(declared_pool(1), SECRET, clock=clock, ledger=RedisLedger("node", redis_url))
    who = Identity(visitor, signed_in=True)  # daily 300 s
    RedisLedger("spent", redis_url).charge(visitor, 250.0, clock.t, NO_HOLD)
    refused = node.schedule("o/s", who, 100, GpuSize.LARGE, 1)
    assert isinstance(refused, Rejected) and refused.admission.left_s == 50

    server.set_quota_overrides({visitor: 1000})
    assert node.quota_for(visitor).daily_s == server.quota_for(visitor).daily_s == 1000
    got = node.schedule("o/s", who, 100, GpuSize.LARGE, 2)
    assert isinstance(got, Granted)
    assert node.release("o/s", got.lease.token, fail=False)

    server.set_quota_overrides({})  # taken back: the default applies again everywhere
    assert node.quota_for(visitor).daily_s == 300
    assert isinstance(node.schedule("o/s", who, 100, GpuSize.LARGE, 3), Rejected)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[list[Service]]:
    """A Redis of this test's own, to stop and start again on the same port (a list: the current one)."""
    services = [start_redis(tmp_path / "redis")]
    yield services
    services[-1].stop()


def test_redis_outage_fails_new_leases_closed_and_ends_running_ones(own_redis: list[Service], visitor: str,
                                                                     tmp_path: Path) -> None:
    clock = Clock()
    first = own_redis[0]
    broker = Broker(declared_pool(2), SECRET, clock=clock, ledger=RedisLedger("a", first.url, timeout_s=0.5))
    who = Identity(visitor, signed_in=True)
    running = broker.schedule("o/s", who, 60, GpuSize.LARGE, 1)
    assert isinstance(running, Granted)

    first.stop()
    with pytest.raises(LedgerUnavailable, match="unreachable"):  # fail-closed: no lease without the quota check
        broker.schedule("o/s", who, 10, GpuSize.LARGE, 2)
    token = broker.register_space("o/s")

    async def schedule_over_http() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(broker)),
                                     base_url="http://broker") as c:
            return await c.post(f"/s/{token}/schedule", params={"durationSeconds": 10, "taskId": 3})

    r = asyncio.run(schedule_over_http())
    assert r.status_code == 503 and "quota ledger (Redis) is unreachable" in r.json()["detail"], r.text

    clock.t += 20
    assert broker.release("o/s", running.lease.token, fail=False)  # the lease in progress ends all the same
    assert [(u.visitor, u.seconds) for u in broker.unsent] == [(visitor, 20.0)]
    broker.tick()  # still down: the charge waits
    assert len(broker.unsent) == 1

    own_redis.append(start_redis(tmp_path / "redis2", first.port))  # Redis back on the same address
    broker.tick()
    assert broker.unsent == []
    usage = RedisLedger("reader", first.url).account(visitor, clock()).usage
    assert usage is not None and usage.used_s == 20.0  # the outage lost no charge
    assert isinstance(broker.schedule("o/s", who, 10, GpuSize.LARGE, 4), Granted)


def test_the_days_usage_survives_a_redis_restart(own_redis: list[Service], visitor: str, tmp_path: Path) -> None:
    """The ledger lives only in Redis, which keeps an append-only file: stopped and started again on the same
    directory, it still holds what was charged (the queues and heartbeats come back too)."""
    first, now = own_redis[0], time.time()
    RedisLedger("a", first.url).charge(visitor, 42.0, now, NO_HOLD)
    first.stop()
    own_redis.append(start_redis(tmp_path / "redis", first.port))
    usage = RedisLedger("reader", first.url).account(visitor, now + 1).usage
    assert usage is not None and usage.used_s == 42.0
