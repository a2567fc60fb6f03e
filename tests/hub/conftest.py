"""An in-process hub (the real FastAPI app over a real store, bare git repos and uvicorn on loopback) with a
recording fake of the control plane, so the real huggingface_hub client can drive the API without builds."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from core.crypto import SecretBox
from core.routes import Upstream
from core.settings import Settings
from hub.accounts import Accounts
from hub.app import create_app
from hub.control import Hub
from hub.repos import Repos
from hub.store import Store
from tests.e2e.harness import free_port


@dataclass
class FakeControl:
    """Records what the hub asked of the control plane; `pushed` moves head_sha as the real controller does."""

    store: Store
    calls: list[tuple[str, str]] = field(default_factory=list)

    async def pushed(self, space_id: str, sha: str, *, factory: bool = False) -> None:
        self.calls.append(("pushed", f"{space_id}@{sha}"))
        self.store.update_space(space_id, head_sha=sha, stage="BUILDING")

    async def restart(self, space_id: str, *, factory: bool = False) -> None:
        self.calls.append(("restart", space_id + (" factory" if factory else "")))

    async def pause(self, space_id: str) -> None:
        self.calls.append(("pause", space_id))
        self.store.update_space(space_id, paused=True, stage="PAUSED")

    async def env_changed(self, space_id: str) -> None:
        self.calls.append(("env_changed", space_id))

    async def deleted(self, space_id: str) -> None:
        self.calls.append(("deleted", space_id))

    def building(self, space_id: str) -> bool:
        return False

    def builds(self, space_id: str) -> list[str]:
        return []

    async def rollback(self, space_id: str, sha: str) -> None:
        self.calls.append(("rollback", f"{space_id}@{sha}"))

    def routes_changed(self) -> None:
        self.calls.append(("routes_changed", ""))

    def set_zerogpu_overrides(self, overrides: dict[str, int]) -> bool:
        self.calls.append(("zerogpu_overrides", repr(sorted(overrides.items()))))
        return True

    def shell_target(self, space_id: str) -> tuple[int | None, str | None]:
        return None, None

    def reload_target(self, space_id: str, *, visit: bool = True) -> tuple[str, Upstream] | None:
        return None

    def runtime_extra(self, space_id: str) -> dict[str, Any]:
        return {}

    def zerogpu_quota(self, visitor_key: str) -> dict[str, Any] | None:
        return None

    def of(self, kind: str) -> list[str]:
        return [arg for k, arg in self.calls if k == kind]


@dataclass
class LiveHub:
    url: str
    hub: Hub
    control: FakeControl
    admin: str  # a write token of the admin user

    def user(self, name: str | None = None, role: str = "write") -> tuple[str, str]:
        """A fresh user and a token of `role` for them."""
        name = name or "u" + secrets.token_hex(4)
        if self.hub.accounts.get(name) is None:
            self.hub.accounts.create(name)
        return name, self.hub.accounts.create_token(name, role=role)


@pytest.fixture(scope="session")
def live_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveHub]:
    data = Path(tmp_path_factory.mktemp("hub"))
    port = free_port()
    settings = Settings(data_dir=data, port=port, domain="localhost")
    store = Store(f"sqlite:///{data / 'state.db'}")
    accounts = Accounts(store)
    accounts.create("admin", admin=True)
    admin = accounts.create_token("admin", role="write")
    control = FakeControl(store)
    hub = Hub(settings, store, accounts, Repos(data / "repos"), SecretBox(b"k" * 32), control)
    server = uvicorn.Server(uvicorn.Config(create_app(hub), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("in-process hub did not start")
        time.sleep(0.02)
    yield LiveHub(f"http://127.0.0.1:{port}", hub, control, admin)
    server.should_exit = True
    thread.join(10)
