"""The Hugging Face client against the fake API server on 127.0.0.1, through real httpx."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import date, datetime, timezone
from pathlib import Path

import httpx
import pytest

from bot.hf_client import HuggingFaceClient, SourceUnavailable, parse_paper, retry_after_seconds
from bot.sample import build_sample, load_sample, sample_records
from tests.fakes.hf_api import FAKE_TODAY, FakeHuggingFace, seed_papers

SEEDS = Path(__file__).resolve().parents[2] / "shared" / "seeds"

FULL = {
    "id": "2502.12345",
    "title": "A  Paper\nWith Newlines",
    "summary": "First sentence. Second.",
    "authors": [{"_id": "x", "name": "Ada Lovelace", "hidden": False}, {"name": "Alan Turing"}, {"hidden": True}],
    "publishedAt": "2025-02-17T13:00:00.000Z",
    "upvotes": 42,
    "ai_summary": "It does a thing.",
    "ai_keywords": ["graphs", "generalization"],
    "githubRepo": "https://github.com/a/b",
    "githubStars": 1500,
    "projectPage": "https://a.example",
    "organization": {"_id": "o", "name": "lab", "fullname": "The Lab"},
    "brandNewField": {"whatever": [1, 2]},
}


class RecordedSleep:
    """Stands in for asyncio.sleep: records the waits instead of waiting."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def fake() -> Iterator[FakeHuggingFace]:
    with FakeHuggingFace() as server:
        yield server


@pytest.fixture
def sleep() -> RecordedSleep:
    return RecordedSleep()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def client(fake: FakeHuggingFace, sleep: RecordedSleep, clock: Clock) -> AsyncIterator[HuggingFaceClient]:
    async with HuggingFaceClient(fake.url, retries=3, sleep=sleep, clock=clock, timeout=2.0) as hf:
        yield hf


def test_parse_full_nested_item() -> None:
    paper = parse_paper({"paper": FULL, "title": "outer", "numComments": 3}, feed_date=date(2025, 2, 18))
    assert paper.paper_id == "2502.12345"
    assert paper.title == "A Paper With Newlines"
    assert paper.authors == ("Ada Lovelace", "Alan Turing") and paper.author_count == 2
    assert paper.published_at == datetime(2025, 2, 17, 13, tzinfo=timezone.utc)
    assert (paper.upvotes, paper.github_stars, paper.organization) == (42, 1500, "The Lab")
    assert paper.ai_keywords == ("graphs", "generalization")
    assert paper.feed_date == date(2025, 2, 18)


def test_parse_minimal_and_null_fields() -> None:
    paper = parse_paper({"id": "2502.00001", "title": "T", "ai_summary": None, "githubRepo": None,
                         "githubStars": None, "authors": None, "upvotes": None, "organization": None})
    assert (paper.summary, paper.ai_summary, paper.github_repo, paper.github_stars) == ("", None, None, None)
    assert (paper.authors, paper.upvotes, paper.published_at, paper.organization) == ((), 0, None, None)
    with pytest.raises(ValueError):
        parse_paper({"paper": {"title": "no id"}})


def test_retry_after_forms() -> None:
    assert retry_after_seconds(httpx.Headers({"Retry-After": "7"})) == 7
    assert retry_after_seconds(httpx.Headers({"RateLimit": '"api";r=0;t=42'})) == 42
    when = datetime(2026, 1, 1, 0, 0, 30, tzinfo=timezone.utc)
    http_date = "Thu, 01 Jan 2026 00:01:00 GMT"
    assert retry_after_seconds(httpx.Headers({"Retry-After": http_date}), now=when) == 30
    assert retry_after_seconds(httpx.Headers({})) is None


