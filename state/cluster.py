"""Cluster state: nodes and assignments (desired state of each Space instance, with an epoch, and what its node
reports). Tables live on the same `Base` as state/store.py; rows never leave this module, callers get frozen
records. Every function blocks: async callers go through `asyncio.to_thread`.

An assignment is the contract between the server and one node: `desired` is the server's ('running' |
'stopped'), `reported` the node's ('pending' | 'running' | 'exited' | 'stopped' | 'lost'). A node only ever
runs assignments that name it with desired='running'; anything else it runs is stale and it stops it."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ForeignKey, Index, String, delete, func, select
from sqlalchemy.orm import Mapped, mapped_column

from state.store import Base, Store, utcnow

RUNNING, STOPPED = "running", "stopped"
ENDED = frozenset({"exited", "stopped", "lost"})


class NodeRow(Base):
    __tablename__ = "nodes"
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    address: Mapped[str] = mapped_column(String(255))
    cpus: Mapped[float] = mapped_column()
    memory_gb: Mapped[float] = mapped_column()
    gpus: Mapped[int] = mapped_column(default=0)
    accelerator: Mapped[str | None] = mapped_column(String(32), default=None)
    labels: Mapped[str] = mapped_column(default="{}")  # JSON object
    zerogpu_url: Mapped[str | None] = mapped_column(default=None)
    cordoned: Mapped[bool] = mapped_column(default=False)
    draining: Mapped[bool] = mapped_column(default=False)
    lost_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    registered_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class AssignmentRow(Base):
    __tablename__ = "assignments"
    __table_args__ = (Index("ix_assignments_node_desired", "node", "desired"),)
    instance_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    space_id: Mapped[str] = mapped_column(String(200), index=True)
    sha: Mapped[str] = mapped_column(String(40))
    node: Mapped[str] = mapped_column(ForeignKey("nodes.name", ondelete="CASCADE"))
    epoch: Mapped[int] = mapped_column()
    desired: Mapped[str] = mapped_column(String(8), default=RUNNING)
    hardware: Mapped[str] = mapped_column(String(32))
    spec: Mapped[str] = mapped_column()  # sealed JSON (it holds the Space's secrets): see scheduler/runtimes/cluster.py
    reported: Mapped[str] = mapped_column(String(8), default="pending")
    upstream_host: Mapped[str | None] = mapped_column(String(255), default=None)
    upstream_port: Mapped[int | None] = mapped_column(default=None)
    reload_port: Mapped[int | None] = mapped_column(default=None)  # the node's relay to the instance's reload server
    pid: Mapped[int | None] = mapped_column(default=None)
    exit_reason: Mapped[str | None] = mapped_column(default=None)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


@dataclass(frozen=True)
class NodeInfo:
    """What a node agent declares when it registers."""

    name: str
    address: str
    cpus: float
    memory_gb: float
    gpus: int = 0
    accelerator: str | None = None
    labels: Mapping[str, str] | None = None
    zerogpu_url: str | None = None

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> NodeInfo:
        return cls(str(data["name"]), str(data["address"]), float(data["cpus"]), float(data["memory_gb"]),
                   int(data.get("gpus") or 0), data.get("accelerator") or None,
                   {str(k): str(v) for k, v in (data.get("labels") or {}).items()}, data.get("zerogpu_url") or None)


@dataclass(frozen=True)
class NodeRecord:
    name: str
    address: str
    cpus: float
    memory_gb: float
    gpus: int
    accelerator: str | None
    labels: tuple[tuple[str, str], ...]
    zerogpu_url: str | None
    cordoned: bool
    draining: bool
    lost: bool

    @classmethod
    def of(cls, row: NodeRow) -> NodeRecord:
        labels = tuple(sorted(json.loads(row.labels or "{}").items()))
        return cls(row.name, row.address, row.cpus, row.memory_gb, row.gpus, row.accelerator, labels,
                   row.zerogpu_url, row.cordoned, row.draining, row.lost_at is not None)


@dataclass(frozen=True)
class AssignmentRecord:
    instance_id: str
    space_id: str
    sha: str
    node: str
    epoch: int
    desired: str
    hardware: str
    spec: str
    reported: str
    upstream_host: str | None
    upstream_port: int | None
    pid: int | None
    exit_reason: str | None
    reload_port: int | None = None  # on `upstream_host`: the node's relay to the instance's reload server

    @classmethod
    def of(cls, row: AssignmentRow) -> AssignmentRecord:
        return cls(row.instance_id, row.space_id, row.sha, row.node, row.epoch, row.desired, row.hardware, row.spec,
                   row.reported, row.upstream_host, row.upstream_port, row.pid, row.exit_reason, row.reload_port)

    @property
    def ended(self) -> bool:
        return self.reported in ENDED


@dataclass(frozen=True)
class Report:
    """A node's word on one instance."""

    instance_id: str
    epoch: int
    reported: str  # 'running' | 'exited' | 'stopped'
    upstream_port: int | None = None
    pid: int | None = None
    exit_reason: str | None = None
    reload_port: int | None = None  # the node's relay to the instance's reload server; None: it has none

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> Report:
        if data.get("reported") not in ("running", "exited", "stopped"):
            raise ValueError(f"unknown report {data.get('reported')!r}")
        port, reload_port = data.get("upstream_port"), data.get("reload_port")
        return cls(str(data["instance_id"]), int(data["epoch"]), str(data["reported"]),
                   int(port) if port else None, int(data["pid"]) if data.get("pid") else None,
                   str(data["exit_reason"]) if data.get("exit_reason") else None,
                   int(reload_port) if reload_port else None)


