"""control_topics: long topics under the short key their buttons carry

Revision ID: 0003_control_topics
Revises: 0002
Create Date: 2026-11-23 19:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_control_topics"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "control_topics",
        sa.Column("key", sa.String(length=32), nullable=False),
        sa.Column("topic", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )


def downgrade() -> None:
    op.drop_table("control_topics")
