"""Topic relevance: which papers are about a topic, how much, and why — in the field's language.

A topic is read as a few *concepts*, each of which a paper can express in
several ways:

- the field's vocabulary (``bot/data/field_terms.txt``): ``OOD`` is also
  "out-of-distribution", ``vision language models`` is also ``VLM``;
- plural abbreviations are the abbreviation (``LLMs`` → ``LLM``);
- hyphenated and compound terms are phrases (``in-context`` must appear as
  "in context", not as "context" anywhere);
- word forms meet through their stems ("generalize", "generalisation" and
  "generalization"; Snowball, keeping "-iz-" so that "general" stays apart);
- question and filler words of long queries are dropped ("why do … fail to").

Each concept is scored with BM25F over the paper's fields (title 3, AI
keywords 2, abstract and AI summary 1, the abstract's first sentence 2;
saturating: a word's fifth mention adds little; a long form and its
abbreviation side by side are one mention), weighted by how rare it is in the batch (BM25's idf, shrunk toward 1
for small batches) and by whether it is a generic word of the field
("model", "learning", "data" count less). The relevance of a paper is the
weighted share of the topic it covers, in [0, 1], plus a bonus when the
concepts appear together as a phrase (in the title: +0.15, in the abstract:
+0.08) or near each other (+0.04).

A paper is **sent** (alerts; the first tier of ``/papers``) when it contains
every concept of a short topic (most of a long one) and its relevance reaches
:data:`ALERT_THRESHOLD`, chosen on ``benchmarks/relevance``. Papers between
:data:`LOWER_BAR` and the threshold may still be listed by ``/papers``, after the
sent ones, when Hugging Face's own search order vouches for them.

:class:`TopicIndex` turns many topics against many papers into set operations
on an inverted index, for daily alerts over tens of thousands of subscriptions.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache, partial
from importlib import resources

import snowballstemmer
from cachetools import LRUCache

from bot.models import Paper

FIELD_WEIGHTS: Mapping[str, float] = {"title": 3.0, "keywords": 2.0, "abstract": 1.0}
# Length normalisation (BM25F's b) against typical field lengths, so a score does not depend on the batch.
FIELD_B: Mapping[str, float] = {"title": 0.3, "keywords": 0.3, "abstract": 0.5}
TYPICAL_LENGTH: Mapping[str, float] = {"title": 12.0, "keywords": 8.0, "abstract": 200.0}
FIELD_ORDER = ("title", "keywords", "abstract")
LEAD_WEIGHT = 2.0  # a mention in the abstract's first sentence, where papers say what they are about
DEFINITION_GAP = 2  # tokens between a long form and its abbreviation ("models (LLMs)")
SATURATION = 1.5  # BM25's k1: the evidence x of a concept counts x / (x + k1)
NARROWER_FACTOR = 0.8  # evidence of a narrower kind of a concept ("domain generalization" for OOD)
WEAKEST_SHARE = 0.5  # share of the score that is the least-evidenced concept's
GENERIC_WEIGHT = 0.4  # share of a generic word of the field ("model", "learning") in a topic
IDF_PRIOR_DOCS = 20.0  # idf is shrunk toward 1 as if this many more papers had been seen
PHRASE_TITLE_BONUS = 0.15
PHRASE_ABSTRACT_BONUS = 0.08
PROXIMITY_BONUS = 0.04
PROXIMITY_WINDOW = 12  # tokens
LONG_TOPIC_COVERAGE = 0.7  # a topic of more than 3 concepts needs this share of its weight present
ALERT_THRESHOLD = 0.5  # relevance a paper needs to be sent (chosen on benchmarks/relevance)
LOWER_BAR = 0.25  # relevance below which /papers never lists a paper, whatever its search rank

_GROUP = re.compile(r"[^\W_]+(?:[-‐‑–][^\W_]+)*")
_HYPHEN = re.compile(r"[-‐‑–]")
_POSSESSIVE = re.compile(r"['’]s\b")
_ACRONYM_PLURAL = re.compile(r"^[A-Z][A-Za-z0-9]*[A-Z0-9]s$")
_ACRONYM_PLURALS = re.compile(r"(?<![^\W_])([A-Z][A-Za-z0-9]*[A-Z0-9])s(?![^\W_])")
_BRITISH = re.compile(r"is(ation|ations|e|ed|es|ing)$")
_SEPARATOR = "|"  # a token no form contains: phrases never run across keywords or fields

STOPWORDS = frozenset(
    """a an and are as at be by for from has have how in into is it its of on or that the their this
    to via vs versus was we what when where which while who why will with without our using use based
    towards toward paper papers new""".split()
)
# Words that make a question a question: dropped from topics, never matched.
QUESTION_WORDS = frozenset(
    """do does did doing done can could should would shall may might must was were been being am
    there any some about regarding whether whose whom they them these those i me my you your us
    find show give list tell please recent latest so such than then also just very more most""".split()
)
# Generic words of the field: they count, but less (they say little about what a paper is about).
GENERIC_WORDS = frozenset(
    """model models learn learning learned network networks neural deep method methods approach approaches
    data task tasks train training trained fail fails failure improve improves improving better well good
    effect effects affect affects role impact performance perform result results study studies analysis
    large small system systems framework work works problem problems""".split()
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


def _groups(text: str) -> list[list[str]]:
    """Word groups of ``text`` (a hyphenated compound is one group of parts), plural acronyms singular."""
    groups = []
    for group in _GROUP.findall(_POSSESSIVE.sub("", text) if "'" in text or "’" in text else text):
        parts = []
        for part in _HYPHEN.split(group) if not group.isalnum() else (group,):
            if part[-1] == "s" and part[0].isupper() and _ACRONYM_PLURAL.match(part):
                part = part[:-1]
            parts.append(part.lower() if part.isascii() else part.casefold())
        groups.append(parts)
    return groups


@lru_cache(maxsize=200_000)
def _key(word: str, abbreviations: frozenset[str]) -> str:
    """The stem of a lower-case word; "llms" is "llm" when LLM is a known abbreviation."""
    if word.endswith("s") and word[:-1] in abbreviations:
        word = word[:-1]
    return stem(word)


def words(text: str) -> list[str]:
    """Lower-case words of ``text`` (hyphenated words are also split into parts)."""
    found: list[str] = []
    for parts in _groups(text):
        if len(parts) > 1:
            found.append("-".join(parts))
        found.extend(parts)
    return found


def meaningful_words(text: str) -> tuple[str, ...]:
    """The words of a topic that can single out a paper: no stop words, first occurrence only.

    Empty for a topic of stop words only (``the of and``), punctuation only or invisible
    characters only: no paper could match such a topic for what it is about, so it is refused
    (:func:`bot.text.unmatchable_topic_reason`).
    """
    return tuple(dict.fromkeys(w for w in words(text) if "-" not in w and w not in STOPWORDS))


# --- the field's vocabulary ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FieldTerm:
    """One concept of the field and the ways papers write it (``OOD``, "out-of-distribution")."""

    name: str
    labels: tuple[str, ...]
    forms: tuple[tuple[str, ...], ...]  # stem sequences, parallel to ``labels``
    narrower_labels: tuple[str, ...] = ()  # kinds of this concept ("domain generalization" for OOD)
    narrower_forms: tuple[tuple[str, ...], ...] = ()


@dataclass(frozen=True, slots=True, eq=False)
class Vocabulary:
    """The field's abbreviations, long forms and spellings, and compounds that hide their last word."""

    terms: tuple[FieldTerm, ...]
    by_form: Mapping[tuple[str, ...], FieldTerm]
    abbreviations: frozenset[str]
    opaque: tuple[tuple[str, ...], ...]
    longest: int
    key: Callable[[str], str]  # the matching key of a lower-case word (cached)

    @classmethod
    def parse(cls, text: str) -> Vocabulary:
        """Read the ``field_terms.txt`` format; raises ValueError on a form claimed by two lines."""
        raw: list[list[str]] = []
        opaque_labels: list[str] = []
        narrower: list[tuple[str, list[str]]] = []
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("!"):
                opaque_labels.append(line[1:].strip())
                continue
            if ">" in line:
                broad, _, narrow = line.partition(">")
                narrower.append((broad.strip(), [n.strip() for n in narrow.split("|") if n.strip()]))
                continue
            raw.append([form.strip() for form in line.split("|") if form.strip()])
        abbreviations = frozenset(
            form.casefold() for labels in raw for form in labels if " " not in form and "-" not in form)
        terms: list[FieldTerm] = []
        by_form: dict[tuple[str, ...], FieldTerm] = {}
        for labels in raw:
            forms = tuple(_phrase_key(label, abbreviations) for label in labels)
            term = FieldTerm(name=labels[0], labels=tuple(labels), forms=forms)
            for form, label in zip(forms, labels):
                owner = by_form.get(form)
                if owner is not None and owner is not term:
                    raise ValueError(f"field term form {label!r} belongs to both {owner.name!r} and {term.name!r}")
                by_form[form] = term
            terms.append(term)
        for broad, narrow in narrower:
            owner = by_form.get(_phrase_key(broad, abbreviations))
            if owner is None:
                raise ValueError(f"field term {broad!r} (before '>') is not defined on a line of its own")
            labels_: list[str] = []
            forms_: list[tuple[str, ...]] = []
            for item in narrow:
                key = _phrase_key(item, abbreviations)
                kind = by_form.get(key)
                pairs = zip(kind.labels, kind.forms) if kind is not None else [(item, key)]
                for label, form in pairs:
                    if form not in owner.forms and form not in forms_:
                        labels_.append(label)
                        forms_.append(form)
            refined = FieldTerm(name=owner.name, labels=owner.labels, forms=owner.forms,
                                narrower_labels=owner.narrower_labels + tuple(labels_),
                                narrower_forms=owner.narrower_forms + tuple(forms_))
            terms[terms.index(owner)] = refined
            for form in owner.forms:
                by_form[form] = refined
        opaque = tuple(_phrase_key(label, abbreviations) for label in opaque_labels)
        return cls(terms=tuple(terms), by_form=by_form, abbreviations=abbreviations, opaque=opaque,
                   longest=max((len(f) for f in by_form), default=1),
                   key=partial(_key, abbreviations=abbreviations))


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[])")


