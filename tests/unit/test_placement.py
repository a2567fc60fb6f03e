"""Placement: filter with reasons, then scoring by the cluster's policy (spread: least allocated; binpack: most
allocated, cpu and memory kept in proportion)."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from core.hardware import Hardware, flavor
from scheduler.placement import LOCALITY, Node, Placer, Policy, Request, Snapshot, fits, place

CPU = flavor(Hardware.CPU_BASIC)
T4 = flavor(Hardware.T4_SMALL)


def req(fl=CPU, cpu: float = 1, mem: float = 2, labels: frozenset[str] = frozenset(),  # type: ignore[no-untyped-def]
        artifact: str | None = None) -> Request:
    return Request("o/a", fl, cpu, mem, labels, artifact)


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


@pytest.mark.parametrize(
    ("nodes", "request_", "chosen"),
    [
        ([Node("a", 4, 16, 0), Node("b", 4, 16, 0, cpu_used=2, memory_used_gb=8)], req(), "b"),
        ([Node("a", 4, 16, 0, cpu_used=2, memory_used_gb=2), Node("b", 4, 16, 0, cpu_used=1, memory_used_gb=4)],
         req(), "b"),
        ([Node("cpu", 8, 32, 0), Node("gpu", 8, 32, 1, cpu_used=6, memory_used_gb=24, accelerator="t4")], req(),
         "cpu"),
        ([Node("a", 4, 16, 0, cpu_used=3.5)], req(), None),
    ],
    ids=["fullest-fitting-node", "cpu-and-memory-in-proportion", "gpu-nodes-kept-for-gpu-spaces", "full"],
)
def test_binpack_policy(nodes: list[Node], request_: Request, chosen: str | None) -> None:
    assert place(nodes, request_, Policy.BINPACK).node == chosen
    assert Placer(nodes, Policy.BINPACK).place(request_).node == chosen


def reference_place(nodes: list[Node], r: Request, policy: Policy = Policy.SPREAD) -> str | None:
    """The obvious per-node scan the vectorised `place` must agree with."""
    best, best_score = None, float("-inf")
    for n in sorted(nodes, key=lambda n: n.name):
        if fits(n, r):
            continue
        cpu_after = (n.cpu - n.cpu_used - r.cpu) / n.cpu
        mem_after = (n.memory_gb - n.memory_used_gb - r.memory_gb) / n.memory_gb
        if policy is Policy.SPREAD:
            s = (cpu_after + mem_after) / 2
        else:
            s = -(cpu_after + mem_after) / 2 - 6.0 * abs(cpu_after - mem_after)
        s -= 1.0 if n.gpus and not r.flavor.gpus else 0.0
        s += LOCALITY if r.artifact is not None and r.artifact in n.cached else 0.0
        if s > best_score:
            best, best_score = n.name, s
    return best


@pytest.mark.parametrize("policy", list(Policy), ids=[p.value for p in Policy])
@pytest.mark.parametrize("seed", range(5), ids=[f"seed{i}" for i in range(5)])
def test_vectorised_place_agrees_with_a_per_node_scan(seed: int, policy: Policy) -> None:
    rnd = random.Random(seed)
    nodes = [Node(f"n{i}", rnd.choice([2, 8]), rnd.choice([8, 32]), rnd.choice([0, 1]), cpu_used=rnd.uniform(0, 2),
                  memory_used_gb=rnd.uniform(0, 8), accelerator=rnd.choice(["t4", "a10g"]), ready=rnd.random() > .1,
                  cached=frozenset(rnd.sample(["env1", "env2"], rnd.randint(0, 2))))
             for i in range(60)]
    snap = Snapshot(tuple(nodes))
    for fl in (CPU, T4):
        for cpu in (0.5, 2, 7):
            for artifact in (None, "env1", "env2", "env3"):
                r = replace(req(fl, cpu=cpu, mem=4), artifact=artifact)
                assert place(snap, r, policy).node == reference_place(nodes, r, policy)


def _random_nodes(rnd: random.Random, n: int) -> list[Node]:
    return [Node(f"n{i:03d}", rnd.choice([2, 8]), rnd.choice([8, 32]), rnd.choice([0, 1, 2]),
                 cpu_used=rnd.uniform(0, 2), memory_used_gb=rnd.uniform(0, 8),
                 accelerator=rnd.choice(["t4", "a10g"]), ready=rnd.random() > .1,
                 labels=frozenset(rnd.sample(["ssd", "eu"], rnd.randint(0, 2))),
                 cached=frozenset(rnd.sample(["env1", "env2"], rnd.randint(0, 2)))) for i in range(n)]


@pytest.mark.parametrize("policy", list(Policy), ids=[p.value for p in Policy])
@pytest.mark.parametrize("seed", range(5), ids=[f"seed{i}" for i in range(5)])
def test_incremental_placer_decides_as_a_fresh_snapshot(seed: int, policy: Policy) -> None:
    """Allocations, releases, capacity updates and joins update the Placer's columns in place; every decision
    (node, reason counts, per-node reasons) equals `place` over a snapshot rebuilt from the same nodes."""
    rnd = random.Random(seed)
    placer = Placer(_random_nodes(rnd, 40), policy)
    running: list[tuple[str, Request]] = []
    for step in range(600):
        r = replace(req(rnd.choice([CPU, T4]), cpu=rnd.choice([0.5, 1, 3]), mem=rnd.choice([1, 4, 12]),
                        labels=frozenset(rnd.sample(["ssd", "eu"], rnd.randint(0, 1)))),
                    artifact=rnd.choice([None, "env1", "env2"]))
        got, want = placer.place(r), place(Snapshot(tuple(placer.nodes)), r, policy)
        assert (got.node, got.counts, got.summary) == (want.node, want.counts, want.summary), step
        if got.node is None:
            assert got.reasons == want.reasons == tuple((n.name, fits(n, r)) for n in sorted(placer.nodes,
                                                                                              key=lambda n: n.name))
        else:
            placer.allocate(got.node, r)
            running.append((got.node, r))
        if running and rnd.random() < 0.3:
            placer.release(*running.pop(rnd.randrange(len(running))))
        if rnd.random() < 0.05:  # a heartbeat changes a node's capacity or readiness
            n = rnd.choice(placer.nodes)
            placer.update(Node(n.name, rnd.choice([2, 8, 16]), n.memory_gb, n.gpus, n.cpu_used, n.memory_used_gb,
                               n.gpus_used, rnd.random() > .2, n.accelerator, n.labels,
                               frozenset(rnd.sample(["env1", "env2"], rnd.randint(0, 2)))))
        if rnd.random() < 0.01:  # a node joins, maybe with an accelerator not seen before
            placer.update(Node(f"j{step}", 8, 32, 1, accelerator=rnd.choice(["t4", "l4"])))
    assert placer.snapshot() == Snapshot(tuple(placer.nodes))


def test_unschedulable_reasons_match_fits_and_count_in_kubernetes_style() -> None:
    nodes = [Node("a", 4, 16, 0, ready=False), Node("b", 4, 16, 0, memory_used_gb=15),
             Node("c", 8, 32, 1, accelerator="a10g"), Node("d", 8, 32, 1, gpus_used=1, accelerator="t4")]
    d = place(nodes, req(T4, mem=4))
    assert d.node is None and d.reasons == tuple((n.name, fits(n, req(T4, mem=4))) for n in nodes)
    assert d.summary == "0/4 nodes are available: 3 insufficient gpu, 1 not ready, 1 insufficient memory, 1 no t4 gpu"


def test_locality_prefers_the_node_that_caches_the_artifact() -> None:
    """A node holding the request's environment wins over an emptier one, unless that one is more than LOCALITY
    emptier; without an artifact named, the cache plays no part; GPU nodes stay kept for GPU Spaces."""
    warm = Node("b-warm", 8, 64, 0, cpu_used=2, memory_used_gb=16, cached=frozenset({"env1"}))
    cold = Node("a-cold", 8, 64, 0)
    for policy in Policy:
        assert place([warm, cold], req(artifact="env1"), policy).node == "b-warm"
    assert place([warm, cold], req()).node == "a-cold"  # spread, no artifact: the emptiest
    assert place([warm, cold], req(artifact="env2")).node == "a-cold"  # nobody caches it
    full = replace(warm, cpu_used=6, memory_used_gb=48)  # 75 % full against an empty node: too full to win
    assert place([full, cold], req(artifact="env1")).node == "a-cold"
    gpu = Node("gpu", 8, 64, 1, accelerator="t4", cached=frozenset({"env1"}))
    assert place([gpu, cold], req(artifact="env1")).node == "a-cold"
    placer = Placer([warm, cold])
    placer.update(replace(warm, cached=frozenset()))  # evicted from its cache (a heartbeat says so)
    assert placer.place(req(artifact="env1")).node == "a-cold"
