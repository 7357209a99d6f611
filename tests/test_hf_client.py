"""The Hugging Face client against the fake API server on 127.0.0.1, through real httpx."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from datetime import date, datetime, timezone

import httpx
import pytest

from bot.hf_client import HuggingFaceClient, SourceRefused, SourceUnavailable, parse_paper, retry_after_seconds
from tests.fakes.hf_api import FAKE_TODAY, HIDDEN_AUTHOR, FakeHuggingFace, daily_item, seed_papers

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
    with pytest.raises(SourceRefused, match="HTTP 401"):
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


def test_parse_exact_daily_item_shape() -> None:
    """A daily item as the API sends it: the nested paper wins over the submitter's copy."""
    raw = seed_papers()[0]
    item = daily_item(raw, date(2026, 3, 2))
    item["title"] = "The submitter's  retitled\ncopy"
    paper = parse_paper(item, feed_date=date(2026, 3, 2))
    assert paper.title == raw["title"] and paper.summary == raw["summary"]
    visible = [a for a in raw["authors"] if not a["hidden"]]
    assert len(visible) < len(raw["authors"])  # the first seed paper has a hidden author
    assert paper.author_count == len(visible) and paper.authors[0] == "Author 1"
    assert HIDDEN_AUTHOR not in paper.authors
    assert paper.organization == "Example Lab" and paper.ai_keywords and paper.github_repo
    assert paper.published_at == datetime.fromisoformat(raw["publishedAt"].replace("Z", "+00:00"))


def test_bare_paper_falls_back_to_item_fields_and_ignores_wrong_types() -> None:
    paper = parse_paper({"paper": {"id": "2503.00002", "upvotes": 2.0, "githubStars": 12.0,
                                   "ai_keywords": ["ok", 3, None], "authors": "not a list of objects"},
                         "title": "Outer\n title", "summary": "Outer summary", "publishedAt": "2026-03-02T08:00:00Z",
                         "organization": {"name": "org-only"}})
    assert (paper.title, paper.summary, paper.upvotes, paper.github_stars) == ("Outer title", "Outer summary", 2, 12)
    assert paper.ai_keywords == ("ok",) and paper.authors == () and paper.author_count == 0
    assert paper.published_at == datetime(2026, 3, 2, 8, tzinfo=timezone.utc)
    assert paper.organization == "org-only"


def test_rate_limit_reset_forms_and_garbage() -> None:
    assert retry_after_seconds(httpx.Headers({"Retry-After": "1.5"})) == 1.5
    assert retry_after_seconds(httpx.Headers({"RateLimit-Reset": "12"})) == 12
    assert retry_after_seconds(httpx.Headers({"RateLimit": '"fixed";r=0;t=3, "api";r=5;t=9'})) == 3
    assert retry_after_seconds(httpx.Headers({"X-RateLimit-Reset": "1767225600"})) is None  # an epoch, not a wait
    assert retry_after_seconds(httpx.Headers({"Retry-After": "soon"})) is None
    assert retry_after_seconds(httpx.Headers({"Retry-After": "-4"})) is None
    past = "Thu, 01 Jan 2026 00:00:00 GMT"
    assert retry_after_seconds(httpx.Headers({"Retry-After": past}),
                               now=datetime(2026, 1, 2, tzinfo=timezone.utc)) == 0


async def test_latest_daily_feed_reads_each_papers_day_from_the_item(client: HuggingFaceClient,
                                                                     fake: FakeHuggingFace) -> None:
    papers = await client.daily_papers(limit=3)
    assert "date" not in fake.requests[-1][1]
    assert len(papers) == 3 and all(p.feed_date == FAKE_TODAY for p in papers)


async def test_withdrawn_papers_are_left_out(fake: FakeHuggingFace) -> None:
    fake.fail_next(200, body='[{"paper": {"id": "2501.1", "title": "Gone", "withdrawnAt": "2026-01-01T00:00:00Z"}},'
                             ' {"paper": {"id": "2501.2", "title": "Here", "withdrawnAt": null}}]')
    async with HuggingFaceClient(fake.url) as hf:
        assert [p.title for p in await hf.search("x")] == ["Here"]


async def test_a_wait_longer_than_the_cap_gives_up_at_once(fake: FakeHuggingFace, sleep: RecordedSleep) -> None:
    """Asked to come back in 42 s (more than the 30 s anyone waits): no sleep, no early retry, fall back now."""
    fake.fail_next(429, headers={"RateLimit": '"api";r=0;t=42', "RateLimit-Policy": '"api";q=500;w=300'})
    async with HuggingFaceClient(fake.url, sleep=sleep, max_backoff=30) as hf:
        with pytest.raises(SourceUnavailable, match="asked to wait 42s"):
            await hf.paper("2501.00001")
    assert sleep.waits == []
    assert fake.count("/api/papers/2501.00001") == 1


