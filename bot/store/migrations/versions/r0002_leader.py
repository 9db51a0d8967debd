"""Replicas: the leader lease row, the leadership epoch of each deploy and outbox claim,
and the store-side deploy guard.

Revision ID: r0002
Revises: r0001
"""

import sqlalchemy as sa
from alembic import op

revision = "r0002"
down_revision = "r0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "leader_lease",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("holder", sa.Text, nullable=False),
        sa.Column("epoch", sa.Integer, nullable=False),
        sa.Column("renewed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    with op.batch_alter_table("deploys") as batch:
        batch.add_column(sa.Column("epoch", sa.Integer, nullable=False, server_default="0"))
    with op.batch_alter_table("outbox") as batch:  # the leader that claimed a line to send it
        batch.add_column(sa.Column("claimed_epoch", sa.Integer))
    # the deploy guard: one active deploy per component+environment, across replicas (rows a
    # crash left active twice stay for the recovery, which marks them interrupted: only the
    # newest of each pair is kept active here, the older one is marked now)
    op.execute(
        "UPDATE deploys SET state='interrupted', error='bot restarted (superseded)'"
        " WHERE state IN ('requested','applying','verifying') AND id NOT IN"
        " (SELECT MAX(id) FROM deploys WHERE state IN ('requested','applying','verifying')"
        " GROUP BY component, env)"
    )
    active = sa.text("state IN ('requested','applying','verifying')")
    op.create_index(
        "deploys_one_active", "deploys", ["component", "env"], unique=True,
        sqlite_where=active, postgresql_where=active,
    )  # fmt: skip


def downgrade() -> None:
    op.drop_index("deploys_one_active", "deploys")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("claimed_epoch")
    with op.batch_alter_table("deploys") as batch:
        batch.drop_column("epoch")
    op.drop_table("leader_lease")
