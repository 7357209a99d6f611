"""Replies as Slack Block Kit: pure functions, no network, no slack_sdk.

Every string in a :class:`~bot.models.Reply` is plain text from outside (paper
titles, abstracts, author names, topics typed by people), so each one is
escaped (``&``, ``<``, ``>``) before the renderer adds its own mrkdwn and
``<url|label>`` links: a paper titled ``<!channel>`` shows as text and pings
no one. Every message stays inside Slack's limits: at most 50 blocks, section
text at most 3000 characters, header at most 150, all block text under
:data:`MAX_TOTAL_TEXT`; long lists are cut with "and N more".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from adapters.controls import SLACK_VALUE_LIMIT, ControlRef, control_id, parse_control_id
from bot.models import Link, RankedPaper, Reply, ReplyKind, Section
from bot.text import clean_line

MAX_BLOCKS = 50
MAX_SECTION_TEXT = 3000
MAX_HEADER_TEXT = 150
MAX_CONTEXT_TEXT = 2000
MAX_CONTEXT_ELEMENTS = 10
MAX_BUTTON_TEXT = 75
MAX_TOTAL_TEXT = 11_500          # Slack rejects messages whose blocks carry ~12,000+ characters
MAX_FALLBACK_TEXT = 1000

TITLE_LIMIT = 300
AUTHORS_LIMIT = 300
SUMMARY_LIMIT = 500
WHY_LIMIT = 200
URL_LIMIT = 400
NOTICE_LIMIT = 600
MAX_NOTICES = 3
FOOTER_LIMIT = 600
ITEM_LIMIT = 250

SHARE_ACTION = "paperboy_share"
SUBSCRIBE_ACTION = "paperboy_subscribe"
# 👍 / 👎 / "fewer like this" under each paper; the value is an adapters.controls id,
# "paperboy:vote/<paper id>:<topic>" (at most ~290 of Slack's 2,000 characters), read back through the
# same validation as a typed vote.
FEEDBACK_ACTIONS = {"up": "paperboy_feedback_up", "down": "paperboy_feedback_down",
                    "fewer": "paperboy_feedback_fewer"}
VOTE_ACTION = "vote"
FEEDBACK_LABELS = {"up": "👍", "down": "👎", "fewer": "Fewer like this"}
FEEDBACK_KINDS = (ReplyKind.SEARCH, ReplyKind.PERSONAL_ALERT)

_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_SLACK_ID = re.compile(r"^[UWB][A-Z0-9]{1,30}$")

DEFAULT_FOOTERS = {
    ReplyKind.CHANNEL_DIGEST: "Change the time: /papers channel on HH:MM Area/City · stop it: /papers channel off",
    ReplyKind.PERSONAL_ALERT: "Manage your topics: /papers subscriptions, or open Paperboy's Home tab",
}


# --- escaping ----------------------------------------------------------------------------


def escape(text: str) -> str:
    """``text`` with Slack's three control characters escaped."""
    for raw, entity in _ESCAPES.items():   # "&" first (dict order): no double escaping
        text = text.replace(raw, entity)
    return text


def escape_fit(text: str, limit: int, *, single_line: bool = True) -> str:
    """``text`` escaped and cut so the escaped form is at most ``limit`` characters.

    The cut never splits an entity such as ``&amp;``; a cut string ends with "…".
    """
    if single_line:
        text = clean_line(text)
    escaped = escape(text)
    if len(escaped) <= limit:
        return escaped
    out: list[str] = []
    used = 0
    for ch in text:
        piece = _ESCAPES.get(ch, ch)
        if used + len(piece) > limit - 1:
            break
        out.append(piece)
        used += len(piece)
    return "".join(out).rstrip() + "…"


def safe_url(url: str | None) -> str | None:
    """A URL fit for ``<url|label>``: http(s) only, escaped, no ``|``, not absurdly long."""
    if not url:
        return None
    url = url.strip()
    if not url.startswith(("https://", "http://")) or any(ch.isspace() for ch in url):
        return None
    url = escape(url.replace("|", "%7C"))
    return url if len(url) <= URL_LIMIT else None


def link(url: str | None, label: str, *, limit: int = TITLE_LIMIT) -> str:
    """``<url|label>`` with the label escaped, or just the escaped label when the URL is unusable."""
    text = escape_fit(label, limit)
    target = safe_url(url)
    return f"<{target}|{text}>" if target else text


# --- block helpers ---------------------------------------------------------------------------


def mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text}


def plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text, "emoji": True}


def section_block(text: str) -> dict[str, Any]:
    return {"type": "section", "text": mrkdwn(text[:MAX_SECTION_TEXT])}


def header_block(title: str) -> dict[str, Any]:
    return {"type": "header", "text": plain(escape_fit(title, MAX_HEADER_TEXT))}


def context_block(*texts: str) -> dict[str, Any]:
    return {"type": "context",
            "elements": [mrkdwn(t[:MAX_CONTEXT_TEXT]) for t in texts[:MAX_CONTEXT_ELEMENTS]]}


