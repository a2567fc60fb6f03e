"""Persistent storage of Spaces (`hf spaces volumes`), decided without I/O.

HF mounts buckets (read-write) and repos (read-only) into a Space. spacehost keeps Spaces only, so it mounts
buckets: `hf://buckets/OWNER/NAME:/data` is a directory of OWNER's that outlives restarts, rebuilds, sleep and
redeploys (DATA_DIR/volumes/OWNER/NAME on the node), bound read-write (or `:ro`) at the mount path inside the
Space's sandbox or container. Spaces of one owner that name the same bucket share it, as on HF.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from core.errors import BadRequest

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
RESERVED = ("/usr", "/etc", "/proc", "/dev", "/bin", "/sbin", "/lib", "/lib64", "/tmp", "/run", "/opt/spacehost",
            "/home/user/app")
MAX_VOLUMES = 8
TIERS = ("small", "medium", "large")  # HF's persistent storage tiers, smallest first (huggingface_hub SpaceStorage)


@dataclass(frozen=True)
class VolumeSpec:
    source: str  # "owner/bucket"
    mount_path: str  # absolute, normalized
    read_only: bool = False
    path: str | None = None  # a subfolder of the bucket

    @property
    def owner(self) -> str:
        return self.source.split("/", 1)[0]

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "bucket", "source": self.source, "mountPath": self.mount_path,
                               "readOnly": self.read_only}
        if self.path:
            out["path"] = self.path
        return out

    def host_parts(self) -> tuple[str, ...]:
        """Where its files live, relative to DATA_DIR."""
        owner, bucket = self.source.split("/", 1)
        return ("volumes", owner, bucket, *(self.path.split("/") if self.path else ()))


def _mount_path(value: object) -> str:
    if not isinstance(value, str) or not value.startswith("/"):
        raise BadRequest("mountPath must be an absolute path, e.g. /data")
    p = PurePosixPath(value)
    if ".." in p.parts or str(p) == "/":
        raise BadRequest(f"mountPath {value!r} is not allowed")
    norm = str(p)
    for r in RESERVED:
        if norm == r or norm.startswith(r + "/") or r.startswith(norm + "/"):
            raise BadRequest(f"mountPath {norm} would hide or enter {r}: choose another (e.g. /data)")
    return norm


def parse_volume(item: object) -> VolumeSpec:
    """One volume of a request body (`huggingface_hub.Volume.to_dict()`); BadRequest saying what is wrong."""
    if not isinstance(item, dict):
        raise BadRequest("each volume is an object {type, source, mountPath, readOnly?, path?}")
    kind = item.get("type", "model")
    if kind != "bucket":
        raise BadRequest(f"spacehost hosts Spaces only and mounts buckets (persistent storage), not {kind}s: "
                         "use -v hf://buckets/OWNER/NAME:/data")
    source = item.get("source")
    parts = source.split("/") if isinstance(source, str) else []
    if len(parts) != 2 or not all(NAME.match(x) for x in parts):
        raise BadRequest(f"bucket source must be OWNER/NAME, got {source!r}")
    sub = item.get("path")
    if sub is not None:
        segs = [s for s in str(sub).strip("/").split("/") if s]
        if not segs or any(not NAME.match(s) for s in segs):
            raise BadRequest(f"path {sub!r} must be a relative folder inside the bucket")
        sub = "/".join(segs)
    return VolumeSpec(str(source), _mount_path(item.get("mountPath")), bool(item.get("readOnly") or False), sub)


def parse_volumes(body: object) -> tuple[VolumeSpec, ...]:
    """`{"volumes": [...]}` → volumes; mount paths must differ and not nest."""
    items = body.get("volumes") if isinstance(body, dict) else None
    if not isinstance(items, list) or not items:
        raise BadRequest('send {"volumes": [{"type": "bucket", "source": "OWNER/NAME", "mountPath": "/data"}]}')
    if len(items) > MAX_VOLUMES:
        raise BadRequest(f"at most {MAX_VOLUMES} volumes per Space")
    vols = tuple(parse_volume(i) for i in items)
    paths = sorted(v.mount_path for v in vols)
    for a, b in itertools.pairwise(paths):
        if b == a or b.startswith(a + "/"):
            raise BadRequest(f"mount paths {a} and {b} overlap")
    return vols


def encode(v: VolumeSpec) -> str:
    return json.dumps(v.as_json(), sort_keys=True)


def decode(value: str) -> VolumeSpec:
    return parse_volume(json.loads(value))


def parse_tier(body: object) -> str:
    """`{"tier": "small" | "medium" | "large"}` → the tier; BadRequest naming the allowed ones."""
    tier = body.get("tier") if isinstance(body, dict) else None
    if tier not in TIERS:
        raise BadRequest(f"tier must be one of {', '.join(TIERS)}, got {tier!r}")
    return str(tier)


def check_tier_change(current: str | None, wanted: str) -> None:
    """BadRequest when a Space on tier `current` may not move to `wanted`. As on HF, a tier is never lowered in
    place (a volume's file system does not shrink): delete the tier first."""
    if current is not None and TIERS.index(wanted) < TIERS.index(current):
        raise BadRequest(f"cannot downgrade storage from {current} to {wanted}: delete it first")


def volume_limit(tier: str | None, tier_bytes: dict[str, int], cap: int) -> int:
    """The size limit of a Space's volumes: its storage tier's size capped by the operator-wide limit `cap`;
    without a tier, `cap` itself. 0: no limit."""
    if tier is None:
        return cap
    size = tier_bytes[tier]
    return min(size, cap) if cap > 0 else size