def ensure_tables(store: Store) -> None:
    """Nothing left to do: the store's migrations (state/schema.py) made these tables when it opened."""
    del store


# ---- nodes ---------------------------------------------------------------------------------------------------

def register_node(store: Store, info: NodeInfo) -> NodeRecord:
    """Insert or update the node (keeps its cordon/drain flags); a lost node that registers again is back."""
    with store.session() as s:
        row = s.get(NodeRow, info.name) or NodeRow(name=info.name)
        row.address, row.cpus, row.memory_gb, row.gpus = info.address, info.cpus, info.memory_gb, info.gpus
        row.accelerator, row.zerogpu_url = info.accelerator, info.zerogpu_url
        row.labels = json.dumps(dict(info.labels or {}), sort_keys=True)
        row.lost_at = None
        s.add(row)
        s.flush()
        return NodeRecord.of(row)


def add_node_labels(store: Store, name: str, labels: Mapping[str, str]) -> None:
    """Add (or overwrite) labels of the node; the others stay."""
    with store.session() as s:
        row = s.get(NodeRow, name)
        if row is not None:
            row.labels = json.dumps({**json.loads(row.labels or "{}"), **labels}, sort_keys=True)


def drop_node_labels(store: Store, name: str, keys: Iterable[str]) -> None:
    """Remove those labels of the node; the others stay."""
    drop = set(keys)
    with store.session() as s:
        row = s.get(NodeRow, name)
        if row is not None:
            labels = {k: v for k, v in json.loads(row.labels or "{}").items() if k not in drop}
            row.labels = json.dumps(labels, sort_keys=True)


def list_nodes(store: Store) -> list[NodeRecord]:
    with store.session() as s:
        return [NodeRecord.of(r) for r in s.scalars(select(NodeRow).order_by(NodeRow.name))]


def set_node_flags(store: Store, name: str, **flags: bool) -> NodeRecord | None:
    with store.session() as s:
        row = s.get(NodeRow, name)
        if row is None:
            return None
        for k, v in flags.items():
            if k not in ("cordoned", "draining"):
                raise ValueError(k)
            setattr(row, k, v)
        return NodeRecord.of(row)


