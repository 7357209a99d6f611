"""People's votes on papers, per topic: record, read (one person or a batch of alerts), reset.

The learning itself is :mod:`bot.feedback`; this module only stores votes and
hands them back newest first as :class:`bot.feedback.Vote`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from sqlalchemy import delete, func, select

from bot.feedback import MAX_VOTES_LEARNED, Terms, Vote
from bot.models import UserRef
from storage.db import Database, insert_for
from storage.models import PaperFeedback, UserProfile, utcnow

if TYPE_CHECKING:
    from storage.repositories import UserTopics


def _vote(row: PaperFeedback) -> Vote:
    return Vote(paper_id=row.paper_id, vote=row.vote, title=row.title or "", terms=Terms.from_json(row.terms))


class FeedbackStore:
    """Votes per person (their alert profile), topic and paper."""

    def __init__(self, db: Database, topics: UserTopics) -> None:
        self._db = db
        self._topics = topics

    async def record(self, user: UserRef, topic: str, paper_id: str, vote: str, *, title: str,
                     terms: Terms) -> int:
        """Store a vote (replacing an earlier one on the same paper and topic); returns the topic's vote count."""
        async with self._db.transaction() as session:
            profile = await self._topics.profile_in(session, user, create=True)
            assert profile is not None
            now = utcnow()
            insert = insert_for(session)
            changes = {"vote": vote, "title": title, "terms": terms.to_json(), "updated_at": now}
            await session.execute(
                insert(PaperFeedback)
                .values(profile_id=profile.id, topic=topic, paper_id=paper_id, created_at=now, **changes)
                .on_conflict_do_update(index_elements=["profile_id", "topic", "paper_id"], set_=changes))
            return (await session.execute(
                select(func.count()).select_from(PaperFeedback)
                .where(PaperFeedback.profile_id == profile.id, PaperFeedback.topic == topic))).scalar_one()

    async def _profile_id(self, user: UserRef) -> int | None:
        async with self._db.read() as session:
            return (await session.execute(
                select(UserProfile.id).where(UserProfile.platform == user.platform,
                                             UserProfile.workspace_id == user.workspace,
                                             UserProfile.user_id == user.user))).scalar_one_or_none()

    async def votes(self, user: UserRef, topic: str) -> list[Vote]:
        """The person's votes on ``topic``, newest first (at most the number learned from)."""
        async with self._db.read() as session:
            rows = (await session.execute(
                select(PaperFeedback)
                .join(UserProfile, UserProfile.id == PaperFeedback.profile_id)
                .where(UserProfile.platform == user.platform, UserProfile.workspace_id == user.workspace,
                       UserProfile.user_id == user.user, PaperFeedback.topic == topic)
                .order_by(PaperFeedback.updated_at.desc(), PaperFeedback.id.desc())
                .limit(MAX_VOTES_LEARNED))).scalars().all()
        return [_vote(r) for r in rows]

    async def by_topic(self, user: UserRef) -> dict[str, list[Vote]]:
        """All of a person's votes grouped by topic (topics in first-voted order), newest first within each."""
        profile_id = await self._profile_id(user)
        if profile_id is None:
            return {}
        return (await self.for_profiles([profile_id])).get(profile_id, {})

    async def for_profiles(self, profile_ids: Sequence[int]) -> dict[int, dict[str, list[Vote]]]:
        """Votes of many people at once (a batch of alerts): profile id -> topic -> votes, newest first."""
        if not profile_ids:
            return {}
        async with self._db.read() as session:
            rows = (await session.execute(
                select(PaperFeedback).where(PaperFeedback.profile_id.in_(list(dict.fromkeys(profile_ids))))
                .order_by(PaperFeedback.profile_id, PaperFeedback.updated_at.desc(), PaperFeedback.id.desc())
            )).scalars().all()
        grouped: dict[int, dict[str, list[Vote]]] = {}
        for row in rows:
            votes = grouped.setdefault(row.profile_id, {}).setdefault(row.topic, [])
            if len(votes) < MAX_VOTES_LEARNED:
                votes.append(_vote(row))
        return grouped

    async def reset(self, user: UserRef, topic: str | None = None) -> int:
        """Forget a person's votes on ``topic`` (all topics when None); returns how many were forgotten."""
        profile_id = await self._profile_id(user)
        if profile_id is None:
            return 0
        async with self._db.transaction() as session:
            query = delete(PaperFeedback).where(PaperFeedback.profile_id == profile_id)
            if topic is not None:
                query = query.where(PaperFeedback.topic == topic)
            return (await session.execute(query)).rowcount or 0
