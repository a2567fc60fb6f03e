"""Embedded mode: hub, builder, scheduler, ZeroGPU broker and proxy in one process on one machine."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import uvicorn

from builder import load_backend
from core.crypto import SecretBox
from core.routes import RouteTable, Upstream
from core.settings import Settings
from hub.accounts import Accounts
from hub.app import create_app
from hub.control import Hub, wildcard_dns_works
from hub.quotas import QuotaSettings
from hub.repos import Repos
from hub.store import Store
from scheduler.controller import Controller, env_source_for
from scheduler.runtimes import load_runtime

if TYPE_CHECKING:
    from scheduler.runtimes.base import Runtime
    from scheduler.runtimes.docker import DockerRuntime
    from scheduler.runtimes.process import ProcessRuntime

log = logging.getLogger("spacehost")


def listen(hosts: tuple[str, ...], port: int = 0, attempts: int = 20) -> list[socket.socket]:
    """Listening TCP sockets on each of `hosts` at one port: `port` if free on all, else any that is."""
    for _ in range(attempts - 1):
        with contextlib.suppress(OSError):
            return _listen_all(hosts, port)
        port = 0
    return _listen_all(hosts, port)


def _listen_all(hosts: tuple[str, ...], port: int) -> list[socket.socket]:
    socks: list[socket.socket] = []
    try:
        for host in hosts:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            port = sock.getsockname()[1]  # the other hosts take the first one's port
            sock.listen(2048)
    except OSError:
        for sock in socks:
            sock.close()
        raise
    return socks


def load_ports(path: Path) -> dict[str, int]:
    """Ports of the internal services chosen by the last run. Reused, they keep the URLs that running
    Spaces hold (hub and broker, for containers on the bridge gateway) valid across a restart."""
    with contextlib.suppress(OSError, ValueError):
        return {k: int(v) for k, v in json.loads(path.read_text()).items()}
    return {}


def spaces_names(settings: Settings) -> tuple[str, ...]:
    """Extra names of the self-signed certificate: the Spaces' own domain, when apart from the hub's."""
    d = settings.spaces_domain
    return (d, f"*.{d}") if d and d != settings.domain else ()


def open_store(settings: Settings) -> Store:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    url = os.environ.get("SPACEHOST_DATABASE_URL") or f"sqlite:///{settings.path('state.db').resolve()}"
    return Store(url)


@dataclass(frozen=True)
class AdminBootstrap:
    """Where the admin's token comes from, for the start banner; `token` only when newly generated."""

    origin: str
    token: str | None = None


def bootstrap_admin(accounts: Accounts) -> AdminBootstrap:
    """Make sure the admin user exists with a token; a generated token is returned to be printed once."""
    wanted = os.environ.get("SPACEHOST_ADMIN_TOKEN")
    fresh = accounts.get("admin") is None
    if fresh:
        accounts.create("admin", admin=True)
    if wanted:
        accounts.create_token("admin", value=wanted, display_name="admin-bootstrap")
        return AdminBootstrap("from SPACEHOST_ADMIN_TOKEN")
    if fresh:
        return AdminBootstrap("generated now (shown once below, keep it)",
                              accounts.create_token("admin", display_name="admin-bootstrap"))
    return AdminBootstrap("made by an earlier start (kept in the data dir); `spacehost token create admin` "
                          "makes another")


class ProxyHooksImpl:
    def __init__(self, controller: Controller, accounts: Accounts, store: Store) -> None:
        self.controller, self.accounts, self.store = controller, accounts, store

    def activity(self, space_id: str) -> None:
        self.controller.activity(space_id)

    async def wake(self, space_id: str) -> None:
        await self.controller.wake(space_id)

    def user_for_token(self, token: str) -> str | None:
        p = self.accounts.authenticate(token)
        return p.user if p else None

    def credential_live(self, cred: str) -> bool:
        from hub.sessions import Sessions
        from state.store import utcnow

        return Sessions(self.accounts).live(cred, utcnow())

    def writer_of(self, token: str, space_id: str) -> bool:
        p, space = self.accounts.authenticate(token), self.store.get_space(space_id)
        return p is not None and space is not None and p.can_write(space.owner)

    def can_view(self, space_id: str, user: str | None) -> bool:
        space = self.store.get_space(space_id)
        if space is None:
            return False
        if not space.private:
            return True
        if user is None:
            return False
        if user == space.owner:
            return True
        return any(o.name == space.owner for o in self.accounts.orgs_of(user)) or bool(
            (acct := self.accounts.get(user)) and acct.is_admin)


