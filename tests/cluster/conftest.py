"""Real PostgreSQL and Redis servers, and the image registry (Debian's `docker-registry`), for the cluster tests,
started once per session on loopback in temp dirs (the same code `make cluster` uses: deploy/cluster/services.py)."""

from __future__ import annotations

import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from deploy.cluster.services import Service, start_postgres, start_redis, start_registry


@pytest.fixture(scope="session")
def postgres() -> Iterator[Service]:
    # Not under pytest's tmp dir: that is private to root, and PostgreSQL runs as the postgres user.
    root = Path(tempfile.mkdtemp(prefix="spacehost-pg-"))
    service = start_postgres(root)
    yield service
    service.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    service = start_redis(tmp_path_factory.mktemp("redis"))
    yield service
    service.stop()


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The registry docker nodes pull from; `url` is its `127.0.0.1:PORT` (plain HTTP: loopback)."""
    service = start_registry(tmp_path_factory.mktemp("registry"))
    yield service
    service.stop()


@pytest.fixture(scope="session")
def postgres_url(postgres: Service) -> str:
    """`postgresql+psycopg://…/spacehost`: the session's shared database."""
    return postgres.url


@pytest.fixture(scope="session")
def redis_url(redis_server: Service) -> str:
    """`redis://127.0.0.1:PORT/0` on the session's Redis."""
    return redis_server.url


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


@pytest.fixture
def fresh_postgres_url(postgres: Service) -> Iterator[str]:
    """A new, empty database on the session's server for one test, dropped afterwards."""
    name = "t_" + secrets.token_hex(6)
    admin = _libpq(postgres.url).rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield postgres.url.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# The in-process hub (real app, store, bare repos, git smart HTTP) that build workers fetch commits from.
from tests.hub.conftest import live_hub  # noqa: F401
