"""The stored copy of papers, written in the background in batches.

Commands hand the papers they fetched to :class:`PaperWriter` and answer at
once: no answer waits for the database's write lock. One task writes whatever
has gathered since its last write in one transaction, so a burst of commands
costs a few transactions, not one per command. A paper is marked as stored
when it is *queued* (before the write), so overlapping searches queue it once;
a failed write puts the batch back (unless a newer copy arrived meanwhile) and
is retried with back-off. :meth:`PaperWriter.flush` waits until everything
queued so far is written; :meth:`PaperWriter.close` flushes and stops, so
nothing queued is lost at shutdown.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import date, datetime

from cachetools import TTLCache

from bot.models import Paper
from storage.repositories import PaperStore

log = logging.getLogger(__name__)

MAX_BATCH_PAPERS = 2000         # one transaction stays short even after a long outage
MAX_PENDING_PAPERS = 100_000    # beyond this (database down for long), the oldest queued copies are dropped


class PaperWriter:
    """Queues papers and feed days; one background task stores them in batched transactions."""

    def __init__(self, store: PaperStore, *, store_every_seconds: float = 600, gather_seconds: float = 0.05,
                 max_retry_wait: float = 30.0) -> None:
        self._store = store
        self._gather_seconds = gather_seconds
        self._max_retry_wait = max_retry_wait
        # Papers (and feed days) queued or stored lately: popular papers turn up in many searches and
        # cached answers repeat, so each is written once a while, not on every command.
        self._recent: TTLCache[str, bool] = TTLCache(maxsize=50_000, ttl=store_every_seconds)
        self._papers: dict[str, tuple[Paper, datetime]] = {}
        self._feeds: dict[date, tuple[Sequence[Paper], datetime]] = {}
        self._wakeup = asyncio.Event()
        self._progress = asyncio.Condition()
        self._writing = False
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.batches_written = 0

    # --- what commands call (never waits) ---------------------------------------------------

    def submit(self, papers: Sequence[Paper], *, fetched_at: datetime) -> int:
        """Queue the papers not stored lately; returns how many were queued."""
        queued = 0
        for paper in papers:
            if paper.paper_id in self._recent:
                continue
            self._recent[paper.paper_id] = True
            self._papers[paper.paper_id] = (paper, fetched_at)
            queued += 1
        if queued:
            self._trim()
            self._kick()
        return queued

    def submit_feed(self, day: date, papers: Sequence[Paper], *, fetched_at: datetime) -> bool:
        """Queue ``day``'s feed (its papers and their order) unless it was stored lately."""
        key = f"feed:{day.isoformat()}"
        if key in self._recent:
            return False
        self._recent[key] = True
        self._feeds[day] = (list(papers), fetched_at)
        self._kick()
        return True

    @property
    def pending(self) -> int:
        """Papers and feed days queued and not yet written."""
        return len(self._papers) + len(self._feeds)

    # --- waiting for the stored copy --------------------------------------------------------

    async def flush(self, timeout: float | None = 10.0) -> bool:
        """Wait until everything queued is written; False when that took longer than ``timeout``."""
        if self._closing:
            await self._write_all_now()
            return not self.pending
        if not self.pending and not self._writing:
            return True
        self._kick()
        try:
            async with asyncio.timeout(timeout), self._progress:
                await self._progress.wait_for(lambda: not self.pending and not self._writing)
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        """Let a write under way finish, stop the background task, then write everything still queued."""
        self._closing = True
        if self._writing:
            async with self._progress:
                await self._progress.wait_for(lambda: not self._writing)
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        await self._write_all_now()

    # --- the background task ------------------------------------------------------------------

    def _kick(self) -> None:
        if self._closing:
            return
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="paper-writer")
        self._wakeup.set()

    async def _run(self) -> None:
        failures = 0
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            if self._gather_seconds:
                await asyncio.sleep(self._gather_seconds)   # let a burst's other commands join this batch
            while self.pending:
                if await self._write_batch():
                    failures = 0
                    continue
                failures += 1
                await asyncio.sleep(min(self._max_retry_wait, 0.5 * 2 ** failures))

    def _take(self) -> tuple[list[tuple[Paper, datetime]], list[tuple[date, Sequence[Paper], datetime]]]:
        feeds = [(day, papers, at) for day, (papers, at) in self._feeds.items()]
        self._feeds = {}
        ids = list(self._papers)[:MAX_BATCH_PAPERS]
        papers = [self._papers.pop(pid) for pid in ids]
        return papers, feeds

    async def _write_batch(self) -> bool:
        """Write one batch; on failure put it back for a retry. True when it was written."""
        papers, feeds = self._take()
        if not papers and not feeds:
            return True
        self._writing = True
        try:
            await self._store.save_batch(papers, feeds)
        except asyncio.CancelledError:
            self._put_back(papers, feeds)
            raise
        except Exception:  # noqa: BLE001 - the answers went out; the copy is retried
            log.exception("storing %d papers and %d feed days failed; retrying", len(papers), len(feeds))
            self._put_back(papers, feeds)
            return False
        else:
            self.batches_written += 1
            return True
        finally:
            self._writing = False
            async with self._progress:
                self._progress.notify_all()

    def _put_back(self, papers: list[tuple[Paper, datetime]],
                  feeds: list[tuple[date, Sequence[Paper], datetime]]) -> None:
        for paper, at in papers:
            self._papers.setdefault(paper.paper_id, (paper, at))   # a newer copy queued meanwhile wins
        for day, listed, at in feeds:
            self._feeds.setdefault(day, (listed, at))
        self._trim()

    def _trim(self) -> None:
        while len(self._papers) > MAX_PENDING_PAPERS:
            oldest = next(iter(self._papers))
            del self._papers[oldest]
            self._recent.pop(oldest, None)
            log.warning("paper write queue full; dropped the queued copy of %s", oldest)

    async def _write_all_now(self) -> None:
        """At close: write everything queued, in batches, one attempt each; report what could not be."""
        while self.pending:
            if not await self._write_batch():
                log.error("could not store %d queued papers and %d feed days at shutdown",
                          len(self._papers), len(self._feeds))
                return
