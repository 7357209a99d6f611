"""Alerts that learn: what a person's 👍 / 👎 / "fewer like this" votes teach, and how it re-ranks.

This layer sits on top of whatever ranks papers for a topic: it takes that
ranked list (:class:`~bot.models.RankedPaper`, best first) and a person's
:class:`TopicTaste` for the topic, and returns the list re-ranked for them.
A person with no votes on a topic gets the very list they were given.

How it learns (a Rocchio-style profile, one per person and topic):

* each voted paper is reduced to weighted terms (title and AI keywords 1.0,
  abstract 0.35; title bigrams too), with the topic's own words left out (every
  candidate has them, so they say nothing about taste);
* liked papers pull term weights up, disliked ones down, and "fewer like this"
  counts twice as much as 👎; each side is averaged with a prior of
  :data:`PRIOR_VOTES` votes, so two or three votes move little;
* a paper's *affinity* is the dot product of its (unit-length) term vector with
  those weights, put on the person's own scale (the mean of their liked papers
  is +1, of the turned-down ones -1), shrunk by n / (n + PRIOR_VOTES) and
  clamped to ±:data:`MAX_AFFINITY`; its score is multiplied by
  ``exp(GAIN × affinity)`` (at most ×e either way, so relevance still rules);
* the learned threshold: once a topic has :data:`THRESHOLD_MIN_VOTES` votes with
  a 👎 or "fewer" among them, a paper whose affinity is below ``-CUT`` (clearly
  like what the person turned down) is left out of their alerts and searches on
  that topic -- but never more than :data:`MAX_DROPPED_SHARE` of the list, so
  votes cannot blank it.

Votes are validated like typed input (:func:`parse_vote`, :func:`parse_paper_id`);
the ids on buttons are data to check, never trusted.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache

import snowballstemmer

from bot.models import Paper, RankedPaper
from bot.text import InputError

UP = "up"
DOWN = "down"
FEWER = "fewer"
VOTE_STRENGTH = {UP: 1.0, DOWN: -1.0, FEWER: -2.0}
_VOTE_ALIASES = {"up": UP, "like": UP, "+1": UP, "👍": UP, "down": DOWN, "dislike": DOWN, "-1": DOWN, "👎": DOWN,
                 "fewer": FEWER, "less": FEWER}

TITLE_WEIGHT = 1.0
BODY_WEIGHT = 0.35
PRIOR_VOTES = 2.0
MAX_TERM_WEIGHT = 0.5
MAX_AFFINITY = 2.0
GAIN = 0.5
CUT = 0.3
THRESHOLD_MIN_VOTES = 3
MAX_DROPPED_SHARE = 0.6
NOTE_MIN_AFFINITY = 0.25
MAX_VOTES_LEARNED = 200       # the most recent votes per topic that are learned from
MAX_FEATURES = 80             # terms kept per voted paper

PAPER_ID_MAX = 100
_ARXIV_ID = re.compile(r"^\d{4}\.\d{4,5}(v\d{1,3})?$")
_OLD_ARXIV_ID = re.compile(r"^[a-z][a-z.-]{1,20}/\d{7}(v\d{1,3})?$")
_SAMPLE_ID = re.compile(r"^sample:[a-z0-9][a-z0-9-]{0,79}$")

_WORD = re.compile(r"[^\W_]+(?:[-'][^\W_]+)*")
_STOP = frozenset("""
a about above across after again against all almost also although always among an and any are as at be because been
before being below between both but by can could did do does doing done down during each either else even ever every
for from further had has have having here how however if in into is it its itself just less many may might more most
much must near need new no nor not now of off often on once one only or other our out over own per rather same several
should since so some still such than that the their them then there these they this those through thus to too toward
towards under until up upon us use used uses using very via was we well were what when where whether which while who
whom whose why will with within without would yet you your
paper papers propose proposed proposes present presents show shows shown study studies work works approach approaches
method methods result results task tasks model models data dataset datasets performance based novel existing via
first two three new large across different various specific state art achieve achieves demonstrate demonstrates
further significant significantly framework introduce introduces improve improves improved learning
""".split())


@lru_cache(maxsize=1)
def _stemmer() -> snowballstemmer.stemmer:
    return snowballstemmer.stemmer("english")


@lru_cache(maxsize=100_000)
def _stem(word: str) -> str:
    """Snowball's stem, after dropping the plural of vowel-less abbreviations (llms, vlms, gnns)."""
    if 3 < len(word) <= 6 and word.endswith("s") and not set(word[:-1]) & set("aeiouy"):
        word = word[:-1]
    return _stemmer().stemWord(word)


