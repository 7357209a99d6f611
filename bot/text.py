"""Cleaning text that comes from outside: user input, paper titles, abstracts."""

from __future__ import annotations

import re
import unicodedata

from bot.matching import STOPWORDS, meaningful_words, words

# Control (Cc), format (Cf), surrogate (Cs) and private-use (Co) characters, except tab, newline,
# carriage return and ZWNJ/ZWJ (which carry meaning in Persian and in emoji sequences).
# tests/test_text.py checks this class against unicodedata for every code point.
_INVISIBLE = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\xad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2"
    "\u180e\u200b\u200e\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ud800-\udfff\ue000-\uf8ff"
    "\ufeff\ufff9-\ufffb\U000110bd\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3"
    "\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f\U000f0000-\U000ffffd\U00100000-\U0010fffd]"
)
# The same class restricted to ASCII, as a str.translate table (deletes each listed character).
_ASCII_INVISIBLE = {code: None for code in range(128) if _INVISIBLE.match(chr(code))}
# Letters and symbols that print as nothing (Hangul fillers, the blank Braille pattern, Khmer
# inherent vowels, the null notehead): in a topic they are spacing, not words.
_BLANKS = re.compile("[\u115f\u1160\u17b4\u17b5\u2800\u3164\uffa0\U0001d159]")
# What shows no glyph of its own: controls, formats (joiners), separators, lone combining marks.
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp", "Mn", "Me"})
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[])")
_QUOTES = "\"'“”‘’«»`"


class InputError(ValueError):
    """User input the bot refuses, with a message fit to show the user."""


def strip_controls(text: str) -> str:
    """Drop control and invisible formatting characters (bidi overrides included).

    Most text (titles, abstracts, names) is plain ASCII: it is checked and cleaned
    without the full Unicode class, several times faster.
    """
    if text.isascii():
        return text if text.isprintable() else text.translate(_ASCII_INVISIBLE)
    return _INVISIBLE.sub("", text)


def clean_line(text: str) -> str:
    """Controls stripped and all whitespace runs folded to one space."""
    # str.split() splits on exactly the characters ``\s`` matches (str.isspace) and drops the ends.
    return " ".join(strip_controls(text).split())


def normalize_topic(raw: str, *, max_length: int = 200, matchable: bool = True) -> str:
    """The canonical form of a topic: NFKC, no controls, folded case and spaces.

    "Diffusion  Models" and "diffusion models" normalize to the same string.
    Raises :class:`InputError` for an empty or over-long topic and, unless ``matchable`` is
    False, for a topic no paper could ever match (:func:`unmatchable_topic_reason`). Removing
    a topic passes ``matchable=False``, so a topic stored before this rule can still be removed.
    """
    text = clean_line(_BLANKS.sub(" ", unicodedata.normalize("NFKC", raw))).strip(_QUOTES).strip()
    text = text.casefold()
    if not text:
        if raw and not raw.isspace():
            raise InputError("That topic is only invisible characters (blank, joining or formatting "
                             "characters), so no paper could ever match it. Give a topic in words, "
                             "for example `generalization`.")
        raise InputError("Give a topic, for example `generalization` or `diffusion models`.")
    if len(text) > max_length:
        raise InputError(f"That topic is {len(text):,} characters long; the limit is {max_length}.")
    if matchable:
        problem = unmatchable_topic_reason(text)
        if problem:
            raise InputError(problem)
    return text


def unmatchable_topic_reason(topic: str) -> str | None:
    """Why no paper could ever match ``topic`` (a normalized topic), or None when one can.

    A topic must show something (not only joiners, blanks or lone combining marks), contain a
    letter or digit (not only punctuation or symbols), and have a word besides stop words
    (``the of and`` would otherwise match every paper).
    """
    if all(unicodedata.category(ch) in _INVISIBLE_CATEGORIES or _BLANKS.match(ch) for ch in topic):
        return ("That topic is only invisible characters (blank, joining or formatting characters), "
                "so no paper could ever match it. Give a topic in words, for example `generalization`.")
    found = words(topic)
    if not found:
        return ("That topic has no letters or digits, only punctuation or symbols, so no paper could ever "
                "match it. Give a topic in words, for example `generalization`.")
    if not meaningful_words(topic):
        common = ", ".join(f"“{w}”" for w in list(dict.fromkeys(w for w in found if w in STOPWORDS))[:5])
        return (f"That topic has only common words ({common}) that every paper contains, so it cannot pick "
                "out papers on a subject. Add a word that says what the papers are about, "
                "for example `generalization`.")
    return None


def first_sentence(text: str, *, limit: int = 300) -> str:
    """The first sentence of a paragraph, trimmed to ``limit`` characters at a word boundary."""
    text = clean_line(text)
    if not text:
        return ""
    sentence = _SENTENCE_END.split(text, maxsplit=1)[0]
    return shorten(sentence, limit)


def shorten(text: str, limit: int, *, ellipsis: str = "…") -> str:
    """``text`` cut to at most ``limit`` characters, at a word boundary when one is near."""
    if len(text) <= limit:
        return text
    cut = text[: max(0, limit - len(ellipsis))]
    space = cut.rfind(" ")
    if space > limit * 0.6:
        cut = cut[:space]
    return cut.rstrip(" ,;:-") + ellipsis
