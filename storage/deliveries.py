"""The delivery ledger and the queries that say what is due.

A delivery is *claimed* before it is sent and *recorded* after:

1. :meth:`Deliveries.claim_due_channels` / :meth:`Deliveries.claim_due_alerts`
   take up to ``limit`` due subscriptions in one write transaction: on
   PostgreSQL with ``SELECT ... FOR UPDATE SKIP LOCKED`` (so concurrent
   processes take disjoint rows), on SQLite inside ``BEGIN IMMEDIATE`` (one
   writer at a time). For each row a ledger row ``(kind, subscription, local
   day)`` is inserted with status ``claimed`` -- the unique constraint turns a
   second claim for the same day into a no-op -- and ``next_due_at`` is
   advanced to the next occurrence, all in the same transaction.
2. The caller sends, then :meth:`Deliveries.record` marks the rows ``sent``,
   ``skipped``, ``failed`` or ``paused`` (with the papers sent, for alerts).
3. A claim whose process died stays ``claimed``; once its ``claimed_at`` is
   older than the lease, :meth:`Deliveries.reclaim` hands it to another
   process (still within the grace window), as it does ``failed`` rows that
   have attempts left. Such a job has ``look_first`` set when the message may
   already have gone out (the claim of a dead process, or a failure recorded
   with :data:`OUTCOME_UNKNOWN`): the sender looks in the platform's history
   before sending it again.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.models import ChannelRef, UserRef
from bot.schedule import local_day, next_occurrence
from bot.text import InputError
from storage.db import Database, insert_for
from storage.models import ChannelSubscription, Delivery, SentPaper, TopicSubscription, UserProfile, Workspace

log = logging.getLogger(__name__)

CHANNEL = "channel"
ALERT = "alert"
RENEW_CHUNK = 500   # ids per UPDATE of a lease heartbeat

CLAIMED, SENT, SKIPPED, FAILED, PAUSED = "claimed", "sent", "skipped", "failed", "paused"
MISSED = "missed: due longer ago than the grace window"
# Prefix of the ledger error of a send whose outcome is unknown (the platform may have the message):
# whoever retries it looks in the platform's history first.
OUTCOME_UNKNOWN = "outcome unknown: "


@dataclass(frozen=True, slots=True)
class ChannelJob:
    """A claimed channel post: everything needed to build and send it."""

    delivery_id: int
    subscription_id: int
    channel: ChannelRef
    day: date
    due_at: datetime
    top_n: int
    post_when_empty: bool
    last_feed_day: date | None
    created_by: str | None
    attempts: int = 1
    look_first: bool = False   # an earlier attempt may have reached the platform: look before sending


@dataclass(frozen=True, slots=True)
class AlertJob:
    """A claimed personal alert: the person and their topics."""

    delivery_id: int
    profile_id: int
    user: UserRef
    day: date
    due_at: datetime
    topics: tuple[str, ...]
    attempts: int = 1
    look_first: bool = False


Job = ChannelJob | AlertJob


@dataclass
class ClaimResult:
    """One claimed batch: jobs to send plus what was skipped or already done."""

    jobs: list[Job] = field(default_factory=list)
    scanned: int = 0
    missed: int = 0
    duplicates: int = 0


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one claimed delivery."""

    kind: str
    delivery_id: int
    subscription_id: int
    status: str
    paper_ids: tuple[str, ...] = ()
    feed_day: date | None = None
    error: str | None = None
    # Nothing reached the platform (the paper source was down): the attempt is given back, so an
    # outage is retried for the whole grace window rather than for MAX_ATTEMPTS retry delays.
    free_retry: bool = False


@dataclass(frozen=True, slots=True)
class Schedule:
    """Defaults for people who never chose a time or a zone."""

    default_time: time
    default_zone: str


def _advance(now: datetime, at: time, zone: str, fallback_zone: str) -> tuple[datetime, str]:
    """The next occurrence of ``at`` after ``now`` and the zone actually used."""
    try:
        return next_occurrence(now, at, zone), zone
    except InputError:
        log.warning("unknown time zone %r on a subscription; using %s", zone, fallback_zone)
        return next_occurrence(now, at, fallback_zone), fallback_zone


