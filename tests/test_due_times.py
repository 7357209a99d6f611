"""Due times across time zones and DST changes, as computed and as the ledger claims them."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from bot.models import ChannelRef, UserRef
from bot.schedule import local_day, next_occurrence
from storage.deliveries import Deliveries, Outcome, Schedule, SENT
from storage.repositories import Storage

UTC = timezone.utc
NEW_YORK = "America/New_York"
GRACE = timedelta(hours=6)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(("after", "at", "zone", "expected"), [
    (utc(2026, 11, 20, 6, 0), time(9, 0), "Europe/Berlin", utc(2026, 11, 20, 8, 0)),        # CET, UTC+1
    (utc(2026, 7, 20, 6, 0), time(9, 0), "Europe/Berlin", utc(2026, 7, 20, 7, 0)),          # CEST, UTC+2
    (utc(2026, 11, 20, 8, 0), time(9, 0), "Europe/Berlin", utc(2026, 11, 21, 8, 0)),        # exactly now: tomorrow
    (utc(2026, 11, 20, 23, 0), time(9, 0), "Asia/Tokyo", utc(2026, 11, 21, 0, 0)),          # already the 21st there
    (utc(2026, 11, 20, 6, 0), time(9, 0), "Asia/Kolkata", utc(2026, 11, 21, 3, 30)),        # half-hour offset
    (utc(2026, 11, 20, 6, 0), time(9, 0), "Pacific/Chatham", utc(2026, 11, 20, 19, 15)),     # +13:45
    (utc(2026, 11, 20, 6, 0), time(9, 0), "America/Los_Angeles", utc(2026, 11, 20, 17, 0)),
])
def test_next_occurrence_in_many_zones(after: datetime, at: time, zone: str, expected: datetime) -> None:
    assert next_occurrence(after, at, zone) == expected


def test_spring_forward_gap_moves_the_post_past_the_gap() -> None:
    # 2026-03-08 in New York: 02:00 EST jumps to 03:00 EDT; 02:30 does not exist that day
    due = next_occurrence(utc(2026, 3, 8, 0, 0), time(2, 30), NEW_YORK)
    assert due == utc(2026, 3, 8, 7, 30)  # 03:30 EDT, once
    assert due.astimezone(ZoneInfo(NEW_YORK)).strftime("%H:%M %Z") == "03:30 EDT"
    following = next_occurrence(due, time(2, 30), NEW_YORK)
    assert following == utc(2026, 3, 9, 6, 30)  # back to 02:30 EDT the day after


def test_fall_back_repeat_posts_once_at_the_first_of_the_two() -> None:
    # 2026-11-01 in New York: 01:00-02:00 happens twice (EDT, then EST)
    due = next_occurrence(utc(2026, 11, 1, 0, 0), time(1, 30), NEW_YORK)
    assert due == utc(2026, 11, 1, 5, 30)  # 01:30 EDT
    following = next_occurrence(due, time(1, 30), NEW_YORK)
    assert following == utc(2026, 11, 2, 6, 30)  # not 06:30 UTC the same day (the repeated 01:30 EST)


def test_day_boundaries_are_the_subscriptions_local_day() -> None:
    assert local_day(utc(2026, 11, 20, 23, 30), "Pacific/Auckland") == date(2026, 11, 21)
    assert local_day(utc(2026, 11, 21, 3, 0), "America/Los_Angeles") == date(2026, 11, 20)


async def _simulate(storage: Storage, start: datetime, hours: int, step: timedelta) -> list[tuple[date, datetime]]:
    """Claim and record everything due at each tick; returns (local day, due instant) of each delivery."""
    deliveries = Deliveries(storage.db)
    made: list[tuple[date, datetime]] = []
    now = start
    while now < start + timedelta(hours=hours):
        claimed = await deliveries.claim_due_channels(now=now, grace=GRACE, worker_id="sim", platforms=None,
                                                      fallback_zone="UTC")
        alerts = await deliveries.claim_due_alerts(now=now, grace=GRACE, worker_id="sim", platforms=None,
                                                   schedule=Schedule(time(9, 0), "UTC"))
        jobs = claimed.jobs + alerts.jobs
        await deliveries.record([Outcome("channel" if hasattr(j, "channel") else "alert", j.delivery_id,
                                         getattr(j, "subscription_id", None) or getattr(j, "profile_id"), SENT)
                                 for j in jobs], now=now)
        made.extend((j.day, j.due_at) for j in jobs)
        now += step
    return made


@pytest.mark.parametrize("at", [time(2, 30), time(1, 30), time(9, 0)])
async def test_across_both_dst_changes_every_local_day_gets_exactly_one_delivery(storage: Storage, at: time) -> None:
    channel = ChannelRef("slack", "T1", "C1")
    await storage.channels.enable(channel, post_time=at, tz=NEW_YORK, created_by=None,
                                  next_due_at=next_occurrence(utc(2026, 3, 6), at, NEW_YORK))
    spring = await _simulate(storage, utc(2026, 3, 6), hours=4 * 24, step=timedelta(minutes=20))
    assert [d for d, _ in spring] == [date(2026, 3, day) for day in (6, 7, 8, 9)]

    await storage.channels.enable(channel, post_time=at, tz=NEW_YORK, created_by=None,
                                  next_due_at=next_occurrence(utc(2026, 10, 30), at, NEW_YORK))
    fall = await _simulate(storage, utc(2026, 10, 30), hours=4 * 24, step=timedelta(minutes=20))
    assert [d for d, _ in fall] == [date(2026, 10, day) for day in (30, 31)] + [date(2026, 11, 1), date(2026, 11, 2)]
    for day, due in spring + fall:
        local = due.astimezone(ZoneInfo(NEW_YORK))
        assert local.date() == day
        if not (day == date(2026, 3, 8) and at == time(2, 30)):
            assert local.time() == at


async def test_personal_alert_uses_the_person_zone_or_the_default(storage: Storage) -> None:
    await storage.topics.add(UserRef("slack", "T1", "U_TOKYO"), "generalization", limit=5)
    await storage.topics.set_alerts(UserRef("slack", "T1", "U_TOKYO"), enabled=True, tz="Asia/Tokyo",
                                    next_due_at=utc(2026, 11, 20, 2, 0))
    await storage.topics.add(UserRef("slack", "T1", "U_DEFAULT"), "generalization", limit=5)
    await storage.topics.set_alerts(UserRef("slack", "T1", "U_DEFAULT"), enabled=True,
                                    next_due_at=utc(2026, 11, 20, 7, 0))
    deliveries = Deliveries(storage.db)
    claimed = await deliveries.claim_due_alerts(now=utc(2026, 11, 20, 7, 1), grace=GRACE, worker_id="t",
                                                platforms=None, schedule=Schedule(time(8, 0), "Europe/Berlin"))
    days = {job.user.user: job.day for job in claimed.jobs}
    assert days == {"U_TOKYO": date(2026, 11, 20), "U_DEFAULT": date(2026, 11, 20)}
    tokyo = await storage.topics.setting(UserRef("slack", "T1", "U_TOKYO"))
    default = await storage.topics.setting(UserRef("slack", "T1", "U_DEFAULT"))
    assert tokyo is not None and tokyo.next_due_at == utc(2026, 11, 20, 23, 0)     # 08:00 JST (default time)
    assert default is not None and default.next_due_at == utc(2026, 11, 21, 7, 0)  # 08:00 CET (defaults)
