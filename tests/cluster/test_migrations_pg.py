"""tests/unit/test_migrations.py's checks on a real PostgreSQL: an empty database upgrades to head and equals
the models; databases `create_all` made before migrations are adopted with their data; processes that open
one database at once migrate it once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import text

from state import schema
from state.models import metadata
from state.store import Store
from tests.unit.test_migrations import LEGACY_SCHEMAS, add_rows, check_adopted, make_legacy, schema_diff


def test_an_empty_postgresql_upgrades_to_head_and_equals_the_models(fresh_postgres_url: str) -> None:
    store = Store(fresh_postgres_url)
    with store.engine.connect() as conn:
        assert schema.current(conn) == schema.head()
        tables = set(conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")).scalars())
    assert tables == set(metadata().tables) | {"alembic_version"}
    assert schema_diff(store.engine) == []
    store.engine.dispose()


@pytest.mark.parametrize("label", LEGACY_SCHEMAS)
def test_a_create_all_postgresql_is_adopted_with_its_data(fresh_postgres_url: str, label: str) -> None:
    make_legacy(fresh_postgres_url, label, "postgresql")
    store = Store(fresh_postgres_url)
    check_adopted(store)
    add_rows(store)
    store.engine.dispose()
    again = Store(fresh_postgres_url)
    check_adopted(again)
    again.engine.dispose()


def test_stores_opened_at_once_migrate_once(fresh_postgres_url: str) -> None:
    with ThreadPoolExecutor(4) as pool:
        stores = list(pool.map(lambda _: Store(fresh_postgres_url), range(4)))
    with stores[0].engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [schema.head()]
    for store in stores:
        store.engine.dispose()
