"""Placement: which node runs a Space. A pure function over a frozen snapshot of nodes — filter (does it fit,
and if not, why) then score (least allocated after placement; GPU nodes kept for GPU Spaces) — as Kubernetes'
filter/score plugins do. Every node that is
filtered out carries its reasons, so an unschedulable Space can say why in its status."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from core.hardware import Flavor


@dataclass(frozen=True)
class Node:
    name: str
    cpu: float  # capacity
    memory_gb: float
    gpus: int
    cpu_used: float = 0.0
    memory_used_gb: float = 0.0
    gpus_used: int = 0
    ready: bool = True
    accelerator: str | None = None  # "a10g", "t4", … of its GPUs
    labels: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Request:
    space_id: str
    flavor: Flavor
    cpu: float  # what the Space reserves (may be below the flavor's limit: overcommit)
    memory_gb: float
    required_labels: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Decision:
    node: str | None
    reasons: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (node, why not) for rejected nodes

    @property
    def summary(self) -> str:
        """'0/3 nodes are available: 2 insufficient memory, 1 not ready' (Kubernetes' FitError style)."""
        if self.node:
            return f"placed on {self.node}"
        counts: dict[str, int] = {}
        for _, why in self.reasons:
            for w in why:
                counts[w] = counts.get(w, 0) + 1
        detail = ", ".join(f"{n} {w}" for w, n in sorted(counts.items(), key=lambda kv: -kv[1]))
        return f"0/{len(self.reasons)} nodes are available: {detail or 'no nodes'}"


def fits(node: Node, req: Request) -> tuple[str, ...]:
    """Why `req` cannot run on `node` (empty when it can)."""
    why = []
    if not node.ready:
        why.append("not ready")
    if node.cpu - node.cpu_used < req.cpu:
        why.append("insufficient cpu")
    if node.memory_gb - node.memory_used_gb < req.memory_gb:
        why.append("insufficient memory")
    if req.flavor.gpus:
        if node.gpus - node.gpus_used < req.flavor.gpus:
            why.append("insufficient gpu")
        elif req.flavor.accelerator and node.accelerator != req.flavor.accelerator:
            why.append(f"no {req.flavor.accelerator} gpu")
    if not req.required_labels <= node.labels:
        why.append("missing labels")
    return tuple(why)


@dataclass(frozen=True)
class Snapshot:
    """Nodes frozen at one instant, with column arrays so that one decision filters and scores every node in
    a few vectorised passes (no sampling: the answer is the same as a per-node scan)."""

    nodes: tuple[Node, ...]
    _cols: dict[str, np.ndarray] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        ns = sorted(self.nodes, key=lambda n: n.name)  # ties break by name: argmax takes the first
        object.__setattr__(self, "nodes", tuple(ns))
        c = self._cols
        c["cpu"] = np.array([n.cpu for n in ns], dtype=float)
        c["cpu_free"] = np.array([n.cpu - n.cpu_used for n in ns], dtype=float)
        c["mem"] = np.array([n.memory_gb for n in ns], dtype=float)
        c["mem_free"] = np.array([n.memory_gb - n.memory_used_gb for n in ns], dtype=float)
        c["gpu_free"] = np.array([n.gpus - n.gpus_used for n in ns], dtype=int)
        c["has_gpu"] = np.array([n.gpus > 0 for n in ns], dtype=bool)
        c["ready"] = np.array([n.ready for n in ns], dtype=bool)
        accels = sorted({n.accelerator or "" for n in ns})
        c["accel"] = np.array([accels.index(n.accelerator or "") for n in ns], dtype=int)
        object.__setattr__(self, "_accels", accels)


def place(nodes: Sequence[Node] | Snapshot, req: Request) -> Decision:
    snap = nodes if isinstance(nodes, Snapshot) else Snapshot(tuple(nodes))
    c = snap._cols
    if not snap.nodes:
        return Decision(None, ())
    ok = c["ready"] & (c["cpu_free"] >= req.cpu) & (c["mem_free"] >= req.memory_gb)
    if req.flavor.gpus:
        ok &= c["gpu_free"] >= req.flavor.gpus
        accels: list[str] = snap._accels  # type: ignore[attr-defined]
        want = req.flavor.accelerator
        ok &= (c["accel"] == accels.index(want)) if want in accels else np.zeros_like(ok)
    if req.required_labels:
        ok &= np.array([req.required_labels <= n.labels for n in snap.nodes], dtype=bool)
    if not ok.any():  # slow path, only when nothing fits: say why for every node
        return Decision(None, tuple((n.name, fits(n, req)) for n in snap.nodes))
    with np.errstate(divide="ignore", invalid="ignore"):
        cpu_after = np.where(c["cpu"] > 0, (c["cpu_free"] - req.cpu) / c["cpu"], 0.0)
        mem_after = np.where(c["mem"] > 0, (c["mem_free"] - req.memory_gb) / c["mem"], 0.0)
    scores = (cpu_after + mem_after) / 2
    if not req.flavor.gpus:
        scores = scores - c["has_gpu"]  # keep GPU nodes for GPU Spaces
    scores = np.where(ok, scores, -np.inf)
    return Decision(snap.nodes[int(np.argmax(scores))].name)
