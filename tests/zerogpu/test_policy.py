"""The grant policy and quota math, as tables: fairness, caps, priorities, quotas, refunds, timeouts, sizes."""

from __future__ import annotations

import pytest

from zerogpu.policy import (
    ApproveResult,
    Ask,
    Lease,
    PolicyConfig,
    QueuingReason,
    Snapshot,
    Warm,
    admit,
    plan,
    reserved_s,
)
from zerogpu.pool import declared_pool
from zerogpu.quota import WINDOW_S, GpuSize, Limits, Usage, charge, charged_seconds, status

L, XL = GpuSize.LARGE, GpuSize.XLARGE
ANON, ALICE = "ip:10.0.0.1", "user:alice"


def ask(i: str, space: str = "a/s", visitor: str = ANON, t: float = 0.0, dur: int = 30, size: GpuSize = L,
        task: int = 1) -> Ask:
    return Ask(i, space, visitor, dur, size, task, t)


def lease(tok: str, space: str = "a/s", dev: int = 0, t: float = 0.0, dur: int = 30, size: GpuSize = L,
          pid: int | None = None, visitor: str = ANON) -> Lease:
    return Lease(tok, space, visitor, dev, size, dur, 1, t, pid)


# -- who is served first ---------------------------------------------------------------------------------

ORDER_CASES = [
    ("fifo-one-space", 1, [ask("a1", t=0), ask("a2", t=1)], {}, ["a1"]),
    ("busy-space-cannot-starve", 2,
     [ask("a1", "busy/s", t=0), ask("a2", "busy/s", t=1), ask("a3", "busy/s", t=2), ask("b1", "quiet/s", t=3)],
     {}, ["a1", "b1"]),
    ("least-recently-served-first", 1, [ask("a1", "a/s", t=0), ask("b1", "b/s", t=5)],
     {"a/s": 100.0, "b/s": 50.0}, ["b1"]),
    ("never-served-before-served", 1, [ask("a1", "a/s", t=0), ask("b1", "b/s", t=5)], {"a/s": 1.0}, ["b1"]),
    ("signed-in-before-anonymous", 1, [ask("a1", t=0), ask("u1", "b/s", visitor=ALICE, t=9)], {}, ["u1"]),
    ("round-robin-in-one-pass", 4,
     [ask("a1", "a/s", t=0), ask("a2", "a/s", t=1), ask("b1", "b/s", t=2), ask("b2", "b/s", t=3)],
     {}, ["a1", "b1", "a2", "b2"]),
]


@pytest.mark.parametrize("devices,queue,served,granted", [c[1:] for c in ORDER_CASES],
                         ids=[c[0] for c in ORDER_CASES])
def test_order_of_service(devices: int, queue: list[Ask], served: dict[str, float], granted: list[str]) -> None:
    p = plan(Snapshot(declared_pool(devices), tuple(queue), last_served=served,
                      config=PolicyConfig(space_concurrency=2)), now=10.0)
    assert [g.ask_id for g in p.grants] == granted


CAP_CASES = [
    ("cap-reached-waits-for-concurrency", 1, [lease("l1", dev=0)], [ask("a1")],
     {"a1": QueuingReason.CONCURRENCY}),
    ("capped-space-does-not-block-others", 1, [lease("l1", dev=0)], [ask("a1", t=0), ask("b1", "b/s", t=1)],
     {"a1": QueuingReason.CONCURRENCY}),
    ("no-device-waits-for-node", 5, [lease("l1", "x/s", dev=0), lease("l2", "y/s", dev=1)], [ask("a1")],
     {"a1": QueuingReason.NODE}),
]


@pytest.mark.parametrize("cap,leases,queue,waiting", [c[1:] for c in CAP_CASES], ids=[c[0] for c in CAP_CASES])
def test_concurrency_cap(cap: int, leases: list[Lease], queue: list[Ask],
                         waiting: dict[str, QueuingReason]) -> None:
    p = plan(Snapshot(declared_pool(2), tuple(queue), tuple(leases), config=PolicyConfig(space_concurrency=cap)),
             now=1.0)
    assert dict(p.waiting) == waiting
    assert {g.ask_id for g in p.grants} == {a.ask_id for a in queue} - set(waiting)


