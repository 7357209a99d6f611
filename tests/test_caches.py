"""Work done once per paper, and the caches that make it so, invalidated when the data changes."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from bot.matching import PaperTerms
from bot.models import Paper


def test_stems_are_computed_once_per_paper_id_and_follow_the_current_copy() -> None:
    first = Paper(paper_id="2501.09999", title="Grokking beyond toy tasks", summary="We study grokking.",
                  upvotes=3)
    again = replace(first, upvotes=250)            # the same paper fetched later, with more upvotes
    terms, terms_again = PaperTerms.of(first), PaperTerms.of(again)
    assert terms_again.title is terms.title          # the stems were not computed a second time
    assert terms_again.paper is again and terms_again.paper.upvotes == 250   # ranking sees today's copy
    assert PaperTerms.of(again) is terms_again       # the same copy again (a cached search): nothing rebuilt
    edited = replace(again, title="Grokking in large language models")
    assert "languag" in PaperTerms.of(edited).title  # a changed title is stemmed anew
    assert "languag" not in PaperTerms.of(again).title


# --- notices and time zones after each command --------------------------------------------------

from sqlalchemy import event  # noqa: E402

from bot.models import UserRef  # noqa: E402
from storage.repositories import Storage, UserTopics  # noqa: E402

ALICE = UserRef("slack", "T1", "U_ALICE")


class StatementCounter:
    """Counts the SQL statements a database engine runs."""

    def __init__(self, storage: Storage) -> None:
        self.count = 0
        event.listen(storage.db.engine.sync_engine, "before_cursor_execute", self._seen)

    def _seen(self, *args: object) -> None:
        self.count += 1


async def test_after_command_is_answered_from_memory_until_something_changes(storage: Storage) -> None:
    await storage.topics.add(ALICE, "rl", limit=5)
    counter = StatementCounter(storage)
    assert await storage.topics.after_command(ALICE, "Europe/Berlin") is None   # reads once, stores the zone
    assert (await storage.topics.setting(ALICE)).timezone == "Europe/Berlin"
    before = counter.count
    for _ in range(20):
        assert await storage.topics.after_command(ALICE, "Europe/Berlin") is None
    assert counter.count == before                 # 20 commands, no statement
    await storage.topics.pause(ALICE, "dms closed", "Your alerts are paused: open your DMs.")
    assert await storage.topics.after_command(ALICE, "Europe/Berlin") == "Your alerts are paused: open your DMs."
    assert await storage.topics.after_command(ALICE, "Europe/Berlin") is None   # read once


async def test_a_notice_from_another_process_shows_within_the_recheck_time(storage: Storage) -> None:
    """Another process (its own repository object) pauses the alerts: seen after at most recheck_seconds."""
    here = UserTopics(storage.db, recheck_seconds=0.3)
    other_process = UserTopics(storage.db)
    await here.add(ALICE, "rl", limit=5)
    assert await here.after_command(ALICE, None) is None
    await other_process.pause(ALICE, "dms closed", "Paused.")
    assert await here.after_command(ALICE, None) is None        # still remembered as settled
    await asyncio.sleep(0.35)
    assert await here.after_command(ALICE, None) == "Paused."


async def test_a_zone_is_remembered_for_a_profile_created_elsewhere(storage: Storage) -> None:
    here = UserTopics(storage.db, recheck_seconds=0.2)
    assert await here.after_command(ALICE, "Asia/Tokyo") is None            # no profile yet: nothing stored
    await UserTopics(storage.db).set_alerts(ALICE, enabled=False)          # another process creates it, no zone
    await asyncio.sleep(0.25)
    await here.after_command(ALICE, "Asia/Tokyo")
    assert (await here.setting(ALICE)).timezone == "Asia/Tokyo"


async def test_stemming_fresh_papers_lets_other_work_run_in_between() -> None:
    """Acknowledgements share the event loop with answers: fresh papers are stemmed in slices."""
    from bot.core import prepare_terms

    fresh = [Paper(paper_id=f"2599.{n:05d}", title=f"Paper {n} on grokking",
                   summary="We study how networks generalize beyond their training data. " * 30) for n in range(300)]
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0)

    running = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    before = ticks
    await prepare_terms(fresh)
    done.set()
    await running
    assert ticks - before > 1                     # the loop ran other work while 300 papers were stemmed
    assert all(PaperTerms.of(p).paper is p for p in fresh)