def _tokens(text: str) -> list[tuple[str, str]]:
    """(stem, word) for each meaningful word of ``text``."""
    out = []
    for word in _WORD.findall(text.casefold()):
        if word in _STOP or len(word) < 2 or word.isdigit():
            continue
        out.append((_stem(word), word))
    return out


def topic_stems(topic: str) -> frozenset[str]:
    """The stems of a topic's words (left out of taste: every candidate contains them)."""
    return frozenset(_stem(word) for word in _WORD.findall(topic.casefold()))


@dataclass(frozen=True, slots=True)
class Terms:
    """A paper as weighted terms (stem -> weight) and a readable word for each stem."""

    weights: Mapping[str, float]
    labels: Mapping[str, str]

    def to_json(self) -> dict[str, dict[str, object]]:
        return {"w": dict(self.weights), "l": dict(self.labels)}

    @classmethod
    def from_json(cls, data: object) -> Terms:
        if not isinstance(data, Mapping):
            return cls({}, {})
        weights = data.get("w") or {}
        labels = data.get("l") or {}
        if not isinstance(weights, Mapping) or not isinstance(labels, Mapping):
            return cls({}, {})
        return cls({str(k): float(v) for k, v in weights.items() if isinstance(v, (int, float))},
                   {str(k): str(v) for k, v in labels.items()})


@lru_cache(maxsize=8192)
def paper_terms(paper: Paper) -> Terms:
    """The terms a vote on ``paper`` teaches: title, keywords and bigrams strongest, abstract weaker.

    Cached per paper (a changed paper is a new key); the ``Terms`` returned is never mutated.
    """
    weights: dict[str, float] = {}
    labels: dict[str, str] = {}
    title = _tokens(paper.title)
    head = title + [t for kw in paper.ai_keywords for t in _tokens(kw)]
    for stemmed, word in head:
        weights[stemmed] = TITLE_WEIGHT
        labels.setdefault(stemmed, word)
    for (s1, w1), (s2, w2) in zip(title, title[1:]):
        key = f"{s1} {s2}"
        weights[key] = TITLE_WEIGHT
        labels.setdefault(key, f"{w1} {w2}")
    for stemmed, word in _tokens(f"{paper.summary} {paper.ai_summary or ''}"):
        if stemmed not in weights:
            weights[stemmed] = BODY_WEIGHT
            labels.setdefault(stemmed, word)
    kept = sorted(weights.items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_FEATURES]
    return Terms(dict(kept), {k: labels[k] for k, _ in kept})


def _unit(weights: Mapping[str, float], leave_out: frozenset[str]) -> dict[str, float]:
    kept = {k: v for k, v in weights.items() if not (set(k.split(" ")) & leave_out)}
    norm = math.sqrt(sum(v * v for v in kept.values()))
    return {k: v / norm for k, v in kept.items()} if norm else {}


@dataclass(frozen=True, slots=True)
class Vote:
    """One stored vote: which paper, how, and the paper's terms at the time."""

    paper_id: str
    vote: str
    title: str
    terms: Terms


@dataclass(frozen=True, slots=True)
class Adjustment:
    """What a person's taste does to one paper."""

    affinity: float
    multiplier: float
    note: str | None


