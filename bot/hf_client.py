"""A thin async client for the Hugging Face papers API, over httpx.

Endpoints (in Hugging Face's exact JSON shapes):

- ``GET /api/daily_papers`` (``date``, ``sort``, ``p``, ``limit``): a list of
  items, each nesting the paper under ``paper``;
- ``GET /api/papers/search`` (``q``, ``limit``): the same item shape;
- ``GET /api/papers/{arxiv_id}``: the paper object itself.

Optional fields (``ai_summary``, ``ai_keywords``, ``githubRepo``,
``githubStars``, ``projectPage``, ``organization``) are often missing or null;
unknown fields are ignored. A malformed value (a number out of range such as
``1e400``, a string where a number belongs, a list where text belongs) drops
that one field; an item without a usable id or title is skipped. Neither ever
costs the rest of the answer. Authors marked ``"hidden": true`` are left out.

A dated daily request for a day Hugging Face has not opened yet is answered
with HTTP 400; :meth:`HuggingFaceClient.daily_papers` raises
:class:`FeedDayNotOpen` for it, which callers treat as "no such day yet",
never as an outage.

The client retries transport errors, time-outs, 5xx and 429 with exponential
backoff (honouring ``Retry-After`` and ``RateLimit`` headers), caches answers
(daily lists for minutes, searches for an hour) and collapses concurrent
identical requests into one upstream call.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import math
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import date, datetime, timezone
from importlib import metadata
from typing import Any

import httpx
from cachetools import TTLCache

from bot.metrics import Metrics
from bot.models import Paper
from bot.text import clean_line

log = logging.getLogger(__name__)

_RATE_LIMIT_RESET = re.compile(r"(?:^|[;,\s])t=([0-9]+)")
# New-style arXiv ids (2501.01234, 2501.01234v2) and old-style ones (hep-th/9901001).
_PAPER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{3,40}(?:/[0-9]{7})?(?:v[0-9]+)?")
CacheKey = tuple[str, tuple[tuple[str, str], ...]]
# What the stored copy's columns hold (storage/models.py PaperRecord); longer upstream values never reach it.
MAX_PAPER_ID_LENGTH = 64
MAX_URL_LENGTH = 500
MAX_ORGANIZATION_LENGTH = 200
# Counts are stored in 32-bit integer columns; a larger "count" is not a real one.
MAX_COUNT = 2**31 - 1


class SourceUnavailable(Exception):
    """Upstream could not be reached, or answered garbage, after the allowed retries."""


class SourceRefused(SourceUnavailable):
    """Upstream is up but refused this one request (a 4xx other than 429): no reason to call it down."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class FeedDayNotOpen(SourceRefused):
    """``/api/daily_papers?date=D`` answered 400: day D's feed is not open yet (not an outage).

    huggingface_hub's own tests expect ``list_daily_papers`` with a date the Hub
    refuses to raise ``BadRequestError`` (HTTP 400), not to return an empty list
    (tests/test_hf_api.py, ``test_list_daily_papers_by_date_invalid_date``).
    """

    def __init__(self, day: date) -> None:
        super().__init__(f"the daily feed of {day.isoformat()} is not open yet (HTTP 400)", status=400)
        self.day = day


def _version() -> str:
    try:
        return metadata.version("paperboy")
    except metadata.PackageNotFoundError:
        return "dev"


