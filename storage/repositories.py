"""Repositories: the storage operations the core and the scheduler depend on.

Each method is one transaction. Repositories speak in neutral values
(:mod:`bot.models`) and small frozen records defined here, never in ORM
objects, so callers cannot trigger lazy loads outside a session.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date, datetime, time

from typing import Any

from cachetools import TTLCache
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.models import ChannelRef, Paper, UserRef
from storage.control_topics import ControlTopics
from storage.db import Database, insert_for, upgrade_database
from storage.feedback import FeedbackStore
from storage.models import (
    ChannelSubscription,
    FeedEntry,
    PaperRecord,
    TopicSubscription,
    UserProfile,
    Workspace,
    utcnow,
)


_insert = insert_for
_UNSET = object()


# --- records -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChannelSetting:
    """A channel's daily post as stored."""

    id: int
    channel: ChannelRef
    post_time: time
    timezone: str
    enabled: bool
    top_n: int
    post_when_empty: bool
    created_by: str | None
    paused_reason: str | None
    next_due_at: datetime | None
    last_delivered_at: datetime | None


@dataclass(frozen=True, slots=True)
class AlertSetting:
    """A person's alert settings as stored (times None mean the workspace default)."""

    id: int
    user: UserRef
    alert_time: time | None
    timezone: str | None
    enabled: bool
    paused_reason: str | None
    next_due_at: datetime | None
    topics: tuple[str, ...]


class TopicChange(enum.Enum):
    ADDED = "added"
    ALREADY = "already"
    LIMIT = "limit"
    REMOVED = "removed"
    MISSING = "missing"


def _time(value: str | None) -> time | None:
    return time.fromisoformat(value) if value else None


def _channel_setting(row: ChannelSubscription) -> ChannelSetting:
    return ChannelSetting(
        id=row.id,
        channel=ChannelRef(row.platform, row.workspace_id, row.channel_id),
        post_time=time.fromisoformat(row.post_time),
        timezone=row.timezone,
        enabled=row.enabled,
        top_n=row.top_n,
        post_when_empty=row.post_when_empty,
        created_by=row.created_by,
        paused_reason=row.paused_reason,
        next_due_at=row.next_due_at,
        last_delivered_at=row.last_delivered_at,
    )


# --- papers --------------------------------------------------------------------------


def paper_from_record(row: PaperRecord, feed_date: date | None = None) -> Paper:
    return Paper(
        paper_id=row.paper_id,
        title=row.title,
        summary=row.summary or "",
        authors=tuple(row.authors or ()),
        author_count=row.author_count or len(row.authors or ()),
        published_at=row.published_at,
        upvotes=row.upvotes or 0,
        ai_summary=row.ai_summary,
        ai_keywords=tuple(row.ai_keywords or ()),
        github_repo=row.github_repo,
        github_stars=row.github_stars,
        project_page=row.project_page,
        organization=row.organization,
        feed_date=feed_date,
    )


def _paper_values(paper: Paper, fetched_at: datetime) -> dict:
    return {
        "paper_id": paper.paper_id,
        "title": paper.title,
        "summary": paper.summary,
        "authors": list(paper.authors),
        "author_count": paper.author_count,
        "published_at": paper.published_at,
        "upvotes": paper.upvotes,
        "ai_summary": paper.ai_summary,
        "ai_keywords": list(paper.ai_keywords),
        "github_repo": paper.github_repo,
        "github_stars": paper.github_stars,
        "project_page": paper.project_page,
        "organization": paper.organization,
        "fetched_at": fetched_at,
    }


