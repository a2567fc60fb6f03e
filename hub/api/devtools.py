"""What a Space's developer uses while working on it: persistent volumes (`hf spaces volumes`) and their storage
tier, dev mode (`hf spaces dev-mode`), and a shell inside the running Space (`spacehost ssh`, over a WebSocket)."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import pty
import signal
import struct
import termios
from typing import Any

from fastapi import APIRouter, Request, WebSocket

from core.errors import BadRequest, Forbidden
from core.ids import SpaceId
from core.stages import SpaceStage
from hub import shell
from hub.accounts import can_see
from hub.api.fields import json_object
from hub.api.hints import ssh_warning
from hub.api.views import runtime_view
from hub.deps import hub_of, writable_space
from scheduler.runtimes.instances import instance_env
from state.space_settings import set_dev_mode, set_storage_tier, set_volumes, storage_tier
from state.volumes import check_tier_change, parse_tier, parse_volumes

router = APIRouter()
PREFIX = "/api/spaces/{owner}/{name}"
RUNNING = (SpaceStage.RUNNING, SpaceStage.RUNNING_BUILDING, SpaceStage.RUNNING_APP_STARTING,
           SpaceStage.APP_STARTING)


async def _runtime(request: Request, space_id: str) -> dict[str, Any]:
    hub = hub_of(request)
    space = await asyncio.to_thread(hub.store.get_space, space_id)
    assert space is not None
    return await asyncio.to_thread(runtime_view, hub, space)


@router.put(PREFIX + "/volumes")
async def put_volumes(request: Request, owner: str, name: str) -> dict[str, Any]:
    """Replace the Space's volumes (buckets of its owner's) and restart it with them mounted."""
    space, p = await writable_space(request, owner, name)
    vols = parse_volumes(await json_object(request))
    for v in vols:
        if not p.can_write(v.owner):
            raise Forbidden(f"You cannot write to buckets of {v.owner}")
    hub = hub_of(request)
    if await asyncio.to_thread(set_volumes, hub.store, space.id, vols):
        await hub.control.env_changed(space.space_id)
    return await _runtime(request, space.space_id)


@router.delete(PREFIX + "/volumes")
async def delete_volumes(request: Request, owner: str, name: str) -> dict[str, Any]:
    """Unmount every volume (their files stay in the bucket) and restart the Space without them."""
    space, _ = await writable_space(request, owner, name)
    hub = hub_of(request)
    if await asyncio.to_thread(set_volumes, hub.store, space.id, ()):
        await hub.control.env_changed(space.space_id)
    return await _runtime(request, space.space_id)


@router.post(PREFIX + "/storage")
async def request_storage(request: Request, owner: str, name: str) -> dict[str, Any]:
    """`{"tier": "small" | "medium" | "large"}` (HF's persistent storage tiers): the Space's volumes are limited to
    the tier's size (SPACEHOST_STORAGE_<TIER>_BYTES, capped by SPACEHOST_VOLUME_LIMIT_BYTES); it restarts with
    them so. Upgrades only, as on HF."""
    space, _ = await writable_space(request, owner, name)
    tier = parse_tier(await json_object(request))
    hub = hub_of(request)
    check_tier_change(await asyncio.to_thread(storage_tier, hub.store, space.id), tier)
    if await asyncio.to_thread(set_storage_tier, hub.store, space.id, tier):
        await hub.control.env_changed(space.space_id)
    return await _runtime(request, space.space_id)


@router.delete(PREFIX + "/storage")
async def delete_storage(request: Request, owner: str, name: str) -> dict[str, Any]:
    """Drop the Space's tier: its volumes fall back to the operator-wide limit (their files stay in the bucket,
    and a file system already grown past that limit keeps its size)."""
    space, _ = await writable_space(request, owner, name)
    hub = hub_of(request)
    if await asyncio.to_thread(set_storage_tier, hub.store, space.id, None):
        await hub.control.env_changed(space.space_id)
    return await _runtime(request, space.space_id)


@router.post(PREFIX + "/dev-mode")
async def dev_mode(request: Request, owner: str, name: str) -> dict[str, Any]:
    """`{"enabled": bool}`. On: the Space never sleeps, and one that is not running starts (so `hf spaces
    dev-mode` can wait for RUNNING); `spacehost ssh` opens a shell in it. Off: it sleeps as its hardware says."""
    space, _ = await writable_space(request, owner, name)
    enabled = (await json_object(request)).get("enabled")
    if not isinstance(enabled, bool):
        raise BadRequest('send {"enabled": true} or {"enabled": false}')
    hub = hub_of(request)
    await asyncio.to_thread(set_dev_mode, hub.store, space.id, enabled)
    if enabled and space.stage not in RUNNING and space.head_sha:
        await hub.control.restart(space.space_id)
    if enabled:
        request.state.hf_warning = ssh_warning(space.space_id)
    return await _runtime(request, space.space_id)


# ---- shell (spacehost ssh) ----------------------------------------------------------------------------------

async def _shell_caller(ws: WebSocket, owner: str, name: str) -> tuple[list[str], dict[str, str]] | str:
    """(argv to run, its env) for a caller who may write the Space, or why not. Bearer tokens only: a cookie
    would let any web page open a shell in the visitor's Spaces (cross-site WebSocket hijacking)."""
    hub = hub_of(ws)  # type: ignore[arg-type]
    auth = ws.headers.get("authorization", "")
    token = auth[7:] if auth.lower().startswith("bearer ") else ""
    p = await asyncio.to_thread(hub.accounts.authenticate, token) if token else None
    sid = SpaceId.of(owner, name)
    space = await asyncio.to_thread(hub.store.get_space, str(sid))
    if space is None or not can_see(p, sid.owner, space.private):
        return f"Space {sid} not found"
    if p is None or not p.can_write(sid.owner):
        return f"only a writer of {sid} (with a write token) may open a shell in it"
    pid, container = hub.control.shell_target(str(sid))
    tty = ws.query_params.get("tty") == "1"
    command = json.loads(ws.query_params.get("command") or "[]") or list(shell.SHELL)
    if container:
        return shell.docker_argv(container, command, tty), {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    target = await asyncio.to_thread(shell.sandboxed_process, pid) if pid else None
    if target is None:
        return f"{sid} is not running (stage {space.stage}): start it, or turn dev mode on to keep it up"
    procs = await asyncio.to_thread(shell.cgroup_procs, target)
    env = await asyncio.to_thread(shell.app_environ, target)  # a warm start's: the zygote's, so add its own
    env |= await asyncio.to_thread(instance_env, hub.settings.path("run"), target, hub.box)
    return shell.enter_argv(target, command, procs), env


@router.websocket(PREFIX + "/shell")
async def shell_socket(ws: WebSocket, owner: str, name: str) -> None:
    await ws.accept()
    got = await _shell_caller(ws, owner, name)
    if isinstance(got, str):
        await ws.send_text(json.dumps({"error": got, "exit": 126}))
        await ws.close()
        return
    argv, env = got
    code = await _relay(ws, argv, env, ws.query_params.get("tty") == "1")
    await ws.send_text(json.dumps({"exit": code}))
    await ws.close()


async def _relay(ws: WebSocket, argv: list[str], env: dict[str, str], tty: bool) -> int:
    """Run `argv` (in a pseudo-terminal when `tty`) and pipe it to and from the socket; its exit code."""
    loop = asyncio.get_running_loop()
    master = slave = -1
    if tty:
        master, slave = pty.openpty()
        proc = await asyncio.create_subprocess_exec(*argv, stdin=slave, stdout=slave, stderr=slave,
                                                    start_new_session=True, env={**env, "TERM": "xterm-256color"})
        os.close(slave)
    else:
        proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.PIPE,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                                                    start_new_session=True, env=env)

    async def pump_out() -> None:
        if tty:
            while True:
                try:
                    data = await loop.run_in_executor(None, os.read, master, 65536)
                except OSError:
                    return
                if not data:
                    return
                await ws.send_bytes(shell.frame(shell.STDOUT, data))
        else:
            async def one(stream: asyncio.StreamReader, tag: int) -> None:
                while data := await stream.read(65536):
                    await ws.send_bytes(shell.frame(tag, data))

            assert proc.stdout and proc.stderr
            await asyncio.gather(one(proc.stdout, shell.STDOUT), one(proc.stderr, shell.STDERR))

    async def pump_in() -> None:
        while True:
            msg = await ws.receive()
            if msg["type"] == "websocket.disconnect":
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGHUP)
                return
            if msg.get("bytes") is not None:
                data = msg["bytes"]
                if tty:
                    os.write(master, data) if data else os.write(master, b"\x04")
                elif proc.stdin:
                    if data:
                        proc.stdin.write(data)
                        await proc.stdin.drain()
                    else:
                        proc.stdin.close()
            elif msg.get("text") and tty:
                rows, cols = json.loads(msg["text"]).get("resize", (0, 0))
                if rows and cols:
                    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    inbound = asyncio.ensure_future(pump_in())
    try:
        await pump_out()
        code = await proc.wait()
    finally:
        inbound.cancel()
        if master >= 0:
            os.close(master)
    return code
