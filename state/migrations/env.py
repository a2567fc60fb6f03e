"""Alembic environment. `state.schema.upgrade` hands it an open connection (config.attributes["connection"]);
the alembic command line (`alembic -c state/migrations/alembic.ini …`) connects to `-x url=…` or
$SPACEHOST_DATABASE_URL."""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import Connection, create_engine

from state.models import metadata

config = context.config
target_metadata = metadata()  # every module of the state package: new ones need no import here


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, compare_type=True,
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or os.environ.get("SPACEHOST_DATABASE_URL")
    if not url:
        raise SystemExit("give the database: -x url=… or SPACEHOST_DATABASE_URL")
    return url


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
elif (conn := config.attributes.get("connection")) is not None:
    _run(conn)
else:
    with create_engine(_url()).begin() as conn:
        _run(conn)