class PaperStore:
    """The stored copy of papers and of each day's feed."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def save(self, papers: Sequence[Paper], *, fetched_at: datetime | None = None) -> None:
        """Insert or refresh papers (upvotes and optional fields change over time)."""
        if not papers:
            return
        fetched_at = fetched_at or utcnow()
        unique = {p.paper_id: p for p in papers}
        rows = [_paper_values(p, fetched_at) for p in unique.values()]
        async with self._db.transaction() as session:
            stmt = _insert(session)(PaperRecord.__table__)
            refreshed = {c: stmt.excluded[c] for c in rows[0] if c != "paper_id"}
            # One statement executed for many rows: compiled once and cached, unlike a VALUES list.
            await session.execute(stmt.on_conflict_do_update(index_elements=["paper_id"], set_=refreshed), rows)

    async def save_feed(self, day: date, papers: Sequence[Paper], *, fetched_at: datetime | None = None) -> None:
        """Store ``day``'s feed in its order, replacing what was stored for that day."""
        fetched_at = fetched_at or utcnow()
        await self.save(papers, fetched_at=fetched_at)
        async with self._db.transaction() as session:
            await self._store_feed(session, day, papers, fetched_at)

    async def save_batch(self, papers: Sequence[tuple[Paper, datetime]],
                         feeds: Sequence[tuple[date, Sequence[Paper], datetime]] = ()) -> None:
        """Papers (each with when it was fetched) and whole feed days, in one transaction."""
        if not papers and not feeds:
            return
        latest: dict[str, tuple[Paper, datetime]] = {}
        for day, listed, fetched_at in feeds:
            for paper in listed:
                latest[paper.paper_id] = (paper, fetched_at)
        for paper, fetched_at in papers:
            latest[paper.paper_id] = (paper, fetched_at)
        # In id order: two processes upserting overlapping batches on PostgreSQL take row locks in
        # the same order, so they queue instead of deadlocking.
        rows = [_paper_values(*latest[pid]) for pid in sorted(latest)]
        async with self._db.transaction() as session:
            if rows:
                stmt = _insert(session)(PaperRecord.__table__)
                refreshed = {c: stmt.excluded[c] for c in rows[0] if c != "paper_id"}
                await session.execute(stmt.on_conflict_do_update(index_elements=["paper_id"], set_=refreshed), rows)
            for day, listed, fetched_at in feeds:
                await self._store_feed(session, day, listed, fetched_at)

    @staticmethod
    async def _store_feed(session: AsyncSession, day: date, papers: Sequence[Paper], fetched_at: datetime) -> None:
        positions: dict[str, int] = {}
        for position, paper in enumerate(papers):
            positions.setdefault(paper.paper_id, position)
        rows = [{"feed_date": day, "paper_id": pid, "position": pos, "fetched_at": fetched_at}
                for pid, pos in positions.items()]
        # Upsert, not delete-and-insert: two processes may store the same day at once.
        await session.execute(delete(FeedEntry).where(FeedEntry.feed_date == day,
                                                      FeedEntry.paper_id.not_in(list(positions))))
        if rows:
            stmt = _insert(session)(FeedEntry.__table__)
            await session.execute(stmt.on_conflict_do_update(
                index_elements=["feed_date", "paper_id"],
                set_={"position": stmt.excluded.position, "fetched_at": stmt.excluded.fetched_at}), rows)

    async def latest_feed(self, on_or_before: date | None = None) -> tuple[date, list[Paper], datetime] | None:
        """The most recent stored feed day (not after ``on_or_before``): day, papers, when fetched."""
        async with self._db.read() as session:
            query = select(func.max(FeedEntry.feed_date))
            if on_or_before is not None:
                query = query.where(FeedEntry.feed_date <= on_or_before)
            day = (await session.execute(query)).scalar_one_or_none()
            if day is None:
                return None
            rows = (await session.execute(
                select(PaperRecord, FeedEntry.fetched_at)
                .join(FeedEntry, FeedEntry.paper_id == PaperRecord.paper_id)
                .where(FeedEntry.feed_date == day)
                .order_by(FeedEntry.position)
            )).all()
        if not rows:
            return None
        fetched = min(r[1] for r in rows)
        return day, [paper_from_record(r[0], day) for r in rows], fetched

    async def feed_since(self, since: date) -> list[Paper]:
        """Every paper in the stored feeds from ``since`` on, newest day first."""
        async with self._db.read() as session:
            rows = (await session.execute(
                select(PaperRecord, FeedEntry.feed_date)
                .join(FeedEntry, FeedEntry.paper_id == PaperRecord.paper_id)
                .where(FeedEntry.feed_date >= since)
                .order_by(FeedEntry.feed_date.desc(), FeedEntry.position)
            )).all()
        seen: set[str] = set()
        papers = []
        for record, day in rows:
            if record.paper_id not in seen:
                seen.add(record.paper_id)
                papers.append(paper_from_record(record, day))
        return papers

    async def get(self, paper_id: str) -> Paper | None:
        """One stored paper, or None."""
        async with self._db.read() as session:
            row = await session.get(PaperRecord, paper_id)
            return paper_from_record(row) if row is not None else None

    async def all_papers(self, limit: int = 5000) -> tuple[list[Paper], datetime | None]:
        """The most recently fetched stored papers and when the newest was fetched."""
        async with self._db.read() as session:
            rows = (await session.execute(
                select(PaperRecord).order_by(PaperRecord.fetched_at.desc()).limit(limit)
            )).scalars().all()
        if not rows:
            return [], None
        return [paper_from_record(r) for r in rows], max(r.fetched_at for r in rows)


