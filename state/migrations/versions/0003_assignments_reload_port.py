"""assignments.reload_port: the port of a node's relay to an instance's reload server (hot reload in cluster
mode: state/cluster.py); NULL where the node has none for it (instances placed before this revision included).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("assignments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reload_port", sa.Integer(), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("assignments", schema=None) as batch_op:
        batch_op.drop_column("reload_port")
