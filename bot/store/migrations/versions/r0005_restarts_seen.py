"""The rollouts (ReplicaSets, Helm revisions) the restart monitor has seen, so a restart
nobody deployed is announced once, also across a restart of the bot.

Revision ID: r0005
Revises: r0004
"""

import sqlalchemy as sa
from alembic import op

revision = "r0005"
down_revision = "r0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "restarts_seen",
        sa.Column("component", sa.Text, primary_key=True),
        sa.Column("env", sa.Text, primary_key=True),
        sa.Column("item", sa.Text, primary_key=True),  # "rs/<name>" or "helm/<release>/<rev>"
        sa.Column("info", sa.Text, nullable=False),  # JSON: owner, revision, images
        sa.Column("first_seen", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("restarts_seen")