@dataclass
class Embedded:
    settings: Settings
    hub: Hub | None = None
    controller: Controller | None = None
    proxy: Any = None
    broker: Any = None
    _servers: list[Any] = field(default_factory=list)
    admin: AdminBootstrap | None = None

    async def run(self, ready: asyncio.Event | None = None) -> None:
        s = self.settings
        store = open_store(s)
        accounts = Accounts(store)
        self.admin = bootstrap_admin(accounts)
        repos = Repos(s.path("repos"))
        key = s.secret_key()
        box = SecretBox(key)
        runtime = load_runtime(s.runtime, s)
        backend = load_backend(s.runtime, s)
        # Spaces reach the hub and the broker on their bridge's gateway (Docker's, or the process runtime's
        # sandbox bridge): listen there too, never 0.0.0.0.
        containers = _docker(runtime)
        spaces_net = containers or _process(runtime)
        gateway = await asyncio.to_thread(spaces_net.gateway) if spaces_net else None
        hosts = ("127.0.0.1", gateway) if gateway else ("127.0.0.1",)
        ports = load_ports(s.path("ports.json"))
        hub_socks = listen(hosts, ports.get("hub", 0))
        hub_port = hub_socks[0].getsockname()[1]
        hub_holder: dict[str, Hub] = {}

        from proxy.accesslog import AccessLog
        from proxy.server import ProxyServer

        proxy_box: dict[str, Any] = {}

        def on_routes(table: RouteTable) -> None:
            if "proxy" in proxy_box:
                proxy_box["proxy"].update(table)
            proxy_box["table"] = table

        self.broker = await self._start_broker(key, listen(hosts, ports.get("zerogpu", 0)),
                                               lambda token: bool((p := accounts.authenticate(token)) and p.is_admin))
        chosen = {"hub": hub_port, **({"zerogpu": self.broker.port} if self.broker else {})}
        if moved := [k for k, v in chosen.items() if ports.get(k, v) != v]:
            log.warning("ports of %s were taken: Spaces started before keep the old URLs until restarted", moved)
        s.path("ports.json").write_text(json.dumps(chosen))
        if spaces_net and gateway:
            services = {s.hub_url: hub_port, **({self.broker.url: self.broker.port} if self.broker else {})}
            await asyncio.to_thread(spaces_net.expose_host_services, services)
        controller = Controller(
            s, store, repos.root, runtime, backend, env_source_for(store, box), on_routes,
            app_url=lambda space: hub_holder["hub"].app_url(space), zero_gpu=self.broker,
            hub_upstream=Upstream("127.0.0.1", hub_port),
        )
        hub = Hub(s, store, accounts, repos, box, controller, wildcard_dns=wildcard_dns_works(s.space_domain),
                  signing_key=key, sandbox=runtime.sandbox_state())
        hub_holder["hub"] = hub
        self.hub, self.controller = hub, controller
        app = create_app(hub)
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=hub_port, log_level="warning",
                                               proxy_headers=True, forwarded_allow_ips="127.0.0.1",
                                               timeout_keep_alive=30))
        hub_task = await serving(server, hub_socks)
        await controller.start()
        quotas = QuotaSettings(s.path("zerogpu", "quotas.json"), accounts)
        controller.set_zerogpu_overrides(await asyncio.to_thread(quotas.resolved))
        table = proxy_box.get("table") or RouteTable(s.domain, Upstream("127.0.0.1", hub_port), spaces_domain=s.spaces_domain)
        tls = None
        if s.tls or s.tls_cert:
            from proxy.tls import DirCertStore, TlsConfig, ensure_self_signed

            store_dir = s.path("certs")
            if s.tls_cert and s.tls_key:
                tls = TlsConfig(s.tls_cert, s.tls_key, store=DirCertStore(store_dir))
            else:
                made = ensure_self_signed(s.path("tls"), s.domain, spaces_names(s))
                print(made.trust_instructions(), flush=True)
                tls = TlsConfig(made.cert, made.key, store=DirCertStore(store_dir))
        access_log = AccessLog.open(s.access_log)
        proxy = ProxyServer(table, ProxyHooksImpl(controller, accounts, store), host=s.host, port=s.port,
                            secret=key, tls=tls, drop_cookies=frozenset({"spacehost_session"}),
                            access_log=access_log)
        proxy_box["proxy"] = proxy
        await proxy.start()
        self.proxy = proxy
        self._announce(hub, runtime)
        settle_heap()
        if ready:
            ready.set()
        try:
            await hub_task
        finally:
            await proxy.stop()
            if access_log is not None:
                access_log.close()
            await controller.close(stop_apps=not s.keep_spaces)
            if containers is not None:
                await asyncio.to_thread(containers.close)
            elif spaces_net is not None and gateway:  # this install's ports closed to every namespace
                if not s.keep_spaces and s.zygote == "per-env":  # every Space stopped: the shared interpreters go
                    await asyncio.to_thread(spaces_net.close)  # (per-space ones went with their Spaces)
                await asyncio.to_thread(spaces_net.expose_host_services, {})
            if self.broker is not None and hasattr(self.broker, "close"):
                await self.broker.close()

    async def _start_broker(self, key: bytes, sockets: list[socket.socket], is_admin: Callable[[str], bool]) -> Any:
        try:
            from zerogpu.embedded import start_broker
        except ImportError:
            for sock in sockets:
                sock.close()
            return None
        return await start_broker(self.settings, key, sockets, is_admin)

    def _announce(self, hub: Hub, runtime: Runtime) -> None:
        """What a user needs at start: the URL, where the data lives, how Spaces are isolated, the admin token."""
        s = self.settings
        print(f"spacehost is up: {s.hub_url}  (runtime: {s.runtime})", flush=True)
        print(f"  data:      {s.data_dir}  (repos, state, environments, logs)", flush=True)
        print(f"  isolation: {runtime.describe_isolation()}", flush=True)
        print("  on stop:   " + ("Spaces keep running (--keep-spaces): a restart re-adopts them" if s.keep_spaces
                                 else "Spaces are stopped (--keep-spaces leaves them running for a restart)"),
              flush=True)
        if not hub.wildcard_dns:
            print(f"  note: *.{s.space_domain} does not resolve for plain clients here; the API's `host` gives each"
                  f" Space its own port on {s.host}", flush=True)
        if self.admin is not None:
            print(f"  admin token: {self.admin.origin}", flush=True)
            if self.admin.token:
                print(f"  admin token (shown once, keep it): {self.admin.token}", flush=True)


