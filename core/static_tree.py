"""Static Spaces in a cluster: the server hands the tree a static Space serves to proxies that run apart from it
(a tar over its cluster API); each proxy keeps a copy under its data dir and serves that, so static Spaces keep
serving while the server restarts. A route's static root names the commit's checkout, so a copy keyed by it
never goes stale."""

from __future__ import annotations

import hashlib
import io
import shutil
import tarfile
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from core.errors import SpacehostError

MAX_TREE_BYTES = 256 * 1024 * 1024


def root_of(table: Mapping[str, Any], space_id: str) -> str | None:
    """The static root the route table (core.routes_json) serves for `space_id`, if it serves one."""
    for r in table.get("routes", ()):
        if r["space_id"] == space_id and r["state"] == "static" and r["static_root"]:
            return str(r["static_root"])
    return None


def copy_name(root: str) -> str:
    """The name of a proxy's copy of the tree at the server's `root` (stable: the root names the commit)."""
    return hashlib.sha256(root.encode()).hexdigest()[:32]


def tar_of(root: str) -> bytes:
    """The files under `root` as an uncompressed tar (links kept as links; extraction filters them). Raises
    SpacehostError above MAX_TREE_BYTES. Blocking."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(root, arcname=".")
    if buf.tell() > MAX_TREE_BYTES:
        raise SpacehostError(f"the static tree is over {MAX_TREE_BYTES >> 20} MiB")
    return buf.getvalue()


def extract(data: bytes, dest: Path) -> Path:
    """Write the tar `data` to `dest` whole (a temporary sibling renamed into place; Python's "data" filter
    drops absolute paths, `..` and links out of the tree). Blocking."""
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}")
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
            tar.extractall(tmp, filter="data")
        tmp.chmod(0o755)
        tmp.rename(dest)
    except (OSError, tarfile.TarError):
        shutil.rmtree(tmp, ignore_errors=True)
        if not dest.is_dir():  # else a concurrent extraction won the rename
            raise
    return dest
