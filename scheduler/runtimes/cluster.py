"""The `cluster` runtime: instances run on node agents. `start` places the Space (scheduler.placement over the
registered nodes whose heartbeat key lives in Redis), writes an assignment with a fresh epoch to the store and
waits for the node's report; `exited` reads what the node reported (or that the node was lost); `stop` sets the
assignment's desired state to stopped. The store is the source of truth: nodes reconcile to it.

Hot reload: the node exposes each instance's reload server (RELOAD_PORT inside the Space's network) on a second
relay of its own and reports that port; the instance's `reload` names it, and so does its route, where the
server's hot-reload commits and the proxies' `{subdomain}--7887` go.

Freezing (the frozen tier, issue 16) happens on the node: `freeze`/`thaw` set what the server wants of the
instance (in memory, like the Controller's own `frozen`: a restarted server thaws everything), the node's long-poll
carries it (`frozen` in each assignment), the node freezes or thaws the instance's cgroup and reports the state it
reached (`note_frozen`), which `freeze`/`thaw` wait for. A proxied request to a frozen Space calls the server's
wake, which thaws through this round trip.

Node loss: a monitor (`watch_nodes`) marks a node whose heartbeat key expired (TTL HEARTBEAT_TTL_S) as lost and
its assignments lost, so `exited` tells the Controller, which starts the Space again (placed elsewhere).

Volumes live on the node that ran their Space: the NodeSpec carries each as a path relative to the data dir, the
node makes the bucket under its own, sized to the limit the NodeSpec carries (the Space's storage tier capped by
the server's limit; a moved bucket is grown to it on arrival), and from then on the node carries the label `spacehost.volume.OWNER/BUCKET`
(set here when the Space is placed, and by the node from its disk when it registers). A Space whose bucket has a
home is placed on that node only; while the node is cordoned or lost, the Space waits and says why. A drained
node hands its buckets over: the Space stops there, its bucket is copied to the node it is placed on next, and it
starts there (scheduler/volume_move.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from core.artifact import artifact_to_json
from core.crypto import SecretBox
from core.errors import LaunchFailed
from core.hardware import flavor
from core.isolation import SandboxState
from core.routes import NO_RELOAD, Upstream
from scheduler.placement import Decision, Node, Policy, Request, place
from scheduler.runtimes.base import Ability, ExitInfo, Instance, LaunchSpec, Usage
from scheduler.runtimes.cluster_wire import (
    HEARTBEAT_TTL_S,
    RUNTIME_LABEL,
    VOLUME_LABEL,
    ZEROGPU_LABEL,
    NodeSpec,
    artifact_key,
    buckets_of,
    heartbeat_cached,
    heartbeat_key,
    runtime_for,
)
from state import cluster as cs
from state.store import Store

if TYPE_CHECKING:
    from scheduler.volume_move import VolumeMoves

log = logging.getLogger(__name__)
START_WAIT_S = 1800.0  # a node may materialise a whole environment before it reports
FREEZE_WAIT_S = 10.0  # how long freeze/thaw wait for the node to say it froze/thawed the instance


def volume_homes(nodes: Iterable[cs.NodeRecord], buckets: Iterable[str]) -> dict[str, str]:
    """bucket → the node its data lives on (the node's VOLUME_LABEL), for the buckets that have one."""
    held = {k[len(VOLUME_LABEL):]: n.name for n in nodes for k, v in n.labels
            if k.startswith(VOLUME_LABEL) and v == "here"}
    return {b: held[b] for b in buckets if b in held}


def volume_wait(homes: Mapping[str, str], decision: Decision) -> str:
    """Why a Space whose volumes have a home is not placed."""
    where = "; ".join(f"its volume {b} lives on node {n}, which is unavailable" for b, n in sorted(homes.items()))
    return f"{where} ({decision.summary})"


def snapshot(nodes: Iterable[cs.NodeRecord], alive: Mapping[str, frozenset[str]],
             placed: Iterable[cs.AssignmentRecord]) -> list[Node]:
    """Placement's view of the cluster: capacity, what desired instances take, readiness (alive, not cordoned
    or draining, not lost), labels (`k=v`; nodes with a ZeroGPU broker carry ZEROGPU_LABEL; a node that did not
    say its runtime, RUNTIME_LABEL, runs processes), and what each caches (`alive`: name → its heartbeat's
    artifacts)."""
    used: dict[str, list[float]] = {}
    for a in placed:
        if a.desired == cs.RUNNING:
            fl = flavor(a.hardware)
            u = used.setdefault(a.node, [0.0, 0.0, 0.0])
            u[0], u[1], u[2] = u[0] + fl.cpu, u[1] + fl.memory_gb, u[2] + fl.gpus
    out = []
    for n in nodes:
        u = used.get(n.name, [0.0, 0.0, 0.0])
        labels = {f"{k}={v}" for k, v in {RUNTIME_LABEL: "process", **dict(n.labels)}.items()}
        labels |= {ZEROGPU_LABEL} if n.zerogpu_url else set()
        out.append(Node(n.name, n.cpus, n.memory_gb, n.gpus, u[0], u[1], int(u[2]),
                        ready=n.name in alive and not (n.cordoned or n.draining or n.lost),
                        accelerator=n.accelerator, labels=frozenset(labels),
                        cached=alive.get(n.name, frozenset())))
    return out


def request_for(space_id: str, hardware: str, runtime: str = "process", artifact: str | None = None,
                homes: Mapping[str, str] | None = None) -> Request:
    """`homes`: bucket → node (volume_homes); the Space needs the node that holds each."""
    fl = flavor(hardware)
    labels = {f"{RUNTIME_LABEL}={runtime}"} | ({ZEROGPU_LABEL} if fl.is_zero else set())
    labels |= {f"{VOLUME_LABEL}{b}=here" for b in homes or {}}
    return Request(space_id, fl, fl.cpu, fl.memory_gb, required_labels=frozenset(labels), artifact=artifact)


class ClusterRuntime:
    name = "cluster"
    abilities = frozenset({Ability.PLACEMENT, Ability.FREEZE, Ability.HOT_RELOAD})  # reload: the node's relay

    def __init__(self, store: Store, redis: Any, box: SecretBox, poll_s: float = 0.1,
                 policy: Policy = Policy.SPREAD, moves: VolumeMoves | None = None) -> None:
        self.store, self.redis, self.box, self.poll_s, self.policy = store, redis, box, poll_s, policy
        self.moves = moves  # volume moves off drained nodes; None: a Space waits for its volume's node
        if moves is not None:
            moves.changed = self.bump
        self.scheduling: dict[str, str] = {}  # space id → why it is not placed yet (Kubernetes style)
        self.changed = asyncio.Event()  # set (and replaced) whenever assignments change: wakes node long-polls
        self.version = 0
        self._placing = asyncio.Lock()  # one decision at a time: each sees the assignments of the ones before
        self.want_frozen: set[str] = set()  # instance ids the server wants frozen (the nodes' long-polls carry it)
        self.node_frozen: dict[str, bool] = {}  # instance id → frozen or not, as its node last reported
        self._frozen_seen = asyncio.Event()  # set (and replaced) on every such report

    # -- helpers ------------------------------------------------------------------------------------------------
    def bump(self) -> None:
        self.version += 1
        self.changed.set()
        self.changed = asyncio.Event()

    async def alive(self, names: Iterable[str]) -> set[str]:
        return set(await self.heartbeats(names))

    async def heartbeats(self, names: Iterable[str]) -> dict[str, frozenset[str]]:
        """The nodes among `names` whose heartbeat key lives, each with the artifacts it says it caches."""
        names = list(names)
        if not names:
            return {}
        found = await self.redis.mget([heartbeat_key(n) for n in names])
        return {n: heartbeat_cached(v) for n, v in zip(names, found, strict=True) if v is not None}

    async def decide(self, space_id: str, hardware: str, runtime: str = "process", artifact: str | None = None,
                     buckets: Iterable[str] = ()) -> tuple[Decision, dict[str, cs.NodeRecord], dict[str, str]]:
        """Where the Space goes, the nodes by name, and where its volumes live (bucket → node)."""
        nodes = await asyncio.to_thread(cs.list_nodes, self.store)
        placed = await asyncio.to_thread(cs.assignments, self.store, desired=cs.RUNNING)
        alive = await self.heartbeats(n.name for n in nodes)
        homes = volume_homes(nodes, buckets)
        decision = place(snapshot(nodes, alive, placed), request_for(space_id, hardware, runtime, artifact, homes),
                         self.policy)
        return decision, {n.name: n for n in nodes}, homes

    # -- Runtime Protocol ---------------------------------------------------------------------------------------
    async def start(self, spec: LaunchSpec) -> Instance:
        art, sid = spec.artifact, spec.artifact.space_id
        hardware = spec.flavor.hardware.value
        buckets = buckets_of(spec.volumes)
        while True:
            async with self._placing:
                decision, nodes, homes = await self.decide(sid, hardware, runtime_for(art), artifact_key(art),
                                                           buckets)
                moving = await self._movable(homes, nodes) if decision.node is None else {}
                if moving:  # its volumes' node is drained: place it as if it had none, the volumes follow
                    decision = (await self.decide(sid, hardware, runtime_for(art), artifact_key(art)))[0]
                if decision.node is not None:
                    node = nodes[decision.node]
                    if new := {f"{VOLUME_LABEL}{b}": "here" for b in buckets if b not in homes}:
                        await asyncio.to_thread(cs.add_node_labels, self.store, node.name, new)
                    env = dict(spec.env)
                    if node.zerogpu_url and flavor(hardware).is_zero:
                        env["SPACES_ZERO_DEVICE_API_URL"] = node.zerogpu_url
                    sealed = self.box.seal(NodeSpec(spec.instance_id, sid, art.sha, hardware, env,
                                                    spec.secret_values, artifact_to_json(art),
                                                    spec.volumes, tuple(moving), spec.volume_limit).to_json())
                    if moving and self.moves is not None:
                        self.moves.expect(sid, moving, node.name)
                    a = await asyncio.to_thread(cs.add_assignment, self.store, spec.instance_id, sid, art.sha,
                                                node.name, hardware, sealed)
                    break
            why = volume_wait(homes, decision) if homes else decision.summary
            if self.scheduling.get(sid) != why:
                log.info("%s is not placed: %s", sid, why)
            self.scheduling[sid] = why
            await asyncio.sleep(1.0)
        self.scheduling.pop(sid, None)
        log.info("%s epoch %d placed on %s", spec.instance_id, a.epoch, node.name)
        self.bump()
        if moving:
            await self._move(sid, moving, node.name, spec.instance_id)
        deadline = time.monotonic() + START_WAIT_S
        while time.monotonic() < deadline:
            cur = await asyncio.to_thread(cs.get_assignment, self.store, spec.instance_id)
            if cur is None or cur.desired != cs.RUNNING:
                raise LaunchFailed(f"{spec.instance_id} was withdrawn before it started")
            if cur.reported == "running" and cur.upstream_host and cur.upstream_port:
                return self._instance(cur)
            if cur.ended:
                raise LaunchFailed(f"on node {cur.node}: {cur.exit_reason or cur.reported}")
            await asyncio.sleep(self.poll_s)
        await self.stop(Instance(spec.instance_id, sid, art.sha, Upstream(node.address, 0)))
        raise LaunchFailed(f"node {node.name} did not start {sid} within {START_WAIT_S:.0f}s")

    async def _movable(self, homes: Mapping[str, str], nodes: Mapping[str, cs.NodeRecord]) -> dict[str, str]:
        """bucket → its home, when every volume of the Space lives on a drained node that can hand it over."""
        if self.moves is None or not homes:
            return {}
        moving = self.moves.movable(homes, nodes, await self.alive(homes.values()))
        return moving if set(moving) == set(homes) else {}

    async def _move(self, sid: str, moving: dict[str, str], target: str, instance_id: str) -> None:
        """Move the Space's buckets to `target`, where `instance_id` waits for them (VolumeMoves.move). When a
        bucket is not handed over, the new instance is withdrawn and LaunchFailed raised (the bucket stayed)."""
        assert self.moves is not None

        async def stop(a: cs.AssignmentRecord) -> None:
            await self.stop(self._instance(a))

        async def alive(node: str) -> bool:
            return node in await self.alive([node])

        async def gone() -> str | None:
            a = await asyncio.to_thread(cs.get_assignment, self.store, instance_id)
            if a is None or a.desired != cs.RUNNING:
                return f"{instance_id} was withdrawn before its volumes moved"
            return f"on node {a.node}: {a.exit_reason or a.reported}" if a.ended else None

        try:
            await self.moves.move(sid, moving, target, self.box, stop, alive, gone)
        except LaunchFailed as e:
            log.warning("%s: %s", sid, e.message)
            await self.stop(Instance(instance_id, sid, "", Upstream(target, 0)))
            raise

    @staticmethod
    def _instance(a: cs.AssignmentRecord) -> Instance:
        """The instance as its node reported it: the app and its reload server each behind a relay of the node
        (NO_RELOAD where the node has none: RELOAD_PORT at the node's address is the node's own, not the Space's)."""
        host = a.upstream_host or ""
        return Instance(a.instance_id, a.space_id, a.sha, Upstream(host, a.upstream_port or 0), pid=a.pid,
                        reload=Upstream(host, a.reload_port) if a.reload_port else NO_RELOAD)

    async def exited(self, inst: Instance) -> ExitInfo | None:
        a = await asyncio.to_thread(cs.get_assignment, self.store, inst.instance_id)
        if a is None:
            return ExitInfo(None, "its assignment is gone")
        if a.reported == "lost":
            return ExitInfo(None, a.exit_reason or f"node {a.node} lost")
        if a.ended:
            return ExitInfo(None, f"{a.exit_reason or a.reported} (on node {a.node})")
        return None

    async def stop(self, inst: Instance, grace_s: float = 5.0) -> None:
        self.want_frozen.discard(inst.instance_id)  # the node thaws it to stop it anyway
        self.node_frozen.pop(inst.instance_id, None)
        a = await asyncio.to_thread(cs.set_desired, self.store, inst.instance_id, cs.STOPPED)
        if a is None:
            return
        self.bump()
        deadline = time.monotonic() + grace_s + 10.0
        while time.monotonic() < deadline and not a.ended:
            if a.node not in await self.alive([a.node]):
                return  # a lost node counts as stopped; if it returns, it stops what is not its own
            await asyncio.sleep(self.poll_s)
            a = await asyncio.to_thread(cs.get_assignment, self.store, inst.instance_id) or a

    async def adopt(self) -> list[Instance]:
        """Instances reported running on live nodes; every other desired instance (started while the server was
        down, or on a node that is gone) is withdrawn, and the Controller starts its Space again."""
        placed = await asyncio.to_thread(cs.assignments, self.store, desired=cs.RUNNING)
        alive = await self.alive({a.node for a in placed})
        found = []
        for a in placed:
            if a.reported == "running" and a.node in alive and a.upstream_port:
                found.append(self._instance(a))
            else:
                await asyncio.to_thread(cs.set_desired, self.store, a.instance_id, cs.STOPPED)
        self.bump()
        return found

    async def freeze(self, inst: Instance) -> bool:
        """Ask the instance's node to freeze it; True once the node says it did (within FREEZE_WAIT_S)."""
        iid = inst.instance_id
        self.want_frozen.add(iid)
        self.node_frozen.pop(iid, None)
        self.bump()
        if await self._node_says(iid, frozen=True):
            return True
        self.want_frozen.discard(iid)  # it did not settle: the node thaws whatever froze
        self.bump()
        return False

    async def thaw(self, inst: Instance) -> None:
        """Ask the instance's node to thaw it, and wait (up to FREEZE_WAIT_S) until the node says it did."""
        self.want_frozen.discard(inst.instance_id)
        self.bump()
        await self._node_says(inst.instance_id, frozen=False)

    def note_frozen(self, instance_id: str, frozen: bool) -> None:
        """A node's report: the instance is now frozen (or not)."""
        self.node_frozen[instance_id] = frozen
        self._frozen_seen.set()
        self._frozen_seen = asyncio.Event()

    async def _node_says(self, instance_id: str, *, frozen: bool) -> bool:
        """Wait until the node reported the instance's freezer state; True when it is `frozen`."""
        deadline = time.monotonic() + FREEZE_WAIT_S
        while (seen := self.node_frozen.get(instance_id)) is None or (not frozen and seen):
            if (left := deadline - time.monotonic()) <= 0:
                log.warning("%s: its node did not %s it within %.0fs", instance_id, "freeze" if frozen else "thaw",
                            FREEZE_WAIT_S)
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._frozen_seen.wait(), left)
        return seen is frozen

    async def usage(self, inst: Instance) -> Usage | None:
        return None

    def forget_space(self, space_id: str) -> None:
        self.scheduling.pop(space_id, None)

    def describe_isolation(self) -> str:
        return "Spaces run on node agents (`spacehost node`), each isolated by its node's runtime."

    def sandbox_state(self) -> SandboxState:
        return SandboxState(True)

    def pending_reason(self, space_id: str) -> str | None:
        return self.scheduling.get(space_id) or (self.moves.notes.get(space_id) if self.moves else None)

    def gateway(self) -> str | None:
        return None  # Spaces reach the host through their node's runtime

    def expose_host_services(self, services: Mapping[str, int]) -> None:
        return None

    def close(self) -> None:
        return None

    # -- node loss ------------------------------------------------------------------------------------------------
    async def watch_nodes(self, every_s: float = 0.5) -> None:
        """Forever: a node whose heartbeat key expired is lost (its assignments too); one that beats again is
        back (it then stops whatever it still runs that is no longer its own)."""
        while True:
            try:
                await self.check_nodes()
            except Exception:
                log.exception("node check failed")
            await asyncio.sleep(every_s)

    async def check_nodes(self) -> None:
        nodes = await asyncio.to_thread(cs.list_nodes, self.store)
        alive = await self.alive(n.name for n in nodes)
        for n in nodes:
            if not n.lost and n.name not in alive:
                lost = await asyncio.to_thread(cs.mark_node_lost, self.store, n.name)
                log.warning("node %s lost (no heartbeat for %ds): %d instance(s) to place elsewhere", n.name,
                            HEARTBEAT_TTL_S, len(lost))
                self.bump()
            elif n.lost and n.name in alive:
                await asyncio.to_thread(cs.revive_node, self.store, n.name)
                log.info("node %s is back", n.name)
                self.bump()

