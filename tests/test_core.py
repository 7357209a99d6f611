"""The core answering commands against real storage and a scripted paper source.

The paper source here is an in-process stand-in for the parts of the Hugging
Face client the core uses; the real client against a fake HTTP server is
covered in test_hf_client.py and end to end in test_cli.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date, datetime, time, timedelta, timezone

import pytest

from bot.core import Paperboy
from bot.hf_client import SourceUnavailable
from bot.models import ChannelRef, CommandContext, Paper, ReplyKind, UserRef
from bot.papers import PaperService
from bot.sample import load_sample
from storage.repositories import Storage
from tests.conftest import make_settings

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=timezone.utc)
ALICE = UserRef("slack", "T1", "U_ALICE")
CHANNEL = ChannelRef("slack", "T1", "C1")


def ctx(user: UserRef = ALICE, *, channel: ChannelRef | None = CHANNEL, tz: str | None = None,
        manage: bool = True) -> CommandContext:
    return CommandContext(user=user, channel=channel, user_timezone=tz, can_manage_channel=manage)


PAPERS = [
    Paper("2511.00001", "On the Generalization Mystery in Deep Learning", "Networks generalize. Second sentence.",
          authors=("Ada", "Bob", "Cy", "Di", "Ed"), author_count=5, upvotes=12, published_at=NOW,
          github_repo="https://github.com/x/y", github_stars=1234, project_page="https://proj.example"),
    Paper("2511.00002", "Scaling Chat Models", "Bigger is better.", upvotes=900, published_at=NOW,
          ai_summary="Larger chat models answer better."),
    Paper("2511.00003", "Compositional Generalization Benchmarks", "We benchmark.", upvotes=3,
          published_at=NOW - timedelta(days=400)),
]


class ScriptedSource:
    """Answers like the Hugging Face client, or fails like it when ``down``."""

    def __init__(self) -> None:
        self.down = False
        self.daily: dict[date, list[Paper]] = {NOW.date() - timedelta(days=1): PAPERS}
        self.calls: list[str] = []

    async def search(self, query: str, *, limit: int = 50) -> list[Paper]:
        self.calls.append(f"search:{query}")
        if self.down:
            raise SourceUnavailable("down")
        return PAPERS[:limit]

    async def daily_papers(self, *, day: date | None = None, sort: str = "trending", limit: int = 100,
                           page: int = 0) -> list[Paper]:
        self.calls.append(f"daily:{day}")
        if self.down:
            raise SourceUnavailable("down")
        return self.daily.get(day, [])


@pytest.fixture
def source() -> ScriptedSource:
    return ScriptedSource()


@pytest.fixture
async def core(storage: Storage, source: ScriptedSource) -> AsyncIterator[Paperboy]:
    clock = lambda: NOW  # noqa: E731
    settings = make_settings(PAPERBOY_DEFAULT_TIMEZONE="Europe/Berlin", PAPERBOY_MAX_TOPICS=3)
    yield Paperboy(settings, storage, PaperService(source, storage.papers, sample=load_sample, clock=clock),
                   clock=clock)


async def test_search_ranks_presents_and_links(core: Paperboy) -> None:
    reply = await core.handle(ctx(), "/papers Generalization")
    assert reply.kind is ReplyKind.SEARCH and reply.topic == "generalization"
    titles = [p.paper.title for p in reply.papers]
    assert titles == ["On the Generalization Mystery in Deep Learning", "Compositional Generalization Benchmarks"]
    first = reply.papers[0]
    assert first.rank == 1
    assert first.authors_line == "Ada, Bob, Cy + 2 more"
    assert first.summary_line == "Networks generalize."
    assert [link.label for link in first.links] == ["Paper page", "arXiv", "PDF", "Code ★ 1,234", "Project page"]
    assert first.links[1].url == "https://arxiv.org/abs/2511.00001"
    assert first.matched_terms == ("generalization (title, abstract)", "Hugging Face search: #1")
    assert reply.notices == ()


async def test_search_with_no_match_says_so(core: Paperboy) -> None:
    reply = await core.handle(ctx(), "/papers quantum chromodynamics")
    assert reply.papers == () and "No papers matched" in reply.lines[0]


async def test_today_falls_back_to_the_latest_day_with_papers(core: Paperboy, source: ScriptedSource) -> None:
    reply = await core.handle(ctx(), "/papers today")
    assert reply.kind is ReplyKind.TRENDING
    assert reply.day == NOW.date() - timedelta(days=1)
    assert [p.paper.paper_id for p in reply.papers] == ["2511.00002", "2511.00001", "2511.00003"]
    assert reply.papers[0].summary_line == "Larger chat models answer better."
    assert source.calls[:2] == [f"daily:{NOW.date()}", f"daily:{NOW.date() - timedelta(days=1)}"]


async def test_outage_answers_from_the_stored_copy(core: Paperboy, source: ScriptedSource) -> None:
    await core.handle(ctx(), "/papers today")  # stores the feed
    source.down = True
    reply = await core.handle(ctx(), "/papers generalization")
    assert [p.paper.paper_id for p in reply.papers] == ["2511.00001", "2511.00003"]
    assert "stored copy of 2026-11-22 10:00 UTC" in reply.notices[0]
    trending = await core.handle(ctx(), "/papers today")
    assert trending.day == NOW.date() - timedelta(days=1) and "stored copy" in trending.notices[0]


async def test_a_refused_request_is_not_an_outage(core: Paperboy, source: ScriptedSource) -> None:
    """A 4xx for one query falls back for that answer only; the next command asks upstream again."""
    from bot.hf_client import SourceRefused

    async def refuse(query: str, *, limit: int = 50) -> list[Paper]:
        source.calls.append(f"search:{query}")
        raise SourceRefused("HTTP 400 (/api/papers/search)")

    original, source.search = source.search, refuse  # type: ignore[method-assign]
    first = await core.handle(ctx(), "/papers generalization")
    assert first.kind is ReplyKind.SEARCH and first.notices      # answered from a fallback, and says so
    source.search = original  # type: ignore[method-assign]
    second = await core.handle(ctx(), "/papers generalization")
    assert second.notices == () and source.calls.count("search:generalization") == 2


async def test_outage_with_nothing_stored_uses_the_labelled_sample(core: Paperboy, source: ScriptedSource) -> None:
    source.down = True
    reply = await core.handle(ctx(), "/papers generalization")
    assert reply.papers and "Offline sample" in reply.notices[0]
    for item in reply.papers:
        assert item.paper.arxiv_id is None
        assert item.paper.page_url.startswith("https://huggingface.co/papers?q=")


async def test_subscriptions_lifecycle_and_limit(core: Paperboy, storage: Storage) -> None:
    reply = await core.handle(ctx(tz="America/New_York"), "/papers subscribe Diffusion  Models")
    assert reply.kind is ReplyKind.CONFIRMATION and "09:00 America/New_York" in reply.lines[0]
    assert (await core.handle(ctx(), "/papers subscribe diffusion models")).title.startswith("You already follow")
    await core.handle(ctx(), "/papers subscribe rl")
    await core.handle(ctx(), "/papers subscribe gnn")
    refused = await core.handle(ctx(), "/papers subscribe one more")
    assert refused.kind is ReplyKind.ERROR and "the most allowed is 3" in refused.lines[0]
    listing = await core.handle(ctx(), "/papers subscriptions")
    assert listing.items == ("diffusion models", "rl", "gnn")
    setting = await storage.topics.setting(ALICE)
    assert setting.next_due_at == datetime(2026, 11, 22, 14, 0, tzinfo=timezone.utc)  # 09:00 New York
    gone = await core.handle(ctx(), "/papers unsubscribe RL")
    assert gone.kind is ReplyKind.CONFIRMATION
    missing = await core.handle(ctx(), "/papers unsubscribe rl")
    assert missing.kind is ReplyKind.ERROR and "diffusion models" in missing.lines[0]


async def test_no_topics_left_means_no_alert_is_due_until_one_is_followed_again(core: Paperboy,
                                                                                storage: Storage) -> None:
    await core.handle(ctx(), "/papers subscribe rl")
    await core.handle(ctx(), "/papers subscribe gnn")
    await core.handle(ctx(), "/papers unsubscribe rl")
    assert (await storage.topics.setting(ALICE)).next_due_at is not None     # one topic left
    await core.handle(ctx(), "/papers unsubscribe gnn")
    emptied = await storage.topics.setting(ALICE)
    assert emptied.enabled and emptied.next_due_at is None
    await core.handle(ctx(), "/papers alerts on 07:00")                    # a time, but still nothing to send
    assert (await storage.topics.setting(ALICE)).next_due_at is None
    await core.handle(ctx(), "/papers subscribe rl")
    again = await storage.topics.setting(ALICE)
    assert again.next_due_at == datetime(2026, 11, 23, 6, 0, tzinfo=timezone.utc)   # 07:00 Berlin tomorrow


async def test_the_platform_time_zone_is_written_once_not_on_every_command(core: Paperboy, storage: Storage,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    await core.handle(ctx(), "/papers subscribe rl")        # no zone known yet: the default is used
    writes: list[str] = []
    original = storage.db.transaction

    def counting_transaction():  # noqa: ANN202
        writes.append("write")
        return original()

    monkeypatch.setattr(storage.db, "transaction", counting_transaction)
    assert await storage.topics.remember_timezone(ALICE, "Asia/Tokyo") is False   # they have a zone already
    await core.handle(ctx(tz="Asia/Tokyo"), "/papers help")
    await core.handle(ctx(tz="Asia/Tokyo"), "/papers subscriptions")
    assert writes == []     # commands that change nothing write nothing
    bob = UserRef("slack", "T1", "U_BOB")
    await storage.topics.set_alerts(bob, enabled=False)
    writes.clear()
    assert await storage.topics.remember_timezone(bob, "Asia/Tokyo") is True
    assert await storage.topics.remember_timezone(bob, "Asia/Tokyo") is False
    assert writes == ["write"] and (await storage.topics.setting(bob)).timezone == "Asia/Tokyo"


async def test_alert_time_change(core: Paperboy, storage: Storage) -> None:
    await core.handle(ctx(), "/papers subscribe rl")
    reply = await core.handle(ctx(), "/papers alerts on 07:15 Asia/Tokyo")
    assert "07:15 Asia/Tokyo" in reply.lines[0]
    setting = await storage.topics.setting(ALICE)
    assert (setting.alert_time, setting.timezone) == (time(7, 15), "Asia/Tokyo")
    assert setting.next_due_at == datetime(2026, 11, 22, 22, 15, tzinfo=timezone.utc)
    await core.handle(ctx(), "/papers alerts off")
    assert not (await storage.topics.setting(ALICE)).enabled


async def test_channel_post_settings(core: Paperboy, storage: Storage) -> None:
    shown = await core.handle(ctx(), "/papers channel")
    assert shown.title == "No daily post here"
    on = await core.handle(ctx(), "/papers channel on 18:30")
    assert "18:30 Europe/Berlin" in on.lines[0]  # the default zone when none is given or known
    stored = await storage.channels.get(CHANNEL)
    assert stored.next_due_at == datetime(2026, 11, 22, 17, 30, tzinfo=timezone.utc)
    assert stored.created_by == "U_ALICE"
    assert (stored.top_n, stored.post_when_empty) == (10, False)
    assert "Days without new papers" in on.lines[1]
    longer = await core.handle(ctx(), "/papers channel on top 3 always")
    assert longer.lines[0].startswith("The 3 trending papers are posted here every day at 18:30 Europe/Berlin")
    assert "Also on days without new papers" in longer.lines[1]
    moved = await core.handle(ctx(), "/papers channel on 07:00")      # options stay as they were
    assert (moved.lines[0], "Also on days" in moved.lines[1]) == (
        "The 3 trending papers are posted here every day at 07:00 Europe/Berlin.", True)
    stored = await storage.channels.get(CHANNEL)
    assert (stored.top_n, stored.post_when_empty) == (3, True)
    off = await core.handle(ctx(), "/papers channel off")
    assert "no more daily posts" in off.lines[0]
    assert (await core.handle(ctx(), "/papers channel")).lines[0].startswith("Off")


async def test_channel_commands_need_a_channel_and_permission(core: Paperboy) -> None:
    assert (await core.handle(ctx(manage=False), "/papers channel on")).title == "Not allowed"
    assert (await core.handle(ctx(channel=None), "/papers channel on")).title == "Not in a channel"


async def test_bad_input_gets_help_with_the_problem(core: Paperboy) -> None:
    reply = await core.handle(ctx(), "/papers channel on 9:30 Mars/Olympus")
    assert reply.kind is ReplyKind.HELP and "not a time zone" in reply.notices[0]
    assert any("/papers subscribe" in line for line in reply.lines)


async def test_pending_notice_is_shown_once(core: Paperboy, storage: Storage) -> None:
    await core.handle(ctx(), "/papers subscribe rl")
    await storage.topics.pause(ALICE, "dms closed", "Your alerts are paused: I could not DM you.")
    first = await core.handle(ctx(), "/papers help")
    assert "Your alerts are paused: I could not DM you." in first.notices
    second = await core.handle(ctx(), "/papers help")
    assert second.notices == ()


async def test_an_internal_failure_never_reaches_the_user_as_a_traceback(core: Paperboy, storage: Storage,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("database exploded: password=hunter2")

    monkeypatch.setattr(storage.topics, "add", broken)
    reply = await core.handle(ctx(), "/papers subscribe rl")
    assert reply.kind is ReplyKind.ERROR
    assert "hunter2" not in " ".join(reply.lines) and "Traceback" not in " ".join(reply.lines)


async def test_upstream_values_too_long_for_the_columns_are_stored_safely(storage: Storage) -> None:
    """Oversized organization names and links from upstream never break a save (PostgreSQL varchar)."""
    from bot.hf_client import parse_paper

    item = {"paper": {"id": "2511.09999", "title": "Generalization " + "x" * 5000, "summary": "s" * 50_000,
                      "githubRepo": "https://github.com/" + "a" * 600, "projectPage": "https://p.example/" + "b" * 600,
                      "organization": {"fullname": "Org " * 100},
                      "authors": [{"name": "N" * 1000}], "ai_keywords": ["k" * 3000]}}
    paper = parse_paper(item)
    assert paper.github_repo is None and paper.project_page is None     # a cut link would be a broken link
    assert paper.organization is not None and len(paper.organization) == 200
    await storage.papers.save([paper], fetched_at=NOW)
    [stored] = [p for p in (await storage.papers.all_papers())[0] if p.paper_id == "2511.09999"]
    assert stored.title == paper.title and stored.organization == paper.organization
    with pytest.raises(ValueError):
        parse_paper({"id": "9" * 65, "title": "An id no column holds"})


def test_the_parser_limits_are_the_column_sizes() -> None:
    from bot import hf_client
    from storage.models import PaperRecord

    columns = PaperRecord.__table__.c
    assert hf_client.MAX_PAPER_ID_LENGTH == columns.paper_id.type.length
    assert hf_client.MAX_URL_LENGTH == columns.github_repo.type.length == columns.project_page.type.length
    assert hf_client.MAX_ORGANIZATION_LENGTH == columns.organization.type.length


async def test_a_failing_store_never_costs_the_live_answer(storage: Storage, source: ScriptedSource,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken_save(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(storage.papers, "save", broken_save)
    monkeypatch.setattr(storage.papers, "save_feed", broken_save)
    monkeypatch.setattr(storage.papers, "save_batch", broken_save)
    clock = lambda: NOW  # noqa: E731
    core = Paperboy(make_settings(), storage, PaperService(source, storage.papers, clock=clock), clock=clock)
    search = await core.handle(ctx(), "/papers generalization")
    assert search.kind is ReplyKind.SEARCH and len(search.papers) == 2 and search.notices == ()
    today = await core.handle(ctx(), "/papers today")
    assert today.kind is ReplyKind.TRENDING and len(today.papers) == 3
