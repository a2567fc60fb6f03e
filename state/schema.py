"""The schema's version: Alembic migrations in state/migrations/versions/, run by `upgrade` whenever a Store
opens (SQLite embedded, PostgreSQL in a cluster), in place of `create_all`.

Every change to a model in state/ (store.py, cluster.py, community.py, …) needs a new revision, or the store and the
database disagree; tests/unit/test_migrations.py fails until the head revision matches the models. To write one
against a database at head:

    export SPACEHOST_DATABASE_URL=sqlite:////tmp/x.db
    .venv/bin/alembic -c state/migrations/alembic.ini upgrade head
    .venv/bin/alembic -c state/migrations/alembic.ini revision --autogenerate --rev-id 0003 -m "what changed"
    .venv/bin/alembic -c state/migrations/alembic.ini check   # no output but "No new upgrade operations"

then read and fix what autogenerate wrote (renames come out as drop + add; data moves are yours to write).
Databases made by `create_all` before migrations existed are adopted by revision 0001 (see its docstring)."""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.engine import Engine

MIGRATIONS = Path(__file__).parent / "migrations"
_LOCK_KEY = 0x5350_4348  # PostgreSQL advisory lock: one process migrates at a time


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def head() -> str:
    rev = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert rev is not None
    return rev


def current(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine) -> None:
    """Bring the database to the head revision, in one transaction, one process at a time (PostgreSQL: an
    advisory lock; SQLite: a lock file beside the database), so processes that open the store at once migrate
    it once. Blocking."""
    with _sqlite_lock(engine), engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
        if current(conn) == head():
            return
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


@contextlib.contextmanager
def _sqlite_lock(engine: Engine) -> Iterator[None]:
    db = engine.url.database if engine.dialect.name == "sqlite" else None
    if not db or db == ":memory:":
        yield
        return
    with open(f"{db}.migrate-lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield
