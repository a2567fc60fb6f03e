"""Placement: which node runs a Space. A pure function over a frozen snapshot of nodes — filter (does it fit,
and if not, why) then score (least allocated after placement; GPU nodes kept for GPU Spaces) — as Kubernetes'
filter/score plugins do. Every node that is
filtered out carries its reasons, so an unschedulable Space can say why in its status.

Locality (Kubernetes' ImageLocality): a request that names its artifact (a process build's environment key, a
docker build's image digest) scores LOCALITY higher on the nodes that hold it in their cache (`Node.cached`), so a
Space started again (moved, woken, placed after a node loss) goes where it starts without building or pulling,
unless another node is much emptier. Computed only for requests that name an artifact.

The score is a per-cluster policy (`Policy`): `spread` (Kubernetes' LeastAllocated: the emptiest node, so a lost
node takes few Spaces with it) or `binpack` (Kubernetes' MostAllocated, Nomad's default: the fullest node that
fits, so free capacity stays in whole nodes and big Spaces still find room)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

import numpy as np

from core.hardware import Flavor


class Policy(str, Enum):
    """How the nodes that fit are scored (see the module docstring)."""

    SPREAD = "spread"
    BINPACK = "binpack"


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
    cached: frozenset[str] = frozenset()  # artifacts in its cache: environment keys, image digests


@dataclass(frozen=True)
class Request:
    space_id: str
    flavor: Flavor
    cpu: float  # what the Space reserves (may be below the flavor's limit: overcommit)
    memory_gb: float
    required_labels: frozenset[str] = frozenset()
    artifact: str | None = None  # what it runs from (env key, image digest): nodes that cache it score higher


@dataclass(frozen=True)
class Decision:
    """Where a Space goes, or why it goes nowhere: how many nodes were rejected for each reason (cheap, always
    there) and, on demand, each node's reasons (`reasons`, as `fits` gives them)."""

    node: str | None
    counts: tuple[tuple[str, int], ...] = ()  # reason → rejected nodes, in order of first appearance
    considered: int = 0
    _explain: Callable[[], tuple[tuple[str, tuple[str, ...]], ...]] | None = field(
        default=None, compare=False, repr=False)

    @property
    def reasons(self) -> tuple[tuple[str, tuple[str, ...]], ...]:
        """(node, why not) for every node, when nothing fits."""
        return self._explain() if self._explain is not None else ()

    @property
    def summary(self) -> str:
        """'0/3 nodes are available: 2 insufficient memory, 1 not ready' (Kubernetes' FitError style)."""
        if self.node:
            return f"placed on {self.node}"
        detail = ", ".join(f"{n} {w}" for w, n in sorted(self.counts, key=lambda kv: -kv[1]))
        return f"0/{self.considered} nodes are available: {detail or 'no nodes'}"


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
    why.extend(f"missing label {label}" for label in sorted(req.required_labels - node.labels))
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
        self._cols.update(_columns(ns))


def _columns(ns: Sequence[Node]) -> dict[str, Any]:
    c: dict[str, Any] = {}
    c["cpu"] = np.array([n.cpu for n in ns], dtype=float)
    c["cpu_free"] = np.array([n.cpu - n.cpu_used for n in ns], dtype=float)
    c["mem"] = np.array([n.memory_gb for n in ns], dtype=float)
    c["mem_free"] = np.array([n.memory_gb - n.memory_used_gb for n in ns], dtype=float)
    c["gpu_free"] = np.array([n.gpus - n.gpus_used for n in ns], dtype=int)
    c["has_gpu"] = np.array([n.gpus > 0 for n in ns], dtype=float)
    c["ready"] = np.array([n.ready for n in ns], dtype=bool)
    c["cpu_free_ready"] = np.where(c["ready"], c["cpu_free"], -np.inf)
    accels = sorted({n.accelerator or "" for n in ns})
    c["accel"] = np.array([accels.index(n.accelerator or "") for n in ns], dtype=int)
    c["accels"] = accels
    # Divisors that are never 0 (a node with no capacity scores 0 there, as np.where would give).
    c["cpu_div"] = np.where(c["cpu"] > 0, c["cpu"], 1.0)
    c["mem_div"] = np.where(c["mem"] > 0, c["mem"], 1.0)
    c["no_cpu"] = c["cpu"] <= 0
    c["no_mem"] = c["mem"] <= 0
    c["any_empty"] = bool(c["no_cpu"].any() or c["no_mem"].any())
    c["cached"] = _cache_index(ns)
    return c


