"""Acknowledged non-deploys (`!ack`), one per component and environment; the last
`!prune plan` of each component (what `!prune apply` may delete).

Revision ID: r0006
Revises: r0005
"""

import sqlalchemy as sa
from alembic import op

revision = "r0006"
down_revision = "r0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "acks",
        sa.Column("component", sa.Text, primary_key=True),
        sa.Column("env", sa.Text, primary_key=True),
        sa.Column("version", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("author", sa.Text, nullable=False),
        sa.Column("tasks", sa.Text, nullable=False, server_default=""),
        sa.Column("created_at", sa.Text, nullable=False),
    )
    op.create_table(
        "prune_plans",
        sa.Column("component", sa.Text, primary_key=True),
        sa.Column("versions", sa.Text, nullable=False),  # JSON list, oldest first
        sa.Column("made_at", sa.Text, nullable=False),  # ISO 8601 UTC
        sa.Column("author", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("prune_plans")
    op.drop_table("acks")
