"""The schema is Alembic's (state/schema.py): an empty database upgrades to head, a database `create_all` made
before migrations existed is adopted with its data, and the head revision equals the models. A model change
without a new revision fails `test_head_matches_the_models`. tests/cluster/test_migrations_pg.py runs the same
checks on PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from state import schema
from state.models import metadata
from state.store import Account, Space, Store

LEGACY = Path(__file__).parent / "legacy_schema"
LEGACY_SCHEMAS = ("before_name_keys", "create_all_last")


def schema_diff(engine: Engine) -> list[object]:
    with engine.connect() as conn:
        return list(compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata()))


def make_legacy(url: str, label: str, dialect: str) -> None:
    """A database as `create_all` made it at that commit, with rows in it (two Spaces and two accounts whose
    names differ only in case: the second of each cannot get its key)."""
    engine = create_engine(url)
    sql = (LEGACY / f"{label}.{dialect}.sql").read_text()
    with engine.begin() as conn:
        for stmt in sql.split(";"):
            if "CREATE" in stmt:
                conn.execute(text(stmt))
        now = "2025-01-01 00:00:00"
        for name in ("alice", "Alice"):  # ids 1 and 2, from the table's own sequence
            conn.execute(text("INSERT INTO accounts (name, kind, fullname, is_admin, created_at) "
                              "VALUES (:n, 'user', '', false, :t)"), {"n": name, "t": now})
        for name in ("app", "App"):
            conn.execute(text("INSERT INTO spaces (owner, name, private, hardware, paused, stage, restart_nonce, "
                              "created_at, last_modified) VALUES ('alice', :n, false, 'cpu-basic', false, "
                              "'RUNNING', 0, :t, :t)"), {"n": name, "t": now})
        conn.execute(text("INSERT INTO space_kv (space_id, kind, key, value, updated_at) "
                          "VALUES (1, 'variable', 'MODE', 'kept', :t)"), {"t": now})
        conn.execute(text("INSERT INTO tokens (user_id, digest, display_name, role, created_at) "
                          "VALUES (1, 'd1', 'ci', 'write', :t)"), {"t": now})
    engine.dispose()


def check_adopted(store: Store) -> None:
    """The legacy rows are all there, keys filled where free, the schema at head and equal to the models."""
    with store.engine.connect() as conn:
        assert schema.current(conn) == schema.head()
    assert schema_diff(store.engine) == []
    assert [(s.name, s.stage) for s in store.list_spaces()][:2] == [("app", "RUNNING"), ("App", "RUNNING")]
    assert store.kv(1, "variable")["MODE"].value == "kept"
    with store.session() as s:
        assert [r.subdomain for r in s.query(Space).order_by(Space.id)][:2] == ["alice-app", None]
        assert [r.name_key for r in s.query(Account).order_by(Account.id)][:2] == ["alice", None]
        assert s.execute(text("SELECT display_name FROM tokens")).scalar_one() == "ci"


def add_rows(store: Store) -> None:
    """The adopted tables take new rows (sequences, defaults, the ORM's keys)."""
    with store.session() as s:
        s.add(Space(owner="bob", name="new"))
        s.add(Account(name="Bob"))
    with store.session() as s:
        assert store.space_at(s, "bob-new") is not None and store.account_like(s, "bob") is not None


def test_an_empty_database_upgrades_to_head(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path}/s.db")
    with store.engine.connect() as conn:
        assert schema.current(conn) == schema.head()
        tables = set(conn.execute(text("SELECT name FROM sqlite_master WHERE type='table'")).scalars())
    assert tables == set(metadata().tables) | {"alembic_version"}


def test_head_matches_the_models(tmp_path: Path) -> None:
    """Fails when a model in state/store.py or state/cluster.py changed without a new revision."""
    assert schema_diff(Store(f"sqlite:///{tmp_path}/s.db").engine) == []


def test_opening_again_changes_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    with Store(url).session() as s:
        s.add(Space(owner="alice", name="app"))
    again = Store(url)
    assert [s.space_id for s in again.list_spaces()] == ["alice/app"]
    with again.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar_one() == 1


@pytest.mark.parametrize("label", LEGACY_SCHEMAS)
def test_a_create_all_database_is_adopted_with_its_data(tmp_path: Path, label: str) -> None:
    url = f"sqlite:///{tmp_path}/legacy.db"
    make_legacy(url, label, "sqlite")
    store = Store(url)
    check_adopted(store)
    add_rows(store)
    check_adopted(Store(url))  # and opens again as a migrated database


def test_processes_opening_one_database_at_once_migrate_it_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    code = f"from state.store import Store; Store({url!r})"
    procs = [subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True) for _ in range(4)]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, errors
    with create_engine(url).connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [schema.head()]
