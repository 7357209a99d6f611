"""paper_feedback: a person's 👍 / 👎 / "fewer like this" votes per topic and paper

Revision ID: 0004_paper_feedback
Revises: 0003_control_topics
Create Date: 2026-11-23 19:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_paper_feedback"
down_revision = "0003_control_topics"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "paper_feedback",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("profile_id", sa.Integer(), nullable=False),
        sa.Column("topic", sa.String(length=200), nullable=False),
        sa.Column("paper_id", sa.String(length=100), nullable=False),
        sa.Column("vote", sa.String(length=8), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("terms", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["profile_id"], ["user_profiles.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("profile_id", "topic", "paper_id", name="uq_feedback_once"),
    )
    with op.batch_alter_table("paper_feedback", schema=None) as batch_op:
        batch_op.create_index("ix_feedback_profile_topic", ["profile_id", "topic"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("paper_feedback", schema=None) as batch_op:
        batch_op.drop_index("ix_feedback_profile_topic")
    op.drop_table("paper_feedback")
