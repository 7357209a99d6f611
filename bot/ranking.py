"""Ranking: relevance to the topic times how much the community reads the paper.

    score = relevance² × (1 + log10(1 + upvotes) + recency)
    recency = 0.5 ** (age_in_days / 180)      (1.0 today, 0.5 at six months)

``relevance`` comes from :mod:`bot.matching` (title 3, keywords 2, abstract 1,
normalized to 1.0 when every topic word is in the title, +0.25 when the topic
appears as a phrase). Squaring it keeps a barely-relevant paper from riding its
upvotes past an on-topic one: a title match with no upvotes (1.0 × 2.0) beats
an abstract-only match with 1,000 upvotes (0.11 × 5.0). Papers that do not
match the topic at all are dropped, however popular they are.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone

from bot.matching import PaperTerms, Topic
from bot.models import Paper, RankedPaper

RECENCY_HALF_LIFE_DAYS = 180.0


def popularity(paper: Paper, *, now: datetime) -> float:
    """The trending factor: upvotes on a log scale plus a recency bonus in [0, 1]."""
    recency = 0.0
    if paper.published_at is not None:
        age_days = max(0.0, (now - paper.published_at).total_seconds() / 86_400)
        recency = 0.5 ** (age_days / RECENCY_HALF_LIFE_DAYS)
    return 1.0 + math.log10(1 + max(0, paper.upvotes)) + recency


def rank_for_topic(topic: str, papers: Iterable[Paper], *, now: datetime | None = None) -> list[RankedPaper]:
    """Papers matching ``topic``, best first, each with its score and why it matched."""
    now = now or datetime.now(timezone.utc)
    parsed = Topic(topic)
    ranked: list[RankedPaper] = []
    seen: set[str] = set()
    for paper in papers:
        if paper.paper_id in seen:
            continue
        seen.add(paper.paper_id)
        relevance = parsed.relevance(PaperTerms.of(paper))
        if relevance is None:
            continue
        score = relevance.score ** 2 * popularity(paper, now=now)
        ranked.append(RankedPaper(paper=paper, score=round(score, 4), matched_terms=relevance.matched))
    ranked.sort(key=lambda r: (-r.score, -r.paper.upvotes, r.paper.title))
    return ranked


def rank_trending(papers: Sequence[Paper]) -> list[RankedPaper]:
    """The daily feed best first: upvotes, then the feed's own order."""
    order = sorted(enumerate(papers), key=lambda pair: (-pair[1].upvotes, pair[0]))
    return [RankedPaper(paper=p, score=float(p.upvotes)) for _, p in order]