def _cache_index(ns: Sequence[Node]) -> dict[str, set[int]]:
    """Artifact → the rows of the nodes that cache it."""
    index: dict[str, set[int]] = {}
    for i, n in enumerate(ns):
        for key in n.cached:
            index.setdefault(key, set()).add(i)
    return index


def _set_row(c: dict[str, Any], i: int, n: Node) -> None:
    """Write node `n` into row `i` of columns `c`, with the same arithmetic as `_columns`."""
    c["cpu"][i], c["cpu_free"][i] = n.cpu, n.cpu - n.cpu_used
    c["mem"][i], c["mem_free"][i] = n.memory_gb, n.memory_gb - n.memory_used_gb
    c["gpu_free"][i], c["has_gpu"][i], c["ready"][i] = n.gpus - n.gpus_used, n.gpus > 0, n.ready
    c["cpu_free_ready"][i] = c["cpu_free"][i] if n.ready else -np.inf
    c["cpu_div"][i], c["mem_div"][i] = (n.cpu if n.cpu > 0 else 1.0), (n.memory_gb if n.memory_gb > 0 else 1.0)
    c["no_cpu"][i], c["no_mem"][i] = n.cpu <= 0, n.memory_gb <= 0
    c["any_empty"] = c["any_empty"] or n.cpu <= 0 or n.memory_gb <= 0


# Score bonus of a node that caches the request's artifact: under `spread` it wins over a node up to 30 % emptier
# (one more cpu-basic Space on an 8-cpu node), since a start there skips an environment build or an image pull
# (minutes); more would pile every Space of a popular environment onto the nodes that ran it first.
LOCALITY = 0.3

# Weight of the cpu/memory imbalance against how full a node gets, in `binpack`. Chosen on bench/cluster.py's
# mix (6 packs 96.8 % of the lower bound on 1,000 nodes; 1 packs 92.4 %, 20 starves GPU Spaces).
_BALANCE = 6.0


def place(nodes: Sequence[Node] | Snapshot, req: Request, policy: Policy = Policy.SPREAD) -> Decision:
    snap = nodes if isinstance(nodes, Snapshot) else Snapshot(tuple(nodes))
    return _decide(snap.nodes, snap._cols, req, policy)


def _decide(nodes: Sequence[Node], c: dict[str, Any], req: Request, policy: Policy) -> Decision:
    if not nodes:
        return Decision(None, ())
    bad = c["cpu_free_ready"] < req.cpu  # a node that is not ready has -inf there
    bad |= c["mem_free"] < req.memory_gb
    if req.flavor.gpus:
        bad |= c["gpu_free"] < req.flavor.gpus
        accels: list[str] = c["accels"]
        want = req.flavor.accelerator
        if want in accels:
            bad |= c["accel"] != accels.index(want)
        else:
            bad[:] = True
    if req.required_labels:
        bad |= np.array([not req.required_labels <= n.labels for n in nodes], dtype=bool)
    if bad.all():
        return _unschedulable(nodes, c, req)
    cpu_after = np.subtract(c["cpu_free"], req.cpu)
    cpu_after /= c["cpu_div"]
    mem_after = np.subtract(c["mem_free"], req.memory_gb)
    mem_after /= c["mem_div"]
    if c["any_empty"]:
        cpu_after[c["no_cpu"]] = 0.0
        mem_after[c["no_mem"]] = 0.0
    if policy is Policy.BINPACK:
        # The least left free, and cpu and memory left in proportion (Kubernetes' BalancedAllocation): a node
        # whose memory runs out with cpu to spare (or the reverse) strands the rest as scraps.
        imbalance = np.subtract(cpu_after, mem_after)
        np.abs(imbalance, out=imbalance)
        imbalance *= _BALANCE
        cpu_after += mem_after
        cpu_after *= -0.5
        cpu_after -= imbalance
        scores = cpu_after
    else:
        scores = cpu_after
        scores += mem_after
        scores *= 0.5  # exactly /2
    if not req.flavor.gpus:
        scores -= c["has_gpu"]  # keep GPU nodes for GPU Spaces
    if req.artifact is not None and (rows := c["cached"].get(req.artifact)):
        scores[np.fromiter(rows, dtype=int, count=len(rows))] += LOCALITY
    np.copyto(scores, -np.inf, where=bad)
    return Decision(nodes[int(scores.argmax())].name)