def _parse_datetime(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _text(value: Any) -> str:
    return clean_line(value) if isinstance(value, str) else ""


def _optional_text(value: Any) -> str | None:
    text = _text(value)
    return text or None


def _json_count(value: Any) -> int | None:
    """A count (upvotes, stars): a JSON number from 0 to :data:`MAX_COUNT`, else None.

    ``1e400`` parses as infinity, ``NaN`` as not-a-number; booleans, strings,
    negative and out-of-range numbers are no counts either. A float is cut to
    its whole part.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        value = int(value)
    return value if 0 <= value <= MAX_COUNT else None


def _list(value: Any) -> list[Any]:
    """``value`` when it is a JSON list, else an empty one (a string is not a list of authors)."""
    return value if isinstance(value, list) else []


def _visible_authors(value: Any) -> tuple[str, ...]:
    """Author names in order, leaving out authors Hugging Face marks ``"hidden": true``.

    huggingface_hub documents the field on ``PaperAuthor`` ("hidden: Whether the
    author is hidden on the Hub"), and Hugging Face's MCP server drops such
    authors too (hf-mcp-server, packages/mcp/src/hf-fs-papers.ts).
    """
    names = []
    for author in _list(value):
        if not isinstance(author, Mapping) or author.get("hidden") is True:
            continue
        name = _text(author.get("name"))
        if name:
            names.append(name)
    return tuple(names)


def _organization(value: Any) -> str | None:
    if isinstance(value, Mapping):
        name = _optional_text(value.get("fullname")) or _optional_text(value.get("name"))
        return name[:MAX_ORGANIZATION_LENGTH] if name else None
    return None


def _url(value: Any) -> str | None:
    """A link, or None when missing or longer than storage keeps (a cut URL would be a broken link)."""
    text = _optional_text(value)
    return text if text and len(text) <= MAX_URL_LENGTH else None


def parse_paper(item: Mapping[str, Any], *, feed_date: date | None = None) -> Paper:
    """A :class:`Paper` from a daily/search item (paper nested under ``paper``) or a bare paper.

    The nested paper's fields win over the item's own (a daily item's top-level ``title`` and
    ``summary`` are the submitter's copy, its ``publishedAt`` the day it reached the feed).
    Raises ``ValueError`` when the item has no usable id or title.
    """
    if not isinstance(item, Mapping):
        raise ValueError("item is not an object")
    nested = item.get("paper")
    paper = nested if isinstance(nested, Mapping) else item
    paper_id = paper.get("id")
    title = _text(paper.get("title")) or _text(item.get("title"))
    if not isinstance(paper_id, str) or not paper_id.strip() or not title:
        raise ValueError("item has no id or title")
    if len(paper_id.strip()) > MAX_PAPER_ID_LENGTH:
        raise ValueError("item id is too long to be a paper id")
    authors = _visible_authors(paper.get("authors"))
    keywords = tuple(k for k in (_text(k) for k in _list(paper.get("ai_keywords"))) if k)
    return Paper(
        paper_id=paper_id.strip(),
        title=title,
        summary=_text(paper.get("summary")) or _text(item.get("summary")),
        authors=authors,
        author_count=len(authors),
        published_at=_parse_datetime(paper.get("publishedAt")) or _parse_datetime(item.get("publishedAt")),
        upvotes=_json_count(paper.get("upvotes")) or 0,
        ai_summary=_optional_text(paper.get("ai_summary")),
        ai_keywords=keywords,
        github_repo=_url(paper.get("githubRepo")),
        github_stars=_json_count(paper.get("githubStars")),
        project_page=_url(paper.get("projectPage")),
        organization=_organization(paper.get("organization")) or _organization(item.get("organization")),
        feed_date=feed_date,
    )


def _daily_date(item: Any) -> date | None:
    """The feed day of a daily item: ``paper.submittedOnDailyAt``, else the item's ``publishedAt``."""
    if not isinstance(item, Mapping):
        return None
    paper = item.get("paper")
    submitted = paper.get("submittedOnDailyAt") if isinstance(paper, Mapping) else None
    when = _parse_datetime(submitted) or _parse_datetime(item.get("publishedAt"))
    return when.date() if when else None


def _withdrawn(item: Any) -> bool:
    paper = item.get("paper") if isinstance(item, Mapping) else None
    source = paper if isinstance(paper, Mapping) else item
    return isinstance(source, Mapping) and bool(source.get("withdrawnAt"))


def _parse_items(payload: Any, *, feed_date: date | None = None, daily: bool = False) -> list[Paper]:
    """The papers of a daily or search answer; malformed and withdrawn items are skipped.

    For a daily answer without an explicit ``feed_date`` each paper's feed day is read from
    the item itself.
    """
    if not isinstance(payload, list):
        raise SourceUnavailable("expected a JSON list")
    papers = []
    for item in payload:
        try:
            if _withdrawn(item):
                log.debug("skipping a withdrawn paper")
                continue
            day = feed_date if feed_date is not None or not daily else _daily_date(item)
            papers.append(parse_paper(item, feed_date=day))
        except Exception as exc:  # noqa: BLE001 - one odd item never costs the others
            log.debug("skipping a malformed paper item: %s: %s", type(exc).__name__, exc)
    return papers


def retry_after_seconds(headers: httpx.Headers, *, now: datetime | None = None) -> float | None:
    """The wait a 429/503 asks for: ``Retry-After`` (seconds or HTTP date) or ``RateLimit`` ``t=``."""
    value = headers.get("retry-after")
    if value:
        value = value.strip()
        seconds = _seconds(value)
        if seconds is not None:
            return seconds
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            when = None
        if when is not None:
            when = when if when.tzinfo else when.replace(tzinfo=timezone.utc)
            now = now or datetime.now(timezone.utc)
            return max(0.0, (when - now).total_seconds())
    for name in ("ratelimit", "ratelimit-reset", "x-ratelimit-reset"):
        value = headers.get(name)
        if not value:
            continue
        match = _RATE_LIMIT_RESET.search(value)
        if match:
            return float(match.group(1))
        seconds = _seconds(value.strip())
        if seconds is not None and name != "x-ratelimit-reset":  # x-ratelimit-reset is often an epoch
            return seconds
    return None


def _seconds(value: str) -> float | None:
    """A non-negative number of seconds ("7", "1.5"), else None."""
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 and seconds == seconds and seconds != float("inf") else None


class HuggingFaceClient:
    """Daily papers, search and single papers from the Hugging Face API."""

    def __init__(self, base_url: str, *, timeout: float = 10.0, retries: int = 3,
                 daily_ttl: float = 300, search_ttl: float = 3600, token: str | None = None,
                 transport: httpx.AsyncBaseTransport | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 max_backoff: float = 30.0, cache_size: int = 2048, metrics: Metrics | None = None) -> None:
        headers = {"User-Agent": f"paperboy/{_version()}", "Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"), headers=headers, transport=transport,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            limits=httpx.Limits(max_connections=50, max_keepalive_connections=20),
            follow_redirects=True,
        )
        self._retries = max(0, retries)
        self._sleep = sleep
        self._max_backoff = max_backoff
        self._daily_cache: TTLCache[CacheKey, Any] = TTLCache(cache_size, daily_ttl, timer=clock)
        self._search_cache: TTLCache[CacheKey, Any] = TTLCache(cache_size, search_ttl, timer=clock)
        self._in_flight: dict[CacheKey, asyncio.Future[Any]] = {}
        self.upstream_calls = 0
        self._metrics = metrics

    async def __aenter__(self) -> HuggingFaceClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Cancel requests still under way and close the connection pool."""
        for task in list(self._in_flight.values()):
            task.cancel()
        await self._http.aclose()

    # --- public API ---------------------------------------------------------------------

    async def daily_papers(self, *, day: date | None = None, sort: str = "publishedAt", limit: int = 100,
                           page: int = 0) -> list[Paper]:
        """One page of the daily feed of ``day`` (the latest when None), sorted by ``sort``.

        The daily list of one day is ``date=D&sort=publishedAt``, as Hugging Face's own MCP
        server requests a dated batch (exactly ``p``, ``limit``, ``date`` and
        ``sort=publishedAt``; it refuses any other sort on a dated listing and sends
        ``sort=trending`` only without a date, for the global trending ranking:
        hf-mcp-server, packages/mcp/src/hf-fs-papers.ts); huggingface_hub's
        ``list_daily_papers`` documents ``publishedAt`` as the default sort. What ``date`` with
        ``sort=trending`` returns is documented nowhere, so Paperboy never sends it.

        Raises :class:`FeedDayNotOpen` when Hugging Face answers 400 for ``day``.
        """
        params = {"p": str(max(0, page)), "limit": str(max(1, min(limit, 100))), "sort": sort}
        if day is not None:
            params["date"] = day.isoformat()
        try:
            papers = await self._get("/api/daily_papers", params, self._daily_cache,
                                     parse=lambda payload: _parse_items(payload, feed_date=day, daily=True))
        except SourceRefused as exc:
            if day is not None and exc.status == 400:
                raise FeedDayNotOpen(day) from exc
            raise
        return list(papers)

    async def search(self, query: str, *, limit: int = 50) -> list[Paper]:
        """Papers the Hugging Face search finds for ``query`` (its order)."""
        params = {"q": query, "limit": str(max(1, min(limit, 120)))}
        return list(await self._get("/api/papers/search", params, self._search_cache, parse=_parse_items))

    async def paper(self, arxiv_id: str) -> Paper | None:
        """One paper by arXiv id, or None when Hugging Face does not know it."""
        if not _PAPER_ID.fullmatch(arxiv_id) or ".." in arxiv_id:  # never a path outside /api/papers/
            return None
        def parse(payload: Any) -> Paper | None:
            if payload is None:
                return None
            try:
                return parse_paper(payload)
            except (ValueError, TypeError, AttributeError, ArithmeticError) as exc:
                raise SourceUnavailable(f"malformed paper {arxiv_id}") from exc

        return await self._get(f"/api/papers/{arxiv_id}", {}, self._search_cache, parse=parse, missing_ok=True)

    # --- plumbing -------------------------------------------------------------------------

    async def _get(self, path: str, params: dict[str, str], cache: TTLCache[CacheKey, Any], *,
                   parse: Callable[[Any], Any], missing_ok: bool = False) -> Any:
        """Cached, single-flight GET; ``parse`` turns the JSON (None for a 404 when ``missing_ok``)
        into the value that is cached and returned, so cache hits cost no parsing.

        The upstream call runs in its own task that every identical caller awaits (shielded): a
        caller that is cancelled leaves the others waiting, and a failure reaches all of them
        without being cached.
        """
        key: CacheKey = (path, tuple(sorted(params.items())))
        try:
            value = cache[key]
        except KeyError:
            pass
        else:
            if self._metrics is not None:
                self._metrics.hf_cache_hit(path)
            return value
        task = self._in_flight.get(key)
        if task is None:
            task = asyncio.ensure_future(self._load(key, path, params, cache, parse, missing_ok))
            self._in_flight[key] = task
            task.add_done_callback(lambda done: self._finished(key, done))
        return await asyncio.shield(task)

    async def _load(self, key: CacheKey, path: str, params: dict[str, str], cache: TTLCache[CacheKey, Any],
                    parse: Callable[[Any], Any], missing_ok: bool) -> Any:
        value = parse(await self._fetch(path, params, missing_ok=missing_ok))
        cache[key] = value
        return value

    def _finished(self, key: CacheKey, task: asyncio.Future[Any]) -> None:
        if self._in_flight.get(key) is task:
            del self._in_flight[key]
        if not task.cancelled():
            task.exception()  # mark retrieved: waiters re-raise it; if all left, nobody must log it

    def _count(self, path: str, failure: str | None = None) -> None:
        """Metrics: one request to ``path``, or (with ``failure``) how it failed."""
        if self._metrics is None:
            return
        if failure is None:
            self._metrics.hf_request(path)
        else:
            self._metrics.hf_failure(path, failure)

    def _backoff(self, attempt: int) -> float:
        return min(self._max_backoff, 0.5 * 2 ** attempt) * (0.5 + random.random() / 2)

    async def _fetch(self, path: str, params: dict[str, str], *, missing_ok: bool) -> Any:
        last_problem = "no attempt made"
        for attempt in range(self._retries + 1):
            wait: float | None = None
            try:
                self.upstream_calls += 1
                self._count(path)
                response = await self._http.get(path, params=params)
            except httpx.TimeoutException:
                last_problem = f"timed out ({path})"
                self._count(path, "timeout")
            except httpx.RequestError as exc:   # connection, protocol, decoding, redirect loops
                last_problem = f"{type(exc).__name__} ({path})"
                self._count(path, "network")
            else:
                status = response.status_code
                if status == 404 and missing_ok:
                    return None
                if status == 429 or status >= 500:
                    last_problem = f"HTTP {status} ({path})"
                    self._count(path, "http_429" if status == 429 else "http_5xx")
                    wait = retry_after_seconds(response.headers)
                elif status >= 400:
                    self._count(path, "refused")
                    raise SourceRefused(f"HTTP {status} ({path})", status=status)
                else:
                    try:
                        return response.json()
                    except ValueError as exc:
                        self._count(path, "malformed")
                        raise SourceUnavailable(f"malformed JSON ({path})") from exc
            if attempt == self._retries:
                break
            if wait is not None and wait > self._max_backoff:
                # Longer than anyone waits for an answer: fall back now rather than sleep and ask too early.
                last_problem += f", asked to wait {wait:.0f}s"
                break
            delay = wait if wait is not None else self._backoff(attempt)
            log.info("Hugging Face %s; retrying in %.1fs (attempt %d of %d)", last_problem, delay,
                     attempt + 1, self._retries)
            await self._sleep(delay)
        raise SourceUnavailable(last_problem)
