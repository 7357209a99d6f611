"""Delivery passes through the real Slack adapter (slack_sdk) against the fake Slack Web API.

Storage is real (SQLite and PostgreSQL), the feed comes from the fake Hugging Face
server, and sends go over HTTP to :class:`tests.fakes.slack_api.FakeSlackApi`, which
keeps posted messages with their metadata and answers ``conversations.history`` as
Slack documents it. Time of day is injected; waits are real but short.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import date, datetime, time, timedelta, timezone

import pytest

from adapters.slack import SlackAdapter
from bot.app import App, build_app
from bot.models import ChannelRef, UserRef
from scheduler.delivery import run_delivery_pass
from scheduler.fanout import Sender
from storage.deliveries import Deliveries
from tests.conftest import make_settings
from tests.delivery_support import add_channel, add_person, paper, serving_feed
from tests.fakes.hf_api import FakeHuggingFace
from tests.fakes.slack_api import FakeSlackApi

FRIDAY = date(2026, 11, 20)
DUE = datetime(2026, 11, 20, 9, 0, tzinfo=timezone.utc)
FEED = [paper("2511.40001", "Generalization in Deep Networks", upvotes=50),
        paper("2511.40002", "Scaling Laws for Language Models", upvotes=40)]


@pytest.fixture
def hf() -> Iterator[FakeHuggingFace]:
    with serving_feed(FRIDAY, FEED) as server:
        yield server


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlackApi]:
    async with FakeSlackApi() as fake:
        yield fake


@pytest.fixture
async def app(db_url: str, hf: FakeHuggingFace, slack: FakeSlackApi) -> AsyncIterator[App]:
    settings = make_settings(DATABASE_URL=db_url, PAPERBOY_HF_URL=hf.url, PAPERBOY_OFFLINE_SAMPLE=False,
                             PAPERBOY_DELIVERY_CONCURRENCY=8, SLACK_API_URL=slack.url,
                             SLACK_SIGNING_SECRET="s3cret", SLACK_BOT_TOKEN="xoxb-test")
    application = build_app(settings)
    # a short client timeout, so an answer held back by the fake arrives after it; no 429 sleeping
    # inside slack_sdk, so every 429 reaches the scheduler's gates
    application.adapters.add(SlackAdapter(settings, application.core, application.storage, request_timeout=0.5,
                                          rate_limit_retries=0))
    try:
        yield application
    finally:
        for adapter in application.adapters:
            await adapter.stop()      # closes the adapter's shared HTTP session
        await application.close()


def quick_sender(**limits: int) -> Sender:
    return Sender(transient_backoff=0.05, **limits)


async def test_a_post_answered_after_the_timeout_is_posted_exactly_once_over_all_passes(
        app: App, slack: FakeSlackApi) -> None:
    """Slack accepts the post but its answer comes after the client gave up: the outcome is unknown.
    The retry looks in the channel's history first (conversations.history with include_all_metadata,
    oldest = the due time), finds the message by its metadata, and records it as sent."""
    await add_channel(app.storage, ChannelRef("slack", "T1", "C1"), at=time(9, 0), tz="UTC",
                      after=DUE - timedelta(hours=1))
    slack.answer_late(2.0)
    report = await run_delivery_pass(app, now=DUE + timedelta(minutes=1), sender=quick_sender())
    assert len(slack.posted("C1")) == 1
    assert report.sent == 1 and report.found_delivered == 1 and report.failed == 0
    [lookup] = slack.calls_to("conversations.history")
    assert lookup.params["channel"] == "C1" and lookup.params["include_all_metadata"] is True
    assert float(lookup.params["oldest"]) <= DUE.timestamp() and int(lookup.params["limit"]) <= 15
    [message] = slack.posted("C1")
    assert message["metadata"]["event_type"] == "paperboy_delivery"
    for minutes in (2, 5, 30):   # later passes: nothing more
        again = await run_delivery_pass(app, now=DUE + timedelta(minutes=minutes), sender=quick_sender())
        assert again.sent == 0
    assert len(slack.posted("C1")) == 1
    assert await Deliveries(app.storage.db).status_counts() == {"sent": 1}


async def test_an_alert_answered_late_is_found_in_the_dm_history(app: App, slack: FakeSlackApi) -> None:
    await add_person(app.storage, UserRef("slack", "T1", "U7"), ["generalization"], after=DUE - timedelta(hours=1))
    slack.answer_late(2.0)
    report = await run_delivery_pass(app, now=DUE + timedelta(minutes=1), sender=quick_sender())
    assert report.sent == 1 and report.found_delivered == 1
    assert len(slack.posted("DU7")) == 1


async def test_without_history_scopes_an_unknown_outcome_is_sent_again_as_documented(
        app: App, slack: FakeSlackApi) -> None:
    """A workspace that did not grant channels:history answers missing_scope: delivery degrades to
    sending again (the documented duplicate), and says so in the report."""
    await add_channel(app.storage, ChannelRef("slack", "T1", "C1"), at=time(9, 0), tz="UTC",
                      after=DUE - timedelta(hours=1))
    slack.fail("conversations.history", "missing_scope")
    slack.answer_late(2.0)
    report = await run_delivery_pass(app, now=DUE + timedelta(minutes=1), sender=quick_sender())
    assert report.sent == 1 and report.unchecked_resends == 1
    assert len(slack.posted("C1")) == 2


async def test_a_failed_history_check_never_sends_blind(app: App, slack: FakeSlackApi) -> None:
    """History rate-limited (Tier 1 for apps outside the Marketplace): the send is not repeated
    unchecked; the ledger marks the outcome unknown and a later pass looks again, then finds it."""
    await add_channel(app.storage, ChannelRef("slack", "T1", "C1"), at=time(9, 0), tz="UTC",
                      after=DUE - timedelta(hours=1))
    slack.rate_limit("conversations.history", retry_after=0, times=None)
    slack.answer_late(2.0)
    report = await run_delivery_pass(app, now=DUE + timedelta(minutes=1), sender=quick_sender(max_rate_limited=2))
    assert report.failed == 1 and len(slack.posted("C1")) == 1
    slack.clear_failures()
    later = await run_delivery_pass(app, now=DUE + timedelta(minutes=5), sender=quick_sender())
    assert later.sent == 1 and later.found_delivered == 1
    assert len(slack.posted("C1")) == 1


async def test_one_channel_in_429_does_not_delay_the_others_in_its_workspace(app: App, slack: FakeSlackApi) -> None:
    """Slack limits chat.postMessage per channel: a 429 for C0 closes C0's gate only."""
    retry_after = 4
    for i in range(20):
        await add_channel(app.storage, ChannelRef("slack", "T1", f"C{i}"), at=time(9, 0), tz="UTC",
                          after=DUE - timedelta(hours=1))
    slack.rate_limit("chat.postMessage", retry_after=retry_after, times=1, channel="C0")
    report = await run_delivery_pass(app, now=DUE + timedelta(minutes=1), sender=quick_sender())
    assert report.sent == 20 and report.rate_limited == 1
    bad_calls = [c for c in slack.calls_to("chat.postMessage") if c.params["channel"] == "C0"]
    assert len(bad_calls) == 2
    healthy_last = max(slack.post_times[f"C{i}"][0] for i in range(1, 20))
    bad_retry = slack.post_times["C0"][0]
    assert bad_retry - bad_calls[0].at >= retry_after - 0.5   # C0 waited out its Retry-After
    assert healthy_last < bad_calls[0].at + retry_after - 1   # nobody else waited for it
    assert all(len(slack.posted(f"C{i}")) == 1 for i in range(20))