async def test_daily_sends_its_parameters_and_parses_nested_items(client: HuggingFaceClient,
                                                                 fake: FakeHuggingFace) -> None:
    papers = await client.daily_papers(day=FAKE_TODAY, sort="trending", limit=5, page=1)
    assert fake.requests[-1] == ("/api/daily_papers", {"sort": "trending", "limit": "5", "p": "1",
                                                      "date": FAKE_TODAY.isoformat()})
    assert len(papers) == 5
    assert all(p.feed_date == FAKE_TODAY and p.authors for p in papers)
    assert [p.upvotes for p in papers] == sorted((p.upvotes for p in papers), reverse=True)
    assert await client.daily_papers(day=date(2020, 1, 1)) == []


async def test_search_and_single_paper(client: HuggingFaceClient, fake: FakeHuggingFace) -> None:
    found = await client.search("generalization", limit=10)
    assert len(found) == 10 and all("generaliz" in (p.title + p.summary).lower() for p in found)
    assert fake.requests[-1] == ("/api/papers/search", {"q": "generalization", "limit": "10"})
    one = await client.paper(found[0].paper_id)
    assert one is not None and one.title == found[0].title
    assert await client.paper("9999.99999") is None


async def test_optional_fields_present_and_missing_on_the_wire(client: HuggingFaceClient) -> None:
    papers = await client.search("the", limit=120)
    with_code = [p for p in papers if p.github_repo]
    without = [p for p in papers if not p.github_repo and not p.ai_summary and not p.project_page]
    assert with_code and without
    assert all(p.github_stars is not None for p in with_code)


async def test_server_errors_are_retried_with_backoff(client: HuggingFaceClient, fake: FakeHuggingFace,
                                                      sleep: RecordedSleep) -> None:
    fake.fail_next(500, times=2)
    assert await client.search("memorization")
    assert fake.count("/api/papers/search") == 3
    assert len(sleep.waits) == 2 and all(0 < w <= 30 for w in sleep.waits)


async def test_429_waits_as_long_as_retry_after_says(client: HuggingFaceClient, fake: FakeHuggingFace,
                                                     sleep: RecordedSleep) -> None:
    fake.fail_next(429, headers={"Retry-After": "7"})
    assert await client.search("grokking")
    assert sleep.waits == [7.0]


async def test_gives_up_after_the_allowed_retries(client: HuggingFaceClient, fake: FakeHuggingFace,
                                                  sleep: RecordedSleep) -> None:
    fake.fail_next(503, times=10)
    with pytest.raises(SourceUnavailable, match="HTTP 503"):
        await client.search("robots")
    assert fake.count("/api/papers/search") == 4 and len(sleep.waits) == 3


async def test_client_errors_are_not_retried(client: HuggingFaceClient, fake: FakeHuggingFace) -> None:
    fake.fail_next(401)
    with pytest.raises(SourceUnavailable, match="HTTP 401"):
        await client.search("anything")
    assert fake.count("/api/papers/search") == 1


async def test_malformed_json_is_unavailable_not_a_crash(client: HuggingFaceClient, fake: FakeHuggingFace) -> None:
    fake.fail_next(200, body="{not json")
    with pytest.raises(SourceUnavailable, match="malformed JSON"):
        await client.search("broken")
    fake.fail_next(200, body='{"an": "object, not a list"}')
    with pytest.raises(SourceUnavailable, match="JSON list"):
        await client.search("broken again")


async def test_malformed_items_are_skipped(fake: FakeHuggingFace) -> None:
    fake.fail_next(200, body='[{"paper": {"title": "no id"}}, 7, {"paper": {"id": "2501.1", "title": "Good"}}]')
    async with HuggingFaceClient(fake.url) as hf:
        papers = await hf.search("x")
    assert [p.paper_id for p in papers] == ["2501.1"]


async def test_slow_answers_time_out_then_fail(fake: FakeHuggingFace, sleep: RecordedSleep) -> None:
    fake.delay = 1.0
    async with HuggingFaceClient(fake.url, timeout=0.2, retries=1, sleep=sleep) as hf:
        with pytest.raises(SourceUnavailable, match="timed out"):
            await hf.search("slow")
    assert len(sleep.waits) == 1