# --- people and their topics -----------------------------------------------------------


SETTLED_RECHECK_SECONDS = 30.0


class UserTopics:
    """A person's topic subscriptions and alert settings.

    Every command ends with :meth:`after_command` (a pending notice to show, a time zone to
    remember). Most people have neither, so the answer "nothing to do" is kept per person for
    ``recheck_seconds``: their next commands touch no database. Every write through this object
    forgets the person at once; a notice left by *another* process sharing the database (the
    one that ran their delivery) shows up at their first command after at most
    ``recheck_seconds``.
    """

    def __init__(self, db: Database, *, recheck_seconds: float = SETTLED_RECHECK_SECONDS) -> None:
        self._db = db
        # person -> the platform time zone their last check was made with
        self._settled: TTLCache[UserRef, str | None] = TTLCache(maxsize=100_000, ttl=recheck_seconds)
        self._writes = 0   # a check that overlapped a write is not remembered

    def _changed(self, user: UserRef) -> None:
        self._writes += 1
        self._settled.pop(user, None)

    @asynccontextmanager
    async def _write_for(self, user: UserRef) -> AsyncIterator[AsyncSession]:
        """A write transaction about ``user``; their settled state is forgotten before and after it."""
        self._changed(user)
        try:
            async with self._db.transaction() as session:
                yield session
        finally:
            self._changed(user)

    async def after_command(self, user: UserRef, platform_timezone: str | None) -> str | None:
        """After a command: the person's pending notice (cleared once read), and the zone the
        platform reports for them stored if they have none. Usually answered from memory."""
        settled = self._settled.get(user, _UNSET)
        if settled is not _UNSET and (platform_timezone is None or settled == platform_timezone):
            return None
        writes_before = self._writes
        async with self._db.read() as session:
            row = (await session.execute(
                select(UserProfile.id, UserProfile.pending_notice, UserProfile.timezone).where(
                    UserProfile.platform == user.platform, UserProfile.workspace_id == user.workspace,
                    UserProfile.user_id == user.user)
            )).one_or_none()
        notice = None
        if row is not None:
            if row.pending_notice:
                notice = await self.take_notice(user)
            if platform_timezone and row.timezone is None:
                async with self._db.transaction() as session:
                    await session.execute(
                        update(UserProfile).where(UserProfile.id == row.id, UserProfile.timezone.is_(None))
                        .values(timezone=platform_timezone, updated_at=utcnow()))
        if self._writes == writes_before:
            self._settled[user] = platform_timezone
        return notice

    async def _profile(self, session: AsyncSession, user: UserRef, *, create: bool, lock: bool = False) -> UserProfile | None:
        query = select(UserProfile).where(
            UserProfile.platform == user.platform,
            UserProfile.workspace_id == user.workspace,
            UserProfile.user_id == user.user,
        )
        if lock:
            query = query.with_for_update()
        profile = (await session.execute(query)).scalar_one_or_none()
        if profile is None and create:
            insert = _insert(session)
            await session.execute(
                insert(UserProfile)
                .values(platform=user.platform, workspace_id=user.workspace, user_id=user.user,
                        alerts_enabled=True, created_at=utcnow(), updated_at=utcnow())
                .on_conflict_do_nothing()
            )
            profile = (await session.execute(query)).scalar_one()
        return profile

    async def profile_in(self, session: AsyncSession, user: UserRef, *, create: bool) -> UserProfile | None:
        """The person's profile row inside the caller's transaction (created when ``create``)."""
        return await self._profile(session, user, create=create)

    async def add(self, user: UserRef, topic: str, *, limit: int) -> tuple[TopicChange, int]:
        """Subscribe ``user`` to a normalized ``topic``; returns the outcome and their topic count."""
        async with self._write_for(user) as session:
            profile = await self._profile(session, user, create=True, lock=True)
            assert profile is not None
            count = (await session.execute(
                select(func.count()).select_from(TopicSubscription).where(TopicSubscription.profile_id == profile.id)
            )).scalar_one()
            exists = (await session.execute(
                select(TopicSubscription.id).where(TopicSubscription.profile_id == profile.id,
                                                   TopicSubscription.topic == topic)
            )).scalar_one_or_none()
            if exists is not None:
                return TopicChange.ALREADY, count
            if count >= limit:
                return TopicChange.LIMIT, count
            insert = _insert(session)
            result = await session.execute(
                insert(TopicSubscription).values(profile_id=profile.id, topic=topic, created_at=utcnow())
                .on_conflict_do_nothing()
            )
            if result.rowcount == 0:
                return TopicChange.ALREADY, count
            return TopicChange.ADDED, count + 1

    async def remove(self, user: UserRef, topic: str) -> TopicChange:
        async with self._write_for(user) as session:
            profile = await self._profile(session, user, create=False)
            if profile is None:
                return TopicChange.MISSING
            result = await session.execute(
                delete(TopicSubscription).where(TopicSubscription.profile_id == profile.id,
                                                TopicSubscription.topic == topic)
            )
            if not result.rowcount:
                return TopicChange.MISSING
            left = (await session.execute(
                select(func.count()).select_from(TopicSubscription).where(TopicSubscription.profile_id == profile.id)
            )).scalar_one()
            if not left:
                # Nothing to alert about: not due until a topic is followed again (alerts stay on).
                profile.next_due_at = None
                profile.updated_at = utcnow()
            return TopicChange.REMOVED

    async def topics(self, user: UserRef) -> list[str]:
        async with self._db.read() as session:
            profile = await self._profile(session, user, create=False)
            if profile is None:
                return []
            rows = await session.execute(
                select(TopicSubscription.topic).where(TopicSubscription.profile_id == profile.id)
                .order_by(TopicSubscription.id)
            )
            return list(rows.scalars())

    async def setting(self, user: UserRef) -> AlertSetting | None:
        async with self._db.read() as session:
            profile = await self._profile(session, user, create=False)
            if profile is None:
                return None
            topics = (await session.execute(
                select(TopicSubscription.topic).where(TopicSubscription.profile_id == profile.id)
                .order_by(TopicSubscription.id)
            )).scalars().all()
            return AlertSetting(
                id=profile.id, user=user, alert_time=_time(profile.alert_time), timezone=profile.timezone,
                enabled=profile.alerts_enabled, paused_reason=profile.paused_reason,
                next_due_at=profile.next_due_at, topics=tuple(topics),
            )

    async def set_alerts(self, user: UserRef, *, enabled: bool, alert_time: time | None = None,
                         tz: str | None = None, next_due_at: datetime | None = None) -> None:
        """Turn alerts on (with their time and zone) or off; resuming clears any pause."""
        async with self._write_for(user) as session:
            profile = await self._profile(session, user, create=True, lock=True)
            assert profile is not None
            profile.alerts_enabled = enabled
            if enabled:
                profile.paused_reason = None
                if alert_time is not None:
                    profile.alert_time = alert_time.strftime("%H:%M")
                if tz is not None:
                    profile.timezone = tz
                profile.next_due_at = next_due_at
            profile.updated_at = utcnow()

    async def remember_timezone(self, user: UserRef, tz: str) -> bool:
        """Record the zone the platform reports for a person, unless they have one; True when written.

        Called on every command, so it only reads unless there is something to write.
        """
        async with self._db.read() as session:
            profile = await self._profile(session, user, create=False)
            if profile is None or profile.timezone is not None:
                return False
        async with self._db.transaction() as session:
            result = await session.execute(
                update(UserProfile).where(UserProfile.id == profile.id, UserProfile.timezone.is_(None))
                .values(timezone=tz, updated_at=utcnow()))
            return bool(result.rowcount)

    async def take_notice(self, user: UserRef) -> str | None:
        """A pending message for this person (e.g. 'your alerts are paused'), cleared once read."""
        async with self._db.read() as session:  # the common case, nothing pending, takes no lock
            pending = (await session.execute(
                select(UserProfile.pending_notice).where(
                    UserProfile.platform == user.platform, UserProfile.workspace_id == user.workspace,
                    UserProfile.user_id == user.user, UserProfile.pending_notice.is_not(None))
            )).scalar_one_or_none()
        if not pending:
            return None
        async with self._db.transaction() as session:
            profile = await self._profile(session, user, create=False)
            if profile is None or not profile.pending_notice:
                return None
            notice, profile.pending_notice = profile.pending_notice, None
            return notice

    async def pause(self, user: UserRef, reason: str, notice: str) -> None:
        """Pause a person's alerts and leave them a notice for their next command."""
        async with self._write_for(user) as session:
            profile = await self._profile(session, user, create=False)
            if profile is not None:
                profile.alerts_enabled = False
                profile.paused_reason = reason
                profile.pending_notice = notice