def button(text: str, action_id: str, value: str, *, style: str | None = None) -> dict[str, Any]:
    element: dict[str, Any] = {"type": "button", "text": plain(escape_fit(text, MAX_BUTTON_TEXT)),
                               "action_id": action_id, "value": value[:2000]}
    if style:
        element["style"] = style
    return element


def iter_texts(node: Any) -> Iterator[str]:
    """Every ``text`` string inside blocks (what Slack counts against its size limit)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "text" and isinstance(value, str):
                yield value
            else:
                yield from iter_texts(value)
    elif isinstance(node, list):
        for item in node:
            yield from iter_texts(item)


def block_text_length(blocks: Iterable[dict[str, Any]]) -> int:
    """Total characters of text in ``blocks``."""
    return sum(len(t) for t in iter_texts(list(blocks)))


@dataclass
class _Budget:
    """Blocks and characters still free in one message."""

    blocks: list[dict[str, Any]] = field(default_factory=list)
    max_blocks: int = MAX_BLOCKS
    max_text: int = MAX_TOTAL_TEXT
    used_text: int = 0

    def fits(self, block: dict[str, Any], *, reserve_blocks: int = 0, reserve_text: int = 0) -> bool:
        return (len(self.blocks) + 1 + reserve_blocks <= self.max_blocks
                and self.used_text + block_text_length([block]) + reserve_text <= self.max_text)

    def add(self, block: dict[str, Any]) -> None:
        self.blocks.append(block)
        self.used_text += block_text_length([block])


# --- papers ------------------------------------------------------------------------------------


def _paper_date(item: RankedPaper) -> str:
    paper = item.paper
    if paper.published_at:
        return paper.published_at.strftime("%Y-%m-%d")
    return paper.feed_date.isoformat() if paper.feed_date else ""


def _links_line(links: Iterable[Link]) -> list[str]:
    return [f"<{url}|{escape_fit(lk.label, 60)}>" for lk in links if (url := safe_url(lk.url))]


def paper_text(item: RankedPaper, *, numbered: bool = True) -> str:
    """One paper as mrkdwn: linked title; authors · date · ▲ upvotes; summary; links; why it matched."""
    paper = item.paper
    title = link(paper.page_url, paper.title or "(untitled)", limit=TITLE_LIMIT)
    number = f"{item.rank}. " if numbered and item.rank else ""
    lines = [f"*{number}{title}*"]
    meta = [escape_fit(item.authors_line, AUTHORS_LIMIT) if item.authors_line else "",
            _paper_date(item), f"▲ {paper.upvotes:,}"]
    lines.append(" · ".join(m for m in meta if m))
    summary = item.summary_line or ""
    if summary.strip():
        lines.append(escape_fit(summary, SUMMARY_LIMIT))
    links = _links_line(item.links)
    why = ""
    if item.matched_terms:
        why = "_Why it matched: " + escape_fit(", ".join(item.matched_terms), WHY_LIMIT) + "_"
    # Drop trailing links until the whole text fits one section (it always does without them).
    while links and len("\n".join([*lines, " · ".join(links), why])) > MAX_SECTION_TEXT:
        links.pop()
    if links:
        lines.append(" · ".join(links))
    if why:
        lines.append(why)
    return "\n".join(lines)[:MAX_SECTION_TEXT]


def _more_text(count: int, what: str = "more") -> str:
    return f"… and {count:,} {what}"


# --- the message --------------------------------------------------------------------------------


def _lines_text(lines: Iterable[str], limit: int = MAX_SECTION_TEXT) -> str:
    """Paragraphs, escaped, cut at a paragraph boundary with "and N more" when too long."""
    lines = [escape_fit(line, limit - 40) for line in lines if line and line.strip()]
    out: list[str] = []
    for index, line in enumerate(lines):
        rest = len(lines) - index
        if len("\n".join([*out, line])) > limit - 40:
            out.append(_more_text(rest))
            break
        out.append(line)
    return "\n".join(out)


def _items_text(items: Iterable[str]) -> str:
    return _lines_text([f"• {item}" for item in items])


def fallback_text(reply: Reply) -> str:
    """The notification and screen-reader text: the title and the first paper titles."""
    parts = [clean_line(reply.title)]
    papers = reply.papers
    if papers:
        parts.append("; ".join(f"{p.rank or i + 1}. {clean_line(p.paper.title)}" for i, p in enumerate(papers[:5])))
    elif reply.lines:
        parts.append(clean_line(reply.lines[0]))
    return escape_fit(" — ".join(p for p in parts if p), MAX_FALLBACK_TEXT) or "Paperboy"


def _action_buttons(reply: Reply) -> dict[str, Any] | None:
    if reply.kind is not ReplyKind.SEARCH or not reply.topic:
        return None
    elements = []
    if reply.papers:
        elements.append(button("Share in channel", SHARE_ACTION, reply.topic, style="primary"))
    elements.append(button(f"Subscribe to “{clean_line(reply.topic)}”", SUBSCRIBE_ACTION, reply.topic))
    return {"type": "actions", "elements": elements}


def feedback_value(paper_id: str, topic: str) -> str | None:
    """What a feedback button carries (the paper and the topic it was shown for); None when a control
    cannot carry the paper's id (offline-sample papers)."""
    try:
        return control_id(VOTE_ACTION, topic, arg=paper_id, limit=SLACK_VALUE_LIMIT)
    except ValueError:
        return None