def _time_of(text: str | None, default: time) -> time:
    try:
        return time.fromisoformat(text) if text else default
    except ValueError:
        return default


class _DueTimes:
    """Next occurrences and local days for one claim batch, computed once per distinct input.

    A batch shares one ``now``, and most subscriptions share a time of day and
    a zone, so this saves a time-zone computation per row.
    """

    def __init__(self, now: datetime, fallback_zone: str) -> None:
        self._now = now
        self._fallback_zone = fallback_zone
        self._next: dict[tuple[str | None, time, str], tuple[datetime, str]] = {}
        self._days: dict[tuple[datetime, str], date] = {}

    def advance(self, text: str | None, default: time, zone: str) -> tuple[datetime, str]:
        key = (text, default, zone)
        found = self._next.get(key)
        if found is None:
            found = self._next[key] = _advance(self._now, _time_of(text, default), zone, self._fallback_zone)
        return found

    def local_day(self, instant: datetime, zone: str) -> date:
        key = (instant, zone)
        found = self._days.get(key)
        if found is None:
            found = self._days[key] = local_day(instant, zone)
        return found


_insert = insert_for


def _due(query: Any, table: Any, enabled: Any, *, now: datetime, limit: int,
         platforms: Sequence[str] | None) -> Any:
    """``query`` narrowed to the first ``limit`` enabled rows of ``table`` due at ``now``, locked
    (``FOR UPDATE SKIP LOCKED`` on PostgreSQL: rows another process holds are passed over)."""
    query = (query.where(enabled.is_(True), table.next_due_at <= now)
             .order_by(table.next_due_at, table.id).limit(limit)
             .with_for_update(skip_locked=True, of=table))
    return query if platforms is None else query.where(table.platform.in_(list(platforms)))