class TopicTaste:
    """What one person's votes on one topic taught: term weights and a threshold."""

    __slots__ = ("topic", "votes", "weights", "labels", "liked", "disliked", "fewer", "_leave_out",
                 "_liked_by_term", "_disliked_by_term", "_cache", "_centre", "_scale")

    def __init__(self, topic: str, votes: Sequence[Vote]) -> None:
        self.topic = topic
        self.votes = tuple(votes[:MAX_VOTES_LEARNED])
        self._leave_out = topic_stems(topic)
        self.liked = sum(1 for v in self.votes if v.vote == UP)
        self.disliked = sum(1 for v in self.votes if v.vote == DOWN)
        self.fewer = sum(1 for v in self.votes if v.vote == FEWER)
        up: dict[str, float] = {}
        down: dict[str, float] = {}
        down_mass = 0.0
        self.labels: dict[str, str] = {}
        self._liked_by_term: Counter[str] = Counter()
        self._disliked_by_term: Counter[str] = Counter()
        for vote in self.votes:
            vector = _unit(vote.terms.weights, self._leave_out)
            strength = VOTE_STRENGTH.get(vote.vote, 0.0)
            target = up if strength > 0 else down
            if strength < 0:
                down_mass += -strength
            for term, value in vector.items():
                target[term] = target.get(term, 0.0) + abs(strength) * value
                self.labels.setdefault(term, vote.terms.labels.get(term, term))
            (self._liked_by_term if strength > 0 else self._disliked_by_term).update(vector.keys())
        weights: dict[str, float] = {}
        for term in set(up) | set(down):
            value = up.get(term, 0.0) / (self.liked + PRIOR_VOTES) - down.get(term, 0.0) / (down_mass + PRIOR_VOTES)
            if value:
                weights[term] = max(-MAX_TERM_WEIGHT, min(MAX_TERM_WEIGHT, value))
        self.weights = weights
        self._cache: dict[str, Adjustment] = {}
        # Put affinities on the person's own scale: their liked papers near +1, turned-down ones near -1
        # (0 is the midpoint), shrunk while there are few votes.
        liked = [self._raw(v.terms.weights) for v in self.votes if VOTE_STRENGTH.get(v.vote, 0) > 0]
        disliked = [self._raw(v.terms.weights) for v in self.votes if VOTE_STRENGTH.get(v.vote, 0) < 0]
        high = sum(liked) / len(liked) if liked else 0.0
        low = sum(disliked) / len(disliked) if disliked else 0.0
        if liked and disliked:
            self._centre, spread = (high + low) / 2, (high - low) / 2
        else:
            self._centre, spread = 0.0, abs(high or low)
        shrink = len(self.votes) / (len(self.votes) + PRIOR_VOTES)
        self._scale = shrink / spread if spread > 1e-9 else 0.0
        if not self._scale:
            self.weights = {}

    @property
    def voted_ids(self) -> frozenset[str]:
        """The papers voted on (alerts leave them out: the person has seen them)."""
        return frozenset(v.paper_id for v in self.votes)

    @property
    def vote_count(self) -> int:
        return len(self.votes)

    @property
    def empty(self) -> bool:
        return not self.weights

    @property
    def has_threshold(self) -> bool:
        """Whether enough votes were given for the learned threshold to apply."""
        return self.vote_count >= THRESHOLD_MIN_VOTES and (self.disliked + self.fewer) > 0

    def strongest(self, *, positive: bool, count: int = 5) -> list[str]:
        """The readable terms weighted most up (or down)."""
        ranked = sorted(((w, t) for t, w in self.weights.items() if (w > 0) == positive),
                        key=lambda wt: (-abs(wt[0]), wt[1]))
        return [self.labels.get(t, t) for _, t in ranked[:count]]

    def _raw(self, weights: Mapping[str, float]) -> float:
        vector = _unit(weights, self._leave_out)
        return sum(self.weights.get(t, 0.0) * v for t, v in vector.items())

    def adjust(self, paper: Paper) -> Adjustment:
        """How this taste moves ``paper`` (cached per paper id)."""
        cached = self._cache.get(paper.paper_id)
        if cached is not None:
            return cached
        vector = _unit(paper_terms(paper).weights, self._leave_out)
        contributions = {t: self.weights[t] * v for t, v in vector.items() if t in self.weights}
        raw = sum(contributions.values())
        affinity = max(-MAX_AFFINITY, min(MAX_AFFINITY, (raw - self._centre) * self._scale))
        note = None
        if abs(affinity) >= NOTE_MIN_AFFINITY and contributions:
            term = max(contributions, key=lambda t: contributions[t] if affinity > 0 else -contributions[t])
            label = self.labels.get(term, term)
            if affinity > 0 and contributions[term] > 0:
                n = self._liked_by_term[term]
                note = f"you liked {n} paper{'s' if n != 1 else ''} on “{label}”"
            elif affinity < 0 and contributions[term] < 0:
                n = self._disliked_by_term[term]
                note = f"ranked lower: you turned down {n} paper{'s' if n != 1 else ''} on “{label}”"
        adjustment = Adjustment(affinity=affinity, multiplier=math.exp(GAIN * affinity), note=note)
        self._cache[paper.paper_id] = adjustment
        return adjustment


