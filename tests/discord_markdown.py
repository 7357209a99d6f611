"""What Discord would render as markup in a piece of message text: a small reader for the tests.

Built from Discord's published markdown rules (support article "Markdown Text 101": bold,
italics, underline, strike-through, spoilers, code, headings, subtext, lists, block quotes,
masked links; "Discord Developer Docs, Reference, Message Formatting": ``<@id>``, ``<@&id>``,
``<#id>``, ``</name:id>``, ``<:emoji:id>``, ``<t:unix:style>``) and from the escape rule of the
simple-markdown parser Discord's client uses: a backslash before any ASCII punctuation shows that
character literally and starts no markup.
"""

from __future__ import annotations

import re

_LINE_MARKUP = re.compile(r"^[ \t]*(#{1,3} |-# |>|[-*+] |\d+\. )")
_INLINE_TOKENS = ("**", "||", "`", "~~", "__", "<t:", "<@", "<#", "</", "<:", "<a:", "@everyone", "@here")
_MASKED_LINK = re.compile(r"\[([^\]\n]*)\]\(\s*<?([^)\s>]+)>?\s*\)")
ESCAPED = "\x00"          # stands for a character shown literally because of its backslash


def unescape(text: str) -> str:
    """``text`` with every backslash-escaped punctuation character replaced by :data:`ESCAPED`."""
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1].isascii() and not text[i + 1].isalnum() \
                and not text[i + 1].isspace():
            out.append(ESCAPED)
            i += 2
            continue
        out.append(text[i])
        i += 1
    return "".join(out)


def live_markup(text: str) -> list[str]:
    """Every construct Discord would render in ``text`` (line-start markers, inline tokens, masked links)."""
    plain = unescape(text)
    found = [f"line {line[:12]!r}" for line in plain.split("\n") if _LINE_MARKUP.match(line)]
    found += [token for token in _INLINE_TOKENS if token in plain]
    found += [f"link {m[2]}" for m in _MASKED_LINK.finditer(plain)]
    return found


def live_links(text: str) -> list[str]:
    """The targets of the masked links Discord would render in ``text``."""
    return [m[2] for m in _MASKED_LINK.finditer(unescape(text))]
