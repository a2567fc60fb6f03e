"""The build queue: where the Controller sends a build. One Protocol, a name table, one contract suite
(tests/contract/test_build_queue.py).

- `inline` (embedded mode): the build runs in a thread of this process, on the local backend and repos.
- `celery` (cluster mode, builder/celery_queue.py): the build is a Celery task over Redis, run by
  `spacehost worker` processes; its log lines come back live and a lost worker's build is re-enqueued.

A build is named by its `build_id` (space, commit, factory, and a digest of the variables and secrets it sees):
running the same request twice gives the same artifact, and the Celery queue returns a finished build's result
instead of building it again.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from builder.backend import BuildBackend, BuildContext
from builder.pipeline import build_commit
from core.artifact import Artifact
from core.ids import SpaceId


@dataclass(frozen=True)
class BuildRequest:
    """One build of one commit of one Space. `env_digest` covers the variables and secrets the build sees
    (a changed secret is another build), never their values."""

    space_id: str
    sha: str
    factory: bool = False
    env_digest: str = ""

    @classmethod
    def of(cls, space_id: str, sha: str, ctx: BuildContext) -> BuildRequest:
        blob = json.dumps([sorted(ctx.variables.items()), sorted(ctx.secrets.items())]).encode()
        return cls(space_id, sha, ctx.no_cache, hashlib.sha256(blob).hexdigest()[:16])

    @property
    def build_id(self) -> str:
        sid = SpaceId.parse(self.space_id)
        kind = "factory" if self.factory else "build"
        return f"{sid.owner}--{sid.name}--{self.sha}--{kind}--{self.env_digest or '0'}"


class BuildQueue(Protocol):
    name: str

    async def run(self, request: BuildRequest, ctx: BuildContext) -> Artifact:
        """Build `request` somewhere and return its artifact, saved where `load_artifact` on this machine finds
        it. Log lines go to `ctx.log` as they come; `ctx.cancel` stops waiting (and the build, where it can).
        Raises what `build_commit` raises: ConfigError (with key and line), NoAppFile, BuildFailed (with the
        log tail); SpacehostError for a build the queue could not run."""
        ...

    async def close(self) -> None:
        """Release connections. Builds in flight elsewhere go on."""
        ...


class InlineQueue:
    """Builds in a thread of this process with the local backend (embedded mode)."""

    name = "inline"

    def __init__(self, backend: BuildBackend, repos_root: Path, spaces_root: Path) -> None:
        self.backend, self.repos_root, self.spaces_root = backend, repos_root, spaces_root

    async def run(self, request: BuildRequest, ctx: BuildContext) -> Artifact:
        sid = SpaceId.parse(request.space_id)
        bare = self.repos_root / sid.owner / f"{sid.name}.git"
        return await asyncio.to_thread(build_commit, self.backend, bare, self.spaces_root / request.space_id,
                                       request.space_id, request.sha, ctx)

    async def close(self) -> None:
        return None


QUEUES = {
    "inline": "builder.queue:InlineQueue",
    "celery": "builder.celery_queue:CeleryQueue",
}


def load_queue(name: str, **kwargs: Any) -> BuildQueue:
    """The queue called `name` in QUEUES, built with `kwargs` (each implementation states what it needs)."""
    if name not in QUEUES:
        raise ValueError(f"unknown build queue {name!r}; choose one of {', '.join(QUEUES)}")
    module, _, cls = QUEUES[name].partition(":")
    return getattr(importlib.import_module(module), cls)(**kwargs)  # type: ignore[no-any-return]


def error_to_json(exc: BaseException) -> dict[str, Any]:
    """A build failure as JSON (it crosses Redis); `error_from_json` raises the same error type again."""
    from builder.detect import NoAppFile
    from core.errors import BuildFailed, ConfigError

    message = getattr(exc, "message", None) or repr(exc)
    if isinstance(exc, ConfigError):
        return {"kind": "config", "message": _raw_config_message(exc), "key": exc.key, "line": exc.line}
    if isinstance(exc, NoAppFile):
        return {"kind": "no_app_file", "message": message}
    if isinstance(exc, BuildFailed):
        return {"kind": "build_failed", "message": message, "log_tail": exc.log_tail}
    return {"kind": "internal", "message": f"internal error: {message}"}


def _raw_config_message(exc: Any) -> str:
    """ConfigError's message before it prefixed the key and line (kept so the error is rebuilt exactly)."""
    full, where = str(exc.message), []
    if exc.key:
        where.append(f"key '{exc.key}'")
    if exc.line:
        where.append(f"line {exc.line}")
    prefix = f"README.md front matter, {', '.join(where)}: " if where else ""
    return full[len(prefix):] if prefix and full.startswith(prefix) else full


def error_from_json(data: Mapping[str, Any]) -> Exception:
    from builder.detect import NoAppFile
    from core.errors import BuildFailed, ConfigError

    kind, message = data.get("kind"), str(data.get("message", ""))
    if kind == "config":
        return ConfigError(message, key=data.get("key"), line=data.get("line"))
    if kind == "no_app_file":
        return NoAppFile(message)
    if kind == "build_failed":
        return BuildFailed(message, str(data.get("log_tail", "")))
    return BuildFailed(message)
