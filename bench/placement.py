"""Placement decisions per second on a 10,000-node snapshot (target ≥ 5,000/s).
Run: `.venv/bin/python bench/placement.py`."""

from __future__ import annotations

import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from core.hardware import Hardware, flavor
from scheduler.placement import Node, Request, Snapshot, place


def main(n_nodes: int = 10_000, decisions: int = 300, runs: int = 5) -> None:
    rnd = random.Random(7)
    nodes = [Node(f"n{i:05d}", 16, 64, rnd.choice([0, 0, 0, 1, 4]), cpu_used=rnd.uniform(0, 16),
                  memory_used_gb=rnd.uniform(0, 64), accelerator="a10g", ready=rnd.random() > 0.02)
             for i in range(n_nodes)]
    reqs = [Request(f"o/s{i}", flavor(rnd.choice([Hardware.CPU_BASIC, Hardware.A10G_SMALL])), 1, 2)
            for i in range(decisions)]
    snapshot = Snapshot(tuple(nodes))
    rates = []
    for _ in range(runs):
        t0 = time.perf_counter()
        for r in reqs:
            place(snapshot, r)
        rates.append(decisions / (time.perf_counter() - t0))
    med = statistics.median(rates)
    print(f"\n| what | median | target |\n|---|---|---|\n| placement decisions on a {n_nodes:,}-node snapshot "
          f"| {med:,.0f} /s | ≥ 5,000 /s |")


if __name__ == "__main__":
    main()
