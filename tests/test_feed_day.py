"""Which day of the Hugging Face daily feed Paperboy asks for, end to end through the real httpx client.

Hugging Face's feed day is the America/New_York date, and the next day's batch opens at 21:30 New
York time (``currentDailyFeedDate`` in Hugging Face's MCP server, huggingface/hf-mcp-server,
packages/mcp/src/hf-fs-papers.ts). ``/api/daily_papers?date=D`` for a day not open yet is HTTP 400
(huggingface_hub, tests/test_hf_api.py, ``test_list_daily_papers_by_date_invalid_date`` expects
``BadRequestError``); the fake server answers so (tests/fakes/hf_api.py). November 2026 is on
Eastern Standard Time (UTC-5): 21:30 New York is 02:30 UTC the next day.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone

import pytest

from adapters.fake import FakeAdapter
from bot.app import build_app
from bot.core import Paperboy
from bot.hf_client import FeedDayNotOpen, HuggingFaceClient
from bot.models import ChannelRef, CommandContext, Reply, ReplyKind, UserRef
from bot.papers import PaperService, current_feed_day
from bot.sample import load_sample
from scheduler.delivery import run_delivery_pass
from storage.repositories import Storage
from tests.conftest import make_settings
from tests.delivery_support import add_channel, add_person, paper, set_feed
from tests.fakes.hf_api import FakeHuggingFace

WEDNESDAY = date(2026, 11, 18)
THURSDAY = date(2026, 11, 19)
FRIDAY = date(2026, 11, 20)
SATURDAY = date(2026, 11, 21)
USER = UserRef("slack", "T1", "U1")
CTX = CommandContext(user=USER, channel=ChannelRef("slack", "T1", "C1"))


def utc(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=timezone.utc)


# --- the rule itself ------------------------------------------------------------------------------


@pytest.mark.parametrize(("instant", "expected"), [
    (utc(FRIDAY, 23, 0), FRIDAY),            # 18:00 in New York
    (utc(SATURDAY, 0, 30), FRIDAY),          # 19:30 Friday in New York: the UTC date is ahead
    (utc(SATURDAY, 1, 59), FRIDAY),          # 20:59
    (utc(SATURDAY, 2, 29), FRIDAY),          # 21:29: Saturday's batch not open yet
    (utc(SATURDAY, 2, 30), SATURDAY),        # 21:30: it opens
    (utc(SATURDAY, 2, 31), SATURDAY),
    (utc(SATURDAY, 4, 59), SATURDAY),        # 23:59 Friday in New York
    (utc(date(2026, 7, 15), 1, 29), date(2026, 7, 14)),   # summer (UTC-4): 21:29 EDT
    (utc(date(2026, 7, 15), 1, 30), date(2026, 7, 15)),   # 21:30 EDT
    (datetime(2026, 11, 21, 9, 0, tzinfo=timezone(timedelta(hours=9))), FRIDAY),   # 09:00 in Tokyo
])
def test_the_feed_day_is_the_new_york_date_moving_on_at_21_30(instant: datetime, expected: date) -> None:
    assert current_feed_day(instant) == expected


def test_the_feed_day_needs_an_aware_instant() -> None:
    with pytest.raises(ValueError):
        current_feed_day(datetime(2026, 11, 21, 0, 30))


# --- /papers today at the awkward hours ----------------------------------------------------------


def feed_server(*, open_until: date, saturday_papers: bool = False) -> FakeHuggingFace:
    server = FakeHuggingFace(papers=[], daily={})
    set_feed(server, WEDNESDAY, [paper("2511.00001", "Wednesday Paper on Robots", upvotes=5)])
    set_feed(server, THURSDAY, [paper("2511.00002", "Thursday Paper on Vision", upvotes=7)])
    set_feed(server, FRIDAY, [paper("2511.00003", "Friday Paper on Generalization", upvotes=9),
                              paper("2511.00004", "Friday Paper on Scaling", upvotes=30)])
    if saturday_papers:
        set_feed(server, SATURDAY, [paper("2511.00005", "Saturday Paper on Agents", upvotes=3)])
    server.latest_day = open_until
    return server


async def no_sleep(seconds: float) -> None:
    return None


async def ask_today(storage: Storage, server: FakeHuggingFace, now: datetime) -> Reply:
    """``/papers today`` at ``now``: real client, real storage, the offline sample switched on."""
    async with HuggingFaceClient(server.url, retries=2, sleep=no_sleep, timeout=5.0) as hf:
        papers = PaperService(hf, storage.papers, sample=load_sample, clock=lambda: now)
        core = Paperboy(make_settings(), storage, papers, clock=lambda: now)
        return await core.handle(CTX, "/papers today")


def assert_live(reply: Reply) -> None:
    assert reply.kind is ReplyKind.TRENDING and not reply.is_error
    assert reply.notices == ()
    text = " ".join((reply.title, *reply.lines, *reply.notices))
    assert "not answering" not in text and "Offline sample" not in text and "stored copy" not in text


@pytest.mark.parametrize(("now", "open_until", "saturday_papers", "asked", "answered", "first"), [
    (utc(SATURDAY, 0, 30), FRIDAY, False, ["2026-11-20"], FRIDAY, "2511.00004"),
    (utc(SATURDAY, 1, 59), FRIDAY, False, ["2026-11-20"], FRIDAY, "2511.00004"),
    (utc(SATURDAY, 2, 31), SATURDAY, True, ["2026-11-21"], SATURDAY, "2511.00005"),
    (utc(FRIDAY, 23, 0), FRIDAY, False, ["2026-11-20"], FRIDAY, "2511.00004"),
])
async def test_today_asks_only_for_days_that_can_be_open(storage: Storage, now: datetime, open_until: date,
                                                         saturday_papers: bool, asked: list[str], answered: date,
                                                         first: str) -> None:
    """At 00:30 and 01:59 UTC the UTC date (Saturday) is not open in New York yet: never asked for."""
    with feed_server(open_until=open_until, saturday_papers=saturday_papers) as server:
        reply = await ask_today(storage, server, now)
        assert server.dates_asked() == asked
    assert_live(reply)
    assert reply.day == answered
    assert reply.papers[0].paper.paper_id == first


async def test_a_day_not_open_yet_is_passed_over_without_an_outage(storage: Storage) -> None:
    """At 02:31 UTC Saturday's batch may open late: the 400 means "not yet", the answer is Friday's,
    and Hugging Face is asked again at once (no outage back-off): the next search goes upstream."""
    with feed_server(open_until=FRIDAY) as server:
        now = utc(SATURDAY, 2, 31)
        async with HuggingFaceClient(server.url, retries=2, sleep=no_sleep, timeout=5.0) as hf:
            papers = PaperService(hf, storage.papers, sample=load_sample, clock=lambda: now)
            core = Paperboy(make_settings(), storage, papers, clock=lambda: now)
            reply = await core.handle(CTX, "/papers today")
            assert server.dates_asked() == ["2026-11-21", "2026-11-20"]
            assert server.count("/api/daily_papers") == 2      # a 400 is never retried
            await core.handle(CTX, "/papers generalization")
            assert server.count("/api/papers/search") == 1
    assert_live(reply)
    assert reply.day == FRIDAY


async def test_the_client_reports_a_400_for_a_date_as_a_day_not_open() -> None:
    with feed_server(open_until=FRIDAY) as server:
        async with HuggingFaceClient(server.url, retries=3, sleep=no_sleep) as hf:
            with pytest.raises(FeedDayNotOpen) as raised:
                await hf.daily_papers(day=SATURDAY)
            assert raised.value.day == SATURDAY and raised.value.status == 400
            assert await hf.daily_papers(day=FRIDAY)
        assert server.count("/api/daily_papers") == 2


async def test_the_daily_list_is_requested_as_hugging_faces_own_clients_request_it(storage: Storage) -> None:
    """One day's list is ``date=D&sort=publishedAt`` with ``p`` and ``limit``, as Hugging Face's MCP
    server requests a dated batch; ``sort=trending`` is never combined with ``date``."""
    with feed_server(open_until=FRIDAY) as server:
        await ask_today(storage, server, utc(FRIDAY, 12))
        [(path, query)] = server.requests
    assert path == "/api/daily_papers"
    assert query == {"p": "0", "limit": "100", "sort": "publishedAt", "date": "2026-11-20"}


# --- the delivery pass -----------------------------------------------------------------------------


async def test_a_channel_post_due_at_midnight_utc_is_sent_from_the_open_day(db_url: str) -> None:
    """09:00 in Tokyo is 00:00 UTC, when the UTC date is a day ahead of the feed: the post goes out
    with Friday's feed instead of being held back as if Hugging Face were down."""
    with feed_server(open_until=FRIDAY) as server:
        app = build_app(make_settings(DATABASE_URL=db_url, PAPERBOY_HF_URL=server.url,
                                      PAPERBOY_OFFLINE_SAMPLE=False, PAPERBOY_DAILY_CACHE_SECONDS=0))
        adapter = FakeAdapter(app.core, platform="slack")
        app.adapters.add(adapter)
        try:
            channel = ChannelRef("slack", "T1", "C-TOKYO")
            await add_channel(app.storage, channel, at=time(9, 0), tz="Asia/Tokyo", after=utc(FRIDAY, 12))
            person = UserRef("slack", "T1", "U-TOKYO")
            await add_person(app.storage, person, ["generalization"], after=utc(FRIDAY, 12), at=time(9, 0),
                             tz="Asia/Tokyo")
            report = await run_delivery_pass(app, now=utc(SATURDAY, 0, 1))
            # never Saturday; Thursday too, for the alerts' second feed day
            assert set(server.dates_asked()) == {"2026-11-20", "2026-11-19"}
            assert len(server.dates_asked()) <= 3
        finally:
            await app.close()
    assert (report.sent, report.failed, report.problems) == (2, 0, [])
    [post] = adapter.sent_to("C-TOKYO")
    assert post.reply.kind is ReplyKind.CHANNEL_DIGEST and post.reply.day == FRIDAY
    assert post.reply.notices == ()
    [alert] = adapter.sent_to("U-TOKYO")
    assert [p.paper.paper_id for p in alert.reply.papers] == ["2511.00003"]

