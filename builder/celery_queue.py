"""The Celery build queue (cluster mode), server side: enqueue a build, stream its log lines back from Redis,
and watch it until its result appears (its secrets sealed in the message), re-enqueueing it when its worker vanished (the reaper).

The watch is level-triggered and keeps no state that a restart would lose: `run` on a build that is already
queued, running or finished (a server restarted mid-build) waits for it or returns its result instead of
starting it again. What to do next is `reap`, a pure function of what Redis shows.
"""

from __future__ import annotations

import asyncio
import enum
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import redis.asyncio as aredis

from builder import task_keys as keys
from builder.backend import BuildContext
from builder.celery_app import make_app
from builder.pipeline import commit_tree, save_artifact
from builder.queue import BuildRequest, error_from_json
from core.artifact import Artifact, artifact_from_json
from core.errors import BuildFailed
from core.ids import SpaceId

LOST_GRACE_S = 5.0  # neither queued nor leased nor finished for this long: the build's message was lost
MAX_ATTEMPTS = 3  # a build whose worker vanishes this many times fails (it may be what kills the workers)
POLL_S = 0.5


class Step(str, enum.Enum):
    WAIT = "wait"
    ENQUEUE = "enqueue"
    GIVE_UP = "give_up"


@dataclass(frozen=True)
class Seen:
    """What Redis shows of one build, at one moment."""

    queued: bool  # its message waits in the queue
    leased: bool  # a worker holds its lease (renewed while it builds)
    absent_s: float | None  # how long it has been neither queued nor leased (None: it is one of them)
    attempts: int  # how often it was enqueued


def reap(seen: Seen) -> Step:
    """The reaper's decision for a build with no result yet."""
    if seen.attempts == 0:
        return Step.ENQUEUE
    if seen.queued or seen.leased or seen.absent_s is None or seen.absent_s < LOST_GRACE_S:
        return Step.WAIT
    return Step.GIVE_UP if seen.attempts >= MAX_ATTEMPTS else Step.ENQUEUE


class CeleryQueue:
    """Builds on `spacehost worker` processes through Celery over `redis_url`; saves each artifact under
    `spaces_root`/SPACE_ID so this machine's `load_artifact` finds it after a restart."""

    name = "celery"

    def __init__(self, redis_url: str, spaces_root: Path, secret_key: bytes, repos_root: Path | None = None) -> None:
        """`secret_key`: the installation key; the builds' secrets travel sealed with it (workers share it).
        `repos_root`: the hub's bare repositories. A static build's files are served from this machine's own
        checkout of the commit (under `spaces_root`), not from the path the worker built at (another host's disk,
        in a cluster); without it the worker's path is kept (one machine only)."""
        self.redis_url, self.spaces_root, self._key, self.repos_root = redis_url, spaces_root, secret_key, repos_root
        self.app = make_app(redis_url)

    async def close(self) -> None:
        await asyncio.to_thread(self.app.close)

    async def run(self, request: BuildRequest, ctx: BuildContext) -> Artifact:
        # A client per build: it belongs to the running event loop.
        async with aredis.Redis.from_url(self.redis_url) as r:
            return await self._watch(r, request, ctx)

    async def _watch(self, r: aredis.Redis, request: BuildRequest, ctx: BuildContext) -> Artifact:
        bid = request.build_id
        if request.factory:  # a factory rebuild means: build again, whatever was built before
            await r.delete(keys.result_key(bid), keys.attempts_key(bid), keys.log_key(bid))
        await r.delete(keys.cancel_key(bid))
        cursor, absent_since = "0", None
        loop = asyncio.get_running_loop()
        while True:
            cursor = await self._ship_log(r, bid, cursor, ctx)
            raw = await r.get(keys.result_key(bid))
            if raw is not None:
                await self._ship_log(r, bid, cursor, ctx)
                return await asyncio.to_thread(self._outcome, request, json.loads(raw))
            if ctx.cancel.is_set():
                await r.set(keys.cancel_key(bid), "1", ex=keys.RESULT_TTL_S)
                raise BuildFailed("build cancelled")
            queued, leased = await self._queued(r, bid), bool(await r.exists(keys.lease_key(bid)))
            now = loop.time()
            absent_since = None if queued or leased else (absent_since if absent_since is not None else now)
            attempts = int(await r.get(keys.attempts_key(bid)) or 0)
            step = reap(Seen(queued, leased, None if absent_since is None else now - absent_since, attempts))
            if step is Step.ENQUEUE:
                await self._enqueue(r, request, ctx, attempts + 1)
                absent_since = None
            elif step is Step.GIVE_UP:
                raise BuildFailed(f"the build's worker vanished {attempts} times; giving up")

    async def _enqueue(self, r: aredis.Redis, request: BuildRequest, ctx: BuildContext, attempt: int) -> None:
        bid = request.build_id
        await r.set(keys.attempts_key(bid), attempt, ex=keys.RESULT_TTL_S)
        if attempt > 1:
            ctx.log(f"==> the worker building this vanished; enqueued again (attempt {attempt})")
        args = (request.__dict__, dict(ctx.variables), keys.seal_secrets(ctx.secrets, self._key))
        await asyncio.to_thread(self.app.send_task, keys.TASK, args=args, task_id=f"{bid}#{attempt}",
                                queue=keys.QUEUE)

    async def _queued(self, r: aredis.Redis, bid: str) -> bool:
        """Whether a message of this build waits in the Redis list Celery's transport uses for the queue."""
        needle = f"{bid}#".encode()
        return any(needle in m for m in await r.lrange(keys.QUEUE, 0, -1))

    async def _ship_log(self, r: aredis.Redis, bid: str, cursor: str, ctx: BuildContext) -> str:
        got: Any = await r.xread({keys.log_key(bid): cursor}, count=1000, block=int(POLL_S * 1000))
        for _stream, entries in got or ():
            for entry_id, fields in entries:
                ctx.log(fields[b"line"].decode(errors="replace"))
                cursor = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
        return cursor

    def _outcome(self, request: BuildRequest, outcome: dict[str, Any]) -> Artifact:
        """The build's artifact, kept on this machine; raises its error. Blocking (a static tree's checkout)."""
        if "ok" not in outcome:
            raise error_from_json(outcome.get("error", {}))
        art = artifact_from_json(outcome["ok"])
        space_dir = self.spaces_root / request.space_id
        if art.static_root is not None and self.repos_root is not None:
            sid = SpaceId.parse(art.space_id)
            src = commit_tree(self.repos_root / sid.owner / f"{sid.name}.git", space_dir, art.sha)
            art = replace(art, app_dir=str(src), static_root=str(Path(src, art.app_file).parent))
        save_artifact(space_dir, art)
        return art