async def test_a_wait_within_the_cap_is_honoured(fake: FakeHuggingFace, sleep: RecordedSleep) -> None:
    fake.fail_next(429, headers={"RateLimit": '"api";r=0;t=12'})
    fake.fail_next(429, headers={"Retry-After": "3"})
    async with HuggingFaceClient(fake.url, sleep=sleep, max_backoff=30) as hf:
        assert await hf.paper("2501.00001") is not None
    assert sleep.waits == [12.0, 3.0]
    assert fake.count("/api/papers/2501.00001") == 3


async def test_transport_errors_are_retried_then_unavailable(sleep: RecordedSleep) -> None:
    with FakeHuggingFace() as server:
        url = server.url  # a port nobody listens on once the server is stopped
    async with HuggingFaceClient(url, retries=2, sleep=sleep) as hf:
        with pytest.raises(SourceUnavailable, match="ConnectError"):
            await hf.daily_papers()
        assert hf.upstream_calls == 3
    assert len(sleep.waits) == 2
    assert sleep.waits[0] <= sleep.waits[1] * 2  # exponential, jittered


async def test_a_cancelled_caller_leaves_the_others_their_answer(fake: FakeHuggingFace) -> None:
    fake.hold_until = 2   # the one shared request waits at the server until the test lets it go
    async with HuggingFaceClient(fake.url) as hf:
        impatient = asyncio.create_task(hf.search("grokking"))
        patient = [asyncio.create_task(hf.search("grokking")) for _ in range(3)]
        async with asyncio.timeout(10):
            while fake.waiting < 1:           # the request is on the server, nobody has an answer
                await asyncio.sleep(0.01)
        impatient.cancel()
        await asyncio.gather(impatient, return_exceptions=True)
        assert not any(task.done() for task in patient)
        async with httpx.AsyncClient(base_url=fake.url) as nudge:   # a second waiting request releases both
            await nudge.get("/api/papers/search", params={"q": "other"})
        results = await asyncio.gather(*patient)
        assert all(r and r == results[0] for r in results)
        assert await hf.search("grokking") == results[0]  # cached by the shared call
    assert impatient.cancelled()
    assert [q["q"] for path, q in fake.requests if path.endswith("/search")] == ["grokking", "other"]


async def test_fake_answers_200_concurrent_connections_in_parallel(fake: FakeHuggingFace) -> None:
    """Every request is held until all 200 wait at once: only a server handling them in parallel answers."""
    fake.hold_until = 200
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with httpx.AsyncClient(base_url=fake.url, limits=limits, timeout=60) as http:
        answers = await asyncio.gather(*(http.get("/api/papers/search", params={"q": f"w{n}"}) for n in range(200)))
    assert all(a.status_code == 200 for a in answers)
    assert len(fake.requests) == 200 and fake.waiting == 200


async def test_fake_search_orders_by_words_matched_then_upvotes(fake: FakeHuggingFace) -> None:
    async with httpx.AsyncClient(base_url=fake.url) as http:
        items = (await http.get("/api/papers/search", params={"q": "compositional generalization", "limit": 50})).json()
        bad = await http.get("/api/papers/search", params={"q": "x", "limit": "many"})
    keys = [(sum(w in f"{i['paper']['title']} {i['paper']['summary']}".casefold()
                 for w in ("compositional", "generalization")), i["paper"]["upvotes"]) for i in items]
    assert keys == sorted(keys, reverse=True) and keys[0][0] == 2
    assert bad.status_code == 400


async def test_odd_paper_ids_never_leave_the_papers_path(client: HuggingFaceClient, fake: FakeHuggingFace) -> None:
    for odd in ("../daily_papers", "2501.00001/../../x", "", "a b", "/etc"):
        assert await client.paper(odd) is None
    assert fake.requests == []
    assert await client.paper("hep-th/9901001") is None  # well-formed, unknown: asked, 404
    assert fake.requests[-1][0] == "/api/papers/hep-th/9901001"


async def test_the_token_never_reaches_the_logs(fake: FakeHuggingFace, sleep: RecordedSleep,
                                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    fake.fail_next(503)
    fake.fail_next(401)
    sent: list[str] = []

    async def record(request: httpx.Request) -> None:
        sent.append(request.headers.get("authorization", ""))

    async with HuggingFaceClient(fake.url, token="hf_topsecret123", sleep=sleep) as hf:
        hf._http.event_hooks["request"].append(record)  # the token really travels with each request
        with pytest.raises(SourceUnavailable) as failure:
            await hf.search("secrets")
    assert sent == ["Bearer hf_topsecret123"] * 2
    assert "hf_topsecret123" not in caplog.text + str(failure.value)
    assert "HTTP 503" in caplog.text