def parse_feedback_value(value: str) -> ControlRef | None:
    """The vote control in a feedback button's value (paper id in ``arg``), or None when it is not one."""
    control = parse_control_id(value)
    return control if control is not None and control.action == VOTE_ACTION and control.arg else None


def feedback_block(item: RankedPaper, topic: str) -> dict[str, Any] | None:
    """The 👍 / 👎 / "Fewer like this" buttons under one paper."""
    value = feedback_value(item.paper.paper_id, topic)
    if value is None:
        return None
    return {"type": "actions",
            "elements": [button(FEEDBACK_LABELS[vote], action_id, value)
                         for vote, action_id in FEEDBACK_ACTIONS.items()]}


def _footer_texts(reply: Reply, shared_by: str | None) -> list[str]:
    texts = []
    if shared_by and _SLACK_ID.match(shared_by):
        texts.append(f"Shared by <@{shared_by}>")
    footer = reply.footer or DEFAULT_FOOTERS.get(reply.kind)
    if footer and footer.strip():
        texts.append(escape_fit(footer, FOOTER_LIMIT))
    return texts


def _render_sections(budget: _Budget, sections: tuple[Section, ...], *, reserve_blocks: int,
                     reserve_text: int, feedback: bool = False) -> None:
    """Add sections' papers (with their feedback buttons) while they fit, then "and N more" for the rest."""
    # Room for this section's "and N more" and for the final "and N more in other topics".
    more_blocks, more_text = 2, 120
    for index, section in enumerate(sections):
        if section.heading:
            heading = section_block(f"*{escape_fit(section.heading, 200)}*")
            if index:
                divider = {"type": "divider"}
                if budget.fits(divider, reserve_blocks=reserve_blocks + more_blocks + 2):
                    budget.add(divider)
            if not budget.fits(heading, reserve_blocks=reserve_blocks + more_blocks + 1,
                               reserve_text=reserve_text + more_text):
                _add_rest(budget, sections[index:], 0)
                return
            budget.add(heading)
        shown = 0
        for item in section.papers:
            block = section_block(paper_text(item))
            buttons = feedback_block(item, section.topic) if feedback and section.topic else None
            extra_blocks = 1 if buttons else 0
            extra_text = block_text_length([buttons]) if buttons else 0
            if not budget.fits(block, reserve_blocks=reserve_blocks + more_blocks + extra_blocks,
                               reserve_text=reserve_text + more_text + extra_text):
                break
            budget.add(block)
            if buttons:
                budget.add(buttons)
            shown += 1
        more = section.more + len(section.papers) - shown
        if more:
            budget.add(context_block(_more_text(more)))
        if shown < len(section.papers):
            _add_rest(budget, sections[index + 1:], 0)
            return


def _add_rest(budget: _Budget, sections: tuple[Section, ...], already: int) -> None:
    rest = already + sum(len(s.papers) + s.more for s in sections)
    if rest:
        topics = sum(1 for s in sections if s.papers or s.more)
        where = f"more in {topics} other topic{'s' if topics != 1 else ''}" if topics > 1 else "more"
        budget.add(context_block(_more_text(rest, where)))


def render_message(reply: Reply, *, interactive: bool = True, shared_by: str | None = None,
                   feedback: bool = True) -> dict[str, Any]:
    """A reply as a Slack message body: ``{"text": fallback, "blocks": [...]}``.

    ``interactive`` adds the "Share in channel" and "Subscribe" buttons to search
    answers; ``shared_by`` (a Slack user id) credits whoever shared it;
    ``feedback`` puts 👍 / 👎 / "Fewer like this" under each paper of search
    answers and personal alerts.
    """
    budget = _Budget()
    if reply.kind is ReplyKind.ERROR:
        budget.add(section_block(f":warning: *{escape_fit(reply.title, 300)}*"))
    else:
        budget.add(header_block(reply.title if reply.title.strip() else "Paperboy"))
    if reply.notices:
        budget.add(context_block(*(f":information_source: {escape_fit(n, NOTICE_LIMIT)}"
                                   for n in reply.notices[:MAX_NOTICES])))  # never empty: the emoji prefix
    for text in (_lines_text(reply.lines), _items_text(reply.items)):
        if text.strip():             # Slack rejects empty text objects
            budget.add(section_block(text))

    tail: list[dict[str, Any]] = []
    actions = _action_buttons(reply) if interactive else None
    if actions:
        tail.append(actions)
    footer_texts = _footer_texts(reply, shared_by)
    if footer_texts:
        tail.append(context_block(*footer_texts))

    _render_sections(budget, reply.sections, reserve_blocks=len(tail), reserve_text=block_text_length(tail),
                     feedback=feedback and reply.kind in FEEDBACK_KINDS)
    for block in tail:
        budget.add(block)
    return {"text": fallback_text(reply), "blocks": budget.blocks}