class Deliveries:
    """Due subscriptions, claims and the ledger over one database."""

    def __init__(self, db: Database) -> None:
        self._db = db

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        """A transaction that may claim rows.

        On PostgreSQL the claim queries lock rows with ``FOR UPDATE SKIP LOCKED``;
        on SQLite :class:`storage.db.Database` opens every write transaction with
        ``BEGIN IMMEDIATE`` and queues this process's writers, so claimers and
        command writes wait their turn instead of failing with "database is locked".
        """
        async with self._db.write_connection() as conn:
            yield conn

    # --- claiming -------------------------------------------------------------------------

    async def _insert_claims(self, conn: AsyncConnection, kind: str, rows: list[dict]) -> dict[int, int]:
        """Insert ledger rows, skipping (kind, subscription, day) already present; subscription -> id."""
        if not rows:
            return {}
        insert = _insert(conn)
        table = Delivery.__table__
        stmt = (insert(table).on_conflict_do_nothing(index_elements=["kind", "subscription_id", "day"])
                .returning(table.c.id, table.c.subscription_id))
        return {sub: delivery for delivery, sub in (await conn.execute(stmt, rows)).all()}

    async def _claim(self, kind: str, table: Any, query: Any, *, now: datetime, grace: timedelta, worker_id: str,
                     claimed_at: datetime | None, schedule_of: Callable[[Any, _DueTimes], tuple[datetime, str]],
                     times: _DueTimes, topics: bool = False) -> tuple[ClaimResult, list[tuple[Any, date, int]],
                                                                      dict[int, list[str]]]:
        """Claim the due rows ``query`` selects (locked, SKIP LOCKED) in one transaction.

        Each row gets a ledger row for its local day (``skipped`` when later than ``grace``) and
        its next due time. Returns the counts, the (row, day, delivery id) of every claim to
        send, and, with ``topics``, the topics of those people (read in the same transaction).
        """
        result = ClaimResult()
        async with self._write() as conn:
            rows = (await conn.execute(query)).all()
            if not rows:
                return result, [], {}
            result.scanned = len(rows)
            ledger, advances, meta = [], [], {}
            for row in rows:
                following, zone = schedule_of(row, times)
                day = times.local_day(row.next_due_at, zone)
                late = now - row.next_due_at > grace
                ledger.append(dict(kind=kind, subscription_id=row.id, day=day, due_at=row.next_due_at,
                                   status=SKIPPED if late else CLAIMED, claimed_by=worker_id,
                                   claimed_at=claimed_at or now, attempts=0 if late else 1, paper_count=0,
                                   error=MISSED if late else None))
                advances.append({"b_id": row.id, "b_due": following})
                meta[row.id] = (row, day, late)
            claimed = await self._insert_claims(conn, kind, ledger)
            await conn.execute(update(table).where(table.id == bindparam("b_id"))
                               .values(next_due_at=bindparam("b_due")), advances)
            to_send = [(row, day, claimed[sub_id]) for sub_id, (row, day, late) in meta.items()
                       if sub_id in claimed and not late]
            found = await self._topics(conn, [row.id for row, _, _ in to_send]) if topics else {}
        result.duplicates = sum(1 for sub_id in meta if sub_id not in claimed)
        result.missed = sum(1 for sub_id, (_, _, late) in meta.items() if sub_id in claimed and late)
        return result, to_send, found

    async def claim_due_channels(self, *, now: datetime, grace: timedelta, worker_id: str,
                                 platforms: Sequence[str] | None, fallback_zone: str,
                                 limit: int = 500, claimed_at: datetime | None = None) -> ClaimResult:
        """Claim up to ``limit`` channel posts due at ``now`` and advance their next due time.

        ``claimed_at`` (default ``now``) is the instant the claim is stamped with: the
        current time, so the lease counts from the claim, not from the start of the pass.
        """
        s = ChannelSubscription
        query = _due(select(s.id, s.platform, s.workspace_id, s.channel_id, s.created_by, s.post_time, s.timezone,
                            s.top_n, s.post_when_empty, s.next_due_at, s.last_feed_day),
                     s, s.enabled, now=now, limit=limit, platforms=platforms)
        result, to_send, _ = await self._claim(
            CHANNEL, s, query, now=now, grace=grace, worker_id=worker_id, claimed_at=claimed_at,
            times=_DueTimes(now, fallback_zone),
            schedule_of=lambda row, times: times.advance(row.post_time, time(9, 0), row.timezone))
        result.jobs.extend(ChannelJob(
            delivery_id=delivery_id, subscription_id=row.id,
            channel=ChannelRef(row.platform, row.workspace_id, row.channel_id), day=day, due_at=row.next_due_at,
            top_n=row.top_n, post_when_empty=row.post_when_empty, last_feed_day=row.last_feed_day,
            created_by=row.created_by) for row, day, delivery_id in to_send)
        return result

    async def claim_due_alerts(self, *, now: datetime, grace: timedelta, worker_id: str,
                               platforms: Sequence[str] | None, schedule: Schedule,
                               limit: int = 500, claimed_at: datetime | None = None) -> ClaimResult:
        """Claim up to ``limit`` personal alerts due at ``now`` and advance their next due time
        (``claimed_at`` as in :meth:`claim_due_channels`)."""
        p, w = UserProfile, Workspace
        query = _due(select(p.id, p.platform, p.workspace_id, p.user_id, p.alert_time, p.timezone, p.next_due_at,
                            w.default_timezone)
                     .outerjoin(w, and_(w.platform == p.platform, w.workspace_id == p.workspace_id)),
                     p, p.alerts_enabled, now=now, limit=limit, platforms=platforms)
        result, to_send, topics = await self._claim(
            ALERT, p, query, now=now, grace=grace, worker_id=worker_id, claimed_at=claimed_at,
            times=_DueTimes(now, schedule.default_zone), topics=True,
            schedule_of=lambda row, times: times.advance(
                row.alert_time, schedule.default_time, row.timezone or row.default_timezone or schedule.default_zone))
        result.jobs.extend(AlertJob(
            delivery_id=delivery_id, profile_id=row.id, user=UserRef(row.platform, row.workspace_id, row.user_id),
            day=day, due_at=row.next_due_at, topics=tuple(topics.get(row.id, ()))) for row, day, delivery_id in to_send)
        return result

    @staticmethod
    async def _topics(conn: AsyncConnection, profile_ids: Sequence[int]) -> dict[int, list[str]]:
        topics: dict[int, list[str]] = {}
        if not profile_ids:
            return topics
        rows = await conn.execute(
            select(TopicSubscription.profile_id, TopicSubscription.topic)
            .where(TopicSubscription.profile_id.in_(list(profile_ids))).order_by(TopicSubscription.id))
        for profile_id, topic in rows:
            topics.setdefault(profile_id, []).append(topic)
        return topics

    # --- stale claims and retries ------------------------------------------------------------

    async def renew(self, delivery_ids: Collection[int], *, worker_id: str, claimed_at: datetime) -> int:
        """Move the claim time of ``worker_id``'s unfinished claims to ``claimed_at`` (a lease heartbeat).

        A pass still working on its claims keeps them however long it runs; a claim
        another worker took over, or one already finished, is left alone.
        """
        d = Delivery
        renewed = 0
        ids = list(delivery_ids)
        for start in range(0, len(ids), RENEW_CHUNK):
            async with self._write() as conn:
                result = await conn.execute(
                    update(d).where(d.id.in_(ids[start:start + RENEW_CHUNK]), d.status == CLAIMED,
                                    d.claimed_by == worker_id).values(claimed_at=claimed_at))
                renewed += result.rowcount or 0
        return renewed

    def _retryable(self, *, now: datetime, lease: timedelta, retry_delay: timedelta, max_attempts: int):  # noqa: ANN202
        d = Delivery
        return or_(and_(d.status == CLAIMED, d.claimed_at < now - lease),
                   and_(d.status == FAILED, d.attempts < max_attempts, d.claimed_at < now - retry_delay))

    async def reclaim(self, kind: str, *, now: datetime, lease: timedelta, grace: timedelta, worker_id: str,
                      platforms: Sequence[str] | None, retry_delay: timedelta, max_attempts: int,
                      limit: int = 500, claimed_at: datetime | None = None) -> ClaimResult:
        """Take over claims abandoned longer than ``lease`` ago and failed sends with attempts left.

        ``now`` decides what is too late for the grace window; ``claimed_at`` (default
        ``now``, normally the current time) decides which claims are stale and stamps the new ones.
        """
        d = Delivery
        stamp = claimed_at or now
        retryable = self._retryable(now=stamp, lease=lease, retry_delay=retry_delay, max_attempts=max_attempts)
        result = ClaimResult()
        async with self._write() as conn:
            expired = await conn.execute(
                update(d).where(d.kind == kind, retryable, d.due_at < now - grace)
                .values(status=SKIPPED, error=MISSED))
            result.missed = expired.rowcount or 0
            if kind == CHANNEL:
                s = ChannelSubscription
                query = (select(d.id, d.day, d.due_at, d.attempts, d.status, d.error, s.id.label("sub_id"),
                                s.platform, s.workspace_id,
                                s.channel_id, s.created_by, s.top_n, s.post_when_empty, s.last_feed_day)
                         .join(s, s.id == d.subscription_id).where(s.enabled.is_(True)))
                platform_col = s.platform
            else:
                p = UserProfile
                query = (select(d.id, d.day, d.due_at, d.attempts, d.status, d.error, p.id.label("sub_id"), p.platform,
                                p.workspace_id, p.user_id)
                         .join(p, p.id == d.subscription_id).where(p.alerts_enabled.is_(True)))
                platform_col = p.platform
            query = (query.where(d.kind == kind, retryable).order_by(d.id).limit(limit)
                     .with_for_update(skip_locked=True, of=d))
            if platforms is not None:
                query = query.where(platform_col.in_(list(platforms)))
            rows = (await conn.execute(query)).all()
            if not rows:
                return result
            await conn.execute(
                update(d).where(d.id.in_([r.id for r in rows]))
                .values(status=CLAIMED, claimed_by=worker_id, claimed_at=stamp, attempts=d.attempts + 1))
            topics = await self._topics(conn, [r.sub_id for r in rows]) if kind == ALERT else {}
        result.scanned = len(rows)
        for r in rows:
            # a claim left by a process that died, or a send that ended not knowing, may have gone out
            look_first = r.status == CLAIMED or (r.error or "").startswith(OUTCOME_UNKNOWN)
            if kind == CHANNEL:
                result.jobs.append(ChannelJob(
                    delivery_id=r.id, subscription_id=r.sub_id, channel=ChannelRef(r.platform, r.workspace_id,
                                                                                   r.channel_id),
                    day=r.day, due_at=r.due_at, top_n=r.top_n, post_when_empty=r.post_when_empty,
                    last_feed_day=r.last_feed_day, created_by=r.created_by, attempts=r.attempts + 1,
                    look_first=look_first))
            else:
                result.jobs.append(AlertJob(
                    delivery_id=r.id, profile_id=r.sub_id, user=UserRef(r.platform, r.workspace_id, r.user_id),
                    day=r.day, due_at=r.due_at, topics=tuple(topics.get(r.sub_id, ())), attempts=r.attempts + 1,
                    look_first=look_first))
        return result

    # --- dry run ----------------------------------------------------------------------------

    async def preview_channels(self, *, now: datetime, after: tuple[datetime, int] | None,
                               fallback_zone: str, limit: int = 500) -> list[ChannelJob]:
        """Due channel posts in (next_due_at, id) order after ``after``, without claiming them."""
        s = ChannelSubscription
        query = (select(s.id, s.platform, s.workspace_id, s.channel_id, s.created_by, s.timezone, s.top_n,
                        s.post_when_empty, s.next_due_at, s.last_feed_day)
                 .where(s.enabled.is_(True), s.next_due_at <= now).order_by(s.next_due_at, s.id).limit(limit))
        if after is not None:
            query = query.where(or_(s.next_due_at > after[0], and_(s.next_due_at == after[0], s.id > after[1])))
        async with self._db.read_connection() as conn:
            rows = (await conn.execute(query)).all()
        return [ChannelJob(delivery_id=0, subscription_id=r.id,
                           channel=ChannelRef(r.platform, r.workspace_id, r.channel_id),
                           day=_safe_local_day(r.next_due_at, r.timezone, fallback_zone), due_at=r.next_due_at,
                           top_n=r.top_n, post_when_empty=r.post_when_empty, last_feed_day=r.last_feed_day,
                           created_by=r.created_by, attempts=0) for r in rows]

    async def preview_alerts(self, *, now: datetime, after: tuple[datetime, int] | None, schedule: Schedule,
                             limit: int = 500) -> list[AlertJob]:
        """Due personal alerts in (next_due_at, id) order after ``after``, without claiming them."""
        p, w = UserProfile, Workspace
        query = (select(p.id, p.platform, p.workspace_id, p.user_id, p.timezone, p.next_due_at, w.default_timezone)
                 .outerjoin(w, and_(w.platform == p.platform, w.workspace_id == p.workspace_id))
                 .where(p.alerts_enabled.is_(True), p.next_due_at <= now).order_by(p.next_due_at, p.id).limit(limit))
        if after is not None:
            query = query.where(or_(p.next_due_at > after[0], and_(p.next_due_at == after[0], p.id > after[1])))
        async with self._db.read_connection() as conn:
            rows = (await conn.execute(query)).all()
            topics = await self._topics(conn, [r.id for r in rows])
        return [AlertJob(delivery_id=0, profile_id=r.id, user=UserRef(r.platform, r.workspace_id, r.user_id),
                         day=_safe_local_day(r.next_due_at, r.timezone or r.default_timezone or schedule.default_zone,
                                             schedule.default_zone),
                         due_at=r.next_due_at, topics=tuple(topics.get(r.id, ())), attempts=0) for r in rows]

    # --- what was sent ------------------------------------------------------------------------

    async def sent_paper_ids(self, profile_ids: Sequence[int], paper_ids: Iterable[str]) -> dict[int, set[str]]:
        """For each profile, which of ``paper_ids`` it was already sent."""
        found: dict[int, set[str]] = {}
        papers = list(dict.fromkeys(paper_ids))
        if not profile_ids or not papers:
            return found
        async with self._db.read_connection() as conn:
            rows = await conn.execute(
                select(SentPaper.profile_id, SentPaper.paper_id)
                .where(SentPaper.profile_id.in_(list(profile_ids)), SentPaper.paper_id.in_(papers)))
            for profile_id, paper_id in rows:
                found.setdefault(profile_id, set()).add(paper_id)
        return found

    async def record(self, outcomes: Sequence[Outcome], *, now: datetime) -> None:
        """Write many outcomes in one transaction (the ledger, papers sent, last delivery)."""
        if not outcomes:
            return
        d = Delivery
        ordered = sorted(outcomes, key=lambda o: o.delivery_id)
        async with self._db.write_connection() as conn:
            await conn.execute(
                update(d).where(d.id == bindparam("b_id"))
                .values(status=bindparam("b_status"), sent_at=bindparam("b_sent_at"),
                        paper_count=bindparam("b_count"), error=bindparam("b_error"),
                        attempts=d.attempts - bindparam("b_refund")),
                [{"b_id": o.delivery_id, "b_status": o.status, "b_sent_at": now if o.status == SENT else None,
                  "b_count": len(o.paper_ids), "b_error": (o.error or None) and o.error[:500],
                  "b_refund": 1 if o.free_retry else 0} for o in ordered])
            sent_channels = sorted((o for o in ordered if o.status == SENT and o.kind == CHANNEL),
                                   key=lambda o: o.subscription_id)
            if sent_channels:
                s = ChannelSubscription
                await conn.execute(
                    update(s).where(s.id == bindparam("b_id"))
                    .values(last_delivered_at=now,
                            last_feed_day=func.coalesce(bindparam("b_feed_day", type_=s.last_feed_day.type),
                                                        s.last_feed_day)),
                    [{"b_id": o.subscription_id, "b_feed_day": o.feed_day} for o in sent_channels])
            sent_alerts = sorted((o for o in ordered if o.status == SENT and o.kind == ALERT),
                                 key=lambda o: o.subscription_id)
            if sent_alerts:
                p = UserProfile
                await conn.execute(update(p).where(p.id == bindparam("b_id")).values(last_delivered_at=now),
                                   [{"b_id": o.subscription_id} for o in sent_alerts])
                papers = [dict(profile_id=o.subscription_id, paper_id=paper_id, sent_at=now)
                          for o in sent_alerts for paper_id in o.paper_ids]
                if papers:
                    insert = _insert(conn)
                    await conn.execute(insert(SentPaper.__table__).on_conflict_do_nothing(), papers)

    # --- inspection and upkeep --------------------------------------------------------------------

    async def status_counts(self, kind: str | None = None) -> dict[str, int]:
        """How many ledger rows have each status."""
        query = select(Delivery.status, func.count()).group_by(Delivery.status)
        if kind is not None:
            query = query.where(Delivery.kind == kind)
        async with self._db.read_connection() as conn:
            return {status: count for status, count in await conn.execute(query)}

    async def prune(self, *, ledger_before: date, sent_papers_before: datetime) -> tuple[int, int]:
        """Delete finished ledger rows of days before ``ledger_before`` and the record of papers sent
        before ``sent_papers_before``; returns how many of each.

        Safe for the ledger's guarantees: a day that old is far outside the grace window, so
        no claim for it is made again; see :data:`scheduler.delivery.SENT_PAPERS_RETENTION`
        for why old sent papers cannot be sent twice.
        """
        async with self._db.write_connection() as conn:
            ledger = await conn.execute(
                delete(Delivery).where(Delivery.day < ledger_before,
                                       Delivery.status.in_([SENT, SKIPPED, PAUSED, FAILED])))
            sent = await conn.execute(delete(SentPaper).where(SentPaper.sent_at < sent_papers_before))
            return ledger.rowcount or 0, sent.rowcount or 0


def _safe_local_day(instant: datetime, zone: str, fallback_zone: str) -> date:
    try:
        return local_day(instant, zone)
    except Exception:  # noqa: BLE001 - an unknown zone stored by an older version
        return local_day(instant, fallback_zone)
