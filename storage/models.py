"""SQLAlchemy 2 ORM tables: the one source of truth for subscriptions and deliveries.

All timestamps are stored in UTC. Local times of day are stored as ``HH:MM``
strings next to their IANA time zone; ``next_due_at`` is the UTC instant the
next post is due and is what the scheduler queries.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from bot.schedule import utcnow  # also the repositories' clock


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that always comes back timezone-aware in UTC (SQLite forgets zones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(timezone.utc)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


SLACK_SDK_TABLES = ("slack_installations", "slack_bots", "slack_oauth_states")


def include_object(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
    """For Alembic autogenerate: leave out slack_sdk's tables (revision 0002 creates them, no model maps them)."""
    return not (type_ == "table" and name in SLACK_SDK_TABLES)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON, list[Any]: JSON}


class Workspace(Base):
    """A Slack team or Discord guild the bot is installed in."""

    __tablename__ = "workspaces"
    __table_args__ = (UniqueConstraint("platform", "workspace_id", name="uq_workspace"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    platform: Mapped[str] = mapped_column(String(16))
    workspace_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str | None] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    default_timezone: Mapped[str | None] = mapped_column(String(64))
    installed_at: Mapped[datetime] = mapped_column(default=utcnow)
    deactivated_at: Mapped[datetime | None]
    deactivated_reason: Mapped[str | None] = mapped_column(String(200))


class ChannelSubscription(Base):
    """A channel's daily trending post."""

    __tablename__ = "channel_subscriptions"
    __table_args__ = (
        UniqueConstraint("platform", "workspace_id", "channel_id", name="uq_channel_subscription"),
        Index("ix_channel_due", "enabled", "next_due_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    platform: Mapped[str] = mapped_column(String(16))
    workspace_id: Mapped[str] = mapped_column(String(64))
    channel_id: Mapped[str] = mapped_column(String(64))
    created_by: Mapped[str | None] = mapped_column(String(64))
    post_time: Mapped[str] = mapped_column(String(5))
    timezone: Mapped[str] = mapped_column(String(64))
    top_n: Mapped[int] = mapped_column(Integer, default=10)
    post_when_empty: Mapped[bool] = mapped_column(Boolean, default=False)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    paused_reason: Mapped[str | None] = mapped_column(String(200))
    next_due_at: Mapped[datetime | None]
    last_delivered_at: Mapped[datetime | None]
    last_feed_day: Mapped[date | None] = mapped_column(Date)  # the feed day last posted (no repeats)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class UserProfile(Base):
    """A person's alert settings; their topics hang off it."""

    __tablename__ = "user_profiles"
    __table_args__ = (
        UniqueConstraint("platform", "workspace_id", "user_id", name="uq_user_profile"),
        Index("ix_user_due", "alerts_enabled", "next_due_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    platform: Mapped[str] = mapped_column(String(16))
    workspace_id: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str] = mapped_column(String(64))
    alert_time: Mapped[str | None] = mapped_column(String(5))
    timezone: Mapped[str | None] = mapped_column(String(64))
    alerts_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    paused_reason: Mapped[str | None] = mapped_column(String(200))
    pending_notice: Mapped[str | None] = mapped_column(Text)
    next_due_at: Mapped[datetime | None]
    last_delivered_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    topics: Mapped[list[TopicSubscription]] = relationship(
        back_populates="profile", cascade="all, delete-orphan", order_by="TopicSubscription.id"
    )


class TopicSubscription(Base):
    """One normalized topic a person follows."""

    __tablename__ = "topic_subscriptions"
    __table_args__ = (UniqueConstraint("profile_id", "topic", name="uq_profile_topic"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    profile_id: Mapped[int] = mapped_column(ForeignKey("user_profiles.id", ondelete="CASCADE"), index=True)
    topic: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    profile: Mapped[UserProfile] = relationship(back_populates="topics")


class PaperRecord(Base):
    """The stored copy of every paper seen, so answers survive an upstream outage."""

    __tablename__ = "papers"

    paper_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    title: Mapped[str] = mapped_column(Text)
    summary: Mapped[str] = mapped_column(Text, default="")
    authors: Mapped[list[Any]] = mapped_column(JSON, default=list)
    author_count: Mapped[int] = mapped_column(Integer, default=0)
    published_at: Mapped[datetime | None]
    upvotes: Mapped[int] = mapped_column(Integer, default=0)
    ai_summary: Mapped[str | None] = mapped_column(Text)
    ai_keywords: Mapped[list[Any]] = mapped_column(JSON, default=list)
    github_repo: Mapped[str | None] = mapped_column(String(500))
    github_stars: Mapped[int | None] = mapped_column(Integer)
    project_page: Mapped[str | None] = mapped_column(String(500))
    organization: Mapped[str | None] = mapped_column(String(200))
    fetched_at: Mapped[datetime] = mapped_column(default=utcnow)


class FeedEntry(Base):
    """A paper's place in the daily feed of one day."""

    __tablename__ = "feed_entries"

    feed_date: Mapped[date] = mapped_column(Date, primary_key=True)
    paper_id: Mapped[str] = mapped_column(ForeignKey("papers.paper_id", ondelete="CASCADE"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)
    fetched_at: Mapped[datetime] = mapped_column(default=utcnow)


class Delivery(Base):
    """The ledger: one row per (kind, subscription, local day), claimed before sending."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("kind", "subscription_id", "day", name="uq_delivery_once_a_day"),
        Index("ix_delivery_status", "status", "claimed_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # "channel" or "alert"
    subscription_id: Mapped[int] = mapped_column(Integer)
    day: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(16))  # claimed, sent, skipped, failed, paused
    due_at: Mapped[datetime | None]  # the scheduled instant, for the grace window on retries
    claimed_by: Mapped[str | None] = mapped_column(String(100))
    claimed_at: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    paper_count: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(String(500))


class SentPaper(Base):
    """Papers already sent to a person, so an alert never repeats one."""

    __tablename__ = "sent_papers"

    profile_id: Mapped[int] = mapped_column(ForeignKey("user_profiles.id", ondelete="CASCADE"), primary_key=True)
    paper_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    sent_at: Mapped[datetime] = mapped_column(default=utcnow)


class ControlTopic(Base):
    """A topic too long to travel in a control id, under its short key (``adapters.controls``)."""

    __tablename__ = "control_topics"

    key: Mapped[str] = mapped_column(String(32), primary_key=True)
    topic: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PaperFeedback(Base):
    """A person's vote on a paper for one topic (👍 up, 👎 down, or "fewer" like this).

    ``terms`` keeps the paper's weighted terms as they were when the vote was
    given (see :mod:`bot.feedback`), so learning needs no other table and
    votes on papers from the offline sample work too. One vote per person,
    topic and paper: voting again replaces it.
    """

    __tablename__ = "paper_feedback"
    __table_args__ = (
        UniqueConstraint("profile_id", "topic", "paper_id", name="uq_feedback_once"),
        Index("ix_feedback_profile_topic", "profile_id", "topic"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    profile_id: Mapped[int] = mapped_column(ForeignKey("user_profiles.id", ondelete="CASCADE"))
    topic: Mapped[str] = mapped_column(String(200))
    paper_id: Mapped[str] = mapped_column(String(100))
    vote: Mapped[str] = mapped_column(String(8))
    title: Mapped[str] = mapped_column(Text, default="")
    terms: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