async def test_a_proxy_answering_503_text_plain_fails_the_pass_cleanly_and_the_next_pass_delivers(
        app: App, slack: FakeSlackApi, caplog: pytest.LogCaptureFixture) -> None:
    """Every Slack method answered by a proxy's ``503 text/plain`` (slack_sdk hands the body over as a
    ``str``): the sends fail as transient with Slack's status, nothing is paused, no traceback is
    logged; once Slack answers again a later pass delivers."""
    import logging

    caplog.set_level(logging.INFO)
    await add_channel(app.storage, ChannelRef("slack", "T1", "C1"), at=time(9, 0), tz="UTC",
                      after=DUE - timedelta(hours=1))
    await add_person(app.storage, UserRef("slack", "T1", "U7"), ["generalization"], after=DUE - timedelta(hours=1))
    slack.answer_raw("*")
    report = await run_delivery_pass(app, now=DUE + timedelta(minutes=1), sender=quick_sender())
    assert (report.sent, report.paused, report.failed) == (0, 0, 2)
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert "http_503" in caplog.text
    assert await app.storage.workspaces.is_active("slack", "T1")

    slack.clear_failures()
    report = await run_delivery_pass(app, now=DUE + timedelta(minutes=20), sender=quick_sender())
    assert report.sent == 2
    assert len(slack.posted("C1")) == 1 and len(slack.posted("DU7")) == 1
