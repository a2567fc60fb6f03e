"""The initial schema: every table as `create_all` made it (accounts with name_key, spaces with subdomain,
passwords, browser_sessions, nodes, assignments …).

Also adopts databases made by `create_all` before migrations existed (they have tables but no alembic_version,
so alembic runs this revision on them): a table that exists is kept, and only what it lacks is added (the
nullable columns and the indexes added later, e.g. accounts.name_key, spaces.subdomain). Filling those columns
is `state.store.fill_name_keys`, run after every upgrade.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _table(name: str, *elements: Any) -> None:
    """op.create_table, or, where `name` exists (a create_all database), add the columns it lacks."""
    inspector = sa.inspect(op.get_bind())
    if not inspector.has_table(name):
        op.create_table(name, *elements)
        return
    have = {c["name"] for c in inspector.get_columns(name)}
    for col in elements:
        if isinstance(col, sa.Column) and col.name not in have:
            if not col.nullable:
                raise RuntimeError(f"cannot adopt table {name}: it lacks the required column {col.name}")
            op.add_column(name, col)


def _index(name: str, table: str, columns: list[str], unique: bool = False) -> None:
    if name not in {ix["name"] for ix in sa.inspect(op.get_bind()).get_indexes(table)}:
        op.create_index(name, table, columns, unique=unique)


def upgrade() -> None:
    _table("accounts",
           sa.Column("id", sa.Integer(), nullable=False),
           sa.Column("name", sa.String(length=96), nullable=False),
           sa.Column("name_key", sa.String(length=96), nullable=True),
           sa.Column("kind", sa.String(length=8), nullable=False),
           sa.Column("fullname", sa.String(length=200), nullable=False),
           sa.Column("is_admin", sa.Boolean(), nullable=False),
           sa.Column("created_at", sa.DateTime(), nullable=False),
           sa.PrimaryKeyConstraint("id"),
           sa.UniqueConstraint("name"))
    _index("uq_accounts_name_key", "accounts", ["name_key"], unique=True)
    _table("nodes",
           sa.Column("name", sa.String(length=100), nullable=False),
           sa.Column("address", sa.String(length=255), nullable=False),
           sa.Column("cpus", sa.Double(), nullable=False),
           sa.Column("memory_gb", sa.Double(), nullable=False),
           sa.Column("gpus", sa.Integer(), nullable=False),
           sa.Column("accelerator", sa.String(length=32), nullable=True),
           sa.Column("labels", sa.String(), nullable=False),
           sa.Column("zerogpu_url", sa.String(), nullable=True),
           sa.Column("cordoned", sa.Boolean(), nullable=False),
           sa.Column("draining", sa.Boolean(), nullable=False),
           sa.Column("lost_at", sa.DateTime(), nullable=True),
           sa.Column("registered_at", sa.DateTime(), nullable=False),
           sa.PrimaryKeyConstraint("name"))
    _table("spaces",
           sa.Column("id", sa.Integer(), nullable=False),
           sa.Column("owner", sa.String(length=96), nullable=False),
           sa.Column("name", sa.String(length=96), nullable=False),
           sa.Column("subdomain", sa.String(length=200), nullable=True),
           sa.Column("private", sa.Boolean(), nullable=False),
           sa.Column("sdk", sa.String(length=16), nullable=True),
           sa.Column("hardware", sa.String(length=32), nullable=False),
           sa.Column("sleep_time", sa.Integer(), nullable=True),
           sa.Column("paused", sa.Boolean(), nullable=False),
           sa.Column("head_sha", sa.String(length=40), nullable=True),
           sa.Column("stage", sa.String(length=24), nullable=False),
           sa.Column("error", sa.String(), nullable=True),
           sa.Column("serving_sha", sa.String(length=40), nullable=True),
           sa.Column("artifact_dir", sa.String(), nullable=True),
           sa.Column("direct_port", sa.Integer(), nullable=True),
           sa.Column("restart_nonce", sa.Integer(), nullable=False),
           sa.Column("created_at", sa.DateTime(), nullable=False),
           sa.Column("last_modified", sa.DateTime(), nullable=False),
           sa.PrimaryKeyConstraint("id"),
           sa.UniqueConstraint("direct_port"),
           sa.UniqueConstraint("owner", "name"))
    _index("uq_spaces_subdomain", "spaces", ["subdomain"], unique=True)
    _table("assignments",
           sa.Column("instance_id", sa.String(length=200), nullable=False),
           sa.Column("space_id", sa.String(length=200), nullable=False),
           sa.Column("sha", sa.String(length=40), nullable=False),
           sa.Column("node", sa.String(length=100), nullable=False),
           sa.Column("epoch", sa.Integer(), nullable=False),
           sa.Column("desired", sa.String(length=8), nullable=False),
           sa.Column("hardware", sa.String(length=32), nullable=False),
           sa.Column("spec", sa.String(), nullable=False),
           sa.Column("reported", sa.String(length=8), nullable=False),
           sa.Column("upstream_host", sa.String(length=255), nullable=True),
           sa.Column("upstream_port", sa.Integer(), nullable=True),
           sa.Column("pid", sa.Integer(), nullable=True),
           sa.Column("exit_reason", sa.String(), nullable=True),
           sa.Column("updated_at", sa.DateTime(), nullable=False),
           sa.ForeignKeyConstraint(["node"], ["nodes.name"], ondelete="CASCADE"),
           sa.PrimaryKeyConstraint("instance_id"))
    _index("ix_assignments_node_desired", "assignments", ["node", "desired"])
    _index("ix_assignments_space_id", "assignments", ["space_id"])
    _table("memberships",
           sa.Column("id", sa.Integer(), nullable=False),
           sa.Column("org_id", sa.Integer(), nullable=False),
           sa.Column("user_id", sa.Integer(), nullable=False),
           sa.Column("role", sa.String(length=8), nullable=False),
           sa.ForeignKeyConstraint(["org_id"], ["accounts.id"], ondelete="CASCADE"),
           sa.ForeignKeyConstraint(["user_id"], ["accounts.id"], ondelete="CASCADE"),
           sa.PrimaryKeyConstraint("id"),
           sa.UniqueConstraint("org_id", "user_id"))
    _table("passwords",
           sa.Column("account_id", sa.Integer(), nullable=False),
           sa.Column("hash", sa.String(length=200), nullable=False),
           sa.Column("updated_at", sa.DateTime(), nullable=False),
           sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], ondelete="CASCADE"),
           sa.PrimaryKeyConstraint("account_id"))
    _table("space_domains",
           sa.Column("id", sa.Integer(), nullable=False),
           sa.Column("space_id", sa.Integer(), nullable=False),
           sa.Column("domain", sa.String(length=253), nullable=False),
           sa.Column("created_at", sa.DateTime(), nullable=False),
           sa.ForeignKeyConstraint(["space_id"], ["spaces.id"], ondelete="CASCADE"),
           sa.PrimaryKeyConstraint("id"),
           sa.UniqueConstraint("domain"))
    _table("space_kv",
           sa.Column("id", sa.Integer(), nullable=False),
           sa.Column("space_id", sa.Integer(), nullable=False),
           sa.Column("kind", sa.String(length=8), nullable=False),
           sa.Column("key", sa.String(length=200), nullable=False),
           sa.Column("value", sa.String(), nullable=False),
           sa.Column("description", sa.String(), nullable=True),
           sa.Column("updated_at", sa.DateTime(), nullable=False),
           sa.ForeignKeyConstraint(["space_id"], ["spaces.id"], ondelete="CASCADE"),
           sa.PrimaryKeyConstraint("id"),
           sa.UniqueConstraint("space_id", "kind", "key"))
    _table("tokens",
           sa.Column("id", sa.Integer(), nullable=False),
           sa.Column("user_id", sa.Integer(), nullable=False),
           sa.Column("digest", sa.String(length=64), nullable=False),
           sa.Column("display_name", sa.String(length=100), nullable=False),
           sa.Column("role", sa.String(length=8), nullable=False),
           sa.Column("created_at", sa.DateTime(), nullable=False),
           sa.ForeignKeyConstraint(["user_id"], ["accounts.id"], ondelete="CASCADE"),
           sa.PrimaryKeyConstraint("id"),
           sa.UniqueConstraint("digest"))
    _table("browser_sessions",
           sa.Column("id", sa.Integer(), nullable=False),
           sa.Column("digest", sa.String(length=64), nullable=False),
           sa.Column("token_id", sa.Integer(), nullable=False),
           sa.Column("created_at", sa.DateTime(), nullable=False),
           sa.Column("expires_at", sa.DateTime(), nullable=False),
           sa.ForeignKeyConstraint(["token_id"], ["tokens.id"], ondelete="CASCADE"),
           sa.PrimaryKeyConstraint("id"),
           sa.UniqueConstraint("digest"))
    _index("ix_browser_sessions_token_id", "browser_sessions", ["token_id"])


def downgrade() -> None:
    for table in ("browser_sessions", "tokens", "space_kv", "space_domains", "passwords", "memberships",
                  "assignments", "spaces", "nodes", "accounts"):
        op.drop_table(table)
