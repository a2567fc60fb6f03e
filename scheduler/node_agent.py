"""The node agent (`spacehost node`): registers with the server, beats its heartbeat key in Redis, long-polls
its assignments and reconciles what runs here to them, and reports what actually runs.

Reconcile, level-triggered: an assignment desired here that does not run is started (the build the server shipped
materialised here by scheduler.materialise — the commit's tree from the hub's git, the environment by its content
key from this node's cache — then run by the local runtime and exposed on `address:port` by a relay, its reload
server by a second one); whatever runs
here that is no longer desired here (stopped, or withdrawn because this node was lost meanwhile) is stopped.
What runs is remembered in `node.json` of the data dir: a restarted agent re-adopts its instances and opens their
relays on the same ports, so the server's routes stay valid. Its configuration, the record of one instance, the
heartbeat thread and the log reader are in scheduler/node_state.py."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from builder import load_backend
from builder.backend import BuildContext
from builder.pipeline import build_commit
from builder.uv_backend import UvBackend
from core.artifact import artifact_from_json
from core.errors import SpacehostError
from core.hardware import flavor
from core.settings import Settings
from sandbox.bwrap import APP_UID
from scheduler.materialise import fetch_commit, materialise, materialise_image, shippable
from scheduler.node_cache import CacheView
from scheduler.node_state import (
    Local,
    NodeConfig,
    heartbeat_thread,
    held_buckets,
    machine_memory_gb,
    read_lines,
)
from scheduler.relay import Relay
from scheduler.runtimes import load_runtime
from scheduler.runtimes.base import Ability, Instance, LaunchSpec, reload_of
from scheduler.runtimes.cluster_wire import RUNTIME_LABEL, VOLUME_LABEL, NodeSpec, volume_limit_of
from scheduler.runtimes.docker import DockerRuntime
from scheduler.volume_carry import VolumeCarrier
from scheduler.volume_fs import bind_dirs

log = logging.getLogger("spacehost.node")
POLL_WAIT_S = 20.0
LOG_BATCH = 500


class NodeAgent:
    def __init__(self, cfg: NodeConfig) -> None:
        self.cfg = cfg
        self.settings = Settings(data_dir=cfg.data_dir, runtime=cfg.runtime, zerogpu_devices=cfg.zerogpu_devices,
                                 zerogpu_quota_anonymous_s=cfg.zerogpu_quota_anonymous_s,
                                 zerogpu_quota_signed_in_s=cfg.zerogpu_quota_signed_in_s,
                                 insecure_no_sandbox=cfg.insecure_no_sandbox)
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        self.runtime = load_runtime(cfg.runtime, self.settings)
        self.backend = load_backend(cfg.runtime, self.settings)
        self.http = httpx.AsyncClient(base_url=cfg.server.rstrip("/"), timeout=POLL_WAIT_S + 10,
                                      headers={"Authorization": f"Bearer {cfg.token}"})
        self.local: dict[str, Local] = {}
        self.starting: dict[str, asyncio.Task[None]] = {}
        self.zerogpu_url: str | None = None
        self.broker: Any = None
        self.ledger: Any = None  # the cluster's quota ledger (RedisLedger), connected once registered
        self.cache = CacheView(self.settings.path("envs"),
                               self.runtime.client if isinstance(self.runtime, DockerRuntime) else None)
        self._state_path = cfg.data_dir / "node.json"
        self.carrier = VolumeCarrier(cfg.server, cfg.token, cfg.name, cfg.data_dir)  # volumes moving on or off
        self.relay_key: str | None = None  # core.relay_key's, given at registration; None: relays refuse
        self._stopping = threading.Event()

    # ---- registration and heartbeat ---------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        c = self.cfg
        gpus, accel = c.gpus, c.accelerator
        if c.zerogpu_devices and not gpus:
            gpus, accel = c.zerogpu_devices, accel or "zero"
        return {"name": c.name, "address": c.address, "cpus": c.cpus or float(os.cpu_count() or 1),
                "memory_gb": c.memory_gb or round(machine_memory_gb(), 1), "gpus": gpus, "accelerator": accel,
                "labels": {**c.labels, RUNTIME_LABEL: c.runtime,
                           **{f"{VOLUME_LABEL}{b}": "here" for b in held_buckets(c.data_dir)}},
                "zerogpu_url": self.zerogpu_url}

    async def register(self) -> dict[str, Any]:
        while True:
            try:
                r = await self.http.post("/api/cluster/nodes/register", json=self.info())
                if r.status_code == 200:
                    return dict(r.json())
                log.error("registration refused (%s): %s", r.status_code, r.text[:300])
            except httpx.HTTPError as e:
                log.warning("server not reachable (%s); retrying", e)
            await asyncio.sleep(1.0)

    async def watch_loop_lag(self, every_s: float = 0.5, warn_s: float = 1.0) -> None:
        """Log when the event loop wakes late (something blocked it): the relays and reports wait meanwhile."""
        while True:
            t0 = time.monotonic()
            await asyncio.sleep(every_s)
            if (lag := time.monotonic() - t0 - every_s) > warn_s:
                log.warning("event loop blocked for %.1fs", lag)

    # ---- main -------------------------------------------------------------------------------------------------
    async def run(self) -> None:
        if self.cfg.zerogpu_devices:
            await self._start_broker()
        await self.adopt()
        reg = await self.register()
        self.relay_key = str(reg["relay_key"])
        if self.ledger is not None:
            self.ledger.connect(self.cfg.redis_url or reg["redis_url"])
        heartbeat_thread(self.cfg.redis_url or reg["redis_url"], self.cfg.name, self.cache.cached, self._stopping)
        log.info("node %s registered at %s (%s)", self.cfg.name, self.cfg.server, self.cfg.address)
        await asyncio.gather(self.reconcile_forever(), self.watch_forever(), self.watch_loop_lag())

    async def serve(self) -> None:
        """`run` until SIGTERM or SIGINT, then `shutdown`."""
        main, loop = asyncio.current_task(), asyncio.get_running_loop()
        assert main is not None
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, main.cancel)
        try:
            await self.run()
        except asyncio.CancelledError:
            log.info("node %s stopping", self.cfg.name)
        finally:
            await self.shutdown()

    async def shutdown(self) -> None:
        """Stop what runs here and its warm interpreters, reporting each as stopped so that the server places it
        elsewhere at once (not after the heartbeat expires), unless `keep_spaces`: then it all keeps running
        for the next agent to re-adopt."""
        self._stopping.set()
        for task in list(self.starting.values()):
            task.cancel()
        if not self.cfg.keep_spaces:
            spaces = {l.space_id for l in self.local.values()}
            await asyncio.gather(*(self.stop_local(iid, f"node {self.cfg.name} stopped") for iid in list(self.local)),
                                 return_exceptions=True)
            for sid in spaces:
                await asyncio.to_thread(self.runtime.forget_space, sid)
            await asyncio.to_thread(self.runtime.close)  # process: zygotes; docker: spares
        if self.broker is not None and hasattr(self.broker, "close"):
            await self.broker.close()
        await self.http.aclose()

    async def reconcile_forever(self) -> None:
        since = -1
        while True:
            try:
                r = await self.http.get(f"/api/cluster/nodes/{self.cfg.name}/assignments",
                                        params={"since": since, "wait": POLL_WAIT_S if since >= 0 else 0})
                r.raise_for_status()
                data = r.json()
                await self.reconcile(data["assignments"])
                self.carrier.apply(data.get("volumes") or {})
                since = int(data["version"])
            except (httpx.HTTPError, ValueError, KeyError) as e:
                log.warning("assignments not available (%s); retrying", e)
                await self.thaw_all()
                since = -1
                await asyncio.sleep(1.0)
            except Exception:  # one bad reconcile must not end the agent (and its heartbeat)
                log.exception("reconcile failed; retrying")
                since = -1
                await asyncio.sleep(1.0)

    async def reconcile(self, wanted: list[dict[str, Any]]) -> None:
        desired = {a["instance_id"]: a for a in wanted}
        for iid in [i for i in self.local if i not in desired]:
            await self.stop_local(iid, "no longer assigned here")
        for iid, task in list(self.starting.items()):
            if iid not in desired:
                task.cancel()
        for iid, a in desired.items():
            if iid in self.local:
                if a["reported"] != "running":  # the report was lost (server restart): say it again
                    await self.report_running(self.local[iid])
                local = self.local[iid]
                if bool(a.get("frozen")) != local.frozen:
                    await self.set_frozen(local, bool(a.get("frozen")))
                elif a.get("frozen_seen") not in (None, local.frozen):  # a report the server missed: again
                    await self.report_frozen(local)
            elif iid not in self.starting:
                task = asyncio.ensure_future(self.start_one(a))
                self.starting[iid] = task

                def forget(_t: asyncio.Task[None], i: str = iid) -> None:
                    self.starting.pop(i, None)

                task.add_done_callback(forget)

    # ---- start ------------------------------------------------------------------------------------------------
    async def start_one(self, a: dict[str, Any]) -> None:
        spec = NodeSpec.from_json(a["spec"])
        iid, epoch = spec.instance_id, int(a["epoch"])
        log_path = str(self.settings.path("spaces", spec.space_id, f"run-{iid}.log"))
        try:
            art = await asyncio.to_thread(self.materialise, spec)
            zero = self.broker is not None and flavor(spec.hardware).is_zero
            env = {**spec.env, **({"SPACES_ZERO_GPU": "true",  # this node's broker: leases of its own devices
                                    "SPACES_ZERO_DEVICE_API_URL": self.broker.register_space(spec.space_id)}
                                   if zero else {})}
            await asyncio.to_thread(self.carrier.fetch_moved, spec.volumes, spec.incoming)  # a bucket moved here: its data first
            vols = await asyncio.to_thread(bind_dirs, self.cfg.data_dir, spec.volumes,
                                           volume_limit_of(spec, self.settings.volume_limit_bytes), APP_UID)
            launch = LaunchSpec(iid, art, env, flavor(spec.hardware), log_path, secret_values=spec.secret_values,
                                volumes=vols)
            inst = await self.runtime.start(launch)
            if zero and inst.pid:
                self.broker.broker.set_root_pid(spec.space_id, inst.pid)
        except asyncio.CancelledError:
            raise
        except SpacehostError as e:
            await self.report(iid, epoch, "exited", exit_reason=e.message)
            return
        except Exception as e:
            log.exception("start of %s failed", iid)
            await self.report(iid, epoch, "exited", exit_reason=f"node {self.cfg.name}: {e!r}")
            return
        local = Local(iid, spec.space_id, epoch, 0, log_path, zero=zero)
        await self.expose(local, inst)
        await self.report_running(local)

    def materialise(self, spec: NodeSpec) -> Any:
        """The build of `spec.sha` on this node. A shipped process build is materialised (app tree fetched from
        the hub's git, env from this node's cache by content key), a shipped image pulled by digest (docker
        node); anything else is rebuilt from the commit
        with this node's backend. Blocking."""
        lines: list[str] = []
        try:
            bare = fetch_commit(self.settings, spec.space_id, spec.sha, self.cfg.server, self.cfg.token)
            art = artifact_from_json(spec.artifact) if spec.artifact is not None else None
            if art is not None and art.image is not None and isinstance(self.runtime, DockerRuntime):
                out = materialise_image(self.runtime.client, self.settings, art, bare, self.cfg.registry, lines.append)
                log.info("%s: %s", spec.instance_id, " / ".join(lines))
                return out
            if art is not None and shippable(art) and isinstance(self.backend, UvBackend):
                out = materialise(self.backend, self.settings, art, bare, lines.append)
                log.info("%s: %s", spec.instance_id, lines[-1] if lines else "materialised")
                return out
            return build_commit(self.backend, bare, self.settings.path("spaces", spec.space_id), spec.space_id,
                                spec.sha, BuildContext(log=lines.append))
        except SpacehostError as e:
            e.message = f"node {self.cfg.name} could not materialise the build: {e.message}\n" + "\n".join(lines[-20:])
            raise

    def current_relay_key(self) -> str | None:
        return self.relay_key

    async def expose(self, local: Local, inst: Instance) -> None:
        """Relay the instance's app, and its reload server where it has one (hot reload: the server's commits
        and the proxies' `{subdomain}--7887` reach it there), on this node's address (the same ports again
        after a restart, where free)."""
        local.instance = inst
        local.relay = await Relay.open(self.cfg.address, local.port, inst.upstream, self.current_relay_key)
        local.port = local.relay.port
        if (reload := reload_of(self.runtime.abilities, inst)) is not None:
            local.reload_relay = await Relay.open(self.cfg.address, local.reload_port, reload,
                                                 self.current_relay_key)
            local.reload_port = local.reload_relay.port
        self.local[local.instance_id] = local
        await asyncio.to_thread(self.save)

    # ---- reports and watching ---------------------------------------------------------------------------------
    async def report(self, iid: str, epoch: int, reported: str, **extra: Any) -> bool:
        with contextlib.suppress(httpx.HTTPError, ValueError):
            r = await self.http.post(f"/api/cluster/nodes/{self.cfg.name}/report",
                                     json={"instance_id": iid, "epoch": epoch, "reported": reported, **extra})
            return bool(r.status_code == 200 and r.json().get("accepted"))
        return False

    async def report_running(self, local: Local) -> None:
        await self.report(local.instance_id, local.epoch, "running", **local.running())

    async def set_frozen(self, local: Local, frozen: bool) -> None:
        """Freeze or thaw the instance as the server wants, and report the state its freezer reached (a freeze
        that does not settle, or a runtime that cannot freeze, reports it running)."""
        if local.instance is None:
            return
        if not frozen:
            await self.runtime.thaw(local.instance)
            local.frozen = False
        elif Ability.FREEZE in self.runtime.abilities:
            local.frozen = await self.runtime.freeze(local.instance)
        log.info("%s %s", local.instance_id, "frozen" if local.frozen else "thawed" if not frozen else "did not freeze")
        await self.report_frozen(local)

    async def report_frozen(self, local: Local) -> None:
        await self.report(local.instance_id, local.epoch, "running", **local.running(), frozen=local.frozen)

    async def thaw_all(self) -> None:
        """The server is out of reach, and with it every thaw: what is frozen here runs again (proxies route to
        it meanwhile; the server freezes it again once idle)."""
        thawed = [l for l in self.local.values() if l.frozen and l.instance is not None]
        for local in thawed:
            assert local.instance is not None
            await self.runtime.thaw(local.instance)
            local.frozen = False
            log.info("%s thawed: the server is out of reach", local.instance_id)
        for local in thawed:  # when the server is back (or on its next reconcile, if these do not reach it)
            await self.report_frozen(local)

    async def stop_local(self, iid: str, why: str) -> None:
        local = self.local.pop(iid)
        log.info("stopping %s: %s", iid, why)
        await local.close_relays()
        if local.instance:
            await self.runtime.stop(local.instance)
        self.leave_broker(local)
        with contextlib.suppress(httpx.HTTPError):
            await self.ship_logs(local)
        await asyncio.to_thread(self.save)
        await self.report(iid, local.epoch, "stopped", exit_reason=why)

    async def watch_forever(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            for local in list(self.local.values()):
                try:
                    await self.watch_one(local)
                except Exception:  # the next round tries again; the agent keeps running
                    log.exception("watching %s failed", local.instance_id)

    async def watch_one(self, local: Local) -> None:
        """Ship the instance's new log lines; report it once it has exited."""
        with contextlib.suppress(httpx.HTTPError):
            await self.ship_logs(local)
        if local.instance is None or local.instance_id not in self.local:
            return
        ended = await self.runtime.exited(local.instance)
        if ended is not None:
            self.local.pop(local.instance_id, None)
            await local.close_relays()
            self.leave_broker(local)
            with contextlib.suppress(httpx.HTTPError):
                await self.ship_logs(local)
            await asyncio.to_thread(self.save)
            await self.report(local.instance_id, local.epoch, "exited", exit_reason=ended.reason)

    def leave_broker(self, local: Local) -> None:
        """A ZeroGPU Space's instance is gone: its leases end, and unless another instance of it runs here
        (a swap in progress), the broker forgets it."""
        if not (local.zero and self.broker is not None):
            return
        if any(other.space_id == local.space_id and other.zero for other in self.local.values()):
            self.broker.space_died(local.space_id)
        else:
            self.broker.unregister_space(local.space_id)

    async def ship_logs(self, local: Local) -> None:
        """New lines of the instance's log to the server (the Space's run log, its SSE)."""
        lines, pos = await asyncio.to_thread(read_lines, Path(local.log_path), local.log_pos)
        for i in range(0, len(lines), LOG_BATCH):
            r = await self.http.post(f"/api/cluster/nodes/{self.cfg.name}/logs",
                                     json={"instance_id": local.instance_id, "lines": lines[i:i + LOG_BATCH]})
            r.raise_for_status()
        local.log_pos = pos

    # ---- restart: adopt what still runs -----------------------------------------------------------------------
    def save(self) -> None:
        tmp = self._state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps([l.saved() for l in self.local.values()]))
        tmp.replace(self._state_path)

    async def adopt(self) -> None:
        saved: dict[str, dict[str, Any]] = {}
        with contextlib.suppress(OSError, ValueError):
            saved = {d["instance_id"]: d for d in json.loads(self._state_path.read_text())}
        for inst in await self.runtime.adopt():
            d = saved.get(inst.instance_id)
            if d is None:
                await self.runtime.stop(inst)
                continue
            local = Local(**{**d, "instance": None, "relay": None, "reload_relay": None})
            if local.zero and self.broker is not None:  # its device-API URL (stable per key) admitted again
                self.broker.register_space(local.space_id, inst.pid or None)
            await self.expose(local, inst)
        await asyncio.to_thread(self.save)

    async def _start_broker(self) -> None:
        from spacehost.embedded import listen
        from zerogpu.embedded import start_broker
        from zerogpu.redis_ledger import RedisLedger

        gateway = await asyncio.to_thread(self.runtime.gateway)
        hosts = (self.cfg.address, gateway) if gateway else (self.cfg.address,)
        # Quotas are cluster-wide: every node's broker charges the one ledger in the cluster's Redis. Until the
        # node has registered (and so knows the Redis URL) its broker refuses leases, as when Redis is unreachable.
        self.ledger = RedisLedger(self.cfg.name)
        self.broker = await start_broker(self.settings, self.settings.secret_key(), listen(hosts),
                                         is_admin=lambda token: hmac.compare_digest(token, self.cfg.token),
                                         ledger=self.ledger)
        self.zerogpu_url = self.broker.url
        if gateway:
            await asyncio.to_thread(self.runtime.expose_host_services, {self.broker.url: self.broker.port})


def run_node(cfg: NodeConfig) -> None:
    logging.basicConfig(level=os.environ.get("SPACEHOST_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(NodeAgent(cfg).serve())
