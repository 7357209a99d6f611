"""Topic relevance: which papers are about a topic, how much, and why.

A topic and a paper are reduced to word stems (Snowball English, after folding
British "-isation" to "-ization", and keeping "-iz-" so that "generalization"
does not meet "general"), so "generalize", "generalizing" and "generalisation"
all meet "generalization". A paper matches a topic when it
contains enough of the topic's content words (all of them for topics of one
or two words, two thirds for longer ones); each word counts by the best field
it is found in: title 3, AI keywords 2, abstract or AI summary 1.

:class:`TopicIndex` turns many topics against many papers into dictionary
look-ups, for daily alerts over tens of thousands of subscriptions.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache

import snowballstemmer

from bot.models import Paper

TITLE_WEIGHT = 3.0
KEYWORD_WEIGHT = 2.0
ABSTRACT_WEIGHT = 1.0
PHRASE_BONUS = 0.25

_WORD = re.compile(r"[^\W_]+(?:[-'][^\W_]+)*")
_BRITISH = re.compile(r"is(ation|ations|e|ed|es|ing)$")

STOPWORDS = frozenset(
    """a an and are as at be by for from has have how in into is it its of on or that the their this
    to via vs was we what when where which while who why will with without our using use based
    towards toward paper papers new""".split()
)


@lru_cache(maxsize=1)
def _stemmer() -> snowballstemmer.stemmer:
    return snowballstemmer.stemmer("english")


@lru_cache(maxsize=200_000)
def stem(word: str) -> str:
    """The matching key of one lower-case word: its Snowball stem, keeping a cut-off ``-iz-``.

    Snowball reduces "generalization" and "generalize" to "general", and
    "organization" to "organ"; keeping the "iz" ("generaliz", "organiz") lets
    the word forms meet each other without meeting "general" or "organ".
    """
    if len(word) > 6:
        word = _BRITISH.sub(r"iz\1", word)
    stemmed = _stemmer().stemWord(word)
    if word.startswith(stemmed) and word[len(stemmed):len(stemmed) + 2] == "iz":
        return stemmed + "iz"
    return stemmed


def words(text: str) -> list[str]:
    """Lower-case words of ``text`` (hyphenated words are also split into parts)."""
    found: list[str] = []
    for token in _WORD.findall(text.casefold()):
        found.append(token)
        if "-" in token:
            found.extend(part for part in token.split("-") if part)
    return found


def meaningful_words(text: str) -> tuple[str, ...]:
    """The words of a topic that can single out a paper: no stop words, first occurrence only.

    Empty for a topic of stop words only (``the of and``), punctuation only or invisible
    characters only: no paper could match such a topic for what it is about, so it is refused
    (:func:`bot.text.unmatchable_topic_reason`).
    """
    return tuple(dict.fromkeys(w for w in words(text) if "-" not in w and w not in STOPWORDS))


def content_terms(text: str) -> tuple[tuple[str, str], ...]:
    """(word, stem) pairs of the meaningful words of a topic, first occurrence only."""
    seen: set[str] = set()
    terms: list[tuple[str, str]] = []
    for word in words(text):
        if "-" in word or word in STOPWORDS or len(word) < 2 and not word.isdigit():
            continue
        stemmed = stem(word)
        if stemmed not in seen:
            seen.add(stemmed)
            terms.append((word, stemmed))
    if not terms:  # a topic of stop words only ("the") still means something literal
        terms = [(w, stem(w)) for w in dict.fromkeys(words(text)) if "-" not in w]
    return tuple(terms)


def _stems(text: str) -> frozenset[str]:
    return frozenset(stem(w) for w in words(text))


def _stem_sequence(text: str) -> str:
    return " " + " ".join(stem(w) for w in _WORD.findall(text.casefold())) + " "


@dataclass(frozen=True, slots=True)
class PaperTerms:
    """A paper's stems by field, computed once per paper."""

    paper: Paper
    title: frozenset[str]
    keywords: frozenset[str]
    abstract: frozenset[str]
    title_sequence: str
    abstract_sequence: str

    @classmethod
    def of(cls, paper: Paper) -> PaperTerms:
        """The terms of ``paper``, computed once per paper id and text.

        Keyed on the paper's id and the text the terms come from, not on the whole paper: the
        same paper fetched again (new upvotes, another feed day, another search) reuses them.
        """
        terms = _paper_terms(paper.paper_id, paper.title, paper.summary, paper.ai_summary, paper.ai_keywords)
        return replace(terms, paper=paper)

    @classmethod
    def compute(cls, paper: Paper) -> PaperTerms:
        abstract_text = f"{paper.summary} {paper.ai_summary or ''}"
        return cls(
            paper=paper,
            title=_stems(paper.title),
            keywords=_stems(" ".join(paper.ai_keywords)),
            abstract=_stems(abstract_text),
            title_sequence=_stem_sequence(paper.title),
            abstract_sequence=_stem_sequence(abstract_text),
        )

    def field_weight(self, stemmed: str) -> tuple[float, str]:
        """The best field a stem is in, as (weight, field name); (0, '') when absent."""
        if stemmed in self.title:
            return TITLE_WEIGHT, "title"
        if stemmed in self.keywords:
            return KEYWORD_WEIGHT, "keywords"
        if stemmed in self.abstract:
            return ABSTRACT_WEIGHT, "abstract"
        return 0.0, ""


