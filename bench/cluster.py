"""Cluster-mode benchmark: placement of 100,000 Spaces onto 10,000 simulated nodes, capacity updated after every
decision (decisions/s, and packing against the lower bound), beside two baselines measured in the same run:
rebuilding the snapshot for every decision (what a scheduler without incremental updates does) and the
published kube-scheduler throughput (cluster-anchors.md: 100 pods/s on 5,000 nodes, 1,000 pods/s on GKE).

Run: `.venv/bin/python bench/cluster.py` (about 15 s; `--spaces N --nodes N` for other sizes).

Packing: the Spaces ask ~99% of the cluster's cpu (its most contended resource). No placement can use more
of a resource than min(asked, capacity) (the fractional lower bound on the capacity they need); `packing` =
the placed Spaces' use of the most contended resource / that bound.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from core.hardware import Hardware, flavor
from scheduler.placement import Node, Placer, Policy, Request, Snapshot, place


@dataclass(frozen=True)
class Pool:
    name: str
    share: float  # of the nodes
    cpu: float
    memory_gb: float
    gpus: int = 0
    accelerator: str | None = None


# Sized so that the Spaces ask ~99% of the cluster's cpu and ~98% of its memory: a tightly packed cluster.
POOLS = (Pool("cpu", 0.81, 3, 23), Pool("t4", 0.08, 4, 16, 4, "t4"), Pool("a10g", 0.11, 6, 24, 4, "a10g"))
# (hardware, share of Spaces, reserved cpu, reserved memory): reservations below the flavor's limits (overcommit).
MIX = ((Hardware.CPU_BASIC, 0.85, 0.25, 2.0), (Hardware.CPU_UPGRADE, 0.08, 1.0, 4.0),
       (Hardware.T4_SMALL, 0.03, 0.5, 2.0), (Hardware.A10G_SMALL, 0.03, 0.5, 2.0),
       (Hardware.A10G_LARGE, 0.01, 1.5, 6.0))


def make_nodes(n: int) -> list[Node]:
    nodes, i = [], 0
    for pool in POOLS:
        for _ in range(round(n * pool.share)):
            nodes.append(Node(f"{pool.name}-{i:06d}", pool.cpu, pool.memory_gb, pool.gpus,
                              accelerator=pool.accelerator))
            i += 1
    return nodes


def make_requests(n: int, seed: int = 7) -> list[Request]:
    rnd = random.Random(seed)
    kinds = [(flavor(hw), cpu, mem) for hw, _, cpu, mem in MIX]
    weights = [share for _, share, _, _ in MIX]
    return [Request(f"o/s{i}", fl, cpu, mem) for i, (fl, cpu, mem) in
            enumerate(rnd.choices(kinds, weights, k=n))]


def resources(reqs: list[Request] | list[Node]) -> dict[str, float]:
    """Total cpu, memory and GPUs of each accelerator: asked by Spaces, or held by nodes."""
    total: dict[str, float] = {"cpu": 0.0, "memory": 0.0}
    for x in reqs:
        total["cpu"] += x.cpu
        total["memory"] += x.memory_gb
        gpus, accel = ((x.flavor.gpus, x.flavor.accelerator) if isinstance(x, Request) else (x.gpus, x.accelerator))
        if gpus:
            total[f"gpu {accel}"] = total.get(f"gpu {accel}", 0.0) + gpus
    return total


def packing(nodes: list[Node], reqs: list[Request], placed: list[Request]) -> tuple[str, float, float]:
    """(the most contended resource, its use by the placed Spaces / the lower bound, asked / capacity): no
    placement can use more of a resource than min(asked, capacity), the fractional bound."""
    cap, asked, got = resources(nodes), resources(reqs), resources(placed)
    binding = max(asked, key=lambda k: asked[k] / cap[k] if cap.get(k) else math.inf)
    return binding, got[binding] / min(asked[binding], cap[binding]), asked[binding] / cap[binding]


def run_incremental(nodes: list[Node], reqs: list[Request],
                    policy: Policy) -> tuple[float, float, list[str | None], Placer]:
    """(wall seconds, CPU seconds of this process, each Space's node, the placer): on a shared machine the CPU
    time says what the code costs, the wall time what it got."""
    placer = Placer(nodes, policy)
    chosen: list[str | None] = []
    t0, c0 = time.perf_counter(), time.process_time()
    for r in reqs:
        d = placer.place(r)
        if d.node is not None:
            placer.allocate(d.node, r)
        chosen.append(d.node)
    return time.perf_counter() - t0, time.process_time() - c0, chosen, placer


def run_rebuild(nodes: list[Node], reqs: list[Request]) -> float:
    """Decisions/s when every decision rebuilds the snapshot from the node list (the baseline)."""
    current = {n.name: n for n in nodes}
    t0 = time.perf_counter()
    for r in reqs:
        d = place(Snapshot(tuple(current.values())), r)
        if d.node is not None:
            n = current[d.node]
            current[d.node] = Node(n.name, n.cpu, n.memory_gb, n.gpus, n.cpu_used + r.cpu,
                                   n.memory_used_gb + r.memory_gb, n.gpus_used + r.flavor.gpus, n.ready,
                                   n.accelerator, n.labels)
    return len(reqs) / (time.perf_counter() - t0)


def live_rows(args: argparse.Namespace) -> Iterator[str]:
    """The rows measured on a real local cluster (`--live`): see bench/cluster_live.py."""
    if args.live:
        from bench.cluster_live import measure
        yield from measure(kills=args.kills, pushes=args.pushes)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--spaces", type=int, default=100_000)
    ap.add_argument("--nodes", type=int, default=10_000)
    ap.add_argument("--baseline-decisions", type=int, default=100)
    ap.add_argument("--live", action="store_true", help="also node loss and concurrent pushes on a real local "
                    "cluster (PostgreSQL, Redis, server, worker, proxy, three nodes; several minutes)")
    ap.add_argument("--kills", type=int, default=3)
    ap.add_argument("--pushes", type=int, default=20)
    args = ap.parse_args()
    nodes, reqs = make_nodes(args.nodes), make_requests(args.spaces)
    baseline = run_rebuild(nodes, reqs[: args.baseline_decisions])
    rows, example, rates = [], "", []
    for policy in Policy:
        elapsed, cpu_s, chosen, placer = run_incremental(nodes, reqs, policy)
        rate = len(reqs) / elapsed
        rates.append(rate)
        placed = [r for r, c in zip(reqs, chosen, strict=True) if c is not None]
        binding, packed, load = packing(nodes, reqs, placed)
        used = sum(1 for n in placer.nodes if n.cpu_used > 0)
        unsched = len(reqs) - len(placed)
        example = example or next((placer.place(r).summary for r, c in zip(reqs, chosen, strict=True)
                                   if c is None), "")
        rows.append(f"| placement, `{policy.value}` policy, capacity updated after every decision, {len(reqs):,} "
                    f"Spaces / {len(nodes):,} nodes | snapshot rebuilt per decision: {baseline:,.0f} /s; "
                    f"kube-scheduler 100 /s (5k nodes), GKE 1,000 /s | {rate:,.0f} /s ({elapsed:.1f} s); "
                    f"{len(reqs) / cpu_s:,.0f} per CPU-second (load {os.getloadavg()[0]:.1f}) "
                    f"| ≥ 10,000 /s |")
        rows.append(f"| packing, `{policy.value}`, against the lower bound ({binding} used / min(asked, capacity)) "
                    f"| 100 % | {packed:.1%} ({len(placed):,} placed, {unsched:,} unschedulable, {used:,} nodes "
                    f"used) | ≥ 95 % |")
    print(f"\n{len(reqs):,} Spaces onto {len(nodes):,} nodes "
          f"({', '.join(f'{p.name} {round(len(nodes) * p.share):,}' for p in POOLS)}); "
          f"they ask {load:.1%} of its {binding}, the most contended resource")
    print("\n| what | baseline | measured | target |\n|---|---|---|---|")
    print("\n".join(rows), flush=True)
    for row in live_rows(args):
        print(row, flush=True)
    if example:
        print(f"\nfirst unschedulable Space, as it would read: {example}")
    if not all(math.isfinite(r) for r in rates):
        raise SystemExit(1)

if __name__ == "__main__":
    main()