def _unschedulable(nodes: Sequence[Node], c: dict[str, Any], req: Request) -> Decision:
    """Nothing fits: count the reasons over all nodes in a few vectorised passes (the same reasons as `fits`);
    each node's own reasons are computed only if asked for."""
    masks: list[tuple[str, np.ndarray]] = [("not ready", ~c["ready"]), ("insufficient cpu", c["cpu_free"] < req.cpu),
                                           ("insufficient memory", c["mem_free"] < req.memory_gb)]
    if req.flavor.gpus:
        short = c["gpu_free"] < req.flavor.gpus
        masks.append(("insufficient gpu", short))
        if req.flavor.accelerator:
            accels: list[str] = c["accels"]
            want = accels.index(req.flavor.accelerator) if req.flavor.accelerator in accels else -1
            masks.append((f"no {req.flavor.accelerator} gpu", ~short & (c["accel"] != want)))
    for label in sorted(req.required_labels):
        masks.append((f"missing label {label}", np.array([label not in n.labels for n in nodes], dtype=bool)))
    # First appearance in a scan of nodes by name, then by reason: the order a per-node count would give.
    present = [(int(np.argmax(m)), k, why, int(np.count_nonzero(m))) for k, (why, m) in enumerate(masks) if m.any()]
    counts = tuple((why, n) for _, _, why, n in sorted(present))
    frozen = list(nodes)
    return Decision(None, counts, len(frozen), lambda: tuple((n.name, fits(n, req)) for n in frozen))


class Placer:
    """Placement for a stream of decisions (a scheduler pass, the benchmark): the snapshot's columns are
    updated in place for the one node that changed, instead of rebuilt for every node.

    Contract: after any sequence of `allocate`, `release` and `update`, `place(req)` returns exactly what
    `place(self.snapshot(), req, self.policy)` returns for the nodes as they now are."""

    def __init__(self, nodes: Sequence[Node] | Snapshot, policy: Policy = Policy.SPREAD) -> None:
        snap = nodes if isinstance(nodes, Snapshot) else Snapshot(tuple(nodes))
        self.policy = policy
        self.nodes: list[Node] = list(snap.nodes)
        self._index = {n.name: i for i, n in enumerate(self.nodes)}
        self._cols = _columns(self.nodes)

    def place(self, req: Request) -> Decision:
        return _decide(self.nodes, self._cols, req, self.policy)

    def allocate(self, name: str, req: Request) -> None:
        """`req` now runs on node `name`."""
        n = self.nodes[self._index[name]]
        self.update(replace(n, cpu_used=n.cpu_used + req.cpu, memory_used_gb=n.memory_used_gb + req.memory_gb,
                            gpus_used=n.gpus_used + req.flavor.gpus))

    def release(self, name: str, req: Request) -> None:
        """`req` no longer runs on node `name`."""
        n = self.nodes[self._index[name]]
        self.update(replace(n, cpu_used=n.cpu_used - req.cpu, memory_used_gb=n.memory_used_gb - req.memory_gb,
                            gpus_used=n.gpus_used - req.flavor.gpus))

    def update(self, node: Node) -> None:
        """A node's new state (capacity, usage, readiness, labels); a node not seen before joins."""
        i = self._index.get(node.name)
        if i is None or (node.accelerator or "") not in self._cols["accels"]:
            nodes = [n for n in self.nodes if n.name != node.name] + [node]
            fresh = Snapshot(tuple(nodes))
            self.nodes, self._cols = list(fresh.nodes), _columns(fresh.nodes)
            self._index = {n.name: j for j, n in enumerate(self.nodes)}
            return
        old, self.nodes[i] = self.nodes[i], node
        _set_row(self._cols, i, node)
        if old.cached != node.cached:
            index: dict[str, set[int]] = self._cols["cached"]
            for key in old.cached - node.cached:
                index[key].discard(i)
            for key in node.cached - old.cached:
                index.setdefault(key, set()).add(i)
        self._cols["accel"][i] = self._cols["accels"].index(node.accelerator or "")

    def snapshot(self) -> Snapshot:
        return Snapshot(tuple(self.nodes))
