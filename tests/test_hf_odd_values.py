"""Odd values from Hugging Face, through the real httpx client against the fake server.

Numbers in the API are JSON numbers, floats included (huggingface_hub's ``PaperInfo`` takes
``upvotes`` and ``githubStars`` as they come), so ``1e400`` (infinity once parsed), a 30-digit
integer or a negative count are valid JSON; Python's json module also reads ``NaN`` and
``Infinity``. One malformed value drops that field; an item without a usable id or title is
skipped; neither ever costs the answer. Authors with ``"hidden": true`` (huggingface_hub's
``PaperAuthor.hidden``, "Whether the author is hidden on the Hub") are left out everywhere.
"""

from __future__ import annotations

from datetime import date, datetime, time, timezone
from typing import Any

import pytest

from adapters.fake import FakeAdapter
from bot.app import build_app
from bot.core import Paperboy
from bot.hf_client import MAX_COUNT, HuggingFaceClient
from bot.models import ChannelRef, CommandContext, Reply, UserRef
from bot.papers import PaperService
from bot.sample import load_sample
from scheduler.delivery import run_delivery_pass
from storage.repositories import Storage
from tests.conftest import make_settings
from tests.delivery_support import add_channel
from tests.fakes.hf_api import FakeHuggingFace, RawJSON

FRIDAY = date(2026, 11, 20)
NOW = datetime(2026, 11, 20, 15, 0, tzinfo=timezone.utc)
CTX = CommandContext(user=UserRef("slack", "T1", "U1"), channel=ChannelRef("slack", "T1", "C1"))


def hf(paper_id: str, title: Any, **fields: Any) -> dict[str, Any]:
    base = {"id": paper_id, "title": title, "summary": f"We study generalization in {paper_id}.",
            "authors": [{"name": "Ada Lovelace"}], "publishedAt": "2026-11-19T00:00:00.000Z", "upvotes": 1}
    base.update(fields)
    return base


ODD_BUT_USABLE = [
    hf("2511.30001", "Generalization with Infinite Stars", upvotes=12, githubRepo="https://github.com/a/b",
       githubStars=RawJSON("1e400")),
    hf("2511.30002", "Generalization with NaN Upvotes", upvotes=RawJSON("NaN"), githubStars=RawJSON("-Infinity")),
    hf("2511.30003", "Generalization with String Upvotes", upvotes="12", githubStars=-5),
    hf("2511.30004", "Generalization with Huge Integers", upvotes=RawJSON("123456789012345678901234567890"),
       githubStars=MAX_COUNT + 1),
    hf("2511.30005", "Generalization with Wrong Types", upvotes=7.9, githubStars=True, authors="Ada Lovelace",
       ai_keywords=5, publishedAt=12345, summary=["not", "text"], organization="not an object"),
]
UNUSABLE = [
    hf("2511.30006", 42),                                     # a number where the title belongs
    hf(RawJSON("1e400"), "Generalization without an id"),     # an id that is a number
    hf("2511.30007", "Generalization", upvotes=RawJSON("1e400"))
    | {"id": None},
]
HIDDEN = hf("2511.30010", "Generalization by Anonymous Authors", upvotes=50,
            authors=[{"name": "Visible One", "hidden": False}, {"name": "Secret Person", "hidden": True},
                     {"name": "Visible Two"}])
EXPECTED = {  # paper id -> (upvotes, github stars)
    "2511.30001": (12, None), "2511.30002": (0, None), "2511.30003": (0, None),
    "2511.30004": (0, None), "2511.30005": (7, None), "2511.30010": (50, None),
}


def odd_server() -> FakeHuggingFace:
    papers = [*ODD_BUT_USABLE, *UNUSABLE, HIDDEN]
    server = FakeHuggingFace(papers=papers, daily={FRIDAY.isoformat(): papers})
    return server


async def no_sleep(seconds: float) -> None:
    return None


def core_for(storage: Storage, client: HuggingFaceClient) -> Paperboy:
    papers = PaperService(client, storage.papers, sample=load_sample, clock=lambda: NOW)
    return Paperboy(make_settings(PAPERBOY_SEARCH_RESULTS=10, PAPERBOY_TRENDING_RESULTS=10), storage, papers,
                    clock=lambda: NOW)


def shown(reply: Reply) -> dict[str, tuple[int, int | None]]:
    return {p.paper.paper_id: (p.paper.upvotes, p.paper.github_stars) for p in reply.papers}


