"""Ranking: relevance first; popularity only breaks near-ties; Hugging Face's search order as evidence.

A topic's papers are ordered by

    score = relevance + NEAR_TIE × popularity_share

``relevance`` (in [0, 1]) comes from :mod:`bot.matching`. ``popularity_share``
in [0, 1] is upvotes on a log scale plus a recency bonus (see
:func:`popularity`), so popularity moves a paper past another only when their
relevances differ by less than ``NEAR_TIE``: it never lifts a weaker match over
a clearly better one.

For ``/papers <topic>`` the candidates come ranked by Hugging Face's search
(``source_ranked``). That order is evidence too: papers that clear
``LOWER_BAR`` are ordered by reciprocal-rank fusion of our rank and Hugging
Face's (``1/(k + ours) + 1/(k + theirs)``), the papers clearly about the topic
(sent by alerts) first, then the ones only Hugging Face vouches for.

The trending list and the channel post are the community's order: upvotes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone

from bot.matching import ALERT_THRESHOLD, LOWER_BAR, PaperTerms, Relevance, TopicIndex
from bot.models import Paper, RankedPaper

RECENCY_HALF_LIFE_DAYS = 180.0
NEAR_TIE = 0.03  # relevance difference within which popularity may reorder two papers
POPULARITY_SPAN = 5.0  # popularity above 1 that counts as the most popular (≈ 10,000 upvotes, today)
RRF_K = 60  # reciprocal-rank fusion constant (Cormack et al., 2009)


def popularity(paper: Paper, *, now: datetime) -> float:
    """The trending factor: 1 + upvotes on a log scale + a recency bonus in [0, 1]."""
    recency = 0.0
    if paper.published_at is not None:
        age_days = max(0.0, (now - paper.published_at).total_seconds() / 86_400)
        recency = 0.5 ** (age_days / RECENCY_HALF_LIFE_DAYS)
    return 1.0 + math.log10(1 + max(0, paper.upvotes)) + recency


def popularity_share(paper: Paper, *, now: datetime) -> float:
    """Popularity scaled to [0, 1] (the tie-breaker's weight)."""
    return min(1.0, (popularity(paper, now=now) - 1.0) / POPULARITY_SPAN)


def topic_score(relevance: float, paper: Paper, *, now: datetime) -> float:
    """The ranking score of a paper for a topic: relevance, plus popularity within a near-tie."""
    return round(relevance + NEAR_TIE * popularity_share(paper, now=now), 4)


def rank_matches(matches: Iterable[tuple[PaperTerms, Relevance]], *, now: datetime) -> list[RankedPaper]:
    """Assessed papers best first, each with its score and why it matched."""
    ranked = [RankedPaper(paper=doc.paper, score=topic_score(rel.score, doc.paper, now=now), matched_terms=rel.reasons)
              for doc, rel in matches]
    ranked.sort(key=lambda r: (-r.score, -r.paper.upvotes, r.paper.title))
    return ranked


def rank_for_topic(topic: str, papers: Iterable[Paper], *, now: datetime | None = None, source_ranked: bool = False,
                   threshold: float = ALERT_THRESHOLD) -> list[RankedPaper]:
    """Papers on ``topic``, best first, each with its score and why it matched.

    The papers clearly about the topic (those an alert would send) come first,
    then the weaker matches above ``LOWER_BAR``. With ``source_ranked``,
    ``papers`` are in the search's own order of relevance, which is fused with
    ours within each of the two tiers (see the module docstring).
    """
    now = now or datetime.now(timezone.utc)
    unique = list({p.paper_id: p for p in reversed(list(papers))}.values())[::-1]
    assessed = TopicIndex(unique).assess(topic, threshold=threshold, floor=LOWER_BAR)
    sent = {doc.paper.paper_id for doc, rel in assessed if rel.sent}
    ours = rank_matches(assessed, now=now)
    if not source_ranked:
        return sorted(ours, key=lambda r: r.paper.paper_id not in sent)  # stable: score order within tiers
    source_rank = {p.paper_id: i + 1 for i, p in enumerate(unique)}
    fused = []
    for our_rank, ranked in enumerate(ours, start=1):
        theirs = source_rank[ranked.paper.paper_id]
        fusion = 1 / (RRF_K + our_rank) + 1 / (RRF_K + theirs)
        why = ranked.matched_terms + (f"Hugging Face search: #{theirs}",)
        fused.append((ranked.paper.paper_id not in sent, -fusion, our_rank,
                      RankedPaper(paper=ranked.paper, score=round(fusion, 6), matched_terms=why)))
    fused.sort(key=lambda item: item[:3])
    return [item[3] for item in fused]


def rank_trending(papers: Sequence[Paper]) -> list[RankedPaper]:
    """The daily feed best first: upvotes, then the feed's own order."""
    order = sorted(enumerate(papers), key=lambda pair: (-pair[1].upvotes, pair[0]))
    return [RankedPaper(paper=p, score=float(p.upvotes)) for _, p in order]
