"""Delivery passes end to end: real storage (SQLite and PostgreSQL), the real Hugging Face
client against the fake HF server, the core, and a FakeAdapter. Time is injected."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from datetime import date, datetime, time, timedelta, timezone

import pytest

from adapters.base import FailureKind
from adapters.fake import FakeAdapter
from bot.app import App, build_app
from bot.models import ChannelRef, ReplyKind, UserRef
from scheduler.clock import DeliveryScheduler
from scheduler.delivery import DeliveryReport, run_delivery_pass
from scheduler.fanout import Sender
from storage.deliveries import CHANNEL, Deliveries
from tests.conftest import make_settings
from tests.delivery_support import add_channel, add_person, paper, serving_feed, set_feed
from tests.fakes.hf_api import FakeHuggingFace

FRIDAY = date(2026, 11, 20)
SATURDAY = date(2026, 11, 21)
MONDAY = date(2026, 11, 23)
BERLIN = "Europe/Berlin"

FRIDAY_FEED = [
    paper("2511.10001", "On the Generalization of Deep Networks", upvotes=40),
    paper("2511.10002", "Generalizing Reinforcement Learning Agents to New Tasks", upvotes=30),
    paper("2511.10003", "Scaling Chat Models", upvotes=90),
    paper("2511.10004", "Diffusion Models for Video Synthesis", upvotes=20),
    paper("2511.10005", "A Survey of Reinforcement Learning from Human Feedback", upvotes=10),
]
MONDAY_FEED = [
    paper("2511.20001", "Out-of-Distribution Generalization in Vision Transformers", upvotes=50),
    paper("2511.20002", "Efficient Attention for Long Context", upvotes=45),
]


def at(day: date, hour: int, minute: int = 0, tz: str = "UTC") -> datetime:
    from zoneinfo import ZoneInfo

    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=ZoneInfo(tz)).astimezone(timezone.utc)


@pytest.fixture
def hf() -> Iterator[FakeHuggingFace]:
    with serving_feed(FRIDAY, FRIDAY_FEED) as server:
        yield server


def _app(db_url: str, hf: FakeHuggingFace, **settings: object) -> App:
    values = dict(DATABASE_URL=db_url, PAPERBOY_HF_URL=hf.url, PAPERBOY_OFFLINE_SAMPLE=False,
                  PAPERBOY_DELIVERY_CONCURRENCY=8, PAPERBOY_DAILY_CACHE_SECONDS=0)
    values.update(settings)
    return build_app(make_settings(**values))


@pytest.fixture
async def app(db_url: str, hf: FakeHuggingFace) -> AsyncIterator[App]:
    application = _app(db_url, hf)
    application.adapters.add(FakeAdapter(application.core, platform="slack"))
    try:
        yield application
    finally:
        await application.close()


def fake(app: App) -> FakeAdapter:
    adapter = app.adapters.get("slack")
    assert isinstance(adapter, FakeAdapter)
    return adapter


def fast_sender() -> Sender:
    async def no_sleep(seconds: float) -> None:
        return None

    return Sender(transient_backoff=0.0, sleep=no_sleep)


# --- channel posts -------------------------------------------------------------------------------


async def test_channel_post_arrives_at_its_local_time_and_moves_to_the_next_day(app: App) -> None:
    channel = ChannelRef("slack", "T1", "C1")
    await add_channel(app.storage, channel, at=time(9, 0), tz=BERLIN, after=at(FRIDAY, 0))
    early = await run_delivery_pass(app, now=at(FRIDAY, 8, 59, BERLIN))
    assert early.sent == 0 and fake(app).outbox == []

    report = await run_delivery_pass(app, now=at(FRIDAY, 9, 1, BERLIN))
    assert report.sent == 1
    [item] = fake(app).sent_to("C1")
    assert item.reply.kind is ReplyKind.CHANNEL_DIGEST and item.reply.day == FRIDAY
    assert [p.paper.paper_id for p in item.reply.papers][0] == "2511.10003"  # most upvoted first
    setting = await app.storage.channels.get(channel)
    assert setting is not None and setting.next_due_at == at(SATURDAY, 9, 0, BERLIN)
    assert setting.last_delivered_at is not None


async def test_a_channel_set_up_with_top_3_always_gets_three_papers_and_posts_on_empty_days(app: App) -> None:
    from adapters.console import console_context
    from dataclasses import replace as with_values

    here = ChannelRef("slack", "T1", "C_TOP")
    command = with_values(console_context(timezone="UTC"), channel=here)
    answer = await app.core.handle(command, "/papers channel on 09:00 UTC top 3 always")
    assert answer.title == "Daily post on"
    await app.storage.channels.enable(here, post_time=time(9, 0), tz="UTC", created_by="U1", top_n=3,
                                      post_when_empty=True, next_due_at=at(FRIDAY, 9, 0))
    assert (await run_delivery_pass(app, now=at(FRIDAY, 9, 1))).sent == 1
    assert (await run_delivery_pass(app, now=at(SATURDAY, 9, 1))).sent == 1   # no new papers, posted anyway
    friday, saturday = fake(app).sent_to("C_TOP")
    assert len(friday.reply.papers) == 3 and len(saturday.reply.papers) == 3


async def test_a_pass_run_twice_or_a_later_due_time_the_same_day_never_posts_twice(app: App) -> None:
    channel = ChannelRef("slack", "T1", "C1")
    await add_channel(app.storage, channel, at=time(9, 0), tz=BERLIN, after=at(FRIDAY, 0))
    assert (await run_delivery_pass(app, now=at(FRIDAY, 9, 5, BERLIN))).sent == 1
    assert (await run_delivery_pass(app, now=at(FRIDAY, 9, 6, BERLIN))).sent == 0
    # the channel moves its post to 15:00 the same day: the ledger already has Friday
    await app.storage.channels.enable(channel, post_time=time(15, 0), tz=BERLIN, created_by="U_OWNER",
                                      next_due_at=at(FRIDAY, 15, 0, BERLIN))
    again = await run_delivery_pass(app, now=at(FRIDAY, 15, 1, BERLIN))
    assert again.sent == 0 and again.duplicates_avoided == 1
    assert len(fake(app).sent_to("C1")) == 1


async def test_grace_window_late_posts_go_out_too_late_ones_are_skipped(app: App) -> None:
    await add_channel(app.storage, ChannelRef("slack", "T1", "C_LATE"), at=time(9, 0), tz="UTC", after=at(FRIDAY, 0))
    await add_channel(app.storage, ChannelRef("slack", "T1", "C_OK"), at=time(11, 0), tz="UTC", after=at(FRIDAY, 0))
    # the bot was down from 08:00 to 16:30: 9:00 is 7.5 h ago (> 6 h grace), 11:00 is 5.5 h ago
    report = await run_delivery_pass(app, now=at(FRIDAY, 16, 30))
    assert report.sent == 1 and report.missed == 1
    assert fake(app).sent_to("C_LATE") == [] and len(fake(app).sent_to("C_OK")) == 1
    late = await app.storage.channels.get(ChannelRef("slack", "T1", "C_LATE"))
    assert late is not None and late.next_due_at == at(SATURDAY, 9, 0) and late.enabled
    counts = await Deliveries(app.storage.db).status_counts(CHANNEL)
    assert counts == {"sent": 1, "skipped": 1}


async def test_days_without_new_papers_post_nothing_unless_asked(app: App, hf: FakeHuggingFace, db_url: str) -> None:
    channel = ChannelRef("slack", "T1", "C1")
    await add_channel(app.storage, channel, at=time(9, 0), tz="UTC", after=at(FRIDAY, 0))
    assert (await run_delivery_pass(app, now=at(FRIDAY, 9, 1))).sent == 1
    weekend = await run_delivery_pass(app, now=at(SATURDAY, 9, 1))  # Saturday: the feed is still Friday's
    assert weekend.sent == 0 and weekend.skipped == 1
    assert (await run_delivery_pass(app, now=at(SATURDAY + timedelta(days=1), 9, 1))).sent == 0
    set_feed(hf, MONDAY, MONDAY_FEED)
    monday = await run_delivery_pass(app, now=at(MONDAY, 9, 1))
    assert monday.sent == 1
    posts = fake(app).sent_to("C1")
    assert [p.reply.day for p in posts] == [FRIDAY, MONDAY]

    # the option to post anyway repeats the latest list on an empty day
    other = _app(db_url, hf, PAPERBOY_POST_ON_EMPTY_DAYS=True)
    other.adapters.add(FakeAdapter(other.core, platform="slack"))
    try:
        tuesday = MONDAY + timedelta(days=1)
        assert (await run_delivery_pass(other, now=at(tuesday, 9, 1))).sent == 1
        assert fake(other).sent_to("C1")[0].reply.day == MONDAY
    finally:
        await other.close()


async def test_the_feed_is_fetched_once_per_pass_however_many_subscriptions(app: App, hf: FakeHuggingFace) -> None:
    for i in range(40):
        await add_channel(app.storage, ChannelRef("slack", "T1", f"C{i}"), at=time(9, 0), tz="UTC",
                          after=at(FRIDAY, 0), top_n=5 + i % 3)
        await add_person(app.storage, UserRef("slack", "T1", f"U{i}"), ["generalization"], after=at(FRIDAY, 0))
    before = len(hf.requests)
    report = await run_delivery_pass(app, now=at(FRIDAY, 9, 1), batch_size=7)
    assert report.sent == 80
    assert report.feed_fetches == 2  # one for channel posts, one for alerts
    asked = [query.get("date") for path, query in hf.requests[before:]]
    assert asked == [FRIDAY.isoformat(), (FRIDAY - timedelta(days=1)).isoformat()]   # the latest day is shared


async def test_an_alert_matching_only_yesterdays_list_is_sent_once_on_a_fresh_database(
        app: App, hf: FakeHuggingFace) -> None:
    """Nothing stored yet: the pass asks Hugging Face for the day before too, so a paper on the
    previous feed day reaches the person who follows its topic -- once."""
    thursday = FRIDAY - timedelta(days=1)
    set_feed(hf, thursday, [paper("2511.09001", "Benchmarking Tokenizers for Multilingual Models", upvotes=12)])
    await add_person(app.storage, UserRef("slack", "T1", "U1"), ["tokenizers"], after=at(FRIDAY, 0))
    before = len(hf.requests)
    report = await run_delivery_pass(app, now=at(FRIDAY, 9, 1))
    assert report.sent == 1
    [dm] = fake(app).sent_to("U1")
    assert [p.paper.paper_id for p in dm.reply.papers] == ["2511.09001"]
    assert len(hf.requests) - before <= 3
    # the next day Thursday is out of the window and the paper was sent: nothing more
    set_feed(hf, SATURDAY, [paper("2511.30001", "Tokenizers Revisited", upvotes=3)])
    again = await run_delivery_pass(app, now=at(SATURDAY, 9, 1))
    assert again.sent == 1
    assert [p.paper.paper_id for p in fake(app).sent_to("U1")[1].reply.papers] == ["2511.30001"]
    later = await run_delivery_pass(app, now=at(SATURDAY + timedelta(days=1), 9, 1))
    assert later.sent == 0 and len(fake(app).sent_to("U1")) == 2


async def test_dry_run_lists_what_would_be_sent_and_changes_nothing(app: App) -> None:
    channel = ChannelRef("slack", "T1", "C1")
    await add_channel(app.storage, channel, at=time(9, 0), tz="UTC", after=at(FRIDAY, 0))
    await add_person(app.storage, UserRef("slack", "T1", "U1"), ["generalization"], after=at(FRIDAY, 0))
    await add_person(app.storage, UserRef("slack", "T1", "U2"), ["protein folding"], after=at(FRIDAY, 0))
    report = await run_delivery_pass(app, now=at(FRIDAY, 9, 1), dry_run=True)
    text = "\n".join(report.lines())
    assert "slack:T1/#C1: daily post, 5 papers" in text
    assert "slack:T1/@U1: alert, 2 new papers on generalization" in text
    assert "slack:T1/@U2: nothing" in text
    assert fake(app).outbox == []
    assert await Deliveries(app.storage.db).status_counts() == {}
    setting = await app.storage.channels.get(channel)
    assert setting is not None and setting.next_due_at == at(FRIDAY, 9, 0)


# --- personal alerts -----------------------------------------------------------------------------


async def test_alert_groups_new_papers_by_topic_with_reasons_and_never_repeats_one(app: App,
                                                                                   hf: FakeHuggingFace) -> None:
    user = UserRef("slack", "T1", "U1")
    await add_person(app.storage, user, ["generalization", "reinforcement learning", "protein folding"],
                     at=time(8, 30), tz=BERLIN, after=at(FRIDAY, 0))
    report = await run_delivery_pass(app, now=at(FRIDAY, 8, 31, BERLIN))
    assert report.sent == 1
    [dm] = fake(app).sent_to("U1")
    assert dm.via == "dm" and dm.reply.kind is ReplyKind.PERSONAL_ALERT
    headings = [s.heading for s in dm.reply.sections]
    assert headings == ["generalization", "reinforcement learning"]
    first = dm.reply.sections[0]
    assert {p.paper.paper_id for p in first.papers} == {"2511.10001", "2511.10002"}
    assert all(p.matched_terms for p in dm.reply.papers)  # each says why it matched
    assert [p.paper.paper_id for p in dm.reply.sections[1].papers] == ["2511.10005"]  # 10002 not repeated

    # the weekend: the feed is still Friday's, nothing is new, so no DM
    for day in (SATURDAY, SATURDAY + timedelta(days=1)):
        weekend = await run_delivery_pass(app, now=at(day, 8, 31, BERLIN))
        assert weekend.sent == 0 and weekend.skipped == 1
    # Monday: one new matching paper, the Friday ones are never sent again
    set_feed(hf, MONDAY, MONDAY_FEED)
    await run_delivery_pass(app, now=at(MONDAY, 8, 31, BERLIN))
    second = fake(app).sent_to("U1")[1].reply
    assert [p.paper.paper_id for p in second.papers] == ["2511.20001"]
    # Tuesday: nothing new -> no DM at all
    quiet = await run_delivery_pass(app, now=at(MONDAY + timedelta(days=1), 8, 31, BERLIN))
    assert quiet.sent == 0 and quiet.skipped == 1
    assert len(fake(app).sent_to("U1")) == 2


async def test_alert_time_defaults_to_the_default_post_time_in_the_default_zone(db_url: str,
                                                                                 hf: FakeHuggingFace) -> None:
    application = _app(db_url, hf, PAPERBOY_DEFAULT_TIMEZONE="America/New_York",
                       PAPERBOY_DEFAULT_POST_TIME="07:15")
    application.adapters.add(FakeAdapter(application.core, platform="slack"))
    try:
        user = UserRef("slack", "T1", "U1")
        await add_person(application.storage, user, ["generalization"], after=at(FRIDAY, 0),
                         default_time=time(7, 15), default_zone="America/New_York")
        report = await run_delivery_pass(application, now=at(FRIDAY, 7, 16, "America/New_York"))
        assert report.sent == 1
        setting = await application.storage.topics.setting(user)
        assert setting is not None and setting.next_due_at == at(SATURDAY, 7, 15, "America/New_York")
    finally:
        await application.close()


# --- failures --------------------------------------------------------------------------------------


async def test_a_failing_channel_does_not_block_the_healthy_ones_and_is_retried_later(app: App) -> None:
    for i in range(20):
        await add_channel(app.storage, ChannelRef("slack", "T1", f"C{i}"), at=time(9, 0), tz="UTC",
                          after=at(FRIDAY, 0))
    adapter = fake(app)
    adapter.fail("C7", FailureKind.TRANSIENT, detail="internal_error")
    adapter.send_delay = 0.001
    report = await run_delivery_pass(app, now=at(FRIDAY, 9, 1), sender=fast_sender())
    assert report.sent == 19 and report.failed == 1
    assert {target for item in adapter.sent("channel") for target in [item.target.channel]} == \
        {f"C{i}" for i in range(20)} - {"C7"}
    adapter.heal()
    retry = await run_delivery_pass(app, now=at(FRIDAY, 9, 5), sender=fast_sender())
    assert retry.sent == 1 and retry.recovered == 1
    assert len(adapter.sent_to("C7")) == 1


async def test_a_429_storm_is_waited_out_and_every_message_goes_once(app: App) -> None:
    for i in range(30):
        await add_channel(app.storage, ChannelRef("slack", "T1", f"C{i}"), at=time(9, 0), tz="UTC",
                          after=at(FRIDAY, 0))
        await add_person(app.storage, UserRef("slack", "T1", f"U{i}"), ["generalization"], after=at(FRIDAY, 0))
    adapter = fake(app)
    adapter.rate_limit_storm(300, retry_after=0.01)
    report = await run_delivery_pass(app, now=at(FRIDAY, 9, 1))
    assert report.rate_limited == 300
    # a send gives up after Sender.max_rate_limited 429s in a row; it is then retried by a later pass
    assert report.sent + report.failed == 60 and report.sent > 0
    retry = await run_delivery_pass(app, now=at(FRIDAY, 9, 4))
    assert retry.recovered == report.failed and retry.sent == report.failed
    delivered = [item.target for item in adapter.outbox]
    assert len(delivered) == len(set(delivered)) == 60


@pytest.mark.parametrize("kind", [FailureKind.TARGET_GONE, FailureKind.NOT_IN_CHANNEL, FailureKind.FORBIDDEN])
async def test_channel_errors_pause_the_post_and_tell_whoever_set_it_up(app: App, kind: FailureKind) -> None:
    channel = ChannelRef("slack", "T1", "C_BAD")
    await add_channel(app.storage, channel, at=time(9, 0), tz="UTC", after=at(FRIDAY, 0), created_by="U_OWNER")
    await add_channel(app.storage, ChannelRef("slack", "T1", "C_GOOD"), at=time(9, 0), tz="UTC", after=at(FRIDAY, 0))
    fake(app).fail("C_BAD", kind, detail=kind.value)
    report = await run_delivery_pass(app, now=at(FRIDAY, 9, 1))
    assert report.sent == 1 and report.paused == 1
    setting = await app.storage.channels.get(channel)
    assert setting is not None and not setting.enabled and setting.paused_reason and setting.next_due_at is None
    told = fake(app).sent_to("U_OWNER")
    if kind is FailureKind.TARGET_GONE:
        assert told == []
    else:
        assert len(told) == 1 and told[0].reply.title == "Your daily papers post is paused"
        assert "/papers channel on" in " ".join(told[0].reply.lines)
    assert (await Deliveries(app.storage.db).status_counts(CHANNEL)).get("paused") == 1
    assert (await run_delivery_pass(app, now=at(SATURDAY, 9, 1))).paused == 0


async def test_a_misconfigured_app_pauses_nobody_and_is_retried(app: App, caplog: pytest.LogCaptureFixture) -> None:
    """A scope missing from the app fails every send alike: log it for the operator, keep everyone's settings."""
    await add_channel(app.storage, ChannelRef("slack", "T1", "C1"), at=time(9, 0), tz="UTC", after=at(FRIDAY, 0))
    person = UserRef("slack", "T1", "U1")
    await add_person(app.storage, person, ["generalization"], after=at(FRIDAY, 0))
    adapter = fake(app)
    adapter.fail("C1", FailureKind.MISCONFIGURED, detail="missing_scope")
    adapter.fail("U1", FailureKind.MISCONFIGURED, detail="missing_scope")
    report = await run_delivery_pass(app, now=at(FRIDAY, 9, 1), sender=fast_sender())
    assert (report.failed, report.paused, report.sent) == (2, 0, 0)
    assert "misconfigured (missing_scope)" in caplog.text
    assert (await app.storage.channels.get(ChannelRef("slack", "T1", "C1"))).enabled
    setting = await app.storage.topics.setting(person)
    assert setting.enabled and setting.paused_reason is None
    assert await app.storage.topics.take_notice(person) is None
    assert adapter.sent_to("U_OWNER") == []            # nobody is told to fix a channel that is fine
    adapter.heal()                                      # the scope is added and the app reinstalled
    retry = await run_delivery_pass(app, now=at(FRIDAY, 9, 5), sender=fast_sender())
    assert retry.sent == 2 and retry.recovered == 2


