from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from tests.e2e.harness import Server, free_port


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("spacehost"), free_port(), "hf_admin_" + secrets.token_hex(8))
    srv.start()
    yield srv
    srv.close()