def _first_sentence(text: str) -> str:
    return _SENTENCE_END.split(text, maxsplit=1)[0]


def _phrase_key(text: str, abbreviations: frozenset[str]) -> tuple[str, ...]:
    return tuple(_key(part, abbreviations) for parts in _groups(text) for part in parts)


@lru_cache(maxsize=1)
def field_vocabulary() -> Vocabulary:
    """The bundled vocabulary (``bot/data/field_terms.txt``), read once."""
    return Vocabulary.parse(resources.files("bot").joinpath("data/field_terms.txt").read_text(encoding="utf-8"))


# --- papers --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FieldText:
    """One field of a paper as a stem sequence (found in with ``tuple.index``, no per-paper index)."""

    tokens: tuple[str, ...]
    joined: Mapping[str, tuple[int, ...]]  # "over-parameterized" is also "overparameterized", at "over"
    lead: int = 0  # tokens of the first sentence (where an abstract states its subject)

    @classmethod
    def of(cls, texts: Iterable[str], vocabulary: Vocabulary) -> FieldText:
        tokens: list[str] = []
        joined: dict[str, list[int]] = {}
        key, append = vocabulary.key, tokens.append
        for text in texts:
            if tokens:
                append(_SEPARATOR)
            if "'" in text or "’" in text:
                text = _POSSESSIVE.sub("", text)
            text = _ACRONYM_PLURALS.sub(r"\1", text)  # what _groups does word by word, on the whole text
            for group in _GROUP.findall(text.lower() if text.isascii() else text.casefold()):
                if group.isalnum():  # the common case, one plain word
                    append(key(group))
                    continue
                parts = _HYPHEN.split(group)
                joined.setdefault(stem("".join(parts)), []).append(len(tokens))
                tokens.extend(key(part) for part in parts)
        return cls(tokens=tuple(tokens), joined={k: tuple(v) for k, v in joined.items()})

    def __contains__(self, stemmed: object) -> bool:
        return stemmed in self.tokens or stemmed in self.joined

    def find(self, form: tuple[str, ...]) -> list[int]:
        """Start positions of ``form`` (a stem sequence) in this field."""
        tokens, first, size = self.tokens, form[0], len(form)
        found: list[int] = []
        index = -1
        try:
            while True:
                index = tokens.index(first, index + 1)
                if size == 1 or tokens[index:index + size] == form:
                    found.append(index)
        except ValueError:
            pass
        if size == 1 and first in self.joined:
            found = sorted(found + list(self.joined[first]))
        return found


