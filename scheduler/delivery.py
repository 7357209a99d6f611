"""One delivery pass: claim what is due, build each post or alert, send, record.

:func:`run_delivery_pass` is what ``paperboy deliver --now`` and every tick of
:class:`scheduler.clock.DeliveryScheduler` run. A pass

1. takes over stale claims and retryable failures (:meth:`Deliveries.reclaim`),
2. claims due subscriptions in batches (:meth:`Deliveries.claim_due_channels`,
   :meth:`Deliveries.claim_due_alerts`), which also advances their next due
   time, so a pass never holds more than one batch in memory,
3. fetches the day's feed once (lazily, at the first job that needs it),
4. sends with bounded concurrency through :mod:`scheduler.fanout`, and
5. writes outcomes to the ledger in group commits while sending continues.

Idempotent sends. Every message carries its delivery's key
(:class:`adapters.base.DeliveryKey`): on Discord a nonce that Discord itself
refuses to post twice within a few minutes, on Slack message metadata. A send
whose outcome is unknown -- a timeout or a connection dropped after the
request was written, or a claim left ``claimed`` by a process that died -- is
never simply sent again: the next attempt first asks the platform
(:meth:`Adapter.find_delivery`, Slack's ``conversations.history``) and records
the message as sent when it is there. Where the platform cannot be asked (a
Slack workspace that did not grant the history scopes), it is sent again, as
before.

Record before you forget. A claim stays held -- its lease renewed by this
pass's heartbeat every third of the lease -- until its outcome is committed,
so nobody takes a claim over while its ``sent`` mark waits for the group
commit. Claims of a process that died are taken over once the lease
(:data:`CLAIM_LEASE`, 90 s) has passed: by then its requests have ended
(the send timeout is shorter), so the history check sees every message it got
through, and a Discord retry falls inside Discord's nonce window.

A pass never sends posts or alerts built from the offline sample: when
Hugging Face cannot be reached and nothing is stored, the jobs fail with
"paper source unavailable" and are retried by later passes within the grace
window.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time as monotonic_time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta, timezone
from typing import TYPE_CHECKING

from adapters.base import DeliveryKey, FailureKind, HistoryUnavailable, SendError, SentMessage
from bot.feedback import TopicTaste, Vote, learn, personalise
from bot.matching import TopicIndex
from bot.models import ChannelRef, RankedPaper, Reply, ReplyKind, Section, UserRef
from bot.papers import Origin, current_feed_day
from bot.present import present
from bot.ranking import rank_matches
from bot.schedule import utcnow
from scheduler.fanout import Sender, fan_out
from storage.deliveries import (
    ALERT,
    CHANNEL,
    FAILED,
    OUTCOME_UNKNOWN,
    PAUSED,
    SENT,
    SKIPPED,
    AlertJob,
    ChannelJob,
    ClaimResult,
    Deliveries,
    Job,
    Outcome,
    Schedule,
)

if TYPE_CHECKING:  # bot.app pulls in the HTTP client; the pass only needs its attributes
    from bot.app import App
    from bot.papers import PaperBatch

log = logging.getLogger(__name__)

BATCH_SIZE = 500
RECORD_BATCH = 500
RECORD_LINGER = 0.25
# A claim not renewed for this long belongs to a process that died. Longer than the send timeout (so the
# dead process's requests have ended when the claim is taken over and the history check runs), shorter than
# Discord's nonce window ("a few minutes", so a repeat is still recognised); the heartbeat renews every 30 s.
CLAIM_LEASE = timedelta(seconds=90)
RETRY_DELAY = timedelta(minutes=2)
MAX_ATTEMPTS = 5
ALERT_FEED_DAYS = 2
# Upkeep (once a day): the ledger only has to outlive the grace window to stop a second claim of a
# day; a month keeps it useful for looking back. A paper reaches an alert only from the feed of the
# last ALERT_FEED_DAYS days, and Hugging Face lists a paper on one feed day, so a paper sent 90 days
# ago is never a candidate again: forgetting it then cannot send it twice.
LEDGER_RETENTION = timedelta(days=30)
SENT_PAPERS_RETENTION = timedelta(days=90)
ALERT_PAPERS_PER_TOPIC = 5
ALERT_PAPERS_TOTAL = 15
SECTION_CACHE_SIZE = 20_000

NO_NEW_PAPERS = "no new papers on the feed"
NOTHING_NEW = "no new papers on the person's topics"
NO_TOPICS = "follows no topics"
SOURCE_DOWN = "paper source unavailable"
PER_SCOPE_CONCURRENCY = 16   # workers one workspace may hold, so a rate-limited one cannot stall the rest


def default_worker_id() -> str:
    """Host, process and a random suffix: unique per pass, readable in the ledger."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass
class DeliveryReport:
    """What one pass did; ``preview`` lists (target, summary) for a dry run."""

    started_at: datetime
    dry_run: bool = False
    sent: int = 0
    skipped: int = 0
    missed: int = 0
    failed: int = 0
    paused: int = 0
    duplicates_avoided: int = 0
    recovered: int = 0
    rate_limited: int = 0
    found_delivered: int = 0     # unknown outcomes found in the platform's history: recorded, not sent again
    unchecked_resends: int = 0   # unknown outcomes sent again because the platform could not be asked
    feed_fetches: int = 0
    elapsed_seconds: float = 0.0
    preview: list[tuple[str, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def add_claims(self, result: ClaimResult) -> None:
        self.missed += result.missed
        self.skipped += result.missed
        self.duplicates_avoided += result.duplicates

    def as_dict(self) -> dict[str, object]:
        return {
            "sent": self.sent, "skipped": self.skipped, "missed": self.missed, "failed": self.failed,
            "paused": self.paused, "duplicates_avoided": self.duplicates_avoided, "recovered": self.recovered,
            "rate_limited": self.rate_limited, "found_delivered": self.found_delivered,
            "unchecked_resends": self.unchecked_resends, "feed_fetches": self.feed_fetches,
            "elapsed_seconds": round(self.elapsed_seconds, 3),
        }

    def lines(self) -> list[str]:
        """A printable summary (the output of ``paperboy deliver --now``)."""
        out: list[str] = []
        if self.dry_run:
            out.append(f"Dry run at {self.started_at:%Y-%m-%d %H:%M} UTC: nothing was sent.")
            out.extend(f"  {target}: {summary}" for target, summary in self.preview)
            if not self.preview:
                out.append("  nothing is due.")
            return out
        out.append(f"Delivery pass at {self.started_at:%Y-%m-%d %H:%M} UTC took {self.elapsed_seconds:.1f}s:")
        out.append(f"  sent {self.sent}, skipped {self.skipped} (of which missed the grace window {self.missed}), "
                   f"failed {self.failed}, paused {self.paused}")
        out.append(f"  duplicates avoided {self.duplicates_avoided}, stale claims retried {self.recovered}, "
                   f"rate-limited answers {self.rate_limited}, paper feed fetches {self.feed_fetches}")
        if self.found_delivered or self.unchecked_resends:
            out.append(f"  unknown outcomes found already delivered {self.found_delivered}, "
                       f"sent again unchecked (no history access) {self.unchecked_resends}")
        out.extend(f"  problem: {p}" for p in self.problems)
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())


@dataclass(frozen=True, slots=True)
class Message:
    """A built post or alert, ready to send."""

    job: Job
    reply: Reply
    paper_ids: tuple[str, ...] = ()
    feed_day: date | None = None


def target_id_of(target: ChannelRef | UserRef) -> str:
    return target.channel if isinstance(target, ChannelRef) else target.user


def target_name(job: Job) -> str:
    if isinstance(job, ChannelJob):
        return f"{job.channel.platform}:{job.channel.workspace}/#{job.channel.channel}"
    return f"{job.user.platform}:{job.user.workspace}/@{job.user.user}"


def _kind(job: Job) -> str:
    return CHANNEL if isinstance(job, ChannelJob) else ALERT


def _subscription_id(job: Job) -> int:
    return job.subscription_id if isinstance(job, ChannelJob) else job.profile_id


def _platform(job: Job) -> tuple[str, str]:
    ref = job.channel if isinstance(job, ChannelJob) else job.user
    return ref.platform, ref.workspace


# --- building alerts ---------------------------------------------------------------------------


class AlertMatcher:
    """Topic matches against one feed, ranked and presented once per distinct topic.

    Most people share their topics with many others, so the sections of an
    alert are built once per (topic, room left, papers already taken) and
    shared between the alerts that need the same one.
    """

    def __init__(self, batch: PaperBatch, *, now: datetime, section_cache_size: int = SECTION_CACHE_SIZE) -> None:
        self.batch = batch
        self.now = now
        self.index = TopicIndex(list(batch.papers))
        self.paper_ids = tuple(dict.fromkeys(p.paper_id for p in batch.papers))
        self.notices = tuple(n for n in (batch.notice(),) if n)
        self._ranked: dict[str, list[RankedPaper]] = {}
        self._ranked_ids: dict[str, frozenset[str]] = {}
        self._sections: dict[tuple[str, int, frozenset[str]], tuple[Section, tuple[str, ...]]] = {}
        self._section_cache_size = section_cache_size

    def ranked(self, topic: str) -> list[RankedPaper]:
        """Papers matching ``topic``, best first, with why they matched (same rules as search)."""
        cached = self._ranked.get(topic)
        if cached is None:
            ranked = rank_matches(self.index.match(topic), now=self.now)
            cached = self._ranked[topic] = [present(r, 0) for r in ranked]
            self._ranked_ids[topic] = frozenset(r.paper.paper_id for r in cached)
        return cached

    def _section(self, topic: str, room: int, taken: set[str]) -> tuple[Section, tuple[str, ...]] | None:
        """The section for ``topic`` without the papers in ``taken`` (at most ``room``) and the ids it shows."""
        ranked = self.ranked(topic)
        excluded = self._ranked_ids[topic].intersection(taken) if taken else frozenset()
        if len(excluded) == len(ranked):
            return None
        key = (topic, room, excluded)
        cached = self._sections.get(key)
        if cached is None:
            fresh = [r for r in ranked if r.paper.paper_id not in excluded] if excluded else ranked
            shown = fresh[:room]
            section = Section(papers=tuple(replace(r, rank=i + 1) for i, r in enumerate(shown)),
                              heading=topic, topic=topic, more=len(fresh) - len(shown))
            cached = (section, tuple(r.paper.paper_id for r in shown))
            if len(self._sections) < self._section_cache_size:
                self._sections[key] = cached
        return cached

    def _personal_section(self, topic: str, taste: TopicTaste, room: int,
                          taken: set[str]) -> tuple[Section, tuple[str, ...]] | None:
        """Like :meth:`_section`, re-ranked and thresholded by one person's taste (never cached)."""
        voted = taste.voted_ids   # already seen and judged: not news any more
        fresh = [r for r in personalise(self.ranked(topic), taste)
                 if r.paper.paper_id not in taken and r.paper.paper_id not in voted]
        if not fresh:
            return None
        shown = fresh[:room]
        section = Section(papers=tuple(replace(r, rank=i + 1) for i, r in enumerate(shown)),
                          heading=topic, topic=topic, more=len(fresh) - len(shown))
        return section, tuple(r.paper.paper_id for r in shown)

    def compose(self, topics: Sequence[str], already_sent: set[str],
                tastes: Mapping[str, TopicTaste] | None = None) -> tuple[Reply | None, tuple[str, ...]]:
        """The alert for someone following ``topics``; None when nothing is new for them.

        ``tastes`` holds what the person's votes taught per topic; topics without one are
        ranked exactly as for everyone else.
        """
        taken: set[str] = set(already_sent)
        sections: list[Section] = []
        shown_ids: list[str] = []
        for topic in topics:
            room = min(ALERT_PAPERS_PER_TOPIC, ALERT_PAPERS_TOTAL - len(shown_ids))
            if room <= 0:
                break
            taste = tastes.get(topic) if tastes else None
            built = self._personal_section(topic, taste, room, taken) if taste is not None \
                else self._section(topic, room, taken)
            if built is None:
                continue
            section, ids = built
            taken |= self._ranked_ids[topic]
            shown_ids.extend(ids)
            sections.append(section)
        if not sections:
            return None, ()
        count = len(shown_ids)
        reply = Reply(
            kind=ReplyKind.PERSONAL_ALERT,
            title="New papers on your topics",
            lines=(f"{count} new paper{'s' if count != 1 else ''} on {len(sections)} of your topics.",),
            sections=tuple(sections), notices=self.notices, day=self.batch.day, ephemeral=False,
            footer="Your topics: /papers subscriptions · stop these: /papers alerts off",
        )
        return reply, tuple(shown_ids)


def summarize(message: Message) -> str:
    """One line on what a message holds (for dry runs and logs)."""
    reply = message.reply
    if isinstance(message.job, ChannelJob):
        feed = f" from the feed of {message.feed_day}" if message.feed_day else ""
        return f"daily post, {len(reply.papers)} papers{feed}"
    topics = ", ".join(s.heading or "" for s in reply.sections)
    return f"alert, {len(reply.papers)} new papers on {topics}"


# --- the pass ------------------------------------------------------------------------------------


class OutcomeWriter:
    """Group commit: outcomes queue up while one transaction writes the previous ones.

    A write starts once ``batch`` outcomes are waiting or ``linger`` seconds
    after the first one arrived, whichever is first, so a commit carries many
    outcomes instead of the few that finished since the last one.
    """

    def __init__(self, deliveries: Deliveries, stamp, *, batch: int = RECORD_BATCH,  # noqa: ANN001
                 linger: float = RECORD_LINGER, on_written: Callable[[list[Outcome]], None] | None = None) -> None:
        self._deliveries = deliveries
        self._on_written = on_written
        self._stamp = stamp
        self._batch = batch
        self._linger = linger
        self._pending: list[Outcome] = []
        self._wakeup = asyncio.Event()
        self._full = asyncio.Event()
        self._closing = False
        self.lost: int = 0
        self._task = asyncio.create_task(self._loop())

    def add(self, outcome: Outcome) -> None:
        self._pending.append(outcome)
        self._wakeup.set()
        if len(self._pending) >= self._batch:
            self._full.set()

    async def _write(self, outcomes: list[Outcome]) -> None:
        for attempt in range(3):
            try:
                await self._deliveries.record(outcomes, now=self._stamp())
                if self._on_written is not None:
                    self._on_written(outcomes)
                return
            except Exception:  # noqa: BLE001 - retried, then left to the lease
                log.exception("recording %d delivery outcomes failed (attempt %d)", len(outcomes), attempt + 1)
                await asyncio.sleep(0.5 * (attempt + 1))
        self.lost += len(outcomes)

    async def _loop(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            if self._linger > 0 and not self._closing and len(self._pending) < self._batch:
                try:
                    async with asyncio.timeout(self._linger):
                        await self._full.wait()
                except TimeoutError:
                    pass
            self._full.clear()
            while self._pending:
                outcomes, self._pending = self._pending[:self._batch], self._pending[self._batch:]
                await self._write(outcomes)
            if self._closing:
                return

    async def close(self) -> None:
        self._closing = True
        self._wakeup.set()
        self._full.set()
        await self._task


class DeliveryPass:
    """The state of one pass: the feeds fetched, the sender, the counts."""

    def __init__(self, app: App, *, now: datetime, dry_run: bool, worker_id: str, lease: timedelta,
                 batch_size: int, sender: Sender | None) -> None:
        self.app = app
        self.settings = app.settings
        self.now = now
        self.dry_run = dry_run
        self.worker_id = worker_id
        self.lease = lease
        self.batch_size = batch_size
        self.grace = timedelta(hours=self.settings.delivery_grace_hours)
        self.schedule = Schedule(self.settings.default_post_time, self.settings.default_timezone)
        self.deliveries = Deliveries(app.storage.db)
        self.sender = sender or Sender()
        self.report = DeliveryReport(started_at=now, dry_run=dry_run)
        self.platforms: list[str] | None = None if dry_run else app.adapters.platforms()
        self._started = monotonic_time.monotonic()
        self._channel_feed: PaperBatch | None = None
        self._channel_feed_failed = False
        self._matcher: AlertMatcher | None = None
        self._alert_feed_failed = False
        self._trending: dict[int, Reply] = {}
        self._gone_workspaces: set[tuple[str, str]] = set()
        self._writer: OutcomeWriter | None = None
        self._held: set[int] = set()   # delivery ids claimed by this pass whose outcome is not committed yet
        self._no_history: set[tuple[str, str]] = set()   # workspaces whose history cannot be read

    def stamp(self) -> datetime:
        """``now`` moved on by the time the pass has been running."""
        return self.now + timedelta(seconds=monotonic_time.monotonic() - self._started)

    # --- feeds, fetched once per pass ---

    @staticmethod
    def _real(batch: PaperBatch) -> PaperBatch:
        """``batch`` unless it is the offline sample, which is never delivered."""
        if batch.origin is Origin.SAMPLE:
            raise SourceDown("Hugging Face cannot be reached and no feed is stored (only the offline sample)")
        return batch

    async def channel_feed(self) -> PaperBatch | None:
        if self._channel_feed is None and not self._channel_feed_failed:
            self.report.feed_fetches += 1
            try:
                feed_day = current_feed_day(self.now)   # the Hugging Face feed day, never the UTC date
                self._channel_feed = self._real(await _with_retries(lambda: self.app.papers.daily(feed_day)))
            except Exception as exc:  # noqa: BLE001 - NoPapersAvailable or a bug: retry next pass
                log.warning("daily feed unavailable for channel posts: %s", exc)
                self._channel_feed_failed = True
                self.report.problems.append(f"daily feed unavailable: {exc}")
        return self._channel_feed

    async def alert_matcher(self) -> AlertMatcher | None:
        if self._matcher is None and not self._alert_feed_failed:
            self.report.feed_fetches += 1
            try:
                # the last two feed days, the latest one shared with the channel posts when they fetched it
                feed_day = current_feed_day(self.now)
                batch = self._real(await _with_retries(lambda: self.app.papers.recent(
                    days=ALERT_FEED_DAYS, until=feed_day, latest=self._channel_feed)))
                self._matcher = AlertMatcher(batch, now=self.now)
            except Exception as exc:  # noqa: BLE001
                log.warning("recent feed unavailable for alerts: %s", exc)
                self._alert_feed_failed = True
                self.report.problems.append(f"recent feed unavailable: {exc}")
        return self._matcher

    # --- building messages ---

    async def _trending_reply(self, top_n: int, feed: PaperBatch) -> Reply:
        reply = self._trending.get(top_n)
        if reply is None:
            reply = self._trending[top_n] = await self.app.core.trending_reply(
                limit=top_n, kind=ReplyKind.CHANNEL_DIGEST, batch=feed)
        return reply

    async def build_channel_posts(self, jobs: Sequence[ChannelJob]) -> AsyncIterator[Message | Outcome]:
        feed = await self.channel_feed()
        post_anyway = self.settings.post_on_empty_days
        for job in jobs:
            if feed is None:
                yield Outcome(CHANNEL, job.delivery_id, job.subscription_id, FAILED, error=SOURCE_DOWN,
                              free_retry=True)
                continue
            fresh = bool(feed.papers) and feed.day is not None and feed.day != job.last_feed_day \
                and feed.day >= job.day - timedelta(days=1)
            if not (fresh or job.post_when_empty or post_anyway):
                yield Outcome(CHANNEL, job.delivery_id, job.subscription_id, SKIPPED, error=NO_NEW_PAPERS)
                continue
            reply = await self._trending_reply(job.top_n, feed)
            yield Message(job, reply, tuple(p.paper.paper_id for p in reply.papers), feed.day)

    async def build_alerts(self, jobs: Sequence[AlertJob]) -> AsyncIterator[Message | Outcome]:
        with_topics = [job for job in jobs if job.topics]
        matcher = await self.alert_matcher() if with_topics else None
        already: dict[int, set[str]] = {}
        votes: dict[int, dict[str, list[Vote]]] = {}
        if matcher is not None and matcher.paper_ids:
            already = await self.deliveries.sent_paper_ids([j.profile_id for j in with_topics], matcher.paper_ids)
            votes = await self._votes([j.profile_id for j in with_topics])
        for job in jobs:
            if not job.topics:
                yield Outcome(ALERT, job.delivery_id, job.profile_id, SKIPPED, error=NO_TOPICS)
                continue
            if matcher is None:
                yield Outcome(ALERT, job.delivery_id, job.profile_id, FAILED, error=SOURCE_DOWN, free_retry=True)
                continue
            tastes = {topic: taste for topic, topic_votes in votes.get(job.profile_id, {}).items()
                      if topic in job.topics and (taste := learn(topic, topic_votes)) is not None}
            reply, paper_ids = matcher.compose(job.topics, already.get(job.profile_id, set()), tastes)
            if reply is None:
                yield Outcome(ALERT, job.delivery_id, job.profile_id, SKIPPED, error=NOTHING_NEW)
                continue
            yield Message(job, reply, paper_ids, matcher.batch.day)

    async def _votes(self, profile_ids: list[int]) -> dict[int, dict[str, list[Vote]]]:
        """People's votes for personalising their alerts; on a storage error, alerts go out unpersonalised."""
        try:
            return await self.app.storage.feedback.for_profiles(profile_ids)
        except Exception:  # noqa: BLE001 - the alert itself matters more than its tuning
            log.exception("reading feedback for %d alerts failed; sending them unpersonalised", len(profile_ids))
            return {}

    async def _build(self, jobs: Sequence[Job]) -> AsyncIterator[Message | Outcome]:
        channels = [j for j in jobs if isinstance(j, ChannelJob)]
        alerts = [j for j in jobs if isinstance(j, AlertJob)]
        if channels:
            async for item in self.build_channel_posts(channels):
                yield item
        if alerts:
            async for item in self.build_alerts(alerts):
                yield item

    # --- the stream of work ---

    async def _claimed_jobs(self) -> AsyncIterator[list[Job]]:
        """Batches of claimed jobs: stale claims and retries first, then what is newly due."""
        for kind in (CHANNEL, ALERT):
            while True:
                result = await self.deliveries.reclaim(
                    kind, now=self.now, lease=self.lease, grace=self.grace, worker_id=self.worker_id,
                    platforms=self.platforms, retry_delay=RETRY_DELAY, max_attempts=MAX_ATTEMPTS,
                    limit=self.batch_size, claimed_at=self.stamp())
                self.report.add_claims(result)
                if not result.jobs:
                    break
                self.report.recovered += len(result.jobs)
                self._hold(result.jobs)
                yield result.jobs
            while True:
                if kind == CHANNEL:
                    result = await self.deliveries.claim_due_channels(
                        now=self.now, grace=self.grace, worker_id=self.worker_id, platforms=self.platforms,
                        fallback_zone=self.settings.default_timezone, limit=self.batch_size,
                        claimed_at=self.stamp())
                else:
                    result = await self.deliveries.claim_due_alerts(
                        now=self.now, grace=self.grace, worker_id=self.worker_id, platforms=self.platforms,
                        schedule=self.schedule, limit=self.batch_size, claimed_at=self.stamp())
                self.report.add_claims(result)
                if not result.scanned:
                    break
                if result.jobs:
                    self._hold(result.jobs)
                    yield result.jobs

    async def _messages(self) -> AsyncIterator[Message]:
        async for jobs in self._claimed_jobs():
            async for item in self._build(jobs):
                if isinstance(item, Outcome):
                    self._finish(item)
                else:
                    yield item

    def _hold(self, jobs: Sequence[Job]) -> None:
        self._held.update(job.delivery_id for job in jobs)

    async def _renew_leases(self) -> None:
        """Heartbeat: keep the claims this pass still holds from looking abandoned."""
        interval = self.lease.total_seconds() / 3
        while True:
            await asyncio.sleep(interval)
            if not self._held:
                continue
            try:
                await self.deliveries.renew(set(self._held), worker_id=self.worker_id, claimed_at=self.stamp())
            except Exception:  # noqa: BLE001 - the next heartbeat tries again
                log.warning("renewing %d claims failed", len(self._held), exc_info=True)

    def _written(self, outcomes: list[Outcome]) -> None:
        """Committed outcomes: their claims need no more heartbeats."""
        for outcome in outcomes:
            self._held.discard(outcome.delivery_id)

    async def _hand_back(self) -> None:
        """Cancelled (the process is stopping): mark this pass's unfinished claims stale at once, so the
        next pass of any process takes them over without waiting out the lease. Taken-over claims are
        looked up on the platform before sending, so a send cut short is not posted twice."""
        if not self._held:
            return
        try:
            count = await self.deliveries.renew(set(self._held), worker_id=self.worker_id,
                                                claimed_at=self.stamp() - self.lease - timedelta(seconds=1))
        except Exception:  # noqa: BLE001 - then the lease hands them back
            log.warning("handing back %d claims failed; they are taken over after the lease", len(self._held),
                        exc_info=True)
            return
        log.warning("delivery pass cancelled: %d unfinished claims handed back to the next pass", count)

    def _finish(self, outcome: Outcome) -> None:
        report = self.report
        if outcome.status == SENT:
            report.sent += 1
        elif outcome.status == SKIPPED:
            report.skipped += 1
        elif outcome.status == PAUSED:
            report.paused += 1
        else:
            report.failed += 1
        assert self._writer is not None
        self._writer.add(outcome)

    # --- sending ---

    async def _send(self, message: Message) -> None:
        job = message.job
        kind, sub_id = _kind(job), _subscription_id(job)
        scope = _platform(job)
        if scope in self._gone_workspaces:
            self._finish(Outcome(kind, job.delivery_id, sub_id, PAUSED, error="workspace uninstalled"))
            return
        adapter = self.app.adapters.get(scope[0])
        if adapter is None:
            self._finish(Outcome(kind, job.delivery_id, sub_id, FAILED, error=f"no {scope[0]} adapter running"))
            return
        target: ChannelRef | UserRef = job.channel if isinstance(job, ChannelJob) else job.user
        key = DeliveryKey(job.delivery_id, job.due_at)
        look_first = job.look_first
        found = False

        async def attempt() -> SentMessage:
            nonlocal look_first, found
            if look_first:
                earlier = await self._look(adapter, target, key)
                if earlier is not None:
                    found = True
                    return earlier
                look_first = False
            try:
                if isinstance(target, ChannelRef):
                    return await adapter.send_to_channel(target, message.reply, key=key)
                return await adapter.send_to_user(target, message.reply, key=key)
            except SendError as exc:
                if exc.kind is FailureKind.UNKNOWN_OUTCOME:
                    look_first = True
                raise
            except BaseException:   # cut short (the send timeout) after the request may have gone out
                look_first = True
                raise

        result = await self.sender.send(scope, attempt, target=target_id_of(target))
        self.report.rate_limited += result.rate_limited
        if result.rate_limited and getattr(self.app, "metrics", None) is not None:
            self.app.metrics.rate_limited(scope[0], result.rate_limited)
        if result.ok:
            if found:
                self.report.found_delivered += 1
            self._finish(Outcome(kind, job.delivery_id, sub_id, SENT, paper_ids=message.paper_ids,
                                 feed_day=message.feed_day))
            return
        assert result.error is not None
        status = await self._act_on_failure(job, result.error)
        error = str(result.error)
        if look_first and status == FAILED:
            error = OUTCOME_UNKNOWN + error   # whoever retries it looks first
        self._finish(Outcome(kind, job.delivery_id, sub_id, status, error=error))

    async def _look(self, adapter: object, target: ChannelRef | UserRef, key: DeliveryKey) -> SentMessage | None:
        """Whether ``key`` already reached ``target``; None to send (also when the platform cannot be asked).

        Raises :class:`SendError` when asking failed for now: the send is then retried, never made blind.
        """
        scope = (target.platform, target.workspace)
        find = getattr(adapter, "find_delivery", None)
        if find is None or scope in self._no_history:
            self.report.unchecked_resends += 1
            return None
        try:
            return await find(target, key)
        except HistoryUnavailable as exc:
            self._no_history.add(scope)
            self.report.unchecked_resends += 1
            log.warning("cannot check whether deliveries reached %s:%s (%s); sending again unchecked, a "
                        "duplicate is possible", target.platform, target.workspace, exc)
            return None

    async def _act_on_failure(self, job: Job, error: SendError) -> str:
        """Pause what must stop; returns the ledger status (paused or failed)."""
        kind = error.kind
        platform, workspace = _platform(job)
        if kind is FailureKind.MISCONFIGURED:
            log.error("delivery to %s failed because the %s app is misconfigured (%s): fix its scopes or token; "
                      "nothing is paused and the send is retried", target_name(job), platform, error.detail)
            return FAILED
        log.warning("delivery to %s failed: %s", target_name(job), error)
        try:
            if kind is FailureKind.INSTALL_GONE:
                self._gone_workspaces.add((platform, workspace))
                await self.app.storage.workspaces.deactivate(platform, workspace, error.detail or kind.value)
                return PAUSED
            if isinstance(job, ChannelJob) and kind in (FailureKind.TARGET_GONE, FailureKind.NOT_IN_CHANNEL,
                                                        FailureKind.FORBIDDEN, FailureKind.DMS_CLOSED):
                await self.app.storage.channels.pause(job.subscription_id, _channel_pause_reason(error))
                if kind in (FailureKind.NOT_IN_CHANNEL, FailureKind.FORBIDDEN) and job.created_by:
                    await self._tell_creator(job, kind)
                return PAUSED
            if isinstance(job, AlertJob) and kind in (FailureKind.DMS_CLOSED, FailureKind.TARGET_GONE,
                                                      FailureKind.FORBIDDEN, FailureKind.NOT_IN_CHANNEL):
                await self.app.storage.topics.pause(job.user, "direct messages closed", ALERTS_PAUSED_NOTICE)
                return PAUSED
        except Exception:  # noqa: BLE001 - the ledger still records the failure
            log.exception("pausing after a failed delivery to %s failed", target_name(job))
        return FAILED

    async def _tell_creator(self, job: ChannelJob, kind: FailureKind) -> None:
        """DM whoever set the channel post up how to fix it (best effort)."""
        adapter = self.app.adapters.get(job.channel.platform)
        if adapter is None or job.created_by is None:
            return
        creator = UserRef(job.channel.platform, job.channel.workspace, job.created_by)
        result = await self.sender.send(_platform(job), lambda: adapter.send_to_user(creator, creator_notice(
            job.channel, kind)))
        if not result.ok:
            log.info("could not tell %s about the paused post: %s", creator.user, result.error)

    # --- dry run ---

    async def _preview(self) -> None:
        for kind in (CHANNEL, ALERT):
            after: tuple[datetime, int] | None = None
            while True:
                if kind == CHANNEL:
                    jobs: Sequence[Job] = await self.deliveries.preview_channels(
                        now=self.now, after=after, fallback_zone=self.settings.default_timezone,
                        limit=self.batch_size)
                else:
                    jobs = await self.deliveries.preview_alerts(now=self.now, after=after, schedule=self.schedule,
                                                                limit=self.batch_size)
                if not jobs:
                    break
                after = (jobs[-1].due_at, _subscription_id(jobs[-1]))
                late = {id(j) for j in jobs if self.now - j.due_at > self.grace}
                for j in jobs:
                    if id(j) in late:
                        self.report.preview.append((target_name(j), "skip: missed the grace window"))
                        self.report.skipped += 1
                        self.report.missed += 1
                async for item in self._build([j for j in jobs if id(j) not in late]):
                    if isinstance(item, Outcome):
                        job = _job_of(item, jobs)
                        self.report.preview.append((target_name(job), f"nothing: {item.error}"))
                        self.report.skipped += 1
                    else:
                        self.report.preview.append((target_name(item.job), summarize(item)))
                        self.report.sent += 1

    async def run(self) -> DeliveryReport:
        try:
            if self.dry_run:
                await self._preview()
                return self.report
            if not self.platforms:
                self.report.problems.append("no platform adapter is running; nothing was claimed")
                return self.report
            self._writer = OutcomeWriter(self.deliveries, self.stamp, on_written=self._written)
            heartbeat = asyncio.create_task(self._renew_leases())
            cancelled = False
            try:
                await fan_out(self._messages(), self._send, concurrency=self.settings.delivery_concurrency,
                              scope_of=lambda message: _platform(message.job), per_scope=PER_SCOPE_CONCURRENCY)
            except asyncio.CancelledError:
                cancelled = True
                raise
            finally:
                heartbeat.cancel()
                await asyncio.gather(heartbeat, return_exceptions=True)
                await self._writer.close()
                if cancelled:
                    await self._hand_back()
            if self._writer.lost:
                self.report.problems.append(f"{self._writer.lost} outcomes could not be recorded; "
                                            "they will be retried after the claim lease")
            return self.report
        finally:
            self.report.elapsed_seconds = monotonic_time.monotonic() - self._started


class SourceDown(Exception):
    """The paper source gave nothing a delivery may be built from."""


async def _with_retries(fetch, attempts: int = 3):  # noqa: ANN001, ANN202
    """``fetch()``, tried again after a short pause when it raises (e.g. two processes storing the same feed)."""
    for attempt in range(attempts):
        try:
            return await fetch()
        except Exception:  # noqa: BLE001
            if attempt == attempts - 1:
                raise
            log.warning("fetching the feed failed (attempt %d); trying again", attempt + 1, exc_info=True)
            await asyncio.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def _job_of(outcome: Outcome, jobs: Sequence[Job]) -> Job:
    for job in jobs:
        if _kind(job) == outcome.kind and _subscription_id(job) == outcome.subscription_id:
            return job
    raise LookupError(outcome)


ALERTS_PAUSED_NOTICE = ("Your daily paper alerts are paused: I could not send you a direct message. "
                        "Allow direct messages from Paperboy, then turn alerts back on with /papers alerts on")


def _channel_pause_reason(error: SendError) -> str:
    reasons = {
        FailureKind.TARGET_GONE: "the channel is gone or archived",
        FailureKind.NOT_IN_CHANNEL: "the bot is not in the channel",
        FailureKind.FORBIDDEN: "the bot lacks permission to post",
        FailureKind.DMS_CLOSED: "the platform refused the post",
    }
    reason = reasons.get(error.kind, error.kind.value)
    return f"{reason} ({error.detail})" if error.detail else reason


def creator_notice(channel: ChannelRef, kind: FailureKind) -> Reply:
    """What the person who set up a channel post is told when the bot cannot post there."""
    if kind is FailureKind.NOT_IN_CHANNEL:
        problem = "I am not a member of the channel (id " + channel.channel + ") where you set up the daily papers post."
        fix = ("Invite me: in Slack type /invite @Paperboy in that channel; in Discord give Paperboy access to the "
               "channel. Then run /papers channel on there to resume the post.")
    else:
        problem = ("I am not allowed to post in the channel (id " + channel.channel + ") where you set up the daily "
                   "papers post.")
        fix = ("Give me permission to post there (Slack: the chat:write scope; Discord: View Channel, Send Messages "
               "and Embed Links), then run /papers channel on in that channel to resume the post.")
    return Reply(kind=ReplyKind.CHANNEL_SETTING, title="Your daily papers post is paused",
                 lines=(problem, fix), ephemeral=False)


async def prune_history(app: App, *, now: datetime) -> tuple[int, int]:
    """Forget ledger rows and sent papers older than their retention; returns (ledger rows, sent papers)."""
    pruned = await Deliveries(app.storage.db).prune(ledger_before=(now - LEDGER_RETENTION).date(),
                                                    sent_papers_before=now - SENT_PAPERS_RETENTION)
    if any(pruned):
        log.info("pruned %d ledger rows and %d sent-paper records", *pruned)
    return pruned


async def run_delivery_pass(app: App, *, now: datetime | None = None, dry_run: bool = False,
                            worker_id: str | None = None, lease: timedelta = CLAIM_LEASE,
                            batch_size: int = BATCH_SIZE, sender: Sender | None = None) -> DeliveryReport:
    """Deliver everything due at ``now`` (default: the current time) once; see the module docstring."""
    now = now or utcnow()
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    delivery_pass = DeliveryPass(app, now=now.astimezone(timezone.utc), dry_run=dry_run,
                                 worker_id=worker_id or default_worker_id(), lease=lease, batch_size=batch_size,
                                 sender=sender)
    report = await delivery_pass.run()
    log.info("delivery pass: %s", report.as_dict())
    return report