async def test_closed_dms_pause_alerts_with_a_notice_shown_on_the_next_command(app: App) -> None:
    user = UserRef("slack", "T1", "U1")
    await add_person(app.storage, user, ["generalization"], after=at(FRIDAY, 0))
    fake(app).fail("U1", FailureKind.DMS_CLOSED, detail="cannot_dm_bot")
    report = await run_delivery_pass(app, now=at(FRIDAY, 9, 1))
    assert report.paused == 1
    setting = await app.storage.topics.setting(user)
    assert setting is not None and not setting.enabled and setting.paused_reason
    answer = await fake(app).inject("/papers subscriptions", user="U1", workspace="T1")
    assert any("paused" in notice for notice in answer.notices)


async def test_an_uninstalled_workspace_is_deactivated_and_others_keep_going(app: App) -> None:
    for ws in ("T_GONE", "T_OK"):
        for i in range(3):
            await add_channel(app.storage, ChannelRef("slack", ws, f"{ws}_C{i}"), at=time(9, 0), tz="UTC",
                              after=at(FRIDAY, 0))
        await add_person(app.storage, UserRef("slack", ws, f"{ws}_U"), ["generalization"], after=at(FRIDAY, 0))
    adapter = fake(app)
    for i in range(3):
        adapter.fail(f"T_GONE_C{i}", FailureKind.INSTALL_GONE, detail="token_revoked")
    adapter.fail("T_GONE_U", FailureKind.INSTALL_GONE, detail="token_revoked")
    report = await run_delivery_pass(app, now=at(FRIDAY, 9, 1))
    assert report.sent == 4
    assert report.paused >= 3  # the alert may not even be claimed once the workspace is switched off
    assert not await app.storage.workspaces.is_active("slack", "T_GONE")
    assert await app.storage.workspaces.is_active("slack", "T_OK")
    gone = await app.storage.channels.get(ChannelRef("slack", "T_GONE", "T_GONE_C2"))
    assert gone is not None and not gone.enabled
    person = await app.storage.topics.setting(UserRef("slack", "T_GONE", "T_GONE_U"))
    assert person is not None and not person.enabled
    await run_delivery_pass(app, now=at(SATURDAY, 9, 1))
    assert all(item.target.workspace == "T_OK" for item in adapter.outbox)


