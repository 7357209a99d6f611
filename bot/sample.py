"""The offline sample: real papers from three pages of the Hugging Face papers site.

``bot/data/sample_papers.json`` is built from ``tests/data/seeds/*.txt`` (search
results for "generalization") by ``python -m bot.sample build <seed dir>`` and
ships inside the package, so ``make run`` shows real papers without internet.
The pages carry titles, abstracts, author counts, dates and upvotes but no
arXiv ids; sample papers get ``sample:<slug>`` ids, which link to a Hugging
Face papers search for their title rather than to an invented arXiv id.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import datetime, timezone
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from bot.models import Paper
from bot.text import clean_line

SAMPLE_RESOURCE = "data/sample_papers.json"
_CHROME = {
    "new", "subscribe", "daily papers", "byak and the research community",
    "get trending papers in your email inbox!", "get trending papers in your email inbox once a day!",
}
_AUTHORS = re.compile(r"^•\s*(\d+)\s+authors?$")
_DATE = re.compile(r"^([A-Z][a-z]{2} \d{1,2})(?:, (\d{4}))?(?:\s+(\d+))?$")
# The site leaves the year out for dates in the current year; the pages were saved in 2026
# (they list papers from December 2025 with their year).
PAGE_YEAR = 2026
_SHORT_DATE = re.compile(r"^[A-Z][a-z]{2} \d{1,2}$")


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.casefold()).strip("-")[:80]


def _record(title: str, summary: str, *, author_count: int = 0, organization: str | None = None,
            published: str | None = None, upvotes: int = 0) -> dict[str, Any]:
    record: dict[str, Any] = {"title": title, "summary": summary, "author_count": author_count,
                              "published_at": published, "upvotes": upvotes}
    if organization:
        record["organization"] = organization
    return record


def parse_title_abstract_page(lines: list[str]) -> list[dict[str, Any]]:
    """A page of alternating title and abstract lines (after the page's header)."""
    body = [clean_line(line) for line in lines if clean_line(line)]
    while body and body[0].casefold() in _CHROME:
        body.pop(0)
    if body and body[0].startswith("Subscribe") and body[0] != "Subscribe":
        body[0] = body[0][len("Subscribe"):]
    return [_record(body[i], body[i + 1]) for i in range(0, len(body) - 1, 2)]


def parse_card_page(lines: list[str]) -> list[dict[str, Any]]:
    """A page of cards: title, abstract, authors or organization, '·', date [upvotes]."""
    body = [clean_line(line) for line in lines]
    body = [line for line in body if line]
    records: list[dict[str, Any]] = []
    start = 0
    for index, line in enumerate(body):
        if line != "·" or index + 1 >= len(body):
            continue
        date_match = _DATE.match(body[index + 1])
        if not date_match:
            continue
        card = [l for l in body[start:index] if l.casefold() not in _CHROME and not _SHORT_DATE.match(l)]
        start = index + 2
        if len(card) < 2:
            continue
        byline = card[-1]
        authors = _AUTHORS.match(byline)
        title, summary = (card[-3], card[-2]) if len(card) >= 3 else (card[-2], "")
        year = date_match.group(2) or str(PAGE_YEAR)
        published = datetime.strptime(f"{date_match.group(1)} {year}", "%b %d %Y").date().isoformat()
        records.append(_record(
            title, summary,
            author_count=int(authors.group(1)) if authors else 0,
            organization=None if authors else byline,
            published=published,
            upvotes=int(date_match.group(3) or 0),
        ))
    return records


def _richness(record: dict[str, Any]) -> tuple[int, int, int]:
    return (record["published_at"] is not None, record["author_count"] > 0, len(record["summary"]))


def build_sample(seed_dir: Path) -> list[dict[str, Any]]:
    """Every paper on the seed pages, deduplicated by title (keeping the richest record)."""
    best: dict[str, dict[str, Any]] = {}
    for path in sorted(seed_dir.glob("*.txt")):
        lines = path.read_text(encoding="utf-8").splitlines()
        cards = any(clean_line(line) == "·" for line in lines)
        for record in (parse_card_page(lines) if cards else parse_title_abstract_page(lines)):
            key = _slug(record["title"])
            if key and (key not in best or _richness(record) > _richness(best[key])):
                best[key] = record
    return sorted(best.values(), key=lambda r: (-r["upvotes"], r["title"]))


def _paper(record: dict[str, Any]) -> Paper:
    published = record.get("published_at")
    return Paper(
        paper_id=f"sample:{_slug(record['title'])}",
        title=record["title"],
        summary=record.get("summary", ""),
        author_count=int(record.get("author_count") or 0),
        published_at=datetime.fromisoformat(published).replace(tzinfo=timezone.utc) if published else None,
        upvotes=int(record.get("upvotes") or 0),
        organization=record.get("organization"),
    )


def sample_records() -> list[dict[str, Any]]:
    """The bundled sample's raw records (title, summary, author_count, published_at, upvotes)."""
    text = resources.files("bot").joinpath(SAMPLE_RESOURCE).read_text(encoding="utf-8")
    return list(json.loads(text)["papers"])


@lru_cache(maxsize=1)
def _load() -> tuple[Paper, ...]:
    return tuple(_paper(record) for record in sample_records())


def load_sample() -> list[Paper]:
    """The bundled offline sample as papers."""
    return list(_load())


def write_sample(papers: list[dict[str, Any]], target: Path) -> None:
    """Write the sample document (what ``sample_records`` reads) to ``target``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    document = {"source": "Hugging Face papers site, search results for 'generalization' (3 pages)",
                "papers": papers}
    target.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def main(argv: list[str]) -> int:
    """``build <seed directory> [--output FILE]``: rebuild the bundled sample from the seed pages."""
    parser = argparse.ArgumentParser(prog="python -m bot.sample", description="Build the offline sample.")
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="parse the seed pages and write the sample JSON")
    build.add_argument("seed_dir", type=Path)
    build.add_argument("--output", type=Path, default=Path(__file__).resolve().parent / SAMPLE_RESOURCE,
                       help="where to write (default: the bundled bot/data/sample_papers.json)")
    args = parser.parse_args(argv)
    if not args.seed_dir.is_dir() or not any(args.seed_dir.glob("*.txt")):
        print(f"no seed pages (*.txt) in {args.seed_dir}", file=sys.stderr)
        return 2
    papers = build_sample(args.seed_dir)
    write_sample(papers, args.output)
    print(f"wrote {len(papers)} papers to {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
