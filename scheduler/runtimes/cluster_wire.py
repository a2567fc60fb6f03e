"""What the cluster's server and its node agents agree on: heartbeat keys and what a beat says a node caches, the
labels every node carries, and the NodeSpec an assignment hands a node (versioned JSON, sealed in the store)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from core.artifact import Artifact

HEARTBEAT_TTL_S = 10  # a node beats every HEARTBEAT_EVERY_S; lost once the key expired
HEARTBEAT_EVERY_S = 2
ZEROGPU_LABEL = "spacehost.zerogpu=true"
RUNTIME_LABEL = "spacehost.runtime"  # a node's runtime (process | docker), a label every agent sends
VOLUME_LABEL = "spacehost.volume."  # + OWNER/BUCKET = "here": that bucket's data lives on the node
Volumes = tuple[tuple[str, str, bool], ...]  # (volumes/OWNER/BUCKET[/SUB] under the data dir, mount path, read-only)


def runtime_for(art: Artifact) -> str:
    """The node runtime that runs `art`: its image on a docker node, anything else on a process node."""
    return "docker" if art.image else "process"


def heartbeat_key(node: str) -> str:
    return f"spacehost:node:{node}"


def artifact_key(art: Artifact) -> str | None:
    """What a node caches of `art`, as its heartbeat names it: the image digest (docker), else the env key."""
    if art.image:
        return art.image.rpartition("@")[2] or None
    return art.env_key


def heartbeat_cached(value: bytes | str | None) -> frozenset[str]:
    """The artifacts a node's heartbeat value says it caches (`{"t": …, "cached": [...]}`; nothing if garbled)."""
    try:
        data = json.loads(value or "{}")
        return frozenset(str(k) for k in data.get("cached", ())) if isinstance(data, dict) else frozenset()
    except (ValueError, TypeError):
        return frozenset()


@dataclass(frozen=True)
class NodeSpec:
    """What a node needs to run one instance: the build (the artifact as versioned JSON: the node materialises
    its app tree from the hub's git and its environment by content key from its own cache) and the runtime env.
    Sealed in the store: it holds secrets. Version 1 (no artifact: the node rebuilt the commit) still parses."""

    instance_id: str
    space_id: str
    sha: str
    hardware: str
    env: dict[str, str]
    secret_values: tuple[str, ...]
    artifact: dict[str, Any] | None = None  # core.artifact.artifact_to_json
    volumes: Volumes = ()  # made and bound by the node, under its own data dir
    incoming: tuple[str, ...] = ()  # buckets moving here (scheduler/volume_move.py): fetched, never made new
    # the volumes' size limit as the server resolved it (the Space's storage tier capped by the server's
    # SPACEHOST_VOLUME_LIMIT_BYTES; 0: none): the node makes, or grows, its buckets to it. None (a spec without
    # it; nodes that predate it ignore it): the node's own SPACEHOST_VOLUME_LIMIT_BYTES (`volume_limit_of`)
    volume_limit: int | None = None

    def to_json(self) -> str:
        return json.dumps({"v": 3, "instance_id": self.instance_id, "space_id": self.space_id, "sha": self.sha,
                           "hardware": self.hardware, "env": self.env, "secret_values": list(self.secret_values),
                           "artifact": self.artifact, "volumes": [list(v) for v in self.volumes],
                           "incoming": list(self.incoming), "volume_limit": self.volume_limit})

    @classmethod
    def from_json(cls, text: str) -> NodeSpec:
        d = json.loads(text)
        if d.get("v") not in (1, 2, 3):
            raise ValueError(f"unknown node spec version {d.get('v')!r}")
        return cls(d["instance_id"], d["space_id"], d["sha"], d["hardware"], dict(d["env"]),
                   tuple(d["secret_values"]), d.get("artifact"),
                   tuple((str(rel), str(mount), bool(ro)) for rel, mount, ro in d.get("volumes", ())),
                   tuple(str(b) for b in d.get("incoming", ())),
                   None if d.get("volume_limit") is None else int(d["volume_limit"]))


def volume_limit_of(spec: NodeSpec, own: int) -> int:
    """The size limit a node gives the spec's buckets: the one the server resolved, else the node's `own`."""
    return own if spec.volume_limit is None else spec.volume_limit


def buckets_of(volumes: Volumes) -> tuple[str, ...]:
    """OWNER/BUCKET of each volume (its path: volumes/OWNER/BUCKET[/SUB]), sorted, once each."""
    return tuple(sorted({"/".join(rel.split("/")[1:3]) for rel, _, _ in volumes}))