# --- channels ---------------------------------------------------------------------------


class ChannelSettings:
    """Channels' daily trending posts."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def _query(self, channel: ChannelRef):  # noqa: ANN202
        return select(ChannelSubscription).where(
            ChannelSubscription.platform == channel.platform,
            ChannelSubscription.workspace_id == channel.workspace,
            ChannelSubscription.channel_id == channel.channel,
        )

    async def get(self, channel: ChannelRef) -> ChannelSetting | None:
        async with self._db.read() as session:
            row = (await session.execute(self._query(channel))).scalar_one_or_none()
            return _channel_setting(row) if row else None

    async def enable(self, channel: ChannelRef, *, post_time: time, tz: str, created_by: str | None,
                     next_due_at: datetime, top_n: int = 10, post_when_empty: bool = False) -> ChannelSetting:
        """Create or update a channel's daily post; re-enabling clears a pause."""
        async with self._db.transaction() as session:
            insert = _insert(session)
            now = utcnow()
            values = dict(post_time=post_time.strftime("%H:%M"), timezone=tz, enabled=True, paused_reason=None,
                          created_by=created_by, next_due_at=next_due_at, top_n=top_n,
                          post_when_empty=post_when_empty, updated_at=now)
            await session.execute(
                insert(ChannelSubscription)
                .values(platform=channel.platform, workspace_id=channel.workspace, channel_id=channel.channel,
                        created_at=now, **values)
                .on_conflict_do_update(index_elements=["platform", "workspace_id", "channel_id"], set_=values)
            )
            row = (await session.execute(self._query(channel))).scalar_one()
            await session.refresh(row)
            return _channel_setting(row)

    async def disable(self, channel: ChannelRef) -> bool:
        """Turn a channel's post off; False when it had none switched on."""
        async with self._db.transaction() as session:
            result = await session.execute(
                update(ChannelSubscription)
                .where(ChannelSubscription.platform == channel.platform,
                       ChannelSubscription.workspace_id == channel.workspace,
                       ChannelSubscription.channel_id == channel.channel,
                       ChannelSubscription.enabled.is_(True))
                .values(enabled=False, next_due_at=None, updated_at=utcnow())
            )
            return bool(result.rowcount)

    async def pause(self, subscription_id: int, reason: str) -> None:
        """Stop posting to a channel the platform refused, keeping why."""
        async with self._db.transaction() as session:
            await session.execute(
                update(ChannelSubscription).where(ChannelSubscription.id == subscription_id)
                .values(enabled=False, paused_reason=reason, next_due_at=None, updated_at=utcnow())
            )

    async def for_creator(self, platform: str, workspace: str, user: str) -> list[ChannelSetting]:
        """The channel posts a person set up (shown on Slack's App Home)."""
        async with self._db.read() as session:
            rows = (await session.execute(
                select(ChannelSubscription).where(
                    ChannelSubscription.platform == platform, ChannelSubscription.workspace_id == workspace,
                    ChannelSubscription.created_by == user,
                ).order_by(ChannelSubscription.id)
            )).scalars().all()
            return [_channel_setting(r) for r in rows]


