"""The cluster fixtures start real servers: PostgreSQL answers SQL through SQLAlchemy, Redis answers commands,
and a key with a TTL expires (heartbeats rely on it)."""

from __future__ import annotations

import time

import redis
import sqlalchemy as sa


def test_postgres_answers_sql(postgres_url: str) -> None:
    assert postgres_url.startswith("postgresql+psycopg://")
    engine = sa.create_engine(postgres_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE IF NOT EXISTS probe (k text PRIMARY KEY, v int)"))
            conn.execute(sa.text("INSERT INTO probe VALUES ('a', 1) ON CONFLICT (k) DO UPDATE SET v = probe.v + 1"))
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT v FROM probe WHERE k = 'a'")).scalar_one() >= 1
            assert "PostgreSQL" in conn.execute(sa.text("SELECT version()")).scalar_one()
    finally:
        engine.dispose()


def test_fresh_database_is_empty(fresh_postgres_url: str) -> None:
    engine = sa.create_engine(fresh_postgres_url)
    try:
        assert sa.inspect(engine).get_table_names() == []
    finally:
        engine.dispose()


def test_redis_answers_and_expires_keys(redis_url: str) -> None:
    assert redis_url.startswith("redis://127.0.0.1:")
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.ping()
        client.set("spacehost:probe", "1", px=200)
        assert client.get("spacehost:probe") == b"1"
        time.sleep(0.4)
        assert client.get("spacehost:probe") is None
    finally:
        client.close()
