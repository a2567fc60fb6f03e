"""What the hub needs from the control plane (scheduler + builder), as one small Protocol, and the bundle of
services the hub's routes use."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import Any, Protocol

from core.crypto import SecretBox
from core.isolation import SandboxState
from core.routes import Upstream
from core.settings import Settings
from hub.accounts import Accounts
from hub.logs import LogFile
from hub.repos import Repos
from hub.store import SpaceRecord, Store


class SpaceControl(Protocol):
    async def pushed(self, space_id: str, sha: str, *, factory: bool = False) -> None:
        """A new commit landed: build it and, once healthy, serve it."""

    async def restart(self, space_id: str, *, factory: bool = False) -> None: ...

    async def pause(self, space_id: str) -> None: ...

    async def env_changed(self, space_id: str) -> None:
        """Secrets, variables or hardware changed: restart with the new env."""

    async def deleted(self, space_id: str) -> None: ...

    def building(self, space_id: str) -> bool: ...

    def builds(self, space_id: str) -> list[str]:
        """Commits whose build is kept (rollback targets), newest first."""

    async def rollback(self, space_id: str, sha: str) -> None: ...

    def zerogpu_quota(self, visitor_key: str) -> dict[str, Any] | None:
        """Remaining ZeroGPU quota of a visitor (`user:NAME` or `ip:ADDR`); None without a GPU pool."""

    def set_zerogpu_overrides(self, overrides: dict[str, int]) -> bool:
        """Replace the per-visitor daily quotas (`user:NAME` → seconds); False without a GPU pool."""

    def routes_changed(self) -> None:
        """Something the route table depends on changed in the store (e.g. custom domains)."""

    def runtime_extra(self, space_id: str) -> dict[str, Any]: ...

    def shell_target(self, space_id: str) -> tuple[int | None, str | None]:
        """Where `spacehost ssh` enters the running Space: (process runtime: the sandbox's leader pid, docker:
        the container id); (None, None) when it does not run here."""

    def reload_target(self, space_id: str, *, visit: bool = True) -> tuple[str, Upstream] | None:
        """The running instance's id and its `spaces` reload server (port 7887 in its own network namespace);
        None when it does not run here or has no namespace of its own (then a hot reload redeploys). `visit`:
        a reload is coming (a frozen Space is thawed); False for a look only (the runtime view)."""


def wildcard_dns_works(domain: str) -> bool:
    """Whether `<anything>.DOMAIN` resolves for a plain client on this machine."""
    try:
        socket.getaddrinfo(f"spacehost-dns-probe.{domain}", None)
        return True
    except OSError:
        return False


@dataclass
class Hub:
    settings: Settings
    store: Store
    accounts: Accounts
    repos: Repos
    box: SecretBox
    control: SpaceControl
    wildcard_dns: bool = False
    signing_key: bytes = field(default=b"", repr=False)
    relay_key: str = field(default="", repr=False)  # cluster: core.relay_key, opens nodes' relays (hot reload)
    sandbox: SandboxState = field(default_factory=lambda: SandboxState(True))  # the runtime's: shown in runtime info and on each Space page

    def space_dir(self, space_id: str) -> Any:
        return self.settings.path("spaces", space_id)

    def build_log(self, space_id: str) -> LogFile:
        return LogFile(self.settings.path("spaces", space_id, "build.log"))

    def run_log(self, space_id: str) -> LogFile:
        return LogFile(self.settings.path("spaces", space_id, "run.log"))

    def subdomain_url(self, subdomain: str) -> str:
        return f"{self.settings.scheme}://{subdomain}.{self.settings.space_domain}:{self.settings.port}"

    def app_url(self, space: SpaceRecord) -> str:
        """The URL a client uses to reach the app: the subdomain when wildcard DNS resolves here, else the
        Space's own port on the proxy (a separate origin too)."""
        from core.ids import SpaceId

        sid = SpaceId(space.owner, space.name)
        if self.wildcard_dns or not space.direct_port:
            return self.subdomain_url(sid.subdomain)
        host = self.settings.host if self.settings.host not in ("0.0.0.0", "::") else "127.0.0.1"
        return f"{self.settings.scheme}://{host}:{space.direct_port}"
