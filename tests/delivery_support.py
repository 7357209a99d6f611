"""Shared pieces of the delivery tests: papers, the fake feed, subscriptions made directly in storage."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, time, timezone
from typing import Any

from bot.models import ChannelRef, Paper, UserRef
from bot.schedule import next_occurrence
from storage.repositories import Storage
from tests.fakes.hf_api import FakeHuggingFace


def paper(paper_id: str, title: str, summary: str = "", *, upvotes: int = 1,
          published: datetime | None = None) -> Paper:
    return Paper(paper_id, title, summary or f"We study {title.lower()}.", authors=("A. Author",), author_count=1,
                 upvotes=upvotes, published_at=published or datetime(2026, 11, 20, tzinfo=timezone.utc))


def hf_paper(p: Paper) -> dict[str, Any]:
    """A paper as the Hugging Face API describes it (the fake server nests it in daily items)."""
    published = (p.published_at or datetime(2026, 11, 20, tzinfo=timezone.utc)).isoformat().replace("+00:00", "Z")
    return {"id": p.paper_id, "title": p.title, "summary": p.summary, "authors": [{"name": a} for a in p.authors],
            "upvotes": p.upvotes, "publishedAt": published}


def set_feed(hf: Any, day: date, papers: list[Paper]) -> None:
    """Make the fake Hugging Face server list ``papers`` as the daily feed of ``day``."""
    hf.daily[day.isoformat()] = [hf_paper(p) for p in papers]


@contextmanager
def serving_feed(day: date, papers: list[Paper]) -> Iterator[FakeHuggingFace]:
    """A fake Hugging Face server on 127.0.0.1 whose daily feed of ``day`` lists ``papers``."""
    server = FakeHuggingFace(papers=[], daily={}).start()
    set_feed(server, day, papers)
    try:
        yield server
    finally:
        server.stop()


async def add_channel(storage: Storage, channel: ChannelRef, *, at: time, tz: str, after: datetime,
                      created_by: str | None = "U_OWNER", top_n: int = 10) -> int:
    """A channel post whose next due time is the first ``at`` in ``tz`` after ``after``."""
    setting = await storage.channels.enable(channel, post_time=at, tz=tz, created_by=created_by,
                                            next_due_at=next_occurrence(after, at, tz), top_n=top_n)
    return setting.id


async def add_person(storage: Storage, user: UserRef, topics: list[str], *, after: datetime,
                     at: time | None = None, tz: str | None = None, default_time: time = time(9, 0),
                     default_zone: str = "UTC") -> int:
    """Someone following ``topics`` with alerts on at ``at`` in ``tz`` (or the defaults)."""
    for topic in topics:
        await storage.topics.add(user, topic, limit=50)
    due = next_occurrence(after, at or default_time, tz or default_zone)
    await storage.topics.set_alerts(user, enabled=True, alert_time=at, tz=tz, next_due_at=due)
    setting = await storage.topics.setting(user)
    assert setting is not None
    return setting.id