# --- workspaces ---------------------------------------------------------------------------


class Workspaces:
    """Where the bot is installed; uninstalling switches a workspace's deliveries off."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def activate(self, platform: str, workspace: str, name: str | None = None, *,
                       default_timezone: str | None = None) -> None:
        """Mark a workspace installed; ``default_timezone`` (e.g. the installer's) is kept if none is set."""
        async with self._db.transaction() as session:
            insert = _insert(session)
            values: dict[str, Any] = dict(active=True, deactivated_at=None, deactivated_reason=None)
            if name:
                values["name"] = name
            if default_timezone:
                values["default_timezone"] = func.coalesce(Workspace.default_timezone, default_timezone)
            await session.execute(
                insert(Workspace)
                .values(platform=platform, workspace_id=workspace, name=name, installed_at=utcnow(),
                        active=True, default_timezone=default_timezone)
                .on_conflict_do_update(index_elements=["platform", "workspace_id"], set_=values)
            )

    async def deactivate(self, platform: str, workspace: str, reason: str) -> None:
        """Mark a workspace gone and pause every channel post and alert in it."""
        now = utcnow()
        async with self._db.transaction() as session:
            insert = _insert(session)
            await session.execute(
                insert(Workspace)
                .values(platform=platform, workspace_id=workspace, active=False, installed_at=now,
                        deactivated_at=now, deactivated_reason=reason)
                .on_conflict_do_update(index_elements=["platform", "workspace_id"],
                                       set_=dict(active=False, deactivated_at=now, deactivated_reason=reason))
            )
            await session.execute(
                update(ChannelSubscription)
                .where(ChannelSubscription.platform == platform, ChannelSubscription.workspace_id == workspace,
                       ChannelSubscription.enabled.is_(True))
                .values(enabled=False, paused_reason=f"workspace: {reason}", next_due_at=None, updated_at=now)
            )
            await session.execute(
                update(UserProfile)
                .where(UserProfile.platform == platform, UserProfile.workspace_id == workspace,
                       UserProfile.alerts_enabled.is_(True))
                .values(alerts_enabled=False, paused_reason=f"workspace: {reason}", next_due_at=None,
                        updated_at=now)
            )

    async def is_active(self, platform: str, workspace: str) -> bool:
        async with self._db.read() as session:
            active = (await session.execute(
                select(Workspace.active).where(Workspace.platform == platform, Workspace.workspace_id == workspace)
            )).scalar_one_or_none()
            return active is not False


class Storage:
    """All repositories over one database."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.papers = PaperStore(db)
        self.topics = UserTopics(db)
        self.channels = ChannelSettings(db)
        self.workspaces = Workspaces(db)
        self.control_topics = ControlTopics(db)
        self.feedback = FeedbackStore(db, self.topics)

    @classmethod
    def connect(cls, url: str, *, migrate: bool = True) -> Storage:
        """Open ``url``, applying migrations first when ``migrate`` (blocking)."""
        if migrate:
            upgrade_database(url)
        return cls(Database(url))

    async def close(self) -> None:
        await self.db.dispose()