async def test_answers_are_cached_until_they_expire(fake: FakeHuggingFace, clock: Clock, sleep: RecordedSleep) -> None:
    async with HuggingFaceClient(fake.url, daily_ttl=300, search_ttl=3600, clock=clock, sleep=sleep) as hf:
        first = await hf.search("reasoning")
        assert await hf.search("reasoning") == first
        await hf.daily_papers(day=FAKE_TODAY)
        await hf.daily_papers(day=FAKE_TODAY)
        assert (fake.count("/api/papers/search"), fake.count("/api/daily_papers")) == (1, 1)
        clock.now += 301
        await hf.daily_papers(day=FAKE_TODAY)
        await hf.search("reasoning")
        assert (fake.count("/api/papers/search"), fake.count("/api/daily_papers")) == (1, 2)
        clock.now += 3600
        await hf.search("reasoning")
        assert fake.count("/api/papers/search") == 2
        assert hf.upstream_calls == 4


async def test_concurrent_identical_requests_collapse_into_one(fake: FakeHuggingFace) -> None:
    fake.delay = 0.2
    async with HuggingFaceClient(fake.url) as hf:
        results = await asyncio.gather(*(hf.search("transformers") for _ in range(50)))
    assert fake.count("/api/papers/search") == 1
    assert all(r == results[0] for r in results)


async def test_a_failure_reaches_every_waiter_and_is_not_cached(fake: FakeHuggingFace, sleep: RecordedSleep) -> None:
    fake.delay = 0.1
    fake.fail_next(500, times=1)
    async with HuggingFaceClient(fake.url, retries=0, sleep=sleep) as hf:
        outcomes = await asyncio.gather(*(hf.search("agents") for _ in range(5)), return_exceptions=True)
        assert all(isinstance(o, SourceUnavailable) for o in outcomes)
        assert await hf.search("agents")
    assert fake.count("/api/papers/search") == 2


async def test_token_is_sent_as_bearer_and_user_agent_is_set(fake: FakeHuggingFace) -> None:
    seen: list[httpx.Request] = []

    async def record(request: httpx.Request) -> None:
        seen.append(request)

    async with HuggingFaceClient(fake.url, token="hf_secret") as hf:
        hf._http.event_hooks["request"].append(record)  # observe the real outgoing request
        await hf.search("tokens")
    assert seen[0].headers["authorization"] == "Bearer hf_secret"
    assert seen[0].headers["user-agent"].startswith("paperboy/")


# --- the offline sample ------------------------------------------------------------------


@pytest.mark.skipif(not SEEDS.is_dir(), reason="shared/seeds is not beside the project")
def test_sample_is_built_from_the_seeds_without_chrome_or_duplicates() -> None:
    records = build_sample(SEEDS)
    titles = [r["title"] for r in records]
    assert 150 <= len(records) <= 210
    assert len({t.casefold() for t in titles}) == len(titles)
    chrome = {"new", "Subscribe", "Daily Papers", "byAK and the research community"}
    assert not chrome & set(titles) and not any(t.startswith("Subscribe") or t.startswith("Get trending")
                                                for t in titles)
    by_title = {r["title"]: r for r in records}
    llaso = by_title["LLaSO: A Foundational Framework for Reproducible Research in Large Language and Speech Model"]
    assert (llaso["published_at"], llaso["upvotes"], llaso["author_count"]) == ("2025-08-21", 2, 8)
    assert by_title["Learning to Grasp Anything by Playing with Random Toys"]["organization"] == "Berkeley UC Berkeley"
    assert "Multi-hop Reasoning via Early Knowledge Alignment" in by_title
    assert records == sample_records()  # the committed JSON is what the seeds give


def test_loaded_sample_has_no_invented_arxiv_ids() -> None:
    papers = load_sample()
    assert len(papers) > 150
    assert all(p.paper_id.startswith("sample:") and p.arxiv_id is None and p.arxiv_url is None for p in papers)
    assert papers[0].page_url.startswith("https://huggingface.co/papers?q=")
    assert len({p.paper_id for p in papers}) == len(papers)


def test_fake_serves_every_seed_paper() -> None:
    assert len(seed_papers()) == len(sample_records())
