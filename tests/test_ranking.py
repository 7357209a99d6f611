"""Topic matching and the ranking formula, on small explicit fixtures."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from bot.matching import Topic, TopicIndex, PaperTerms
from bot.models import Paper
from bot.ranking import popularity, rank_for_topic, rank_trending

NOW = datetime(2026, 11, 22, 12, tzinfo=timezone.utc)


def paper(pid: str, title: str, summary: str = "", upvotes: int = 0, days_old: int = 30,
          keywords: tuple[str, ...] = ()) -> Paper:
    return Paper(paper_id=pid, title=title, summary=summary, upvotes=upvotes,
                 published_at=NOW - timedelta(days=days_old), ai_keywords=keywords)


FIXTURE = [
    paper("2501.00001", "Scaling Laws for Chatbots", "We train very large chat models.", upvotes=900),
    paper("2501.00002", "On the Generalization Mystery in Deep Learning",
          "Why do networks generalize well?", upvotes=12),
    paper("2501.00003", "Efficient Attention Kernels",
          "Our kernels also improve generalization slightly.", upvotes=1000),
    paper("2501.00004", "Generalizing from Few Examples", "A study of few-shot learning.", upvotes=3),
    paper("2501.00005", "Robust Vision Models", "We study robustness.", upvotes=40,
          keywords=("out-of-distribution generalization",)),
]


def test_word_forms_match() -> None:
    topic = Topic("generalization")
    for title in ("Models that generalize", "Generalizing fast", "Generalisation bounds", "Generalized models"):
        assert topic.relevance(PaperTerms.of(paper("x", title))) is not None, title


def test_derived_words_do_not_collapse_into_their_roots() -> None:
    topic = Topic("generalization")
    for title in ("On the General Value of Evidence", "A Generalist Agent"):
        assert topic.relevance(PaperTerms.of(paper("x", title))) is None, title
    assert Topic("organization").relevance(PaperTerms.of(paper("y", "Organs on a chip"))) is None
    assert Topic("organisation").relevance(PaperTerms.of(paper("z", "How teams organize"))) is not None


def test_popular_off_topic_paper_never_appears() -> None:
    ranked = rank_for_topic("generalization", FIXTURE, now=NOW)
    ids = [r.paper.paper_id for r in ranked]
    assert "2501.00001" not in ids
    assert set(ids) == {"2501.00002", "2501.00003", "2501.00004", "2501.00005"}


def test_title_match_beats_popular_abstract_only_match() -> None:
    ranked = rank_for_topic("generalization", FIXTURE, now=NOW)
    ids = [r.paper.paper_id for r in ranked]
    assert ids.index("2501.00002") < ids.index("2501.00003")
    assert ids.index("2501.00004") < ids.index("2501.00003")
    assert ids.index("2501.00005") < ids.index("2501.00003")  # keywords outrank the abstract


def test_among_equal_relevance_upvotes_decide() -> None:
    ranked = rank_for_topic("generalization", FIXTURE, now=NOW)
    assert [r.paper.paper_id for r in ranked][:2] == ["2501.00002", "2501.00004"]


def test_why_it_matched_names_the_words_and_fields() -> None:
    ranked = {r.paper.paper_id: r for r in rank_for_topic("generalization", FIXTURE, now=NOW)}
    assert ranked["2501.00002"].matched_terms == ("generalization (title)",)
    assert ranked["2501.00003"].matched_terms == ("generalization (abstract)",)
    assert ranked["2501.00005"].matched_terms == ("generalization (keywords)",)


def test_multi_word_topics_need_every_word_and_reward_the_phrase() -> None:
    papers = [
        paper("a", "Diffusion Models for Audio"),
        paper("b", "Models of Diffusion in Physics"),
        paper("c", "Language Models"),
    ]
    ranked = rank_for_topic("diffusion models", papers, now=NOW)
    assert [r.paper.paper_id for r in ranked] == ["a", "b"]
    assert ranked[0].score > ranked[1].score


def test_recency_breaks_ties() -> None:
    old = paper("old", "Generalization", days_old=900)
    new = paper("new", "Generalization", days_old=1)
    assert popularity(new, now=NOW) > popularity(old, now=NOW)
    assert [r.paper.paper_id for r in rank_for_topic("generalization", [old, new], now=NOW)] == ["new", "old"]


def test_stopword_only_topic_still_matches_literally() -> None:
    assert Topic("the").terms


def test_topic_index_agrees_with_direct_scoring() -> None:
    index = TopicIndex(FIXTURE)
    direct = {r.paper.paper_id for r in rank_for_topic("generalization", FIXTURE, now=NOW)}
    assert {doc.paper.paper_id for doc, _ in index.match("generalization")} == direct
    many = index.match_many(["generalization", "chat models", "generalization"])
    assert set(many) == {"generalization", "chat models"}
    assert [d.paper.paper_id for d, _ in many["chat models"]] == ["2501.00001"]


def test_trending_orders_by_upvotes_then_feed_order() -> None:
    ranked = rank_trending([paper("a", "A", upvotes=1), paper("b", "B", upvotes=5), paper("c", "C", upvotes=1)])
    assert [r.paper.paper_id for r in ranked] == ["b", "a", "c"]
