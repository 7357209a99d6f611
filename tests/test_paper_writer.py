"""The background paper writer, on SQLite and PostgreSQL: answers never wait for it, papers from
many commands go out in one transaction, a failed batch leaves nothing half-written and is
retried, and closing writes everything still queued."""

from __future__ import annotations

import asyncio
from datetime import date, datetime, timezone

import pytest
from sqlalchemy import func, select, text

from bot.models import Paper
from bot.papers import Origin, PaperService
from storage.models import FeedEntry, PaperRecord
from storage.paper_writer import PaperWriter
from storage.repositories import Storage

NOW = datetime(2026, 11, 22, 10, tzinfo=timezone.utc)
DAY = date(2026, 11, 21)


def papers(prefix: str, count: int) -> list[Paper]:
    return [Paper(paper_id=f"{prefix}.{n:05d}", title=f"Generalization study {prefix} {n}", upvotes=n)
            for n in range(count)]


async def stored_ids(storage: Storage) -> set[str]:
    async with storage.db.read() as session:
        return set((await session.execute(select(PaperRecord.paper_id))).scalars())


class CountingStore:
    """The real PaperStore, counting its batch transactions (and optionally holding them)."""

    def __init__(self, storage: Storage) -> None:
        self.real = storage.papers
        self.batches: list[int] = []
        self.hold: asyncio.Event | None = None

    async def save_batch(self, papers, feeds=()) -> None:  # noqa: ANN001
        self.batches.append(len(papers))
        if self.hold is not None:
            await self.hold.wait()
        await self.real.save_batch(papers, feeds)


async def test_papers_from_many_commands_are_written_in_one_transaction(storage: Storage) -> None:
    store = CountingStore(storage)
    writer = PaperWriter(store)  # type: ignore[arg-type]
    for command in range(40):                      # 40 commands, overlapping results
        writer.submit(papers("2511", 10 + command), fetched_at=NOW)
    assert await writer.flush()
    assert store.batches == [49]                   # one transaction, each paper once
    assert await stored_ids(storage) == {p.paper_id for p in papers("2511", 49)}
    await writer.close()


async def test_a_paper_is_marked_before_its_write_so_overlapping_commands_queue_it_once(storage: Storage) -> None:
    store = CountingStore(storage)
    store.hold = asyncio.Event()
    writer = PaperWriter(store, gather_seconds=0)  # type: ignore[arg-type]
    assert writer.submit(papers("2512", 5), fetched_at=NOW) == 5
    while not store.batches:                       # the write has started and is held
        await asyncio.sleep(0.01)
    assert writer.submit(papers("2512", 5), fetched_at=NOW) == 0   # in flight: not queued again
    store.hold.set()
    assert await writer.flush()
    assert store.batches == [5]
    await writer.close()


async def test_a_failed_batch_leaves_nothing_half_written_and_is_retried(storage: Storage,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The papers' upsert and the feed rows share one transaction: a failure in the second undoes the first."""
    from storage.repositories import PaperStore

    real_store_feed = PaperStore._store_feed
    attempts = []

    async def failing_once(session, day, listed, fetched_at):  # noqa: ANN001, ANN202
        attempts.append(day)
        if len(attempts) == 1:
            raise RuntimeError("disk full")
        await real_store_feed(session, day, listed, fetched_at)

    monkeypatch.setattr(PaperStore, "_store_feed", staticmethod(failing_once))
    writer = PaperWriter(storage.papers, gather_seconds=0, max_retry_wait=0.05)
    writer.submit(papers("2513", 3), fetched_at=NOW)
    writer.submit_feed(DAY, papers("2514", 4), fetched_at=NOW)
    while not attempts:
        await asyncio.sleep(0.01)
    assert await stored_ids(storage) == set()      # the failed batch wrote none of its papers
    assert await writer.flush(timeout=10)
    assert len(attempts) == 2
    assert await stored_ids(storage) == {p.paper_id for p in papers("2513", 3) + papers("2514", 4)}
    day, feed, _ = await storage.papers.latest_feed()
    assert day == DAY and [p.paper_id for p in feed] == [p.paper_id for p in papers("2514", 4)]
    await writer.close()


async def test_closing_writes_everything_still_queued(db_url: str) -> None:
    storage = Storage.connect(db_url)
    writer = PaperWriter(storage.papers, gather_seconds=5)     # would wait 5 s before writing on its own
    writer.submit(papers("2515", 20), fetched_at=NOW)
    writer.submit_feed(DAY, papers("2515", 3), fetched_at=NOW)
    await asyncio.sleep(0)
    await writer.close()
    await storage.close()
    reopened = Storage.connect(db_url, migrate=False)
    try:
        assert await stored_ids(reopened) == {p.paper_id for p in papers("2515", 20)}
        async with reopened.db.read() as session:
            assert (await session.execute(select(func.count()).select_from(FeedEntry))).scalar_one() == 3
    finally:
        await reopened.close()


class FixedSource:
    async def search(self, query: str, *, limit: int = 50) -> list[Paper]:
        return papers("2516", 50)

    async def daily_papers(self, **kwargs: object) -> list[Paper]:
        return papers("2517", 10)


async def test_an_answer_never_waits_for_the_write_lock(storage: Storage) -> None:
    """With another writer holding the database's write lock, searches still answer at once."""
    service = PaperService(FixedSource(), storage.papers, clock=lambda: NOW)
    release = asyncio.Event()
    locked = asyncio.Event()

    async def hold_the_lock() -> None:
        async with storage.db.transaction() as session:
            if storage.db.is_postgres:
                await session.execute(text("LOCK TABLE papers IN EXCLUSIVE MODE"))
            else:
                await session.execute(text("UPDATE papers SET upvotes = upvotes"))   # holds SQLite's write lock
            locked.set()
            await release.wait()

    holder = asyncio.create_task(hold_the_lock())
    await locked.wait()
    batch = await asyncio.wait_for(service.search("generalization"), timeout=5)
    today = await asyncio.wait_for(service.daily(DAY), timeout=5)
    assert batch.origin is Origin.LIVE and len(batch.papers) == 50 and len(today.papers) == 10
    assert service.writer.pending or service.writer.batches_written == 0   # not written yet: the lock is held
    release.set()
    await holder
    await service.close()
    assert len(await stored_ids(storage)) == 60


async def test_closing_during_a_write_lets_it_finish_instead_of_cutting_it(storage: Storage) -> None:
    store = CountingStore(storage)
    store.hold = asyncio.Event()
    writer = PaperWriter(store, gather_seconds=0)  # type: ignore[arg-type]
    writer.submit(papers("2518", 8), fetched_at=NOW)
    while not store.batches:
        await asyncio.sleep(0.01)
    writer.submit(papers("2519", 2), fetched_at=NOW)           # queued behind the write under way
    closing = asyncio.create_task(writer.close())
    await asyncio.sleep(0.05)
    assert not closing.done()                                   # waits for the write, does not cancel it
    store.hold.set()
    await closing
    assert store.batches == [8, 2]                              # each written once, nothing retried
    assert await stored_ids(storage) == {p.paper_id for p in papers("2518", 8) + papers("2519", 2)}
