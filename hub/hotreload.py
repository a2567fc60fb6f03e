"""Hot reload as on Hugging Face: a commit with `?hot_reload=1` lands in the repository but is not deployed; its
file goes to the running instance's own reload server (the `spaces` package's, which Gradio starts on port 7887
inside the Space: `POST /create-reload`), which patches the live process in place (jurigged) and swaps the
Gradio Blocks. The runtime then reports `hotReloading` ({status, replicaStatuses: [[replica, status]]}) for that
instance, and `hf spaces hot-reload` streams the reload's events from the same server through the proxy
(`{subdomain}--7887`, or `/--replicas/+{replica}/…` on the Space's direct port: proxy/decide.py).

Where no instance with a reload server of its own runs here, the commit is deployed as any other."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

import httpx

from core.errors import BadRequest
from core.relay_key import relay_client
from core.routes import Upstream
from hub.repos import CommitOp, PutFile
from hub.store import SpaceRecord, Store
from state.space_settings import put_setting, setting

HOT_RELOADING = "hotReloading"
CREATE_TIMEOUT_S = 10.0
CONNECT_WAIT_S = 15.0


@dataclass(frozen=True)
class ReloadFile:
    path: str
    contents: str


@dataclass(frozen=True)
class HotReload:
    """What the runtime reports for `instance` after the reload of commit `sha`."""

    instance: str
    sha: str
    replica_status: str | None  # the reload server's answer: created, alreadyReloading, fileNotFound; None: no answer

    def as_json(self) -> dict[str, Any]:
        return {"status": "created" if self.replica_status == "created" else "canceled",
                "replicaStatuses": [[self.instance, self.replica_status]]}


def reload_file(ops: list[CommitOp]) -> ReloadFile:
    """The one text file a hot-reload commit puts (huggingface_hub sends exactly one); BadRequest otherwise."""
    if len(ops) != 1 or not isinstance(op := ops[0], PutFile):
        raise BadRequest("a hot-reload commit changes exactly one file (hf spaces hot-reload sends one)")
    try:
        return ReloadFile(op.path, op.source.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise BadRequest(f"{op.path}: a hot reload takes a text file") from e


async def create_reload(target: Upstream, file: ReloadFile, reload_id: str, relay_key: str = "") -> str | None:
    """Ask the reload server at `target` to apply `file` as reload `reload_id`: its status, None if it did not
    answer (no `spaces` package in the Space, or Gradio older than 6.1). A refused connection is retried for
    CONNECT_WAIT_S: Gradio starts that server in a thread of its own, seconds after the app's port answers.
    `relay_key` (cluster mode): `target` is a node's relay, opened with that key's preamble."""
    body = {"filepath": file.path, "contents": file.contents, "reloadId": reload_id}
    deadline = time.monotonic() + CONNECT_WAIT_S
    client = relay_client(relay_key, CREATE_TIMEOUT_S) if relay_key else httpx.AsyncClient(timeout=CREATE_TIMEOUT_S)
    async with client:
        while True:
            try:
                r = await client.post(f"http://{target.host}:{target.port}/create-reload", json=body)
                status = r.json().get("res", {}).get("status") if r.status_code == 200 else None
                return str(status) if status else None
            except httpx.ConnectError:
                if time.monotonic() > deadline:
                    return None
                await asyncio.sleep(0.5)
            except (httpx.HTTPError, ValueError, AttributeError):
                return None


def record(store: Store, space: SpaceRecord, reload: HotReload) -> None:
    put_setting(store, space.id, HOT_RELOADING,
                json.dumps({"instance": reload.instance, "sha": reload.sha, "status": reload.replica_status}))


def hot_reloading(store: Store, space: SpaceRecord, instance: str | None) -> dict[str, Any] | None:
    """The runtime's `hotReloading`: the last hot reload, while the instance it patched still runs."""
    raw = setting(store, space.id, HOT_RELOADING)
    if raw is None or instance is None:
        return None
    rec = json.loads(raw)
    return HotReload(rec["instance"], rec["sha"], rec["status"]).as_json() if rec["instance"] == instance else None


async def apply(store: Store, target: tuple[str, Upstream] | None, space: SpaceRecord, sha: str,
                file: ReloadFile, relay_key: str = "") -> bool:
    """Hot-reload commit `sha` into the instance at `target` (the controller's `reload_target`). True when it
    took: `sha` is then the Space's head, serving without a build. False when it did not (nothing runs here
    with a reload server, or the server refused): the caller deploys the commit as any other. `relay_key`: the
    hub's (cluster mode: `target` is a node's relay)."""
    if target is None:
        return False
    instance, upstream = target
    status = await create_reload(upstream, file, sha, relay_key)
    if status is None:
        return False
    record(store, space, HotReload(instance, sha, status))
    if status != "created":
        return False
    store.update_space(space.space_id, head_sha=sha)
    return True