async def test_a_stale_claim_is_sent_after_the_lease_and_not_before(app: App) -> None:
    channel = ChannelRef("slack", "T1", "C1")
    await add_channel(app.storage, channel, at=time(9, 0), tz="UTC", after=at(FRIDAY, 0))
    deliveries = Deliveries(app.storage.db)
    # a process claims the post and dies before sending it
    claimed = await deliveries.claim_due_channels(now=at(FRIDAY, 9, 0), grace=timedelta(hours=6), worker_id="dead",
                                                  platforms=["slack"], fallback_zone="UTC")
    assert len(claimed.jobs) == 1
    soon = await run_delivery_pass(app, now=at(FRIDAY, 9, 5), lease=timedelta(minutes=10))
    assert soon.sent == 0 and fake(app).outbox == []
    later = await run_delivery_pass(app, now=at(FRIDAY, 9, 11), lease=timedelta(minutes=10))
    assert later.sent == 1 and later.recovered == 1
    assert await deliveries.status_counts() == {"sent": 1}


async def test_no_adapter_for_a_platform_leaves_its_subscriptions_alone(app: App) -> None:
    await add_channel(app.storage, ChannelRef("discord", "G1", "C1"), at=time(9, 0), tz="UTC", after=at(FRIDAY, 0))
    report = await run_delivery_pass(app, now=at(FRIDAY, 9, 1))
    assert report.sent == 0
    assert await Deliveries(app.storage.db).status_counts() == {}
    setting = await app.storage.channels.get(ChannelRef("discord", "G1", "C1"))
    assert setting is not None and setting.next_due_at == at(FRIDAY, 9, 0)