@dataclass(frozen=True, slots=True)
class PaperTerms:
    """A paper's fields as stem sequences, computed once per paper."""

    paper: Paper
    fields: Mapping[str, FieldText]
    stems: frozenset[str]

    @property
    def title(self) -> FieldText:
        return self.fields["title"]

    @classmethod
    def of(cls, paper: Paper) -> PaperTerms:
        """The terms of ``paper``, computed once per paper id and text.

        Keyed on the paper's id and the text the terms come from, not on the whole paper: the
        same paper fetched again (new upvotes, another feed day, another search) reuses them.
        """
        latest = _latest_terms.get(paper.paper_id)
        if latest is not None and latest.paper is paper:   # the same copy again (cached search): no work
            return latest
        terms = _paper_terms(paper.paper_id, paper.title, paper.summary, paper.ai_summary, paper.ai_keywords)
        terms = _latest_terms[paper.paper_id] = replace(terms, paper=paper)
        return terms

    @classmethod
    def compute(cls, paper: Paper, vocabulary: Vocabulary | None = None) -> PaperTerms:
        vocabulary = vocabulary or field_vocabulary()
        fields = {
            "title": FieldText.of([paper.title], vocabulary),
            "keywords": FieldText.of(paper.ai_keywords, vocabulary),
            "abstract": replace(FieldText.of([t for t in (paper.summary, paper.ai_summary or "") if t], vocabulary),
                                lead=sum(len(_HYPHEN.split(g)) for g in _GROUP.findall(_first_sentence(paper.summary)))),
        }
        stems = frozenset().union(*(f.tokens for f in fields.values()), *(f.joined for f in fields.values()))
        stems -= {_SEPARATOR}
        return cls(paper=paper, fields=fields, stems=stems)