@lru_cache(maxsize=8192)
def _paper_terms(paper_id: str, title: str, summary: str, ai_summary: str | None,
                 ai_keywords: tuple[str, ...]) -> PaperTerms:
    return PaperTerms.compute(Paper(paper_id=paper_id, title=title, summary=summary, ai_summary=ai_summary,
                                    ai_keywords=ai_keywords))


@dataclass(frozen=True, slots=True)
class Relevance:
    """How well a paper fits a topic: a score in (0, 1.25] and the words found where."""

    score: float
    matched: tuple[str, ...]


class Topic:
    """A parsed topic, ready to score papers."""

    __slots__ = ("text", "terms", "phrase")

    def __init__(self, text: str) -> None:
        self.text = text
        self.terms = content_terms(text)
        self.phrase = " " + " ".join(s for _, s in self.terms) + " " if len(self.terms) > 1 else ""

    @property
    def required_matches(self) -> int:
        """How many of the topic's words a paper must contain."""
        count = len(self.terms)
        return count if count <= 2 else -(-2 * count // 3)

    def relevance(self, doc: PaperTerms) -> Relevance | None:
        """The paper's relevance to this topic, or None when it does not match."""
        if not self.terms:
            return None
        total = 0.0
        matched: list[str] = []
        for word, stemmed in self.terms:
            weight, field = doc.field_weight(stemmed)
            if weight:
                total += weight
                matched.append(f"{word} ({field})")
        if len(matched) < self.required_matches:
            return None
        score = total / (TITLE_WEIGHT * len(self.terms))
        if self.phrase and (self.phrase in doc.title_sequence or self.phrase in doc.abstract_sequence):
            score += PHRASE_BONUS
        return Relevance(score=round(score, 4), matched=tuple(matched))


class TopicIndex:
    """Many topics matched against many papers through an inverted stem index."""

    def __init__(self, papers: Sequence[Paper]) -> None:
        self.docs = [PaperTerms.of(p) for p in papers]
        self._postings: dict[str, set[int]] = {}
        for index, doc in enumerate(self.docs):
            for stemmed in doc.title | doc.keywords | doc.abstract:
                self._postings.setdefault(stemmed, set()).add(index)
        self._topics: dict[str, Topic] = {}

    def topic(self, text: str) -> Topic:
        cached = self._topics.get(text)
        if cached is None:
            cached = self._topics[text] = Topic(text)
        return cached

    def match(self, text: str) -> list[tuple[PaperTerms, Relevance]]:
        """Papers matching one topic, best first."""
        topic = self.topic(text)
        counts: dict[int, int] = {}
        for _, stemmed in topic.terms:
            for index in self._postings.get(stemmed, ()):
                counts[index] = counts.get(index, 0) + 1
        need = topic.required_matches
        results = []
        for index, count in counts.items():
            if count >= need:
                relevance = topic.relevance(self.docs[index])
                if relevance is not None:
                    results.append((self.docs[index], relevance))
        results.sort(key=lambda pair: (-pair[1].score, -pair[0].paper.upvotes))
        return results

    def match_many(self, topics: Iterable[str]) -> dict[str, list[tuple[PaperTerms, Relevance]]]:
        """Each distinct topic's matches (computed once per distinct topic)."""
        return {text: self.match(text) for text in dict.fromkeys(topics)}