# -- sizes ---------------------------------------------------------------------------------------------------

SIZE_CASES = [
    ("xlarge-takes-whole-shared-device", 2, [lease("l1", dev=0)], [ask("x", "b/s", size=XL)], [1]),
    ("xlarge-waits-for-free-device", 2, [lease("l1", dev=0), lease("l2", "c/s", dev=1)],
     [ask("x", "b/s", size=XL)], []),
    ("large-packs-onto-shared-device", 2, [lease("l1", "c/s", dev=0)], [ask("y", "b/s")], [0]),
    ("xlarge-at-head-blocks-backfill", 1, [lease("l1", "c/s", dev=0)],
     [ask("x", "b/s", size=XL, t=0), ask("y", "d/s", t=1)], []),
]


@pytest.mark.parametrize("n,leases,queue,devices", [c[1:] for c in SIZE_CASES], ids=[c[0] for c in SIZE_CASES])
def test_sizes_on_two_slot_devices(n: int, leases: list[Lease], queue: list[Ask], devices: list[int]) -> None:
    p = plan(Snapshot(declared_pool(n, slots=2), tuple(queue), tuple(leases)), now=1.0)
    assert [g.device for g in p.grants] == devices


# -- idle workers --------------------------------------------------------------------------------------------

IDLE_CASES = [
    ("same-space-and-task-reuses", Warm(0, "a/s", 1, 77), True, 77, ()),
    ("other-task-is-evicted", Warm(0, "a/s", 2, 77), False, None, (77,)),
    ("other-space-is-evicted", Warm(0, "b/s", 1, 77), False, None, (77,)),
]


@pytest.mark.parametrize("warm,idle,pid,killed", [c[1:] for c in IDLE_CASES], ids=[c[0] for c in IDLE_CASES])
def test_idle_workers(warm: Warm, idle: bool, pid: int | None, killed: tuple[int, ...]) -> None:
    p = plan(Snapshot(declared_pool(1), (ask("a1"),), warm=(warm,)), now=1.0)
    (g,) = p.grants
    assert (g.idle, g.pid) == (idle, pid)
    assert tuple(w.pid for w in p.evicted) == killed


def test_idle_worker_prefers_its_device() -> None:
    p = plan(Snapshot(declared_pool(2), (ask("a1"),), warm=(Warm(1, "a/s", 1, 5),)), now=1.0)
    assert [(g.device, g.idle) for g in p.grants] == [(1, True)]


# -- time: queue timeout, lease expiry -----------------------------------------------------------------------

TIME_CASES = [
    ("queue-timeout-fails", 60.0, [ask("a1", t=0)], [lease("l1", "x/s", t=50, dur=120)], ["a1"], []),
    ("just-before-timeout-waits", 59.9, [ask("a1", t=0)], [lease("l1", "x/s", t=50, dur=120)], [], []),
    ("lease-past-duration-and-grace-ends", 36.0, [], [lease("l1", t=0, dur=30, pid=9)], [], ["l1"]),
    ("lease-within-grace-lives", 34.0, [], [lease("l1", t=0, dur=30, pid=9)], [], []),
]


@pytest.mark.parametrize("now,queue,leases,timed_out,expired", [c[1:] for c in TIME_CASES],
                         ids=[c[0] for c in TIME_CASES])
def test_timeouts(now: float, queue: list[Ask], leases: list[Lease], timed_out: list[str],
                  expired: list[str]) -> None:
    cfg = PolicyConfig(queue_timeout_s=60, grace_s=5)
    p = plan(Snapshot(declared_pool(1), tuple(queue), tuple(leases), config=cfg), now)
    assert list(p.timed_out) == timed_out
    assert [le.token for le in p.expired] == expired


def test_expired_lease_frees_its_device_in_the_same_pass() -> None:
    p = plan(Snapshot(declared_pool(1), (ask("a1", "b/s", t=30),), (lease("l1", t=0, dur=30),)), now=40.0)
    assert [g.ask_id for g in p.grants] == ["a1"]


