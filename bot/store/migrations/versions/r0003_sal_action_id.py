"""SAL: the action an entry belongs to (one chat command or webhook event: its entries share
the id).

Revision ID: r0003
Revises: r0002
"""

import sqlalchemy as sa
from alembic import op

revision = "r0003"
down_revision = "r0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sal") as batch:
        batch.add_column(sa.Column("action_id", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("sal") as batch:
        batch.drop_column("action_id")