def settle_heap() -> None:
    """Move what start-up made (modules, the app, its routes: most of the heap) out of the garbage collector's
    full scans, which otherwise walk it all mid-request (a 120 ms stall of the loop during a 60 MB upload)."""
    gc.collect()
    gc.freeze()


async def serving(server: uvicorn.Server, sockets: list[socket.socket]) -> asyncio.Task[None]:
    """Start `server` on `sockets` (stopping on SIGINT/SIGTERM) and return its task once it accepts."""
    _stop_on_signals(server)
    task = asyncio.create_task(server.serve(sockets=sockets))
    while not server.started:
        await asyncio.sleep(0.02)
    return task


def _stop_on_signals(server: uvicorn.Server) -> None:
    """SIGTERM and SIGINT end `server.serve()`, then `run` shuts down (stopping the Spaces unless
    --keep-spaces). uvicorn traps both while it serves and raises them again afterwards under the handlers it
    found: these, so that raise cannot kill the process (SIGTERM's default) before the shutdown has run."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda _sig, _frame: setattr(server, "should_exit", True))


def _process(runtime: Runtime) -> ProcessRuntime | None:
    from scheduler.runtimes.process import ProcessRuntime

    return runtime if isinstance(runtime, ProcessRuntime) else None


def _docker(runtime: Runtime) -> DockerRuntime | None:
    """`runtime` if it is the docker one (imported only then: the process runtime needs no docker SDK)."""
    if getattr(runtime, "name", None) != "docker":
        return None
    from scheduler.runtimes.docker import DockerRuntime

    return runtime if isinstance(runtime, DockerRuntime) else None


def run_embedded(settings: Settings) -> None:
    logging.basicConfig(level=os.environ.get("SPACEHOST_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    asyncio.run(Embedded(settings).run())

