"""What a node agent (scheduler/node_agent.py) holds and the small parts it is built from: its configuration,
the record of one instance it runs (saved in `node.json` for re-adoption), its labels and volume buckets, the
heartbeat thread, and the reader that ships log lines."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scheduler.relay import Relay
from scheduler.runtimes.base import Instance
from scheduler.runtimes.cluster_wire import HEARTBEAT_EVERY_S, HEARTBEAT_TTL_S, heartbeat_key

log = logging.getLogger("spacehost.node")


@dataclass(frozen=True)
class NodeConfig:
    server: str
    token: str
    name: str
    address: str
    data_dir: Path
    runtime: str = "process"
    cpus: float = 0.0  # 0: this machine's
    memory_gb: float = 0.0
    gpus: int = 0
    accelerator: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    zerogpu_devices: int = 0
    zerogpu_quota_anonymous_s: int = 120  # daily GPU seconds per tier; set every node and the server alike
    zerogpu_quota_signed_in_s: int = 300
    insecure_no_sandbox: bool = False
    redis_url: str | None = None  # default: the server's, given at registration
    keep_spaces: bool = False  # leave the Spaces running when the agent stops (a restart re-adopts them)
    registry: str | None = None  # docker: the registry as this node reaches it (default: as the build named it)


@dataclass
class Local:
    """One instance this node runs."""

    instance_id: str
    space_id: str
    epoch: int
    port: int  # the relay's, on the node's address
    log_path: str
    log_pos: int = 0
    zero: bool = False  # admitted to this node's ZeroGPU broker
    frozen: bool = False  # its cgroup frozen, as the server asked (not saved: adoption thaws every instance)
    reload_port: int = 0  # the relay's to its reload server (hot reload), on the node's address; 0: none
    instance: Instance | None = None
    relay: Relay | None = None
    reload_relay: Relay | None = None

    def saved(self) -> dict[str, Any]:
        return {"instance_id": self.instance_id, "space_id": self.space_id, "epoch": self.epoch, "port": self.port,
                "log_path": self.log_path, "log_pos": self.log_pos, "zero": self.zero, "reload_port": self.reload_port}

    def running(self) -> dict[str, Any]:
        """What a report of it running says: where the node relays its app and its reload server, its pid."""
        return {"upstream_port": self.port, "reload_port": self.reload_port or None,
                "pid": self.instance.pid if self.instance else None}

    async def close_relays(self) -> None:
        for relay in (self.relay, self.reload_relay):
            if relay is not None:
                await relay.close()


def parse_labels(text: str) -> dict[str, str]:
    """`k=v,k2=v2` → dict; BadRequest-free: a malformed item raises ValueError naming it."""
    out = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        k, sep, v = item.partition("=")
        if not sep or not k:
            raise ValueError(f"label {item!r} is not k=v")
        out[k.strip()] = v.strip()
    return out


def held_buckets(data_dir: Path) -> list[str]:
    """OWNER/BUCKET of every volume bucket under `data_dir` (volumes/OWNER/BUCKET folders), sorted."""
    root = data_dir / "volumes"
    return sorted(f"{o.name}/{b.name}" for o in (root.iterdir() if root.is_dir() else ()) if o.is_dir()
                  for b in o.iterdir() if b.is_dir())


def machine_memory_gb() -> float:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3


def heartbeat_thread(url: str, name: str, cached: Callable[[], Any], stopping: threading.Event) -> threading.Thread:
    """Beat node `name`'s heartbeat key from a thread of its own (a sync Redis client) until `stopping`: nothing
    on the event loop (a slow report, a long poll, a busy machine's scheduling delays) can delay a beat. Late or
    failed beats are logged with their gap, so a lost node's log says why. The value names what this node
    caches (`cached()`: scheduler.node_cache), for placement's locality."""
    import redis  # the cluster extra's

    client = redis.Redis.from_url(url, socket_timeout=HEARTBEAT_EVERY_S, socket_connect_timeout=HEARTBEAT_EVERY_S)

    def beat_forever() -> None:
        last = time.monotonic()
        while not stopping.is_set():
            now = time.monotonic()
            if now - last > 2 * HEARTBEAT_EVERY_S:
                log.warning("heartbeat late: %.1fs since the last one", now - last)
            try:
                value = json.dumps({"t": time.time(), "cached": cached()})
                client.set(heartbeat_key(name), value, ex=HEARTBEAT_TTL_S)
                last = time.monotonic()
                log.debug("heartbeat")
            except redis.RedisError as e:
                log.warning("heartbeat failed (%.1fs since the last one): %s", time.monotonic() - last, e)
            stopping.wait(HEARTBEAT_EVERY_S)

    t = threading.Thread(target=beat_forever, name="heartbeat", daemon=True)
    t.start()
    return t


def read_lines(path: Path, pos: int) -> tuple[list[str], int]:
    """Whole lines of `path` from byte `pos` (at most 1 MiB of them), and the position after the last."""
    try:
        with path.open("rb") as f:
            f.seek(pos)
            data = f.read(1 << 20)
    except OSError:
        return [], pos
    end = data.rfind(b"\n") + 1
    return data[:end].decode(errors="replace").splitlines(), pos + end
