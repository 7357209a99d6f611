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