# --- the clock ----------------------------------------------------------------------------------------


async def test_scheduler_runs_a_catch_up_pass_at_start_and_stops_cleanly(app: App) -> None:
    await add_channel(app.storage, ChannelRef("slack", "T1", "C1"), at=time(9, 0), tz="UTC", after=at(FRIDAY, 0))
    scheduler = DeliveryScheduler(app, clock=lambda: at(FRIDAY, 10, 30))
    await scheduler.start()
    try:
        await scheduler.wait_for_passes(1)
        assert scheduler.running
    finally:
        await scheduler.stop()
    assert not scheduler.running
    assert scheduler.last_report is not None and scheduler.last_report.sent == 1
    assert len(fake(app).sent_to("C1")) == 1


async def test_stopping_the_scheduler_lets_a_running_pass_finish(app: App) -> None:
    started, release = asyncio.Event(), asyncio.Event()
    finished: list[bool] = []

    async def slow_pass(app: App, **kwargs: object) -> DeliveryReport:
        started.set()
        await release.wait()
        finished.append(True)
        return DeliveryReport(started_at=at(FRIDAY, 9, 0), dry_run=False)

    scheduler = DeliveryScheduler(app, run_pass=slow_pass)
    await scheduler.start()
    await asyncio.wait_for(started.wait(), 5)
    stopping = asyncio.create_task(scheduler.stop())
    await asyncio.sleep(0.05)
    assert not stopping.done()          # waiting for the pass, not cancelling it
    release.set()
    await asyncio.wait_for(stopping, 5)
    assert finished == [True] and not scheduler.running


