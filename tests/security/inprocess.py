"""An in-process hub for the web-boundary attacks: the real FastAPI app over a real store and bare git repos,
driven through `httpx.ASGITransport` as a browser or a program would (the control plane is the recording fake
of tests/hub). `Browser` keeps cookies like a browser does and sends the headers a browser would."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from core.crypto import SecretBox
from core.settings import Settings
from hub.accounts import Accounts
from hub.app import create_app
from hub.control import Hub
from hub.repos import Repos
from hub.store import Store
from tests.hub.conftest import FakeControl

HUB = "http://hub.test"  # the hub's origin as the in-process clients reach it
T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@dataclass
class InProcessHub:
    hub: Hub
    control: FakeControl

    def client(self, **headers: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(self.hub)), base_url=HUB,
                                 headers=headers)

    def user(self, name: str | None = None, role: str = "write", token_name: str = "token") -> tuple[str, str]:
        name = name or "u" + secrets.token_hex(4)
        if self.hub.accounts.get(name) is None:
            self.hub.accounts.create(name)
        return name, self.hub.accounts.create_token(name, role=role, display_name=token_name)

    async def create_space(self, token: str, space_id: str, **body: Any) -> None:
        owner, _, name = space_id.partition("/")
        async with self.client(Authorization=f"Bearer {token}") as c:
            r = await c.post("/api/repos/create", json={"type": "space", "name": name, "organization": owner,
                                                        "sdk": "static", **body})
            assert r.status_code == 200, r.text


class Browser:
    """A signed-in browser tab on `origin` (the hub's own pages, or another site that posts to the hub)."""

    def __init__(self, client: httpx.AsyncClient, origin: str = HUB) -> None:
        self.client, self.origin = client, origin

    def headers(self, **extra: str) -> dict[str, str]:
        site = "same-origin" if self.origin == HUB else ("same-site" if self.origin.endswith(".test") else
                                                          "cross-site")
        return {"Origin": self.origin, "Sec-Fetch-Site": site, **extra}

    async def sign_in(self, token: str) -> httpx.Response:
        return await self.client.post("/login", data={"token": token}, headers=self.headers())


@pytest.fixture(scope="module")
def inproc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessHub]:
    data = Path(tmp_path_factory.mktemp("hub"))
    store = Store(f"sqlite:///{data / 'state.db'}")
    hub = Hub(Settings(data_dir=data, port=80, domain="hub.test"), store, Accounts(store), Repos(data / "repos"),
              SecretBox(b"k" * 32), FakeControl(store), wildcard_dns=True, signing_key=b"s" * 32)
    assert isinstance(hub.control, FakeControl)
    yield InProcessHub(hub, hub.control)
    store.engine.dispose()
