"""Placement: filter with reasons, then least-allocated scoring."""

from __future__ import annotations

import random

import pytest

from core.hardware import Hardware, flavor
from scheduler.placement import Node, Request, Snapshot, fits, place

CPU = flavor(Hardware.CPU_BASIC)
T4 = flavor(Hardware.T4_SMALL)


def req(fl=CPU, cpu: float = 1, mem: float = 2, labels: frozenset[str] = frozenset()) -> Request:  # type: ignore[no-untyped-def]
    return Request("o/a", fl, cpu, mem, labels)


@pytest.mark.parametrize(
    ("nodes", "request_", "chosen", "summary_part"),
    [
        ([Node("a", 4, 16, 0), Node("b", 4, 16, 0, cpu_used=3)], req(), "a", "placed on a"),
        ([Node("a", 4, 16, 0, memory_used_gb=15)], req(), None, "1 insufficient memory"),
        ([Node("a", 4, 16, 0, ready=False), Node("b", 1, 16, 0, cpu_used=0.5)], req(), None, "not ready"),
        ([Node("cpu", 8, 32, 0), Node("gpu", 8, 32, 1, accelerator="t4")], req(), "cpu", "placed on cpu"),
        ([Node("cpu", 8, 32, 0), Node("gpu", 8, 32, 1, accelerator="t4")], req(T4), "gpu", "placed on gpu"),
        ([Node("gpu", 8, 32, 1, accelerator="a10g")], req(T4), None, "no t4 gpu"),
        ([Node("gpu", 8, 32, 1, gpus_used=1, accelerator="t4")], req(T4), None, "insufficient gpu"),
        ([Node("a", 4, 16, 0), Node("b", 4, 16, 0, labels=frozenset({"ssd"}))], req(labels=frozenset({"ssd"})),
         "b", "placed on b"),
        ([], req(), None, "0/0 nodes are available: no nodes"),
    ],
    ids=["least-allocated", "no-memory", "not-ready-and-full", "cpu-space-avoids-gpu-node", "gpu-space-gets-gpu",
         "wrong-accelerator", "gpu-taken", "labels", "empty-cluster"],
)
def test_place(nodes: list[Node], request_: Request, chosen: str | None, summary_part: str) -> None:
    d = place(nodes, request_)
    assert d.node == chosen
    assert summary_part in d.summary


def test_ties_are_broken_by_name_for_stable_decisions() -> None:
    assert place([Node("b", 4, 16, 0), Node("a", 4, 16, 0)], req()).node == "a"


def reference_place(nodes: list[Node], r: Request) -> str | None:
    """The obvious per-node scan the vectorised `place` must agree with."""
    best, best_score = None, float("-inf")
    for n in sorted(nodes, key=lambda n: n.name):
        if fits(n, r):
            continue
        s = ((n.cpu - n.cpu_used - r.cpu) / n.cpu + (n.memory_gb - n.memory_used_gb - r.memory_gb) / n.memory_gb) / 2
        s -= 1.0 if n.gpus and not r.flavor.gpus else 0.0
        if s > best_score:
            best, best_score = n.name, s
    return best


@pytest.mark.parametrize("seed", range(5), ids=[f"seed{i}" for i in range(5)])
def test_vectorised_place_agrees_with_a_per_node_scan(seed: int) -> None:
    rnd = random.Random(seed)
    nodes = [Node(f"n{i}", rnd.choice([2, 8]), rnd.choice([8, 32]), rnd.choice([0, 1]), cpu_used=rnd.uniform(0, 2),
                  memory_used_gb=rnd.uniform(0, 8), accelerator=rnd.choice(["t4", "a10g"]), ready=rnd.random() > .1)
             for i in range(60)]
    snap = Snapshot(tuple(nodes))
    for fl in (CPU, T4):
        for cpu in (0.5, 2, 7):
            r = req(fl, cpu=cpu, mem=4)
            assert place(snap, r).node == reference_place(nodes, r)
