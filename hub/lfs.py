"""Git LFS storage of a Space: the objects, the batch API's decisions, signed transfer URLs, pointer files.

Objects live once per repository, by oid, in git-lfs's own layout inside the bare repository
(`<repo>.git/lfs/objects/<oid[0:2]>/<oid[2:4]>/<oid>`): deleting or renaming a Space takes its objects along,
the build's checkout smudges pointers from there (builder/checkout.py), and an object is only ever served
to those who may read the repository that received it (knowing an oid gives nothing).

Transfers are "basic" (https://github.com/git-lfs/git-lfs/blob/main/docs/api/basic-transfers.md): the batch
answer holds one `href` per object, signed with the installation's key for that Space, oid and operation and
valid for an hour, because huggingface_hub PUTs the content to it without any credential. The PUT is checked
(size, sha256) before the object appears, so a stored object always is what its name says.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import BadRequest, PayloadTooLarge

POINTER_PREFIX = b"version https://git-lfs.github.com/spec/v1\n"
POINTER_MAX = 1024  # git-lfs's own limit on a pointer file's size
OID = re.compile(r"^[0-9a-f]{64}$")
URL_TTL_S = 3600
MEDIA_TYPE = "application/vnd.git-lfs+json"


@dataclass(frozen=True)
class LfsObject:
    oid: str
    size: int


@dataclass(frozen=True)
class Pointer:
    oid: str
    size: int

    def text(self) -> str:
        return f"version https://git-lfs.github.com/spec/v1\noid sha256:{self.oid}\nsize {self.size}\n"


def parse_pointer(data: bytes) -> Pointer | None:
    """The pointer a file's content is, or None if it is not a Git LFS pointer."""
    if len(data) > POINTER_MAX or not data.startswith(POINTER_PREFIX):
        return None
    fields = dict(line.partition(" ")[::2] for line in data.decode("ascii", errors="replace").splitlines())
    oid, size = fields.get("oid", ""), fields.get("size", "")
    if not oid.startswith("sha256:") or not OID.match(oid[7:]) or not size.isdigit():
        return None
    return Pointer(oid[7:], int(size))


def parse_objects(body: Any) -> tuple[str, list[LfsObject]]:
    """(operation, objects) of a batch request; BadRequest for anything else."""
    if not isinstance(body, dict):
        raise BadRequest("a Git LFS batch request is a JSON object")
    op = body.get("operation")
    if op not in ("upload", "download"):
        raise BadRequest("operation must be 'upload' or 'download'")
    transfers = body.get("transfers") or ["basic"]
    if "basic" not in transfers:
        raise BadRequest("this server offers the 'basic' transfer only")
    objects = []
    for o in body.get("objects") or []:
        oid, size = (o.get("oid"), o.get("size")) if isinstance(o, dict) else (None, None)
        if not isinstance(oid, str) or not OID.match(oid) or not isinstance(size, int) or size < 0:
            raise BadRequest(f"not a Git LFS object: {o!r} (oid: 64 hex digits, size: bytes)")
        objects.append(LfsObject(oid, size))
    return str(op), objects


def sign(key: bytes, space_id: str, oid: str, op: str, expires: int) -> str:
    msg = f"lfs\0{space_id}\0{oid}\0{op}\0{expires}".encode()
    return hmac.new(key, msg, hashlib.sha256).hexdigest()


def signature_ok(key: bytes, space_id: str, oid: str, op: str, expires: str, sig: str, now: float) -> bool:
    if not expires.isdigit() or int(expires) < now:
        return False
    return hmac.compare_digest(sign(key, space_id, oid, op, int(expires)), sig)


def batch_answer(op: str, objects: Iterable[LfsObject], stored: dict[str, int], href: str, key: bytes,
                 space_id: str, max_bytes: int, now: float) -> dict[str, Any]:
    """The batch response: per object its actions (none where nothing needs doing) or an error.
    `stored`: oid → size of the objects this repository holds; `href`: the objects' base URL."""
    expires = int(now) + URL_TTL_S
    out = []
    for o in objects:
        entry: dict[str, Any] = {"oid": o.oid, "size": o.size, "authenticated": True}
        have = stored.get(o.oid)
        if op == "upload" and o.size > max_bytes:
            entry["error"] = {"code": 422, "message": f"{o.size} bytes is above this server's limit of "
                                                      f"{max_bytes} bytes per Git LFS object"}
        elif op == "download" and have is None:
            entry["error"] = {"code": 404, "message": "Object does not exist"}
        elif not (op == "upload" and have == o.size):
            sig = sign(key, space_id, o.oid, op, expires)
            entry["actions"] = {op: {"href": f"{href}/{o.oid}?expires={expires}&sig={sig}",
                                     "expires_in": URL_TTL_S}}
        out.append(entry)
    return {"transfer": "basic", "objects": out, "hash_algo": "sha256"}


class LfsStore:
    """The objects of one bare repository."""

    def __init__(self, repo: Path) -> None:
        self.root = repo / "lfs" / "objects"

    def path(self, oid: str) -> Path:
        if not OID.match(oid):
            raise BadRequest(f"not a Git LFS oid: {oid!r}")
        return self.root / oid[:2] / oid[2:4] / oid

    def size(self, oid: str) -> int | None:
        try:
            return self.path(oid).stat().st_size
        except FileNotFoundError:
            return None

    def sizes(self, oids: Iterable[str]) -> dict[str, int]:
        return {oid: s for oid in oids if (s := self.size(oid)) is not None}

    def writer(self, oid: str, size: int, max_bytes: int) -> ObjectWriter:
        if size > max_bytes:
            raise PayloadTooLarge(f"{size} bytes is above this server's limit of {max_bytes} bytes per object")
        return ObjectWriter(self.path(oid), oid, size)


class ObjectWriter:
    """Receives one object's bytes into a temporary file; `commit()` checks size and sha256, then moves it
    into place (atomically: readers see the whole object or none)."""

    def __init__(self, dest: Path, oid: str, size: int) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        self.dest, self.oid, self.size = dest, oid, size
        self.tmp = dest.parent / f".{oid}.{uuid.uuid4().hex[:8]}.tmp"
        self.f = open(self.tmp, "wb")  # noqa: SIM115 — closed by commit() or abort()
        self.hash = hashlib.sha256()
        self.written = 0

    def write(self, chunk: bytes) -> None:
        self.written += len(chunk)
        if self.written > self.size:
            self.abort()
            raise BadRequest(f"more than the announced {self.size} bytes for object {self.oid}")
        self.hash.update(chunk)
        self.f.write(chunk)

    def commit(self) -> None:
        self.f.close()
        if self.written != self.size or self.hash.hexdigest() != self.oid:
            self.abort()
            raise BadRequest(f"the content is not object {self.oid} of {self.size} bytes "
                             f"(got {self.written} bytes, sha256 {self.hash.hexdigest()})")
        os.chmod(self.tmp, 0o644)
        os.replace(self.tmp, self.dest)

    def abort(self) -> None:
        self.f.close()
        self.tmp.unlink(missing_ok=True)