# paper id -> its terms holding the copy last asked about (bounded like the cache below)
_latest_terms: LRUCache[str, PaperTerms] = LRUCache(maxsize=8192)


@lru_cache(maxsize=8192)
def _paper_terms(paper_id: str, title: str, summary: str, ai_summary: str | None,
                 ai_keywords: tuple[str, ...]) -> PaperTerms:
    return PaperTerms.compute(Paper(paper_id=paper_id, title=title, summary=summary, ai_summary=ai_summary,
                                    ai_keywords=ai_keywords))


# --- topics --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Concept:
    """One thing a topic asks for, and every way a paper may say it."""

    label: str  # as the topic says it ("OOD", "in-context learning", "generalization")
    forms: tuple[tuple[str, ...], ...]
    form_labels: tuple[str, ...]  # how an explanation names each form
    generic: bool = False
    factors: tuple[float, ...] = ()  # evidence per form (1 for the concept, less for a narrower kind of it)

    @property
    def weight(self) -> float:
        return GENERIC_WEIGHT if self.generic else 1.0


@dataclass(frozen=True, slots=True)
class Evidence:
    """Where one concept was found in one paper."""

    concept: Concept
    strength: float  # saturated BM25F evidence in [0, 1)
    found: tuple[tuple[str, tuple[str, ...]], ...]  # (form label, fields it was found in)
    starts: Mapping[str, tuple[int, ...]]  # field -> start positions


