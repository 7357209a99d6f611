"""Topics too long for a control id, stored under their short key (see ``adapters.controls``)."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import select

from storage.db import Database, insert_for
from storage.models import ControlTopic, utcnow


class ControlTopics:
    """``key -> topic``; written when a keyed control is rendered, read when it is pressed."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def remember(self, topics: Mapping[str, str]) -> None:
        """Store ``{key: topic}`` pairs (a key already stored is left as it is)."""
        if not topics:
            return
        now = utcnow()
        rows = [{"key": key, "topic": topic, "created_at": now} for key, topic in topics.items()]
        async with self._db.transaction() as session:
            stmt = insert_for(session)(ControlTopic.__table__).on_conflict_do_nothing(index_elements=["key"])
            await session.execute(stmt, rows)

    async def lookup(self, key: str) -> str | None:
        async with self._db.read() as session:
            return (await session.execute(select(ControlTopic.topic).where(ControlTopic.key == key))).scalar_one_or_none()
