"""Repositories on SQLite and on a real PostgreSQL server (the db_url fixture runs both)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import inspect, select, text

from bot.models import ChannelRef, Paper, UserRef
from storage.models import Delivery
from storage.repositories import Storage, TopicChange

ALICE = UserRef("slack", "T1", "U_ALICE")
GENERAL = ChannelRef("slack", "T1", "C_GENERAL")
NOW = datetime(2026, 11, 22, 8, tzinfo=timezone.utc)
ROOT = Path(__file__).resolve().parents[1]


async def test_migrations_create_every_table(storage: Storage) -> None:
    async with storage.db.engine.connect() as conn:
        tables = await conn.run_sync(lambda sync: set(inspect(sync).get_table_names()))
    assert {"workspaces", "channel_subscriptions", "user_profiles", "topic_subscriptions", "papers",
            "feed_entries", "deliveries", "sent_papers", "alembic_version"} <= tables


async def test_topics_add_list_remove_and_limit(storage: Storage) -> None:
    assert await storage.topics.add(ALICE, "diffusion models", limit=3) == (TopicChange.ADDED, 1)
    assert await storage.topics.add(ALICE, "diffusion models", limit=3) == (TopicChange.ALREADY, 1)
    await storage.topics.add(ALICE, "graph neural networks", limit=3)
    await storage.topics.add(ALICE, "'; drop table papers; --", limit=3)
    assert (await storage.topics.add(ALICE, "one too many", limit=3))[0] is TopicChange.LIMIT
    assert await storage.topics.topics(ALICE) == ["diffusion models", "graph neural networks",
                                                  "'; drop table papers; --"]
    assert await storage.topics.remove(ALICE, "diffusion models") is TopicChange.REMOVED
    assert await storage.topics.remove(ALICE, "diffusion models") is TopicChange.MISSING
    assert await storage.topics.topics(UserRef("slack", "T2", "U_ALICE")) == []


async def test_paused_alerts_leave_a_notice_read_once(storage: Storage) -> None:
    await storage.topics.add(ALICE, "rl", limit=5)
    await storage.topics.pause(ALICE, "dms closed", "Your alerts are paused: open your DMs.")
    setting = await storage.topics.setting(ALICE)
    assert setting is not None and not setting.enabled and setting.paused_reason == "dms closed"
    assert await storage.topics.take_notice(ALICE) == "Your alerts are paused: open your DMs."
    assert await storage.topics.take_notice(ALICE) is None


async def test_channel_enable_update_disable(storage: Storage) -> None:
    first = await storage.channels.enable(GENERAL, post_time=time(9), tz="Europe/Berlin", created_by="U_ALICE",
                                          next_due_at=NOW)
    again = await storage.channels.enable(GENERAL, post_time=time(7, 30), tz="Asia/Tokyo", created_by="U_BOB",
                                          next_due_at=NOW + timedelta(hours=1))
    assert first.id == again.id
    assert (again.post_time, again.timezone, again.created_by) == (time(7, 30), "Asia/Tokyo", "U_BOB")
    assert again.next_due_at == NOW + timedelta(hours=1)
    assert await storage.channels.disable(GENERAL) is True
    assert await storage.channels.disable(GENERAL) is False
    stored = await storage.channels.get(GENERAL)
    assert stored is not None and not stored.enabled and stored.next_due_at is None


async def test_workspace_deactivation_pauses_its_subscriptions(storage: Storage) -> None:
    await storage.channels.enable(GENERAL, post_time=time(9), tz="UTC", created_by="U", next_due_at=NOW)
    other = ChannelRef("slack", "T2", "C_OTHER")
    await storage.channels.enable(other, post_time=time(9), tz="UTC", created_by="U", next_due_at=NOW)
    await storage.topics.add(ALICE, "rl", limit=5)
    await storage.topics.set_alerts(ALICE, enabled=True, next_due_at=NOW)
    await storage.workspaces.deactivate("slack", "T1", "token_revoked")
    assert not await storage.workspaces.is_active("slack", "T1")
    assert (await storage.channels.get(GENERAL)).paused_reason == "workspace: token_revoked"
    assert (await storage.channels.get(other)).enabled
    assert not (await storage.topics.setting(ALICE)).enabled
    await storage.workspaces.activate("slack", "T1", "Research")
    assert await storage.workspaces.is_active("slack", "T1")


async def test_papers_and_feeds_round_trip(storage: Storage) -> None:
    papers = [Paper(paper_id=f"2511.0000{i}", title=f"Paper {i}", authors=("A", "B"), author_count=2,
                    published_at=NOW, upvotes=i, ai_keywords=("k",)) for i in range(3)]
    await storage.papers.save_feed(date(2026, 11, 21), papers, fetched_at=NOW)
    await storage.papers.save_feed(date(2026, 11, 20), papers[:1], fetched_at=NOW - timedelta(days=1))
    day, stored, fetched = await storage.papers.latest_feed()
    assert day == date(2026, 11, 21) and fetched == NOW
    assert [p.paper_id for p in stored] == [p.paper_id for p in papers]
    assert stored[0].authors == ("A", "B") and stored[0].published_at == NOW
    assert (await storage.papers.latest_feed(date(2026, 11, 20)))[0] == date(2026, 11, 20)
    refreshed = Paper(paper_id="2511.00000", title="Paper 0 (v2)", upvotes=99)
    await storage.papers.save([refreshed])
    all_papers, _ = await storage.papers.all_papers()
    assert {p.paper_id: p.upvotes for p in all_papers}["2511.00000"] == 99
    assert len(await storage.papers.feed_since(date(2026, 11, 20))) == 3


async def test_feed_stored_by_two_writers_at_once_keeps_one_copy(storage: Storage) -> None:
    import asyncio

    papers = [Paper(paper_id=f"2511.1000{i}", title=f"P{i}") for i in range(5)]
    await storage.papers.save(papers)
    second = Storage(type(storage.db)(storage.db.url))
    try:
        await asyncio.gather(storage.papers.save_feed(date(2026, 11, 21), papers),
                             second.papers.save_feed(date(2026, 11, 21), list(reversed(papers))))
    finally:
        await second.close()
    day, stored, _ = await storage.papers.latest_feed()
    assert sorted(p.paper_id for p in stored) == sorted(p.paper_id for p in papers)
    await storage.papers.save_feed(date(2026, 11, 21), papers[:2])
    assert [p.paper_id for p in (await storage.papers.latest_feed())[1]] == ["2511.10000", "2511.10001"]


async def test_delivery_ledger_allows_one_row_per_subscription_and_day(storage: Storage) -> None:
    from sqlalchemy.exc import IntegrityError

    async with storage.db.transaction() as session:
        session.add(Delivery(kind="channel", subscription_id=1, day=date(2026, 11, 22), status="claimed"))
    with pytest.raises(IntegrityError):
        async with storage.db.transaction() as session:
            session.add(Delivery(kind="channel", subscription_id=1, day=date(2026, 11, 22), status="claimed"))
    async with storage.db.transaction() as session:
        rows = (await session.execute(select(Delivery))).scalars().all()
    assert len(rows) == 1


def _subscribe_in_process(url: str, user: str, topics: list[str]) -> subprocess.Popen[bytes]:
    script = textwrap.dedent(f"""
        import asyncio
        from bot.models import UserRef
        from storage.repositories import Storage
        async def main():
            store = Storage.connect({url!r}, migrate=False)
            for topic in {topics!r}:
                await store.topics.add(UserRef("slack", "T1", {user!r}), topic, limit=25)
            await store.close()
        asyncio.run(main())
    """)
    return subprocess.Popen([sys.executable, "-c", script], cwd=ROOT)


async def test_subscriptions_from_two_processes_at_once(db_url: str) -> None:
    Storage.connect(db_url)  # migrate once, before both processes start
    topics = [f"topic {i}" for i in range(30)]
    procs = [_subscribe_in_process(db_url, "U_SHARED", topics), _subscribe_in_process(db_url, "U_SHARED", topics)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    store = Storage(Storage.connect(db_url, migrate=False).db)
    try:
        stored = await store.topics.topics(UserRef("slack", "T1", "U_SHARED"))
        assert stored == topics[:25]  # no duplicates, limit held across processes
        async with store.db.engine.connect() as conn:
            profiles = (await conn.execute(text("select count(*) from user_profiles"))).scalar_one()
        assert profiles == 1
    finally:
        await store.close()
