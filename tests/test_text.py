"""Cleaning outside text."""

from __future__ import annotations

import sys
import unicodedata

from bot.text import clean_line, first_sentence, shorten, strip_controls

KEPT = {"\t", "\n", "\r", "\u200c", "\u200d"}


def test_invisible_class_matches_unicode_categories_for_every_code_point() -> None:
    """Every control/format/surrogate/private character is dropped; nothing visible is.

    The class also lists format characters of newer Unicode versions, which this
    Python's tables may still call unassigned (Cn).
    """
    missed, overreach = [], []
    for code in range(sys.maxunicode + 1):
        ch = chr(code)
        category = unicodedata.category(ch)
        dropped = strip_controls(ch) == ""
        if category in ("Cc", "Cf", "Cs", "Co") and ch not in KEPT and not dropped:
            missed.append(hex(code))
        if dropped and category not in ("Cc", "Cf", "Cs", "Co", "Cn"):
            overreach.append(hex(code))
    assert (missed, overreach) == ([], [])


def test_clean_line_folds_whitespace_and_drops_bidi_overrides() -> None:
    assert clean_line("  a\u202e b\n\tc\x00  ") == "a b c"
    assert clean_line("👩\u200d💻 ok") == "👩\u200d💻 ok"


def test_first_sentence_and_shorten() -> None:
    assert first_sentence("We study X. Then Y.") == "We study X."
    assert first_sentence("e.g. this is one sentence with 3.5 points") == "e.g. this is one sentence with 3.5 points"
    assert shorten("word " * 100, 50).endswith("…") and len(shorten("word " * 100, 50)) <= 50


def test_ascii_fast_path_cleans_exactly_like_the_unicode_class() -> None:
    """ASCII text takes a shortcut; it must give the same result as the full class and ``\\s`` folding."""
    import random
    import re

    from bot.text import _INVISIBLE

    def reference(text: str) -> str:
        return re.sub(r"\s+", " ", _INVISIBLE.sub("", text)).strip()

    rng = random.Random(12)
    alphabet = [chr(c) for c in range(0, 160)] + ["\u2028", "\u3000", "\u200b", "\u202e", "é", "\x85", "\xa0"]
    for _ in range(20_000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        assert clean_line(text) == reference(text), repr(text)
        assert strip_controls(text) == _INVISIBLE.sub("", text), repr(text)