async def test_the_client_drops_odd_fields_and_skips_only_unusable_items() -> None:
    with odd_server() as server:
        async with HuggingFaceClient(server.url, retries=0, sleep=no_sleep) as client:
            found = await client.search("generalization", limit=50)
            daily = await client.daily_papers(day=FRIDAY)
    for papers in (found, daily):
        assert {p.paper_id: (p.upvotes, p.github_stars) for p in papers} == EXPECTED
    wrong_types = next(p for p in found if p.paper_id == "2511.30005")
    assert (wrong_types.authors, wrong_types.ai_keywords, wrong_types.published_at) == ((), (), None)
    assert (wrong_types.summary, wrong_types.organization) == ("", None)
    stars = next(p for p in found if p.paper_id == "2511.30001")
    assert stars.github_repo == "https://github.com/a/b"   # the repo stays; only the odd count goes


async def test_search_today_and_the_stored_copy_survive_odd_numbers(storage: Storage) -> None:
    """A paper with ``githubStars: 1e400`` used to fail the whole answer (OverflowError); now every
    usable paper is answered live and stored, on SQLite and PostgreSQL (whose integer columns
    would refuse a 30-digit number)."""
    with odd_server() as server:
        async with HuggingFaceClient(server.url, retries=0, sleep=no_sleep) as client:
            core = core_for(storage, client)
            search = await core.handle(CTX, "/papers generalization")
            today = await core.handle(CTX, "/papers today")
            assert await core.papers.writer.flush()   # the stored copy is written in the background
    for reply in (search, today):
        assert not reply.is_error and reply.notices == ()
        assert shown(reply) == EXPECTED
    stored, _ = await storage.papers.all_papers()
    assert {p.paper_id: (p.upvotes, p.github_stars) for p in stored} == EXPECTED
    latest = await storage.papers.latest_feed(FRIDAY)
    assert latest is not None and {p.paper_id for p in latest[1]} == set(EXPECTED)


async def test_a_delivery_pass_survives_odd_numbers(db_url: str) -> None:
    with odd_server() as server:
        app = build_app(make_settings(DATABASE_URL=db_url, PAPERBOY_HF_URL=server.url, PAPERBOY_OFFLINE_SAMPLE=False,
                                      PAPERBOY_DAILY_CACHE_SECONDS=0, PAPERBOY_TRENDING_RESULTS=10))
        adapter = FakeAdapter(app.core, platform="slack")
        app.adapters.add(adapter)
        try:
            await add_channel(app.storage, ChannelRef("slack", "T1", "C9"), at=time(9, 0), tz="UTC",
                              after=datetime(2026, 11, 20, 8, tzinfo=timezone.utc))
            report = await run_delivery_pass(app, now=datetime(2026, 11, 20, 9, 1, tzinfo=timezone.utc))
        finally:
            await app.close()
    assert (report.sent, report.failed) == (1, 0)
    [post] = adapter.sent_to("C9")
    assert shown(post.reply) == EXPECTED


async def test_hidden_authors_are_left_out_of_answers_and_the_stored_copy(storage: Storage) -> None:
    with odd_server() as server:
        async with HuggingFaceClient(server.url, retries=0, sleep=no_sleep) as client:
            core = core_for(storage, client)
            live = await core.handle(CTX, "/papers anonymous authors")
            server.fail_next(503, times=10)
            stored_answer = await core.handle(CTX, "/papers search anonymous generalization")
    [paper] = live.papers
    assert paper.paper.authors == ("Visible One", "Visible Two") and paper.paper.author_count == 2
    assert paper.authors_line == "Visible One, Visible Two"
    assert "stored copy" in stored_answer.notices[0]
    [again] = stored_answer.papers
    assert again.paper.authors == ("Visible One", "Visible Two") and again.authors_line == "Visible One, Visible Two"
    stored, _ = await storage.papers.all_papers()
    assert all("Secret Person" not in p.authors for p in stored)


@pytest.mark.parametrize("platform", ["slack", "discord"])
async def test_hidden_authors_never_reach_a_rendered_message(storage: Storage, platform: str) -> None:
    from bot.cli import render_for

    with odd_server() as server:
        async with HuggingFaceClient(server.url, retries=0, sleep=no_sleep) as client:
            reply = await core_for(storage, client).handle(CTX, "/papers anonymous authors")
    rendered = render_for(platform, reply)
    assert "Visible One" in rendered and "Secret Person" not in rendered