# --- the offline sample, long passes --------------------------------------------------------------


def closed_port_url() -> str:
    """A loopback URL nothing listens on (the port was free a moment ago)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


async def test_the_offline_sample_is_never_delivered_and_the_post_goes_out_once_the_feed_is_back(
        db_url: str, hf: FakeHuggingFace) -> None:
    # Hugging Face unreachable and nothing stored: only the bundled sample could answer
    offline = build_app(make_settings(DATABASE_URL=db_url, PAPERBOY_HF_URL=closed_port_url(),
                                      PAPERBOY_OFFLINE_SAMPLE=True, PAPERBOY_HF_RETRIES=0))
    adapter = FakeAdapter(offline.core, platform="slack")
    offline.adapters.add(adapter)
    try:
        await add_channel(offline.storage, ChannelRef("slack", "T1", "C1"), at=time(9, 0), tz="UTC",
                          after=at(FRIDAY, 0))
        await add_person(offline.storage, UserRef("slack", "T1", "U1"), ["generalization"], after=at(FRIDAY, 0))
        assert (await offline.core.search_reply("generalization")).papers   # commands do use the sample
        down = await run_delivery_pass(offline, now=at(FRIDAY, 9, 1), sender=fast_sender())
        assert adapter.outbox == []
        assert down.sent == 0 and down.failed == 2
        assert any("offline sample" in problem for problem in down.problems)
        assert await Deliveries(offline.storage.db).status_counts() == {"failed": 2}
        # a long outage: retried every few minutes, far more often than MAX_ATTEMPTS (nothing was tried)
        for minutes in range(4, 40, 3):
            still_down = await run_delivery_pass(offline, now=at(FRIDAY, 9, minutes), sender=fast_sender())
            assert (still_down.recovered, still_down.failed, still_down.sent) == (2, 2, 0)
    finally:
        await offline.close()

    online = _app(db_url, hf)
    adapter = FakeAdapter(online.core, platform="slack")
    online.adapters.add(adapter)
    try:
        back = await run_delivery_pass(online, now=at(FRIDAY, 9, 45), sender=fast_sender())
        assert back.sent == 2 and back.recovered == 2
        assert {item.reply.kind for item in adapter.outbox} == {ReplyKind.CHANNEL_DIGEST, ReplyKind.PERSONAL_ALERT}
    finally:
        await online.close()


async def test_a_pass_running_longer_than_the_lease_keeps_its_claims(app: App, hf: FakeHuggingFace) -> None:
    """The pass renews its claims; another worker must not take over what it is still sending."""
    start = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    set_feed(hf, start.date(), FRIDAY_FEED)
    due = start - timedelta(minutes=1)
    for i in range(2):
        await add_channel(app.storage, ChannelRef("slack", "T1", f"C{i}"), at=due.time(), tz="UTC",
                          after=due - timedelta(minutes=1))
    lease = timedelta(seconds=0.6)
    first_sent, release = asyncio.Event(), asyncio.Event()

    async def hold_the_first_send(item: object) -> None:
        if not first_sent.is_set():
            first_sent.set()
            await release.wait()

    adapter = fake(app)
    adapter.on_send = hold_the_first_send
    delivery_pass = asyncio.create_task(run_delivery_pass(app, now=datetime.now(timezone.utc), lease=lease, batch_size=1,
                                                          worker_id="slow"))
    await asyncio.wait_for(first_sent.wait(), 10)
    deliveries = Deliveries(app.storage.db)
    try:
        # three leases later another worker looks for abandoned claims, at the real current time
        await asyncio.sleep(3 * lease.total_seconds())
        other = await deliveries.reclaim(CHANNEL, now=datetime.now(timezone.utc), lease=lease,
                                         grace=timedelta(hours=6), worker_id="other", platforms=["slack"],
                                         retry_delay=timedelta(minutes=2), max_attempts=5)
        assert other.jobs == []
    finally:
        release.set()
    report = await asyncio.wait_for(delivery_pass, 10)
    assert report.sent == 2 and report.recovered == 0
    assert sorted(item.target.channel for item in adapter.outbox) == ["C0", "C1"]


async def test_history_is_pruned_but_a_paper_is_still_never_sent_twice(app: App, hf: FakeHuggingFace) -> None:
    from sqlalchemy import func, select

    from scheduler.clock import UPKEEP_JOB_ID
    from scheduler.delivery import prune_history
    from storage.models import Delivery, SentPaper

    person = UserRef("slack", "T1", "U1")
    await add_person(app.storage, person, ["generalization"], after=at(FRIDAY, 0))
    await add_channel(app.storage, ChannelRef("slack", "T1", "C1"), at=time(9, 0), tz="UTC", after=at(FRIDAY, 0))
    assert (await run_delivery_pass(app, now=at(FRIDAY, 9, 1))).sent == 2

    async def counts() -> tuple[int, int]:
        async with app.storage.db.read() as session:
            return ((await session.execute(select(func.count()).select_from(Delivery))).scalar_one(),
                    (await session.execute(select(func.count()).select_from(SentPaper))).scalar_one())

    sent_before = await counts()
    assert sent_before[0] == 2 and sent_before[1] >= 1
    assert await prune_history(app, now=at(FRIDAY, 12)) == (0, 0)              # all recent: nothing goes
    assert await counts() == sent_before
    # the next day the same feed is still the latest: the person gets nothing again
    assert (await run_delivery_pass(app, now=at(SATURDAY, 9, 1))).sent == 0
    far_later = at(FRIDAY, 12) + timedelta(days=91)
    assert await prune_history(app, now=far_later) == (4, sent_before[1])
    assert await counts() == (0, 0)

    scheduler = DeliveryScheduler(app, clock=lambda: at(FRIDAY, 10))
    await scheduler.start()
    try:
        assert scheduler._scheduler is not None  # noqa: SLF001
        assert scheduler._scheduler.get_job(UPKEEP_JOB_ID) is not None  # noqa: SLF001 - pruning is scheduled
    finally:
        await scheduler.stop()
