"""Build step: build a pushed commit through the build queue, then deploy it. `failure` (what a failed build
does to the Space) is the pure decision; `build` is the effect."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

from builder.backend import BuildContext
from builder.detect import NoAppFile
from builder.queue import BuildRequest
from core.errors import BuildFailed, ConfigError, LaunchFailed, SpacehostError
from core.stages import SpaceStage
from scheduler.steps import deploy
from scheduler.steps.context import Node

log = logging.getLogger("spacehost.scheduler")


def failure(e: SpacehostError, *, serving: bool, sha: str) -> tuple[str, dict[str, Any]]:
    """(the stage the build ended in, the Space's fields): the previous version keeps serving (the failure
    shows in the runtime info), or the Space shows CONFIG_ERROR, NO_APP_FILE or BUILD_ERROR with the log's tail."""
    stage = (SpaceStage.CONFIG_ERROR if isinstance(e, ConfigError)
             else SpaceStage.NO_APP_FILE if isinstance(e, NoAppFile) else SpaceStage.BUILD_ERROR)
    tail = e.log_tail if isinstance(e, (BuildFailed, LaunchFailed)) else ""
    error = e.message + (f"\n{tail}" if tail else "")
    if serving:
        return stage, {"stage": SpaceStage.RUNNING, "error": f"{stage} for {sha[:12]}: {error}"}
    return stage, {"stage": stage, "error": error}


async def build(node: Node, space_id: str, sha: str, factory: bool, cancel: threading.Event,
                previous: asyncio.Task[None] | None) -> None:
    """Build `sha` once the build it superseded has returned, then deploy it; a cancelled build changes
    nothing."""
    if previous is not None:
        with contextlib.suppress(BaseException):
            await previous
    blog = node.build_log(space_id)
    space = node.store.get_space(space_id)
    if space is None or cancel.is_set():
        return
    variables, secrets = node.env_source(space)
    ctx = BuildContext(log=masking(blog.write, secrets.values()), cancel=cancel, secrets=secrets,
                       variables=variables, no_cache=factory)
    live = node.live_of(space_id)
    serving = live.instance is not None or bool(live.artifact and live.artifact.static_root)
    try:
        art = await node.build_queue.run(BuildRequest.of(space_id, sha, ctx), ctx)
    except SpacehostError as e:  # ConfigError, NoAppFile, BuildFailed among them
        if cancel.is_set():
            return
        stage, fields = failure(e, serving=serving, sha=sha)
        blog.write(f"==> {stage}: {e.message}")
        node.set(space_id, **fields)
        return
    except Exception as e:  # a bug, not the user's fault: still say what happened
        log.exception("build of %s failed", space_id)
        blog.write(f"==> BUILD_ERROR: internal error: {e!r}")
        node.set(space_id, stage=SpaceStage.RUNNING if serving else SpaceStage.BUILD_ERROR,
                 error=f"internal error: {e!r}")
        return
    if cancel.is_set():
        return
    node.set(space_id, sdk=art.sdk.value)
    await deploy.deploy(node, space_id, art)


def masking(write: Callable[[str], None], secrets: Iterable[str]) -> Callable[[str], None]:
    """`write` with every secret value (3 characters or more, longest first) replaced by `***`."""
    values = sorted((v for v in secrets if v and len(v) >= 3), key=len, reverse=True)

    def masked(line: str) -> None:
        for v in values:
            line = line.replace(v, "***")
        write(line)

    return masked