def learn(topic: str, votes: Sequence[Vote]) -> TopicTaste | None:
    """The taste learned from ``votes`` (newest first), or None when there is nothing to learn."""
    taste = TopicTaste(topic, votes)
    return None if taste.empty else taste


def personalise(ranked: Sequence[RankedPaper], taste: TopicTaste | None) -> list[RankedPaper]:
    """``ranked`` re-ranked for a person's taste; exactly ``ranked`` (as a list) without one.

    Scores are multiplied by the taste's bounded factor; papers clearly like
    those turned down are left out once the threshold applies, but at most
    :data:`MAX_DROPPED_SHARE` of the list, so the answer never goes blank.
    """
    if taste is None or taste.empty or not ranked:
        return list(ranked)
    scored = []
    for position, item in enumerate(ranked):
        adjustment = taste.adjust(item.paper)
        scored.append((item.score * adjustment.multiplier, position, item, adjustment))
    if taste.has_threshold:
        below = sorted((s for s in scored if s[3].affinity < -CUT), key=lambda s: s[3].affinity)
        may_drop = int(len(scored) * MAX_DROPPED_SHARE)
        dropped = {s[1] for s in below[:may_drop]}
        scored = [s for s in scored if s[1] not in dropped]
    scored.sort(key=lambda s: (-s[0], s[1]))
    out = []
    for score, _, item, adjustment in scored:
        why = item.matched_terms + ((adjustment.note,) if adjustment.note else ())
        out.append(replace(item, score=round(score, 4), matched_terms=why))
    return out


# --- validating what comes back from buttons (and typed votes) ----------------------------------


def parse_vote(raw: str) -> str:
    """A vote word (``up``, ``down``, ``fewer`` and a few aliases), or :class:`InputError`."""
    vote = _VOTE_ALIASES.get(raw.strip().casefold())
    if vote is None:
        raise InputError("A vote is `up`, `down` or `fewer`.")
    return vote


def parse_paper_id(raw: str) -> str:
    """An arXiv id (``2401.12345``, ``hep-th/9901001``) or an offline-sample id, or :class:`InputError`."""
    text = raw.strip()
    if len(text) > PAPER_ID_MAX or not (_ARXIV_ID.match(text) or _OLD_ARXIV_ID.match(text)
                                        or _SAMPLE_ID.match(text)):
        raise InputError("That is not a paper id I know the shape of (e.g. 2401.12345).")
    return text