def mark_node_lost(store: Store, name: str) -> list[AssignmentRecord]:
    """The node missed its heartbeats: every instance it was to run is lost (and no longer desired there: a
    node that comes back stops them). Returns those assignments; idempotent."""
    with store.session() as s:
        row = s.get(NodeRow, name)
        if row is None:
            return []
        if row.lost_at is None:
            row.lost_at = utcnow()
        rows = list(s.scalars(select(AssignmentRow).where(AssignmentRow.node == name,
                                                          AssignmentRow.reported.not_in(ENDED))))
        for a in rows:
            a.reported, a.desired, a.exit_reason = "lost", STOPPED, f"node {name} lost"
        return [AssignmentRecord.of(a) for a in rows]


def revive_node(store: Store, name: str) -> None:
    """A lost node beats again: it may take new instances (its old ones stay withdrawn)."""
    with store.session() as s:
        row = s.get(NodeRow, name)
        if row is not None:
            row.lost_at = None


# ---- assignments ---------------------------------------------------------------------------------------------

def add_assignment(store: Store, instance_id: str, space_id: str, sha: str, node: str, hardware: str,
                   sealed_spec: str) -> AssignmentRecord:
    """A new instance of `space_id` on `node`, with an epoch above every earlier one of the Space."""
    with store.session() as s:
        top = s.scalar(select(func.max(AssignmentRow.epoch)).where(AssignmentRow.space_id == space_id)) or 0
        row = AssignmentRow(instance_id=instance_id, space_id=space_id, sha=sha, node=node, epoch=top + 1,
                            desired=RUNNING, hardware=hardware, spec=sealed_spec, reported="pending")
        s.add(row)
        s.flush()
        return AssignmentRecord.of(row)


def get_assignment(store: Store, instance_id: str) -> AssignmentRecord | None:
    with store.session() as s:
        row = s.get(AssignmentRow, instance_id)
        return AssignmentRecord.of(row) if row else None


def assignments(store: Store, *, node: str | None = None, desired: str | None = None) -> list[AssignmentRecord]:
    with store.session() as s:
        q = select(AssignmentRow).order_by(AssignmentRow.space_id, AssignmentRow.epoch)
        if node is not None:
            q = q.where(AssignmentRow.node == node)
        if desired is not None:
            q = q.where(AssignmentRow.desired == desired)
        return [AssignmentRecord.of(r) for r in s.scalars(q)]


def set_desired(store: Store, instance_id: str, desired: str) -> AssignmentRecord | None:
    with store.session() as s:
        row = s.get(AssignmentRow, instance_id)
        if row is None:
            return None
        row.desired = desired
        return AssignmentRecord.of(row)


def apply_report(store: Store, node: str, report: Report) -> AssignmentRecord | None:
    """Record what `node` says about one instance, if the instance is still that node's at that epoch (a
    report from a node that lost it, or about an older epoch, changes nothing). None when ignored."""
    with store.session() as s:
        row = s.get(AssignmentRow, report.instance_id)
        if row is None or row.node != node or row.epoch != report.epoch or row.reported == "lost":
            return None
        row.reported, row.pid, row.exit_reason = report.reported, report.pid, report.exit_reason
        if report.upstream_port:
            address = s.scalar(select(NodeRow.address).where(NodeRow.name == node))
            row.upstream_host, row.upstream_port = address, report.upstream_port
            row.reload_port = report.reload_port
        return AssignmentRecord.of(row)


def prune_ended(store: Store, keep_after: dt.datetime) -> int:
    """Forget stopped/lost instances no longer desired, last changed before `keep_after`."""
    with store.session() as s:
        res = s.execute(delete(AssignmentRow).where(AssignmentRow.desired == STOPPED,
                                                    AssignmentRow.reported.in_(ENDED),
                                                    AssignmentRow.updated_at < keep_after))
        return int(getattr(res, "rowcount", 0) or 0)
