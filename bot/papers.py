"""Where papers come from: the live API, else the stored copy, else the offline sample.

Every answer carries its provenance so the reply can say "from the stored copy
of <time>" or "offline sample" instead of pretending to be live.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import Protocol, TypeVar
from zoneinfo import ZoneInfo

from bot.hf_client import FeedDayNotOpen, SourceRefused, SourceUnavailable
from bot.schedule import utcnow
from bot.models import Paper
from storage.paper_writer import PaperWriter
from storage.repositories import PaperStore

log = logging.getLogger(__name__)
T = TypeVar("T")

FEED_LOOKBACK_DAYS = 7
OUTAGE_BACKOFF = timedelta(seconds=60)
FEED_TIME_ZONE = ZoneInfo("America/New_York")
NEXT_FEED_DAY_OPENS = time(21, 30)


def current_feed_day(now: datetime) -> date:
    """The latest day of the Hugging Face daily feed that can be open at ``now``.

    The papers site's day is the America/New_York date, and the next day's batch
    opens at 21:30 New York time: from then on the feed day is tomorrow's date.
    This is how Hugging Face's own MCP server computes it (``currentDailyFeedDate``
    in huggingface/hf-mcp-server, packages/mcp/src/hf-fs-papers.ts: the New York
    date, plus one day once the local time is at least 1290 minutes, 21:30), and
    it never asks for a later day. Between 00:00 UTC and 21:30 New York time the
    UTC date is a day ahead of the feed, and Hugging Face answers a request for
    that day with HTTP 400.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    local = now.astimezone(FEED_TIME_ZONE)
    return local.date() + timedelta(days=1 if local.time() >= NEXT_FEED_DAY_OPENS else 0)


class PaperSource(Protocol):
    """The part of the Hugging Face client the service uses."""

    async def daily_papers(self, *, day: date | None = None, sort: str = "publishedAt", limit: int = 100,
                           page: int = 0) -> list[Paper]: ...

    async def search(self, query: str, *, limit: int = 50) -> list[Paper]: ...


class Origin(enum.Enum):
    LIVE = "live"
    STORED = "stored"
    SAMPLE = "sample"


@dataclass(frozen=True, slots=True)
class PaperBatch:
    """Papers plus where they came from and, for a feed, which day."""

    papers: Sequence[Paper]
    origin: Origin
    as_of: datetime | None = None
    day: date | None = None
    warnings: tuple[str, ...] = field(default=())

    def notice(self) -> str | None:
        """The caveat a reply must show, or None for live data."""
        if self.origin is Origin.STORED and self.as_of is not None:
            stamp = self.as_of.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
            return f"Hugging Face is not answering right now; these come from the stored copy of {stamp}."
        if self.origin is Origin.STORED:
            return "Hugging Face is not answering right now; these come from the stored copy."
        if self.origin is Origin.SAMPLE:
            return ("Offline sample: Hugging Face could not be reached and nothing is stored yet, so these come "
                    "from the sample bundled with Paperboy (a snapshot of papers on generalization).")
        return None


class NoPapersAvailable(Exception):
    """Neither the API, the stored copy nor the sample could answer."""


class DeadlinePassed(SourceUnavailable):
    """Upstream did not answer within a person's deadline; the request goes on and fills the cache."""


