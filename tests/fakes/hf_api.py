"""A fake Hugging Face papers API: a real HTTP server on 127.0.0.1 in a background thread.

It serves the exact JSON shapes of ``/api/daily_papers``, ``/api/papers/search``
and ``/api/papers/{id}``, records every request, and can be told to answer
slowly, fail with a status (500, 429 with ``Retry-After``), or send malformed
JSON. Usable from sync tests, async tests and benchmarks alike.

Like the real service:

- ``/api/daily_papers?date=D`` for a day after the latest open day
  (:attr:`FakeHuggingFace.latest_day`, by default the latest day it has a feed
  for) answers **HTTP 400**, not an empty list; an open day without papers (a
  weekend) answers ``[]``. huggingface_hub's tests expect ``BadRequestError``
  (HTTP 400) from ``list_daily_papers`` for a date the Hub refuses
  (tests/test_hf_api.py, ``test_list_daily_papers_by_date_invalid_date``); the
  body is the ``{"error": "..."}`` JSON object huggingface_hub's
  ``hf_raise_for_status`` reads the server's message from.
- Authors may carry ``"hidden": true`` (huggingface_hub's ``PaperAuthor.hidden``);
  :func:`seed_papers` hides one author of every sixth paper.
- Numbers are JSON numbers, so ``1e400`` (which Python reads as infinity) or a
  20-digit integer are valid JSON; :class:`RawJSON` puts such a literal into an
  answer verbatim.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import deque
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any

from aiohttp import web

from bot.sample import sample_records
from tests.fakes.loopback import serve_on_loopback

FAKE_TODAY = date(2026, 11, 20)
HIDDEN_AUTHOR = "Hidden Author"


@dataclass(frozen=True)
class RawJSON:
    """A JSON literal served verbatim, e.g. ``RawJSON("1e400")``: valid JSON that ``json.dumps`` cannot write."""

    text: str


def dumps(value: Any) -> str:
    """``json.dumps`` that writes every :class:`RawJSON` as its literal text."""
    literals: list[str] = []

    def placeholder(obj: Any) -> Any:
        if isinstance(obj, RawJSON):
            literals.append(obj.text)
            return f"\u0000raw{len(literals) - 1}\u0000"
        raise TypeError(f"not JSON serializable: {type(obj).__name__}")

    text = json.dumps(value, default=placeholder)
    for index, literal in enumerate(literals):
        text = text.replace(json.dumps(f"\u0000raw{index}\u0000"), literal)
    return text


def _iso(day: date) -> str:
    return datetime(day.year, day.month, day.day, 12, tzinfo=timezone.utc).isoformat().replace("+00:00", ".000Z")


def seed_papers() -> list[dict[str, Any]]:
    """HF-shaped paper objects built from the seeds (ids are synthetic: fixtures only).

    Every fourth paper has an AI summary and keywords, every fifth a GitHub repo
    with stars, every seventh a project page and an organization; the rest leave
    those fields out, as the real API often does. Every sixth paper lists one more
    author, :data:`HIDDEN_AUTHOR`, marked ``"hidden": true``.
    """
    papers = []
    for index, record in enumerate(sample_records()):
        count = max(1, record["author_count"])
        published = record["published_at"] or "2025-06-01"
        paper: dict[str, Any] = {
            "id": f"2501.{index + 1:05d}",
            "title": record["title"],
            "summary": record["summary"],
            "authors": [{"_id": f"a{index}-{n}", "name": f"Author {n + 1}", "hidden": False} for n in range(count)],
            "publishedAt": published + "T00:00:00.000Z",
            "upvotes": record["upvotes"],
            "discussionId": f"d{index}",
        }
        if index % 4 == 0:
            first = record["summary"].split(". ")[0]
            paper["ai_summary"] = f"AI summary: {first[:160]}"
            paper["ai_keywords"] = [w for w in record["title"].split()[:4] if len(w) > 3]
        if index % 5 == 0:
            paper["githubRepo"] = f"https://github.com/example/repo{index}"
            paper["githubStars"] = index * 7
        if index % 6 == 0:
            paper["authors"].insert(1, {"_id": f"h{index}", "name": HIDDEN_AUTHOR, "hidden": True})
        if index % 7 == 0:
            paper["projectPage"] = f"https://project{index}.example.org"
            paper["organization"] = {"_id": "o1", "name": "example-lab", "fullname": "Example Lab"}
        papers.append(paper)
    return papers


def daily_item(paper: dict[str, Any], day: date) -> dict[str, Any]:
    """A daily-papers item, as ``/api/daily_papers`` answers.

    The paper is nested under ``paper`` (with ``submittedOnDailyAt`` and ``submittedOnDailyBy``);
    the item repeats the submitter's ``title``/``summary`` and carries ``publishedAt`` (the day
    it reached the feed), ``thumbnail``, ``numComments``, ``submittedBy`` and, for papers of an
    organization, ``organization``.
    """
    submitter = {"_id": "60f1abe7544c2adfd699860c", "avatarUrl": "https://cdn.example/avatars/ak.png",
                 "fullname": "AK", "name": "akhaliq", "type": "user", "isPro": False, "isHf": True,
                 "isHfAdmin": False, "isMod": False, "followerCount": 9000}
    nested = {**paper, "submittedOnDailyAt": _iso(day), "submittedOnDailyBy": submitter}
    item: dict[str, Any] = {
        "paper": nested,
        "publishedAt": _iso(day),
        "title": paper.get("title"),
        "summary": paper.get("summary", ""),
        "thumbnail": f"https://cdn.example/thumbs/{paper.get('id')}.png",
        "mediaUrls": [],
        "numComments": 2,
        "submittedBy": submitter,
        "isAuthorParticipating": False,
    }
    if isinstance(paper.get("organization"), dict):
        item["organization"] = {**paper["organization"], "avatar": "https://cdn.example/org.png"}
    return item


def search_item(paper: dict[str, Any]) -> dict[str, Any]:
    return {"paper": paper, "title": paper.get("title"), "summary": paper.get("summary", ""),
            "publishedAt": paper.get("publishedAt"), "numComments": 0}


def default_daily(papers: list[dict[str, Any]], *, today: date = FAKE_TODAY, per_day: int = 20,
                  days: int = 3) -> dict[str, list[dict[str, Any]]]:
    """``days`` weekdays of feed ending ``today``, ``per_day`` papers each, best-voted first."""
    feed: dict[str, list[dict[str, Any]]] = {}
    ordered = sorted(papers, key=lambda p: -p.get("upvotes", 0))
    for n in range(days):
        day = today - timedelta(days=n)
        feed[day.isoformat()] = ordered[n * per_day:(n + 1) * per_day]
    return feed


class FakeHuggingFace:
    """The fake API server. ``with FakeHuggingFace(papers) as fake: fake.url``."""

    def __init__(self, papers: list[dict[str, Any]] | None = None, *,
                 daily: dict[str, list[dict[str, Any]]] | None = None) -> None:
        self.papers = papers if papers is not None else seed_papers()
        self.daily = daily if daily is not None else default_daily(self.papers)
        # The latest feed day that is open; None: the latest day in ``daily`` (else FAKE_TODAY).
        self.latest_day: date | None = None
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.delay = 0.0
        # With ``hold_until`` = N, every request waits until N requests are waiting at once: a
        # server that handled requests one at a time would never answer (tests of parallelism).
        self.hold_until: int | None = None
        self.waiting = 0
        self._arrivals: asyncio.Condition | None = None
        self._failures: deque[tuple[int, dict[str, str], str | None]] = deque()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self.url = ""

    # --- control ------------------------------------------------------------------------

    def fail_next(self, status: int, *, times: int = 1, headers: dict[str, str] | None = None,
                  body: str | None = None) -> None:
        """Answer the next ``times`` requests with ``status`` (and ``body``, e.g. malformed JSON)."""
        with self._lock:
            for _ in range(times):
                self._failures.append((status, headers or {}, body))

    def open_until(self) -> date:
        """The latest day whose feed is open: later dates are answered with 400."""
        if self.latest_day is not None:
            return self.latest_day
        return max((date.fromisoformat(day) for day in self.daily), default=FAKE_TODAY)

    def dates_asked(self) -> list[str]:
        """The ``date`` of every daily-papers request, in order."""
        return [query.get("date", "") for path, query in list(self.requests) if path == "/api/daily_papers"]

    def count(self, path_suffix: str) -> int:
        """How many requests hit a path ending with ``path_suffix``."""
        return sum(1 for path, _ in list(self.requests) if path.endswith(path_suffix))

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> FakeHuggingFace:
        self._thread = threading.Thread(target=self._serve, name="fake-hf", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fake Hugging Face server did not start")
        return self

    def stop(self) -> None:
        if self._loop and self._runner:
            future = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop)
            future.result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread:
            self._thread.join(10)

    def __enter__(self) -> FakeHuggingFace:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        app = web.Application()
        app.router.add_get("/api/daily_papers", self._daily)
        app.router.add_get("/api/papers/search", self._search)
        app.router.add_get("/api/papers/{paper_id:.+}", self._paper)
        self._runner, port = loop.run_until_complete(serve_on_loopback(app, backlog=1024))
        self.url = f"http://127.0.0.1:{port}"
        self._ready.set()
        loop.run_forever()
        loop.close()

    # --- handlers -------------------------------------------------------------------------

    async def _prelude(self, request: web.Request) -> web.Response | None:
        with self._lock:
            self.requests.append((request.path, dict(request.query)))
            failure = self._failures.popleft() if self._failures else None
        if self.hold_until:
            self._arrivals = self._arrivals or asyncio.Condition()   # made in the server's own loop
            async with self._arrivals:
                self.waiting += 1
                self._arrivals.notify_all()
                await self._arrivals.wait_for(lambda: self.hold_until is None or self.waiting >= self.hold_until)
        if self.delay:
            await asyncio.sleep(self.delay)
        if failure is None:
            return None
        status, headers, body = failure
        if body is not None:
            return web.Response(status=status, headers=headers, text=body, content_type="application/json")
        return web.json_response({"error": f"fake failure {status}"}, status=status, headers=headers)

    async def _daily(self, request: web.Request) -> web.Response:
        if (failure := await self._prelude(request)) is not None:
            return failure
        try:
            limit = min(100, max(1, int(request.query.get("limit", "50"))))
            page = max(0, int(request.query.get("p", "0")))
            asked = request.query.get("date")
            day_value = date.fromisoformat(asked) if asked else self.open_until()
        except ValueError:
            return web.json_response({"error": "Invalid query parameters"}, status=400)
        if day_value > self.open_until():
            return web.json_response({"error": f"Invalid date: no daily papers for {day_value.isoformat()} yet"},
                                     status=400)
        papers = list(self.daily.get(day_value.isoformat(), []))
        if request.query.get("sort", "publishedAt") == "trending":
            papers.sort(key=lambda p: -_number(p.get("upvotes")))
        chosen = papers[page * limit:(page + 1) * limit]
        return web.json_response([daily_item(p, day_value) for p in chosen], dumps=dumps)

    async def _search(self, request: web.Request) -> web.Response:
        if (failure := await self._prelude(request)) is not None:
            return failure
        words = [w for w in request.query.get("q", "").casefold().split() if w]
        try:
            limit = min(120, max(1, int(request.query.get("limit", "20"))))
        except ValueError:
            return web.json_response({"error": "Invalid query parameters"}, status=400)
        scored = []
        for paper in self.papers:
            text = f"{paper.get('title')} {paper.get('summary', '')}".casefold()
            hits = sum(1 for w in words if w in text)
            if hits:
                scored.append((hits, paper.get("upvotes", 0), paper))
        scored.sort(key=lambda t: (-t[0], -_number(t[1])))
        return web.json_response([search_item(p) for _, _, p in scored[:limit]], dumps=dumps)

    async def _paper(self, request: web.Request) -> web.Response:
        if (failure := await self._prelude(request)) is not None:
            return failure
        wanted = request.match_info["paper_id"]
        for paper in self.papers:
            if paper.get("id") == wanted:
                return web.json_response(paper, dumps=dumps)
        return web.json_response({"error": "Paper not found"}, status=404)


def _number(value: Any) -> float:
    """A sort key for a JSON number that may be odd (a literal, a string, missing)."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def main() -> None:
    """Serve the fake from its own process (benchmarks): prints its URL, runs until killed."""
    import argparse
    import time

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before every answer")
    args = parser.parse_args()
    fake = FakeHuggingFace().start()
    fake.delay = args.delay
    print(fake.url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        fake.stop()


if __name__ == "__main__":
    main()
