"""ZeroGPU broker bench: (1) the lease round trip schedule → allow → release over real HTTP, with the
`spaces` package's own API client; (2) a bursty trace of K Spaces on G GPUs through the pure policy on a
simulated clock, against dedicating one GPU per Space. Prints Markdown tables.

    .venv/bin/python bench/zerogpu.py [--calls 1000] [--spaces 40] [--gpus 4] [--hours 1] [--seed 7]
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # run as a file, bench/ comes first on sys.path and this file would shadow `zerogpu`
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import asyncio
import contextlib
import heapq
import multiprocessing
import random
import statistics
import time
from dataclasses import replace
from multiprocessing.connection import Connection

import httpx
from spaces.zero.api import APIClient, ScheduleResponse

from zerogpu.broker import Broker
from zerogpu.embedded import BrokerServer
from zerogpu.policy import Ask, Lease, PolicyConfig, Snapshot, plan
from zerogpu.pool import declared_pool
from zerogpu.quota import GpuSize


def _pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def _serve(conn: Connection) -> None:
    """The broker in its own process (as in production: the Space's process is another one)."""
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()

    async def run() -> None:
        server = BrokerServer(Broker(declared_pool(1), b"bench-secret-bench-secret-32-bytes"))
        await server.start()
        conn.send(server.register_space("bench/space"))
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)
        await server.close()

    asyncio.run(run())


def _client(url: str) -> APIClient:
    return APIClient(httpx.Client(base_url=url, timeout=60, verify=False))  # as spaces.zero.client.api_client


def round_trip(calls: int) -> list[tuple[str, float, float]]:
    ours, theirs = multiprocessing.Pipe()
    proc = multiprocessing.get_context("fork").Process(target=_serve, args=(theirs,), daemon=True)
    proc.start()
    url = ours.recv()
    rows = []
    for label, fresh in (("keep-alive client", False), ("new client per call (as `spaces` does)", True)):
        shared = _client(url)
        times = []
        for i in range(calls + 50):
            t = time.perf_counter()
            c = _client(url) if fresh else shared
            res, _ = c.schedule("/bench", task_id=1, duration_seconds=10)
            assert isinstance(res, ScheduleResponse)
            c = _client(url) if fresh else c
            c.allow(res.allowToken, 4242)
            c = _client(url) if fresh else c
            c.release(res.allowToken)
            if i >= 50:  # warm-up
                times.append((time.perf_counter() - t) * 1000)
        rows.append((label, statistics.median(times), _pct(times, 0.99)))
    ours.send("stop")
    proc.join(10)
    return rows


def simulate(spaces: int, gpus: int, hours: float, seed: int) -> dict[str, float]:
    """Bursty trace: each Space bursts ~6×/h for ~60 s, a call every ~6 s in a burst, each using ~3 s of
    GPU (exponential, ≤ 30 s) out of 30 s requested. Returns pooled and dedicated figures."""
    rnd = random.Random(seed)
    horizon = hours * 3600
    arrivals: list[tuple[float, str, float]] = []
    for k in range(spaces):
        t = rnd.expovariate(6 / 3600)
        while t < horizon:
            end = t + rnd.expovariate(1 / 60)
            while t < end:
                arrivals.append((t, f"s{k}/app", min(30.0, rnd.expovariate(1 / 3))))
                t += rnd.expovariate(1 / 6)
            t = end + rnd.expovariate(6 / 3600)
    arrivals.sort()
    cfg = PolicyConfig(space_concurrency=2, queue_timeout_s=60)
    snap = Snapshot(declared_pool(gpus), config=cfg)
    events: list[tuple[float, int, str, object]] = []
    for i, (t, space, use) in enumerate(arrivals):
        heapq.heappush(events, (t, i, "arrive", (space, use)))
    uses: dict[str, float] = {}
    waits: list[float] = []
    busy = 0.0
    timeouts = plans = 0
    plan_time = 0.0
    seq = len(arrivals)
    while events:
        now, _, kind, data = heapq.heappop(events)
        queue, leases = list(snap.queue), list(snap.leases)
        if kind == "arrive":
            space, use = data  # type: ignore[misc]
            ask = Ask(f"a{seq}", space, f"user:{rnd.randrange(500)}", 30, GpuSize.LARGE, 1, now)
            uses[ask.ask_id] = use
            queue.append(ask)
            seq += 1
            heapq.heappush(events, (now + cfg.queue_timeout_s, seq, "tick", None))
        elif kind == "done":
            lease: Lease = data  # type: ignore[assignment]
            leases = [le for le in leases if le.token != lease.token]
            busy += now - lease.granted_at
        snap = replace(snap, queue=tuple(queue), leases=tuple(leases))
        t0 = time.perf_counter()
        p = plan(snap, now)
        plan_time += time.perf_counter() - t0
        plans += 1
        timeouts += len(p.timed_out)
        by_id = {a.ask_id: a for a in snap.queue}
        new_leases = list(snap.leases)
        served = dict(snap.last_served)
        for g in p.grants:
            a = by_id[g.ask_id]
            le = Lease(g.ask_id, a.space_id, a.visitor, g.device, a.size, a.duration_s, a.task_id, now)
            new_leases.append(le)
            served[a.space_id] = now
            waits.append(now - a.arrived_at)
            heapq.heappush(events, (now + uses[a.ask_id], seq, "done", le))
            seq += 1
        gone = {g.ask_id for g in p.grants} | set(p.timed_out)
        snap = replace(snap, queue=tuple(a for a in snap.queue if a.ask_id not in gone),
                       leases=tuple(new_leases), last_served=served)
    return {"calls": len(arrivals), "util_pool": busy / (gpus * horizon), "util_dedicated": busy / (spaces * horizon),
            "wait_p50": _pct(waits, 0.5), "wait_p99": _pct(waits, 0.99), "timeouts": timeouts,
            "spaces_per_gpu": spaces / gpus, "plan_us": plan_time / plans * 1e6}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=1000)
    ap.add_argument("--spaces", type=int, default=40)
    ap.add_argument("--gpus", type=int, default=4)
    ap.add_argument("--hours", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    print("## ZeroGPU lease round trip (schedule → allow → release, HTTP on 127.0.0.1)\n")
    print("| client | p50 ms | p99 ms | target |\n|---|---|---|---|")
    for label, p50, p99 in round_trip(args.calls):
        print(f"| {label} | {p50:.2f} | {p99:.2f} | p50 ≤ 5 ms |")
    r = simulate(args.spaces, args.gpus, args.hours, args.seed)
    print(f"\n## Bursty trace: {args.spaces} Spaces, {args.hours:g} h, {r['calls']:.0f} GPU calls\n")
    print("| setup | GPUs | Spaces per GPU | utilization | queue wait p50 | queue wait p99 | queue timeouts |")
    print("|---|---|---|---|---|---|---|")
    print(f"| ZeroGPU pool | {args.gpus} | {r['spaces_per_gpu']:.1f} | {r['util_pool']:.1%} | "
          f"{r['wait_p50']:.2f} s | {r['wait_p99']:.2f} s | {r['timeouts']} |")
    print(f"| one GPU per Space | {args.spaces} | 1.0 | {r['util_dedicated']:.1%} | 0 s | 0 s | 0 |")
    print(f"\npolicy pass: {r['plan_us']:.0f} µs on average")


if __name__ == "__main__":
    main()
