"""Cluster mode, the composition of its roles: `spacehost server` (hub API + the Controller over the cluster
runtime + the cluster API) and `spacehost proxy` (a proxy whose route table and hooks come from the server).
`spacehost node` is scheduler/node_agent.py."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
from dataclasses import dataclass, field
from typing import Any

import uvicorn

from builder import load_backend
from builder.queue import load_queue
from core import static_tree
from core.crypto import SecretBox
from core.relay_key import relay_client, relay_key
from core.routes import RouteTable, Upstream
from core.routes_json import table_to_json
from core.settings import Settings
from hub.accounts import Accounts, join_token
from hub.api import cluster as cluster_api
from hub.api import cluster_volumes
from hub.app import create_app
from hub.control import Hub, wildcard_dns_works
from hub.quotas import QuotaSettings
from hub.repos import Repos
from hub.store import Store
from scheduler.controller import Controller, env_source_for
from scheduler.placement import Policy
from scheduler.runtimes.cluster import ClusterRuntime
from scheduler.runtimes.cluster_wire import HEARTBEAT_EVERY_S, HEARTBEAT_TTL_S, heartbeat_key
from scheduler.volume_move import VolumeMoves, keep_move_labels
from spacehost.embedded import ProxyHooksImpl, bootstrap_admin, listen, open_store, serving, settle_heap
from state import cluster as cs

log = logging.getLogger("spacehost.server")


@dataclass
class ClusterServer:
    """`spacehost server`: `settings.port` is the public (proxy) port that Space URLs name; the API listens on
    `listen_host:listen_port`, which proxies reach as the hub's upstream."""

    settings: Settings
    redis_url: str
    listen_host: str = "127.0.0.1"
    listen_port: int = 0
    store: Store | None = None
    controller: Controller | None = None
    runtime: ClusterRuntime | None = None
    accounts: Accounts | None = None
    table: dict[str, Any] = field(default_factory=dict)
    route_version: int = 0
    _route_changed: asyncio.Event = field(default_factory=asyncio.Event)
    _hooks: ProxyHooksImpl | None = None
    relay_key: str = field(default="", repr=False)  # core.relay_key: nodes' relays admit holders only

    async def run(self, ready: asyncio.Event | None = None) -> None:
        import redis.asyncio as aioredis

        s = self.settings
        self.store = store = open_store(s)
        cs.ensure_tables(store)
        self.accounts = accounts = Accounts(store, join_token(s.secret_key()))
        self.relay_key = relay_key(s.secret_key())
        admin = bootstrap_admin(accounts)
        repos = Repos(s.path("repos"))
        box = SecretBox(s.secret_key())
        redis = aioredis.from_url(self.redis_url)
        # Placement policy of this cluster: spread (default) or binpack (denser; see scheduler/placement.py).
        policy = Policy(os.environ.get("SPACEHOST_PLACEMENT", Policy.SPREAD.value))
        self.runtime = runtime = ClusterRuntime(store, redis, box, policy=policy,
                                                moves=VolumeMoves(s.path("volume-moves"), store))
        socks = listen((self.listen_host,), self.listen_port)
        port = socks[0].getsockname()[1]
        hub_holder: dict[str, Hub] = {}
        # Builds: on `spacehost worker`s through Celery when SPACEHOST_BUILD_QUEUE=celery (make cluster), else here.
        queue = (load_queue("celery", redis_url=self.redis_url, spaces_root=s.path("spaces"),
                            secret_key=s.secret_key(), repos_root=repos.root)
                 if os.environ.get("SPACEHOST_BUILD_QUEUE", "inline") == "celery" else None)
        self.controller = controller = Controller(
            s, store, repos.root, runtime, load_backend("process", s), env_source_for(store, box), self.on_routes,
            app_url=lambda space: hub_holder["hub"].app_url(space), hub_upstream=Upstream(self.listen_host, port),
            build_queue=queue, zero_gpu_quota=cluster_quota(s, self.redis_url))
        await controller.node.http.aclose()
        controller.node.http = relay_client(self.relay_key, timeout=2.0)  # its probes reach apps through relays
        hub = Hub(s, store, accounts, repos, box, controller, wildcard_dns=wildcard_dns_works(s.space_domain),
                  signing_key=s.secret_key(), sandbox=runtime.sandbox_state(), relay_key=self.relay_key)
        hub_holder["hub"] = hub
        self._hooks = ProxyHooksImpl(controller, accounts, store)
        app = create_app(hub)
        app.include_router(cluster_api.router)
        app.include_router(cluster_volumes.router)
        app.state.cluster = self
        server = uvicorn.Server(uvicorn.Config(app, host=self.listen_host, port=port, log_level="warning",
                                               timeout_keep_alive=30))
        serve = await serving(server, socks)
        await controller.start()
        # Who gets their own ZeroGPU quota (users, orgs), resolved here and put in the ledger every node reads.
        quotas = QuotaSettings(s.path("zerogpu", "quotas.json"), accounts)
        await asyncio.to_thread(lambda: controller.set_zerogpu_overrides(quotas.resolved()))
        watch = asyncio.create_task(runtime.watch_nodes())
        print(f"spacehost server is up: API on http://{self.listen_host}:{port}, Spaces at {s.hub_url}", flush=True)
        if admin.token:
            print(f"  admin token (shown once, keep it): {admin.token}", flush=True)
        settle_heap()
        if ready:
            ready.set()
        try:
            await serve
        finally:
            watch.cancel()
            await controller.close(stop_apps=False)  # Spaces on nodes keep serving through a server restart
            await redis.aclose()

    # ---- routes -----------------------------------------------------------------------------------------------
    def on_routes(self, table: RouteTable) -> None:
        self.table = table_to_json(table)
        self.route_version += 1
        self._route_changed.set()
        self._route_changed = asyncio.Event()

    async def routes(self, since: int, wait: float) -> dict[str, Any]:
        if since == self.route_version and wait > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._route_changed.wait(), wait)
        return {"version": self.route_version, "table": self.table, "relay_key": self.relay_key}

    async def static_tree(self, space_id: str) -> bytes | None:
        """The files the static Space serves now (a tar), for proxies apart from this server (core.static_tree)."""
        root = static_tree.root_of(self.table, space_id)
        return None if root is None else await asyncio.to_thread(static_tree.tar_of, root)

    # ---- nodes ------------------------------------------------------------------------------------------------
    async def register(self, info: dict[str, Any]) -> dict[str, Any]:
        assert self.runtime is not None and self.store is not None
        node = cs.NodeInfo.parse(info)
        if (was := await asyncio.to_thread(self._node, node.name)) is not None:  # mid-move buckets stay so
            node = dataclasses.replace(node, labels=keep_move_labels(dict(was.labels), dict(node.labels or {})))
        await asyncio.to_thread(cs.register_node, self.store, node)
        await self.runtime.redis.set(heartbeat_key(node.name), "{}", ex=HEARTBEAT_TTL_S)
        self.runtime.bump()
        log.info("node %s registered (%s, %.0f cpus, %.0f GB, %d gpus)", node.name, node.address, node.cpus,
                 node.memory_gb, node.gpus)
        return {"redis_url": self.redis_url, "heartbeat_ttl_s": HEARTBEAT_TTL_S, "heartbeat_every_s": HEARTBEAT_EVERY_S,
                "relay_key": self.relay_key}

    async def node_assignments(self, node: str, since: int, wait: float) -> dict[str, Any]:
        assert self.runtime is not None and self.store is not None
        rt = self.runtime
        if since == rt.version and wait > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(rt.changed.wait(), wait)
        version = rt.version
        rows = await asyncio.to_thread(cs.assignments, self.store, node=node, desired=cs.RUNNING)
        rec = await asyncio.to_thread(self._node, node)
        return {"version": version, "volumes": rt.moves.work_for(rec) if rt.moves and rec else {}, "assignments": [
            {"instance_id": a.instance_id, "epoch": a.epoch, "reported": a.reported, "spec": rt.box.open(a.spec),
             "frozen": a.instance_id in rt.want_frozen, "frozen_seen": rt.node_frozen.get(a.instance_id)}
            for a in rows]}

    def _node(self, name: str) -> cs.NodeRecord | None:
        assert self.store is not None
        return next((n for n in cs.list_nodes(self.store) if n.name == name), None)

    async def report(self, node: str, data: dict[str, Any]) -> bool:
        """A node's report on an instance; with `frozen`, the state its freezer reached (ClusterRuntime.freeze)."""
        assert self.store is not None and self.runtime is not None
        accepted = await asyncio.to_thread(cs.apply_report, self.store, node, cs.Report.parse(data)) is not None
        if accepted and "frozen" in data:
            self.runtime.note_frozen(str(data["instance_id"]), bool(data["frozen"]))
        return accepted

    async def run_log(self, node: str, instance_id: str, lines: list[str]) -> bool:
        assert self.store is not None and self.controller is not None
        a = await asyncio.to_thread(cs.get_assignment, self.store, instance_id)
        if a is None or a.node != node:
            return False
        rlog = self.controller.run_log(a.space_id)
        await asyncio.to_thread(rlog.write, "\n".join(lines))
        return True

    async def nodes(self) -> list[dict[str, Any]]:
        assert self.runtime is not None and self.store is not None
        nodes = await asyncio.to_thread(cs.list_nodes, self.store)
        placed = await asyncio.to_thread(cs.assignments, self.store, desired=cs.RUNNING)
        alive = await self.runtime.heartbeats(n.name for n in nodes)
        from scheduler.runtimes.cluster import snapshot

        snap = {n.name: n for n in snapshot(nodes, alive, placed)}
        return [{
            "name": n.name, "address": n.address, "ready": snap[n.name].ready, "alive": n.name in alive,
            "lost": n.lost, "cordoned": n.cordoned, "draining": n.draining,
            "capacity": {"cpu": n.cpus, "memory_gb": n.memory_gb, "gpus": n.gpus, "accelerator": n.accelerator},
            "allocated": {"cpu": snap[n.name].cpu_used, "memory_gb": snap[n.name].memory_used_gb,
                          "gpus": snap[n.name].gpus_used},
            "labels": dict(n.labels), "zerogpu_url": n.zerogpu_url, "cached": sorted(alive.get(n.name, ())),
            "spaces": sorted({a.space_id for a in placed if a.node == n.name}),
        } for n in nodes]

    async def node_command(self, name: str, command: str) -> dict[str, Any] | None:
        assert self.runtime is not None and self.store is not None and self.controller is not None
        flags = {"cordon": {"cordoned": True}, "uncordon": {"cordoned": False, "draining": False},
                 "drain": {"cordoned": True, "draining": True}}[command]
        if await asyncio.to_thread(cs.set_node_flags, self.store, name, **flags) is None:
            return None
        self.runtime.bump()
        if command == "drain":  # start elsewhere, swap the route, then stop the old (Controller._deploy)
            placed = await asyncio.to_thread(cs.assignments, self.store, node=name, desired=cs.RUNNING)
            for space_id in sorted({a.space_id for a in placed}):
                await self.controller.restart(space_id)
        return next(n for n in await self.nodes() if n["name"] == name)

    # ---- proxy hooks ------------------------------------------------------------------------------------------
    async def wake(self, space_id: str) -> None:
        assert self.controller is not None
        await self.controller.wake(space_id)

    def activity(self, space_ids: list[str]) -> None:
        assert self.controller is not None
        for sid in space_ids:
            self.controller.activity(sid)

    async def auth(self, token: str) -> str | None:
        assert self._hooks is not None
        return await asyncio.to_thread(self._hooks.user_for_token, token)

    async def can_view(self, space_id: str, user: str | None) -> bool:
        assert self._hooks is not None
        return await asyncio.to_thread(self._hooks.can_view, space_id, user)

    async def credential_live(self, cred: str) -> bool:
        assert self._hooks is not None
        return await asyncio.to_thread(self._hooks.credential_live, cred)

    async def writer_of(self, token: str, space_id: str) -> bool:
        assert self._hooks is not None
        return await asyncio.to_thread(self._hooks.writer_of, token, space_id)


def cluster_quota(settings: Settings, redis_url: str) -> Any:
    """What `hf spaces zero-gpu quota` reads on the server: the cluster-wide ledger every node's broker charges."""
    import time

    from zerogpu.embedded import limits_from
    from zerogpu.ledger import LedgerQuota
    from zerogpu.redis_ledger import RedisLedger

    return LedgerQuota(RedisLedger("server", redis_url), limits_from(settings), time.time)


def run_server(settings: Settings, redis_url: str, listen_host: str, listen_port: int) -> None:
    logging.basicConfig(level=os.environ.get("SPACEHOST_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(ClusterServer(settings, redis_url, listen_host, listen_port).run())