@dataclass(frozen=True, slots=True)
class Relevance:
    """How well a paper fits a topic: a score in [0, 1], whether it is sent, and why, in words."""

    score: float
    sent: bool
    reasons: tuple[str, ...]


def content_terms(text: str) -> tuple[tuple[str, str], ...]:
    """(word, stem) pairs of the meaningful words of a topic (no stop or question words), first occurrence only.

    Empty when the topic has nothing to match on ("the", "why is it"): see :func:`can_match`.
    """
    vocabulary = field_vocabulary()
    seen: set[str] = set()
    terms: list[tuple[str, str]] = []
    for parts in _groups(text):
        for word in parts:
            if word in STOPWORDS or word in QUESTION_WORDS or (len(word) < 2 and not word.isdigit()):
                continue
            stemmed = _key(word, vocabulary.abbreviations)
            if stemmed not in seen:
                seen.add(stemmed)
                terms.append((word, stemmed))
    return tuple(terms)


def can_match(text: str) -> bool:
    """Whether a topic has any word that papers can be matched on (not only stop or question words)."""
    return bool(content_terms(text))


class Topic:
    """A parsed topic, ready to score papers."""

    __slots__ = ("text", "concepts", "required", "_opaque", "_vocabulary", "_hidden")

    def __init__(self, text: str, vocabulary: Vocabulary | None = None) -> None:
        self.text = text
        self._vocabulary = vocabulary or field_vocabulary()
        self.concepts = _concepts(text, self._vocabulary)
        strong = [c for c in self.concepts if not c.generic] or list(self.concepts)
        self.required = tuple(strong) if len(strong) <= 3 else ()
        query = _phrase_key(text, self._vocabulary.abbreviations)
        self._opaque = tuple(o for o in self._vocabulary.opaque
                             if not any(query[i:i + len(o)] == o for i in range(len(query))))
        self._hidden: dict[tuple[str, ...], tuple[tuple[str, ...], ...]] = {}

    @property
    def terms(self) -> tuple[tuple[str, str], ...]:
        """The topic's content words as (word, stem) pairs (see :func:`content_terms`)."""
        return content_terms(self.text)

    def evidence(self, doc: PaperTerms, concept: Concept) -> Evidence | None:
        """Where ``concept`` occurs in ``doc`` (None when it does not)."""
        found: dict[str, list[str]] = {}
        hits: dict[str, list[tuple[int, int, float]]] = {}  # field -> (start, end, factor)
        factors = concept.factors or (1.0,) * len(concept.forms)
        stems = doc.stems
        for form, label, factor in zip(concept.forms, concept.form_labels, factors):
            if form[0] not in stems or (len(form) > 1 and not all(s in stems for s in form)):
                continue
            hidden_by = self._opaque_for(form)
            for name in FIELD_ORDER:
                text = doc.fields[name]
                starts = text.find(form)
                if hidden_by and starts:
                    starts = [p for p in starts if not _inside(text, p, len(form), hidden_by)]
                if not starts:
                    continue
                fields = found.setdefault(label, [])
                if name not in fields:
                    fields.append(name)
                hits.setdefault(name, []).extend((p, p + len(form), factor) for p in starts)
        if not found:
            return None
        mass = 0.0
        positions: dict[str, tuple[int, ...]] = {}
        for name, spans in hits.items():
            # "large language models (LLMs)" is one mention: occurrences that overlap or follow
            # within DEFINITION_GAP tokens of each other count once, at their best factor.
            spans.sort()
            text = doc.fields[name]
            lead = text.lead
            counted = 0.0
            starts: list[int] = []
            first, last, best = spans[0]
            for start, end, factor in spans[1:]:
                if start <= last + DEFINITION_GAP:
                    last = max(last, end)
                    best = max(best, factor)
                    continue
                counted += best * (LEAD_WEIGHT if first < lead else 1.0)
                starts.append(first)
                first, last, best = start, end, factor
            counted += best * (LEAD_WEIGHT if first < lead else 1.0)
            starts.append(first)
            norm = 1 - FIELD_B[name] + FIELD_B[name] * len(text.tokens) / TYPICAL_LENGTH[name]
            mass += FIELD_WEIGHTS[name] * counted / norm
            positions[name] = tuple(starts)
        return Evidence(concept=concept, strength=mass / (mass + SATURATION),
                        found=tuple((label, tuple(fields)) for label, fields in found.items()), starts=positions)

    def _opaque_for(self, form: tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
        """The compounds of another meaning that can contain ``form`` ("hate speech" for "speech")."""
        hidden = self._hidden.get(form)
        if hidden is None:
            hidden = self._hidden[form] = tuple(
                c for c in self._opaque
                if len(c) > len(form) and any(c[i:i + len(form)] == form for i in range(len(c) - len(form) + 1)))
        return hidden

    def relevance(self, doc: PaperTerms, *, weights: Mapping[Concept, float] | None = None,
                  threshold: float = ALERT_THRESHOLD) -> Relevance:
        """How relevant ``doc`` is; ``weights`` are the concepts' idf in a batch (1 each when omitted)."""
        found = [(c, self.evidence(doc, c)) for c in self.concepts]
        return self.judge(found, weights=weights, threshold=threshold)

    def judge(self, found: Sequence[tuple[Concept, Evidence | None]], *,
              weights: Mapping[Concept, float] | None = None, threshold: float = ALERT_THRESHOLD) -> Relevance:
        """A relevance from per-concept evidence (``relevance`` and :class:`TopicIndex` share it)."""
        if not self.concepts:
            return Relevance(0.0, False, ())
        total = covered = strength = 0.0
        weakest = 1.0
        present: list[Evidence] = []
        for concept, evidence in found:
            weight = concept.weight * (weights.get(concept, 1.0) if weights else 1.0)
            total += weight
            if evidence is not None:
                covered += weight
                strength += weight * evidence.strength
                present.append(evidence)
                if not concept.generic:
                    weakest = min(weakest, evidence.strength)
        if not present:
            return Relevance(0.0, False, ())
        # A topic is only as present as its least-evidenced concept: "LLM reasoning" is not a paper
        # about LLMs that says "reasoning" once.
        mean = strength / total
        score = (1 - WEAKEST_SHARE) * mean + WEAKEST_SHARE * min(weakest, mean)
        phrase = self._together(present) if len(self.concepts) > 1 and len(present) == len(self.concepts) else None
        if phrase:
            score += {"title": PHRASE_TITLE_BONUS, "keywords": PHRASE_TITLE_BONUS,
                      "abstract": PHRASE_ABSTRACT_BONUS, "near": PROXIMITY_BONUS}[phrase]
        found_concepts = {e.concept for e in present}
        if self.required:
            complete = all(c in found_concepts for c in self.required)
        else:
            complete = covered >= LONG_TOPIC_COVERAGE * total
        if not complete:
            score *= covered / total
        score = round(min(score, 1.0), 4)
        reasons = tuple(self._reasons(present, phrase))
        return Relevance(score=score, sent=complete and score >= threshold, reasons=reasons)

    def _together(self, present: Sequence[Evidence]) -> str | None:
        """Where the concepts appear together: 'title'/'keywords'/'abstract' (as a phrase), 'near', or None."""
        near = False
        for name in FIELD_ORDER:
            lists = [e.starts.get(name) for e in present]
            if not all(lists):
                continue
            span = _smallest_window([list(s) for s in lists if s])
            size = sum(max(len(f) for f in e.concept.forms) for e in present)
            if span <= size + 1:
                return name
            near = near or span <= PROXIMITY_WINDOW
        return "near" if near else None

    def _reasons(self, present: Sequence[Evidence], phrase: str | None) -> Iterable[str]:
        if phrase and phrase != "near":
            yield f"“{self.text}” as a phrase ({phrase})"
        for evidence in present:
            label = evidence.concept.label
            for form_label, fields in evidence.found:
                where = ", ".join(fields)
                if _same(form_label, label):
                    yield f"{label} ({where})"
                else:
                    yield f"{label} → {form_label} ({where})"


def _inside(text: FieldText, start: int, size: int, compounds: tuple[tuple[str, ...], ...]) -> bool:
    """Whether the occurrence at ``start`` only exists inside one of ``compounds``."""
    for compound in compounds:
        for offset in range(len(compound) - size + 1):
            begin = start - offset
            if begin >= 0 and text.tokens[begin:begin + len(compound)] == compound:
                return True
    return False


@lru_cache(maxsize=20_000)
def _same(a: str, b: str) -> bool:
    vocabulary = field_vocabulary()
    return _phrase_key(a, vocabulary.abbreviations) == _phrase_key(b, vocabulary.abbreviations)


def _smallest_window(position_lists: list[list[int]]) -> int:
    """The smallest span (last start − first start) holding one position from every list."""
    events = sorted((p, i) for i, positions in enumerate(position_lists) for p in positions)
    need = len(position_lists)
    counts = [0] * need
    have = 0
    best = math.inf
    left = 0
    for right, (position, which) in enumerate(events):
        if counts[which] == 0:
            have += 1
        counts[which] += 1
        while have == need:
            best = min(best, position - events[left][0])
            counts[events[left][1]] -= 1
            if counts[events[left][1]] == 0:
                have -= 1
            left += 1
    return int(best) if best != math.inf else 1 << 30


@lru_cache(maxsize=4096)
def _concepts(text: str, vocabulary: Vocabulary) -> tuple[Concept, ...]:
    return _parse_concepts(text, vocabulary)


def _parse_concepts(text: str, vocabulary: Vocabulary) -> tuple[Concept, ...]:
    """The concepts of a topic: field terms first (longest form wins), then hyphenated phrases, then words."""
    tokens: list[tuple[str, str, int]] = []  # (word as typed, key, group)
    for group, parts in enumerate(_groups(text)):
        tokens.extend((part, _key(part, vocabulary.abbreviations), group) for part in parts)
    keys = [key for _, key, _ in tokens]
    concepts: list[Concept] = []
    i = 0
    while i < len(tokens):
        for size in range(min(vocabulary.longest, len(tokens) - i), 0, -1):
            term = vocabulary.by_form.get(tuple(keys[i:i + size]))
            if term is not None:
                typed = _typed(tokens[i:i + size])
                label = _abbreviation_label(term, tuple(keys[i:i + size])) if size == 1 else typed
                concepts.append(Concept(
                    label=label, forms=term.forms + term.narrower_forms,
                    form_labels=term.labels + term.narrower_labels,
                    factors=(1.0,) * len(term.forms) + (NARROWER_FACTOR,) * len(term.narrower_forms)))
                i += size
                break
        else:
            group = tokens[i][2]
            members = [t for t in tokens[i:] if t[2] == group]
            if len(members) > 1:
                parts = tuple(key for _, key, _ in members)
                joined = stem("".join(word for word, _, _ in members))
                typed = _typed(members)
                concepts.append(Concept(label=typed, forms=(parts, (joined,)), form_labels=(typed, typed)))
                i += len(members)
                continue
            word, key, _ = tokens[i]
            i += 1
            if word in STOPWORDS or word in QUESTION_WORDS or (len(word) < 2 and not word.isdigit()):
                continue
            concepts.append(Concept(label=word, forms=((key,),), form_labels=(word,), generic=word in GENERIC_WORDS))
    unique = list({c.forms: c for c in reversed(concepts)}.values())[::-1]
    if not unique:  # only stop words ("the"): match them literally rather than never
        unique = [Concept(label=word, forms=((key,),), form_labels=(word,)) for word, key, _ in tokens]
        unique = list({c.forms: c for c in reversed(unique)}.values())[::-1]
    return tuple(unique)


def _typed(tokens: Sequence[tuple[str, str, int]]) -> str:
    """The words as typed, hyphens restored within a group."""
    out = ""
    for index, (word, _, group) in enumerate(tokens):
        if index:
            out += "-" if tokens[index - 1][2] == group else " "
        out += word
    return out


def _abbreviation_label(term: FieldTerm, key: tuple[str, ...]) -> str:
    """An abbreviation as the field writes it ("ood" typed is shown as "OOD")."""
    for form, label in zip(term.forms, term.labels):
        if form == key:
            return label
    return term.name


# --- many topics, many papers ----------------------------------------------------------------------


class TopicIndex:
    """Many topics matched against many papers through an inverted stem index.

    The index holds only the stems some topic asked for (built on first use), so one search over
    50 candidates does not pay for indexing every word of every abstract.
    """

    def __init__(self, papers: Sequence[Paper]) -> None:
        self.docs = [PaperTerms.of(p) for p in papers]
        self._postings: dict[str, frozenset[int]] = {}
        self._topics: dict[str, Topic] = {}

    def _with_stem(self, stemmed: str) -> frozenset[int]:
        found = self._postings.get(stemmed)
        if found is None:
            found = self._postings[stemmed] = frozenset(
                index for index, doc in enumerate(self.docs) if stemmed in doc.stems)
        return found

    def topic(self, text: str) -> Topic:
        cached = self._topics.get(text)
        if cached is None:
            cached = self._topics[text] = Topic(text)
        return cached

    def _docs_with(self, concept: Concept) -> frozenset[int]:
        """Papers holding every stem of some form of ``concept`` (a superset of those holding the form)."""
        found: set[int] = set()
        for form in concept.forms:
            sets = [self._with_stem(s) for s in form]
            if all(sets):
                found |= frozenset.intersection(*sets)  # type: ignore[arg-type]
        return frozenset(found)

    def weights(self, topic: Topic) -> dict[Concept, float]:
        """Each concept's idf in this batch, shrunk toward 1 for small batches."""
        n = len(self.docs)
        weights = {}
        for concept in topic.concepts:
            df = len(self._docs_with(concept))
            idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
            weights[concept] = (n * idf + IDF_PRIOR_DOCS) / (n + IDF_PRIOR_DOCS)
        return weights

    def assess(self, text: str, *, threshold: float = ALERT_THRESHOLD,
               floor: float = 0.0) -> list[tuple[PaperTerms, Relevance]]:
        """Every paper holding some concept of the topic with relevance above ``floor``, best first."""
        topic = self.topic(text)
        return self._assess(topic, self._candidates(topic, complete_only=False), threshold, floor)

    def match(self, text: str, *, threshold: float = ALERT_THRESHOLD) -> list[tuple[PaperTerms, Relevance]]:
        """Papers sent for one topic (relevance ≥ ``threshold``, every concept present), best first."""
        topic = self.topic(text)
        results = self._assess(topic, self._candidates(topic, complete_only=True), threshold, threshold)
        return [(doc, rel) for doc, rel in results if rel.sent]

    def _candidates(self, topic: Topic, *, complete_only: bool) -> set[int]:
        sets = {c: self._docs_with(c) for c in topic.concepts}
        if complete_only and topic.required:
            return set(frozenset.intersection(*(sets[c] for c in topic.required)))
        return set().union(*sets.values()) if sets else set()

    def _assess(self, topic: Topic, candidates: Iterable[int], threshold: float,
                floor: float) -> list[tuple[PaperTerms, Relevance]]:
        weights = self.weights(topic)
        results = []
        for index in candidates:
            doc = self.docs[index]
            relevance = topic.relevance(doc, weights=weights, threshold=threshold)
            if relevance.sent or relevance.score > floor:
                results.append((doc, relevance))
        results.sort(key=lambda pair: (-pair[1].score, -pair[0].paper.upvotes, pair[0].paper.title))
        return results

    def match_many(self, topics: Iterable[str]) -> dict[str, list[tuple[PaperTerms, Relevance]]]:
        """Each distinct topic's matches (computed once per distinct topic)."""
        return {text: self.match(text) for text in dict.fromkeys(topics)}