class PaperService:
    """Fetches papers, stores what it sees, and falls back when upstream is down."""

    def __init__(self, source: PaperSource, store: PaperStore, *,
                 sample: Callable[[], list[Paper]] | None = None,
                 clock: Callable[[], datetime] = utcnow,
                 store_every_seconds: float = 600,
                 writer: PaperWriter | None = None) -> None:
        self._source = source
        self._store = store
        self._sample = sample
        self._clock = clock
        self._down_until: datetime | None = None
        self.asking = 0   # calls to upstream under way now (the console says "asking Hugging Face…")
        # The stored copy is written in the background, in batches: no answer waits for it.
        self.writer = writer or PaperWriter(store, store_every_seconds=store_every_seconds)

    async def close(self) -> None:
        """Store everything still queued (call before the database is closed)."""
        await self.writer.close()

    def _upstream_down(self) -> bool:
        """True while a recent outage says not to wait on upstream again yet."""
        return self._down_until is not None and self._clock() < self._down_until

    async def _within(self, deadline: float | None, call: Awaitable[T]) -> T:
        """``await call``, given up after ``deadline`` seconds (None: no deadline) as :class:`DeadlinePassed`.

        The Hugging Face client's request runs in a shielded task of its own, so giving up here
        leaves it going: a late answer still fills the cache for the next person.
        """
        self.asking += 1
        try:
            if deadline is None:
                return await call
            try:
                async with asyncio.timeout(deadline):
                    return await call
            except TimeoutError:
                raise DeadlinePassed(f"no answer within {deadline:g} s") from None
        finally:
            self.asking -= 1

    def _note_outage(self, exc: SourceUnavailable) -> None:
        """Stop asking upstream for a while, unless it only refused one request, only missed a
        person's deadline (it may still answer), or already is down."""
        if isinstance(exc, DeadlinePassed):
            log.info("Hugging Face did not answer in time for a person: %s; answering from fallbacks", exc)
            return
        if isinstance(exc, SourceRefused):
            log.info("Hugging Face refused a request: %s", exc)
            return
        if self._upstream_down():
            return
        log.warning("Hugging Face unavailable, answering from fallbacks for %ss: %s",
                    int(OUTAGE_BACKOFF.total_seconds()), exc)
        self._down_until = self._clock() + OUTAGE_BACKOFF

    async def search(self, topic: str, *, limit: int = 50, deadline: float | None = None) -> PaperBatch:
        """Candidates for ``topic`` (ranking is the caller's): live, else stored, else sample.

        ``deadline`` (seconds) bounds the wait for Hugging Face, retries included: a person's
        command answers from the fallbacks after it instead of waiting out every retry."""
        try:
            if self._upstream_down():
                raise SourceUnavailable("recent outage")
            papers = await self._within(deadline, self._source.search(topic, limit=limit))
        except SourceUnavailable as exc:
            self._note_outage(exc)
            await self.writer.flush()   # the stored copy includes everything seen so far
            stored, as_of = await self._store.all_papers()
            if stored:
                return PaperBatch(stored, Origin.STORED, as_of=as_of)
            return self._sample_batch()
        self._down_until = None
        self.writer.submit(papers, fetched_at=self._clock())
        return PaperBatch(papers, Origin.LIVE, as_of=self._clock())

    def feed_day(self) -> date:
        """The latest feed day that can be open now (see :func:`current_feed_day`)."""
        return current_feed_day(self._clock())

    async def daily(self, day: date | None = None, *, deadline: float | None = None) -> PaperBatch:
        """The daily list of ``day`` (default: the feed day open now), else the latest earlier day with papers.

        ``day`` is a Hugging Face feed day (:func:`current_feed_day`), never the UTC date. A day
        Hugging Face answers with 400 is not open yet: it is passed over for the day before,
        without any outage back-off or stored-copy notice. The list is the day's batch
        (``date=D&sort=publishedAt``, see :meth:`HuggingFaceClient.daily_papers`); ranking
        it by upvotes is the caller's. ``deadline`` (seconds) bounds the whole look-up, as in
        :meth:`search`.
        """
        today = day or self.feed_day()
        try:
            if self._upstream_down():
                raise SourceUnavailable("recent outage")
            return await self._within(deadline, self._live_daily(today))
        except SourceUnavailable as exc:
            self._note_outage(exc)
            await self.writer.flush()
            stored = await self._store.latest_feed(today)
            if stored is not None:
                stored_day, papers, as_of = stored
                return PaperBatch(papers, Origin.STORED, as_of=as_of, day=stored_day)
            return self._sample_batch(trending=True)

    async def _live_daily(self, today: date) -> PaperBatch:
        """The list of ``today`` or the latest earlier day with papers, from upstream, stored as it comes."""
        for back in range(FEED_LOOKBACK_DAYS + 1):
            candidate = today - timedelta(days=back)
            try:
                papers = await self._source.daily_papers(day=candidate, sort="publishedAt", limit=100)
            except FeedDayNotOpen:
                log.info("the Hugging Face feed of %s is not open yet; using the day before", candidate)
                continue
            if papers:
                self.writer.submit_feed(candidate, papers, fetched_at=self._clock())
                return PaperBatch(papers, Origin.LIVE, as_of=self._clock(), day=candidate)
        return PaperBatch((), Origin.LIVE, as_of=self._clock(), day=None)

    async def recent(self, *, days: int, until: date | None = None, latest: PaperBatch | None = None) -> PaperBatch:
        """Every paper of the daily lists of the last ``days`` feed days (for personal alerts).

        The latest day is :meth:`daily` (or ``latest``, when the caller already has it); each
        earlier day is asked of upstream too -- one call per day -- so a list never stored here (a
        fresh database) or grown since it was stored still counts; a day upstream cannot give comes
        from the stored copy. Newest day first, each paper once.
        """
        if latest is None:
            latest = await self.daily(until)
        if latest.origin is not Origin.LIVE or latest.day is None:
            return latest
        since = latest.day - timedelta(days=max(0, days - 1))
        papers: dict[str, Paper] = {p.paper_id: p for p in latest.papers}
        for back in range(1, max(1, days)):
            earlier = latest.day - timedelta(days=back)
            fetched = await self._earlier_day(earlier)
            for paper in fetched:
                papers.setdefault(paper.paper_id, paper)
        await self.writer.flush()   # the feeds just fetched are read back from storage
        for paper in await self._store.feed_since(since):
            papers.setdefault(paper.paper_id, paper)
        return PaperBatch(tuple(papers.values()), Origin.LIVE, as_of=latest.as_of, day=latest.day)

    async def _earlier_day(self, day: date) -> list[Paper]:
        """``day``'s list from upstream (stored as it comes), or nothing when upstream cannot give it."""
        if self._upstream_down():
            return []
        try:
            papers = await self._source.daily_papers(day=day, sort="publishedAt", limit=100)
        except SourceUnavailable as exc:
            self._note_outage(exc)
            return []
        if papers:
            self.writer.submit_feed(day, papers, fetched_at=self._clock())
        return papers

    async def known(self, paper_id: str) -> Paper | None:
        """A paper this bot has shown: from the stored copy (after writing what is pending), else the
        offline sample; None if unknown."""
        if len(paper_id) <= 64:   # the stored copy's id column
            stored = await self._store.get(paper_id)
            if stored is None and self.writer.pending:
                await self.writer.flush()
                stored = await self._store.get(paper_id)
            if stored is not None:
                return stored
        for paper in (self._sample() if self._sample else ()):
            if paper.paper_id == paper_id:
                return paper
        return None

    def _sample_batch(self, *, trending: bool = False) -> PaperBatch:
        papers = self._sample() if self._sample else []
        if not papers:
            raise NoPapersAvailable("Hugging Face cannot be reached and no papers are stored yet.")
        if trending:
            papers = sorted(papers, key=lambda p: -p.upvotes)
        return PaperBatch(papers, Origin.SAMPLE)
