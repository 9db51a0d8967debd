"""Baseline: the schema of SQLite stores at `PRAGMA user_version` 7, for both engines.

Revision ID: r0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "r0001"
down_revision = None
branch_labels = None
depends_on = None


def _id() -> sa.Column[int]:
    return sa.Column("id", sa.Integer, primary_key=True, autoincrement=True)


def upgrade() -> None:
    op.create_table(
        "sal",
        _id(),
        sa.Column("ts", sa.Text, nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("component", sa.Text),
        sa.Column("env", sa.Text),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("from_version", sa.Text),
        sa.Column("to_version", sa.Text),
        sa.Column("commit_sha", sa.Text),
        sa.Column("mr_url", sa.Text),
        sa.Column("tasks", sa.Text, nullable=False, server_default=""),
        sa.Column("result", sa.Text),
        sa.Column("log_url", sa.Text),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("sal_project", sa.Text),
    )
    op.create_index("sal_component", "sal", ["component", "env", "id"])
    op.create_table(
        "sal_delivery",
        sa.Column("entry_id", sa.Integer, sa.ForeignKey("sal.id"), nullable=False),
        sa.Column("sink", sa.Text, nullable=False),
        sa.Column("delivered_at", sa.Text),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text),
        sa.PrimaryKeyConstraint("entry_id", "sink"),
    )
    op.create_table(
        "outbox",
        _id(),
        sa.Column("adapter", sa.Text),
        sa.Column("room", sa.Text, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("key", sa.Text),
        sa.Column("final", sa.Integer, nullable=False, server_default="0"),
        sa.Column("priority", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("sent_at", sa.Float),
        sa.Column("short", sa.Text),
    )
    op.create_index("outbox_pending", "outbox", ["sent_at", "room", "priority", "id"])
    op.create_table(
        "locks",
        sa.Column("component", sa.Text, nullable=False),
        sa.Column("env", sa.Text, nullable=False),
        sa.Column("owner", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("created_at", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("component", "env"),
    )
    op.create_table(
        "events",
        _id(),
        sa.Column("dedupe_key", sa.Text, unique=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.Column("received_at", sa.Float, nullable=False),
        sa.Column("status", sa.Text, nullable=False, server_default="pending"),
        sa.Column("error", sa.Text),
    )
    op.create_index("events_pending", "events", ["status", "id"])
    op.create_table(
        "pipelines",
        sa.Column("project", sa.Text, nullable=False),
        sa.Column("pipeline_id", sa.BigInteger, nullable=False),
        sa.Column("component", sa.Text),
        sa.Column("ref", sa.Text),
        sa.Column("sha", sa.Text),
        sa.Column("status", sa.Text),
        sa.Column("stage", sa.Text),
        sa.Column("version", sa.Text),
        sa.Column("url", sa.Text),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("project", "pipeline_id"),
    )
    op.create_index("pipelines_sha", "pipelines", ["sha"])
    op.create_table(
        "merge_requests",
        sa.Column("project", sa.Text, nullable=False),
        sa.Column("iid", sa.BigInteger, nullable=False),
        sa.Column("component", sa.Text),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("url", sa.Text),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("project", "iid"),
    )
    op.create_table(
        "deploys",
        _id(),
        sa.Column("component", sa.Text, nullable=False),
        sa.Column("env", sa.Text, nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("version", sa.Text),
        sa.Column("from_version", sa.Text),
        sa.Column("commit_sha", sa.Text),
        sa.Column("mr_url", sa.Text),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("tasks", sa.Text, nullable=False, server_default=""),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("result", sa.Text),
        sa.Column("log_path", sa.Text, nullable=False, server_default=""),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("finished_at", sa.Float),
        sa.Column("error", sa.Text),
    )
    op.create_index("deploys_target", "deploys", ["component", "env", "id"])
    op.create_index("deploys_state", "deploys", ["state"])
    op.create_table(
        "alerts",
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("component", sa.Text, nullable=False),
        sa.Column("env", sa.Text, nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("first_seen", sa.Float, nullable=False),
        sa.Column("since", sa.Float),
        sa.Column("raised_at", sa.Float),
        sa.Column("reminded_at", sa.Float),
        sa.PrimaryKeyConstraint("kind", "component", "env", "detail"),
    )
    op.create_table(
        "live_seen",
        sa.Column("component", sa.Text, nullable=False),
        sa.Column("env", sa.Text, nullable=False),
        sa.Column("version", sa.Text, nullable=False),
        sa.Column("first_seen", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("component", "env"),
    )


def downgrade() -> None:
    for table in (
        "live_seen", "alerts", "deploys", "merge_requests", "pipelines", "events", "locks",
        "outbox", "sal_delivery", "sal",
    ):  # fmt: skip
        op.drop_table(table)
