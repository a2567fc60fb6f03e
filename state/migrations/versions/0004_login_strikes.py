"""login_strikes: failed password sign-ins per client address and per account (state/login_strikes.py), in the
store so a restarted hub remembers them and the servers of a cluster share them.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('login_strikes',
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('key', sa.String(length=200), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('since', sa.Double(), nullable=False),
    sa.Column('until', sa.Double(), nullable=False),
    sa.Column('level', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('kind', 'key')
    )
    with op.batch_alter_table('login_strikes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_login_strikes_since'), ['since'], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('login_strikes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_login_strikes_since'))
    op.drop_table('login_strikes')