# -- admission: quotas and durations -------------------------------------------------------------------------

OVR = Limits(overrides={"user:pro": 2400})
ADMIT_CASES = [
    ("anonymous-within-quota", Limits(), ask("a", dur=60), None, 0, ApproveResult.APPROVED, 120),
    ("anonymous-over-max-duration", Limits(), ask("a", dur=121), None, 0, ApproveResult.ILLEGAL_DURATION, 0),
    ("signed-in-longer-max", Limits(), ask("a", visitor=ALICE, dur=200), None, 0, ApproveResult.APPROVED, 300),
    ("zero-duration-illegal", Limits(), ask("a", dur=0), None, 0, ApproveResult.ILLEGAL_DURATION, 0),
    ("used-up", Limits(), ask("a", dur=60), Usage(0, 100), 0, ApproveResult.QUOTA_EXCEEDED, 20),
    ("xlarge-costs-double", Limits(), ask("a", dur=61, size=XL), None, 0, ApproveResult.QUOTA_EXCEEDED, 120),
    ("reservations-count", Limits(), ask("a", dur=60), None, 90, ApproveResult.QUOTA_EXCEEDED, 30),
    ("window-reset-restores", Limits(), ask("a", dur=60), Usage(-WINDOW_S, 120), 0, ApproveResult.APPROVED, 120),
    ("override-raises-quota-and-max", OVR, ask("a", visitor="user:pro", dur=1800), Usage(0, 300), 0,
     ApproveResult.APPROVED, 2100),
]


@pytest.mark.parametrize("limits,a,usage,reserved,result,left", [c[1:] for c in ADMIT_CASES],
                         ids=[c[0] for c in ADMIT_CASES])
def test_admission(limits: Limits, a: Ask, usage: Usage | None, reserved: int, result: ApproveResult,
                   left: int) -> None:
    adm = admit(a, limits, usage, reserved, now=10.0)
    assert (adm.result, adm.left_s) == (result, left)
    assert (adm.wait_s < 0) == (result is ApproveResult.ILLEGAL_DURATION)


def test_quota_exceeded_waits_for_window_reset() -> None:
    adm = admit(ask("a", dur=60), Limits(), Usage(1000.0, 100), 0, now=5000.0)
    assert adm.wait_s == pytest.approx(1000.0 + WINDOW_S - 5000.0)


def test_reserved_counts_queue_and_leases_of_the_visitor_only() -> None:
    queue = (ask("a", dur=10), ask("b", dur=20, size=XL), ask("c", visitor=ALICE, dur=99))
    assert reserved_s(ANON, queue, (lease("l", dur=5),)) == 10 + 40 + 5


# -- charging: used time, refunds, windows -------------------------------------------------------------------

CHARGE_CASES = [
    ("charge-used-refund-rest", 0.0, 60, L, 12.5, 12.5),
    ("never-more-than-requested", 0.0, 60, L, 90.0, 60.0),
    ("xlarge-double", 0.0, 60, XL, 10.0, 20.0),
    ("clock-skew-is-zero", 10.0, 60, L, 5.0, 0.0),
]


@pytest.mark.parametrize("granted,dur,size,released,cost", [c[1:] for c in CHARGE_CASES],
                         ids=[c[0] for c in CHARGE_CASES])
def test_charged_seconds(granted: float, dur: int, size: GpuSize, released: float, cost: float) -> None:
    assert charged_seconds(granted, dur, size, released) == cost


def test_window_opens_at_first_use_and_resets_24h_later() -> None:
    u = charge(None, 30, now=100.0)
    u = charge(u, 20, now=200.0)
    assert (u.window_start, u.used_s) == (100.0, 50)
    assert status(Limits(), ANON, u, 0, now=300.0).resets_at == 100.0 + WINDOW_S
    fresh = charge(u, 5, now=100.0 + WINDOW_S)
    assert (fresh.window_start, fresh.used_s) == (100.0 + WINDOW_S, 5)
    assert status(Limits(), ANON, u, 0, now=100.0 + WINDOW_S).left_s == 120
