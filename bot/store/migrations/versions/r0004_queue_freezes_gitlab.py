"""The deploy queue, freezes (and which of their starts and ends were announced), and the
GitLab deployment records waiting to be sent.

Revision ID: r0004
Revises: r0003
"""

import sqlalchemy as sa
from alembic import op

revision = "r0004"
down_revision = "r0003"
branch_labels = None
depends_on = None


def _id() -> sa.Column[int]:
    return sa.Column("id", sa.Integer, primary_key=True, autoincrement=True)


def upgrade() -> None:
    op.create_table(
        "deploy_queue",
        _id(),
        sa.Column("component", sa.Text, nullable=False),
        sa.Column("env", sa.Text, nullable=False),
        sa.Column("command", sa.Text, nullable=False),  # the chat line, as typed
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("nick", sa.Text, nullable=False),
        sa.Column("adapter", sa.Text, nullable=False),
        sa.Column("room", sa.Text, nullable=False),
        sa.Column("private", sa.Integer, nullable=False, server_default="0"),
        sa.Column("identities", sa.Text, nullable=False),  # JSON list, strongest first
        sa.Column("behind", sa.Text, nullable=False, server_default=""),
        sa.Column("state", sa.Text, nullable=False, server_default="queued"),
        sa.Column("created_at", sa.Text, nullable=False),
        sa.Column("updated_at", sa.Text, nullable=False),
    )
    op.create_index("deploy_queue_state", "deploy_queue", ["state", "id"])
    op.create_table(
        "freezes",
        _id(),
        sa.Column("envs", sa.Text, nullable=False),  # comma-separated, or "*"
        sa.Column("starts_at", sa.Text, nullable=False),  # ISO 8601 UTC
        sa.Column("ends_at", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("author", sa.Text, nullable=False),
        sa.Column("tasks", sa.Text, nullable=False, server_default=""),
        sa.Column("lifted_at", sa.Text),
        sa.Column("lifted_by", sa.Text),
    )
    op.create_table(
        "freeze_notices",
        sa.Column("key", sa.Text, primary_key=True),  # "<freeze key>:start" / ":end"
        sa.Column("at", sa.Text, nullable=False),
    )
    op.create_table(
        "gitlab_deployments",
        _id(),
        sa.Column("deploy_id", sa.Integer, nullable=False),
        sa.Column("project", sa.Text, nullable=False),
        sa.Column("environment", sa.Text, nullable=False),
        sa.Column("ref", sa.Text, nullable=False),
        sa.Column("sha", sa.Text, nullable=False),
        sa.Column("tag", sa.Integer, nullable=False, server_default="0"),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False, server_default="deploy"),  # or rollback
        sa.Column("status", sa.Text, nullable=False),  # the newest status to tell GitLab
        sa.Column("sent_status", sa.Text),  # what GitLab last accepted
        sa.Column("gitlab_id", sa.Integer),  # GitLab's deployment id once created
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text),
        sa.Column("created_at", sa.Text, nullable=False),
    )
    op.create_index("gitlab_deployments_deploy", "gitlab_deployments", ["deploy_id"], unique=True)


def downgrade() -> None:
    op.drop_table("gitlab_deployments")
    op.drop_table("freeze_notices")
    op.drop_table("freezes")
    op.drop_index("deploy_queue_state", "deploy_queue")
    op.drop_table("deploy_queue")
