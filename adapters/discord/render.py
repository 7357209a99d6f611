"""Replies as Discord messages: pure functions, no network.

:func:`message_payload` returns exactly the JSON body of Discord's
create-message endpoint (``content``, ``embeds``, ``components``,
``allowed_mentions``); :func:`build_embeds` turns the same embeds into
``discord.Embed`` objects for sending through discord.py, so what is previewed
is what is sent.

Every string in a :class:`~bot.models.Reply` is plain text from outside (paper
titles, abstracts, author names, topics people typed). Each is escaped with
:func:`escape_text` (mentions broken with a zero-width space, every
markdown marker escaped, line-start markers neutralised) before the renderer adds its own
markdown; sends also carry ``allowed_mentions: {"parse": []}``, so nothing a
paper says can ping anyone. Every message stays within Discord's limits:
content 2,000, 10 embeds, title 256, description 4,096, 25 fields, footer
2,048, author 256, 6,000 characters over all embeds; long lists are cut with
"and N more".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import discord
from discord.utils import escape_mentions

from adapters.controls import ControlRef, control_id, parse_control_id
from bot.models import Link, RankedPaper, Reply, ReplyKind, Section
from bot.present import authors_line, paper_links, summary_line
from bot.text import clean_line, shorten, strip_controls

MAX_CONTENT = 2000
MAX_EMBEDS = 10
MAX_EMBED_TITLE = 256
MAX_EMBED_DESCRIPTION = 4096
MAX_EMBED_FIELDS = 25
MAX_FOOTER = 2048
MAX_AUTHOR = 256
MAX_TOTAL = 6000
MAX_BUTTON_LABEL = 80
MAX_CUSTOM_ID = 100

AUTHORS_LIMIT = 300
SUMMARY_LIMITS = (500, 300, 200, 120, 60, 0)   # tried in turn until a list fits in MAX_TOTAL
WHY_LIMIT = 200
NOTICE_LIMIT = 400
ITEM_LIMIT = 200
MAX_ITEMS = 25

SHARE_ACTION = "share"
SUBSCRIBE_ACTION = "subscribe"
# Feedback: one select menu per vote (Discord allows 5 action rows, so three menus reach every paper of a
# message where a row of buttons per paper could not). The menu's custom_id is "paperboy:fb:<vote>:<where>",
# where is the server whose topics the papers were picked for (a DM alert) or "-" (the server clicked in);
# each option's value is an adapters.controls id "paperboy:vote/<paper id>:<topic>" (keyed when too long).
# Both are validated like typed input when read back.
FEEDBACK_PREFIX = "paperboy:fb:"
FEEDBACK_HERE = "-"
DM_WORKSPACE_ID = "dm"
VOTE_ACTION = "vote"
FEEDBACK_PLACEHOLDERS = {"up": "👍 More like this…", "down": "👎 Not for me…", "fewer": "Fewer like this…"}
FEEDBACK_KINDS = (ReplyKind.SEARCH, ReplyKind.PERSONAL_ALERT)
MAX_OPTION = 100
MAX_OPTIONS = 25
STRING_SELECT = 3
SHARE_PREFIX = "paperboy:share:"
SUBSCRIBE_PREFIX = "paperboy:subscribe:"

BUTTON_PRIMARY = 1
BUTTON_SECONDARY = 2
ACTION_ROW = 1
BUTTON = 2

COLOURS = {
    ReplyKind.ERROR: 0xED4245,
    ReplyKind.CONFIRMATION: 0x57F287,
    ReplyKind.CHANNEL_SETTING: 0x5865F2,
    ReplyKind.ALERT_SETTING: 0x5865F2,
    ReplyKind.SUBSCRIPTIONS: 0x5865F2,
    ReplyKind.HELP: 0x5865F2,
}
PAPER_COLOUR = 0xFFD21E   # Hugging Face yellow

DEFAULT_FOOTERS = {
    ReplyKind.CHANNEL_DIGEST: "Change the time: /papers-channel on · stop it: /papers-channel off",
    ReplyKind.PERSONAL_ALERT: "Manage your topics: /papers subscriptions · /papers unsubscribe",
}

# The core's hints name the text form of commands; on Discord the channel commands are their own
# top-level group (Discord applies default permissions to top-level commands only).
_HINTS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"/papers channel\b"), "/papers-channel"),
    (re.compile(r"^/papers <topic>"), "/papers search <topic>"),
    (re.compile(r"/papers help\b"), "/papers help"),
)
_INLINE_MARKERS = re.compile(r"([\\*_~`|\[])")
_LINE_START = re.compile(r"^([ \t]*)(#|>|-|\+|\d+\.)", re.MULTILINE)


# --- escaping ------------------------------------------------------------------------------


def break_mentions(text: str) -> str:
    """``@everyone``, ``@here``, ``<@id>``, ``<@&id>``, ``<#id>``, ``</cmd:id>``, ``<:emoji:id>`` and
    ``<t:..>`` shown as text only: a zero-width space after ``@`` and after every ``<``.

    For plain-text places (footers, button labels, author names) that render no markdown;
    defence in depth behind ``allowed_mentions``.
    """
    return escape_mentions(text).replace("<", "<\u200b")


def _escape_line_start(match: re.Match[str]) -> str:
    indent, marker = match[1], match[2]
    if marker[-1] == "." and marker[:-1].isdigit():
        return f"{indent}{marker[:-1]}\\."          # "1. item" -> "1\. item"
    return f"{indent}\\{marker}"


def escape_text(text: str, *, single_line: bool = True) -> str:
    """Outside text made inert wherever Discord renders markdown (content, embed title and description).

    Every inline marker is backslash-escaped, each occurrence (``\\ * _ ~ ` | [``): emphasis,
    underline, strike-through, spoilers, code spans and blocks, and every masked link
    ``[label](url)`` (``discord.utils.escape_markdown`` escapes only the first of several).
    Line-start markers are escaped on every line: headings and subtext (``#``, ``-#``), block
    quotes (``>``, ``>>>``), lists (``-``, ``*``, ``+``, ``1.``). Mentions, role and channel
    references, slash-command mentions, custom emoji and ``<t:…>`` timestamps are broken by
    :func:`break_mentions`. Discord drops the backslash of ``\\`` + any ASCII punctuation when
    it renders, so the text reads as it was written.
    """
    text = clean_line(text) if single_line else strip_controls(text)
    text = _INLINE_MARKERS.sub(r"\\\1", break_mentions(text))
    return _LINE_START.sub(_escape_line_start, text)


def escape_fit(text: str, limit: int) -> str:
    """``text`` escaped and cut so the escaped form is at most ``limit`` characters ("…" when cut)."""
    if limit <= 0:
        return ""
    escaped = escape_text(text)
    raw_limit = len(clean_line(text))
    while len(escaped) > limit and raw_limit > 0:
        raw_limit = max(0, raw_limit - max(1, len(escaped) - limit))
        escaped = escape_text(shorten(clean_line(text), raw_limit)) if raw_limit else ""
    return escaped


def discord_hint(text: str) -> str:
    """A core hint ("/papers channel on ...") in the form of Discord's commands."""
    for pattern, replacement in _HINTS:
        text = pattern.sub(replacement, text)
    return text


def safe_url(url: str) -> str:
    """A URL fit for a markdown link: no spaces, parentheses or angle brackets to break it."""
    return quote(strip_controls(url).strip(), safe=":/?#@!$&'*+,;=%~-._")


def cut(text: str, limit: int) -> str:
    """Our own (already escaped) text cut to ``limit`` characters."""
    return text if len(text) <= limit else text[: max(0, limit - 1)].rstrip() + "…"


# --- custom ids --------------------------------------------------------------------------------


def share_custom_id(topic: str) -> str:
    """``paperboy:share:<topic>``, or ``paperboy:share#<key>`` when that is over 100 characters.

    The scheme, and how a key is resolved back to its topic, is :mod:`adapters.controls`.
    """
    return control_id(SHARE_ACTION, topic, limit=MAX_CUSTOM_ID)


def subscribe_custom_id(topic: str) -> str:
    return control_id(SUBSCRIBE_ACTION, topic, limit=MAX_CUSTOM_ID)


# --- papers as embeds ------------------------------------------------------------------------


def _date(ranked: RankedPaper) -> str:
    paper = ranked.paper
    when = paper.published_at.date() if paper.published_at else paper.feed_date
    return f"{when:%d %b %Y}" if when else ""


def _links_line(links: tuple[Link, ...]) -> str:
    parts = []
    for link in links:
        if link.url.startswith(("https://", "http://")):
            label = escape_fit(link.label, 60)
            parts.append(f"[{label}]({safe_url(link.url)})")
    return " · ".join(parts)


def paper_embed(ranked: RankedPaper, *, summary_limit: int = SUMMARY_LIMITS[0],
                heading: str | None = None) -> dict[str, Any]:
    """One paper: linked title, authors · date · ▲ upvotes, summary, links and why it matched."""
    paper = ranked.paper
    prefix = f"{ranked.rank}. " if ranked.rank else ""
    title = prefix + escape_fit(paper.title or paper.paper_id, MAX_EMBED_TITLE - len(prefix))
    facts = [escape_fit(ranked.authors_line or authors_line(paper), AUTHORS_LIMIT), _date(ranked),
             f"▲ {paper.upvotes:,}"]
    lines = [" · ".join(f for f in facts if f)]
    summary = ranked.summary_line or summary_line(paper)
    if summary and summary_limit > 0:
        lines.append(escape_fit(summary, summary_limit))
    links = _links_line(ranked.links or paper_links(paper))
    if links:
        lines.append(links)
    if ranked.matched_terms:
        why = ", ".join(clean_line(t) for t in ranked.matched_terms)
        lines.append("*Matched: " + escape_fit(why, WHY_LIMIT) + "*")
    embed: dict[str, Any] = {
        "type": "rich",
        "title": title,
        "url": safe_url(paper.page_url),
        "description": cut("\n".join(lines), MAX_EMBED_DESCRIPTION),
        "color": PAPER_COLOUR,
    }
    if heading:
        embed["author"] = {"name": cut(break_mentions(clean_line(heading)), MAX_AUTHOR)}   # rendered as plain text
    return embed


def embed_size(embed: dict[str, Any]) -> int:
    """The characters Discord counts towards the 6,000 limit of a message."""
    size = len(embed.get("title", "")) + len(embed.get("description", ""))
    size += len(embed.get("footer", {}).get("text", "")) + len(embed.get("author", {}).get("name", ""))
    size += sum(len(f.get("name", "")) + len(f.get("value", "")) for f in embed.get("fields", []))
    return size


@dataclass(frozen=True, slots=True)
class _Entry:
    ranked: RankedPaper
    heading: str | None
    topic: str | None = None


def _entries(sections: tuple[Section, ...]) -> list[_Entry]:
    entries = []
    for section in sections:
        for ranked in section.papers:
            entries.append(_Entry(ranked, section.heading, section.topic))
    return entries


def _paper_embeds(entries: list[_Entry], budget: int) -> list[dict[str, Any]]:
    """As many paper embeds as fit in ``budget`` characters and 10 embeds, summaries shortened first."""
    entries = entries[:MAX_EMBEDS]
    for summary_limit in SUMMARY_LIMITS:
        embeds = [paper_embed(e.ranked, summary_limit=summary_limit, heading=e.heading) for e in entries]
        if sum(embed_size(e) for e in embeds) <= budget:
            return embeds
    fitted: list[dict[str, Any]] = []
    used = 0
    for embed in embeds:  # the shortest form did not fit: keep what does, the rest become "and N more"
        if used + embed_size(embed) > budget:
            break
        fitted.append(embed)
        used += embed_size(embed)
    return fitted


# --- messages ------------------------------------------------------------------------------------


def _text_embed(reply: Reply, footer: str | None) -> dict[str, Any]:
    """Replies without papers (settings, confirmations, errors, help) as one embed."""
    lines = [escape_fit(discord_hint(line), 1000) for line in reply.lines[:3]]
    budget = MAX_EMBED_DESCRIPTION - sum(len(line) + 1 for line in lines) - 40
    items: list[str] = []
    for item in reply.items[:MAX_ITEMS]:
        bullet = f"• {escape_fit(item, ITEM_LIMIT)}"
        if sum(len(i) + 1 for i in items) + len(bullet) > budget:
            break
        items.append(bullet)
    if len(reply.items) > len(items):
        items.append(f"…and {len(reply.items) - len(items)} more")
    description = "\n".join(items + ([""] if items and lines else []) + lines)
    embed: dict[str, Any] = {
        "type": "rich",
        "title": escape_fit(reply.title, MAX_EMBED_TITLE),
        "description": cut(description, MAX_EMBED_DESCRIPTION),
        "color": COLOURS.get(reply.kind, PAPER_COLOUR),
    }
    if not embed["description"]:
        del embed["description"]
    if footer:
        embed["footer"] = {"text": footer}
    return embed


def _footer(reply: Reply) -> str | None:
    text = reply.footer or DEFAULT_FOOTERS.get(reply.kind)
    return cut(break_mentions(clean_line(discord_hint(text))), MAX_FOOTER) if text else None


def _content(reply: Reply, *, has_papers: bool, more: int) -> str:
    """The message text: title (for paper lists), lines, notices and "and N more"."""
    parts: list[str] = []
    if has_papers:
        parts.append(f"**{escape_fit(reply.title, 300)}**")
        parts.extend(escape_fit(discord_hint(line), 300) for line in reply.lines)
    parts.extend(f"*{escape_fit(notice, NOTICE_LIMIT)}*" for notice in reply.notices[:3])
    if more > 0:
        parts.append(f"…and {more:,} more.")
    return cut("\n".join(parts), MAX_CONTENT)


def buttons(reply: Reply, *, share_button: bool = True) -> list[dict[str, Any]]:
    """Search replies: "Share in channel" (when there are papers) and "Subscribe to <topic>"."""
    if reply.kind is not ReplyKind.SEARCH or not reply.topic:
        return []
    row: list[dict[str, Any]] = []
    share_id = share_custom_id(reply.topic)
    if share_button and reply.papers:
        row.append({"type": BUTTON, "style": BUTTON_SECONDARY, "label": "Share in channel", "custom_id": share_id,
                    "disabled": False})
    label = cut(break_mentions(f"Subscribe to {clean_line(reply.topic)}"), MAX_BUTTON_LABEL)
    row.append({"type": BUTTON, "style": BUTTON_PRIMARY, "label": label, "custom_id": subscribe_custom_id(reply.topic),
                "disabled": False})
    return [{"type": ACTION_ROW, "components": row}] if row else []


def feedback_custom_id(vote: str, workspace: str | None) -> str:
    """``paperboy:fb:<vote>:<server id, dm or ->`` (at most 45 characters)."""
    return f"{FEEDBACK_PREFIX}{vote}:{workspace or FEEDBACK_HERE}"


def feedback_option_value(topic: str, paper_id: str) -> str | None:
    """``paperboy:vote/<paper id>:<topic>``, keyed when over 100; None for ids a control cannot carry."""
    try:
        return control_id(VOTE_ACTION, topic, arg=paper_id, limit=MAX_OPTION)
    except ValueError:      # e.g. an offline-sample id: no menu entry rather than a broken one
        return None


def feedback_topics(reply: Reply) -> list[tuple[str, int]]:
    """Each topic a reply's vote controls carry, with the longest ``vote/<paper id>`` it is used with."""
    longest: dict[str, int] = {}
    for section in reply.sections:
        if section.topic and section.papers:
            head = len(VOTE_ACTION) + 1 + max(len(p.paper.paper_id) for p in section.papers)
            longest[section.topic] = max(head, longest.get(section.topic, 0))
    return list(longest.items())


def feedback_menus(entries: list[_Entry], *, workspace: str | None = None) -> list[dict[str, Any]]:
    """Three select menus (👍, 👎, fewer like this), each listing every paper shown."""
    options = []
    for entry in entries[:MAX_OPTIONS]:
        ranked = entry.ranked
        value = feedback_option_value(entry.topic, ranked.paper.paper_id) if entry.topic else None
        if value is None:
            continue
        label = (f"{ranked.rank}. " if ranked.rank else "") + clean_line(ranked.paper.title or ranked.paper.paper_id)
        option: dict[str, Any] = {"label": cut(break_mentions(label), MAX_OPTION), "value": value}
        if entry.heading:
            option["description"] = cut(break_mentions(clean_line(entry.heading)), MAX_OPTION)
        options.append(option)
    if not options:
        return []
    return [{"type": ACTION_ROW, "components": [{
        "type": STRING_SELECT, "custom_id": feedback_custom_id(vote, workspace), "placeholder": placeholder,
        "min_values": 1, "max_values": 1, "options": options, "disabled": False}]}
        for vote, placeholder in FEEDBACK_PLACEHOLDERS.items()]


def read_feedback_option(value: str) -> tuple[str, ControlRef] | None:
    """(paper id, parsed control) from a chosen option's value, or None when it is not a vote control."""
    control = parse_control_id(value)
    if control is None or control.action != VOTE_ACTION or not control.arg:
        return None
    return control.arg, control


def message_payload(reply: Reply, *, share_button: bool = True, lead: str | None = None,
                    feedback: bool = True, workspace: str | None = None) -> dict[str, Any]:
    """The exact JSON body for ``POST /channels/{id}/messages`` (and interaction follow-ups).

    ``share_button`` is False for a search already shared publicly (it keeps "Subscribe");
    ``lead`` is a line of the bot's own (already safe) text put first, e.g. who shared a search;
    ``feedback`` adds the vote menus to search answers and alerts; ``workspace`` is the server an
    alert sent by DM was picked for, so a vote from the DM lands on that server's topics.
    """
    footer = _footer(reply)
    entries = _entries(reply.sections)
    if entries:
        budget = MAX_TOTAL - (len(footer) if footer else 0)
        embeds = _paper_embeds(entries, budget)
        if footer and embeds:
            embeds[-1]["footer"] = {"text": footer}
        more = len(entries) - len(embeds) + sum(s.more for s in reply.sections)
        content = _content(reply, has_papers=True, more=more)
    else:
        embeds = [_text_embed(reply, footer)]
        content = _content(reply, has_papers=False, more=0)
    if lead:
        content = cut(lead + ("\n" + content if content else ""), MAX_CONTENT)
    components = buttons(reply, share_button=share_button)
    if feedback and reply.kind in FEEDBACK_KINDS and entries:
        components += feedback_menus(entries[:len(embeds)], workspace=workspace)
    return {
        "content": content,
        "embeds": embeds,
        "components": components,
        "allowed_mentions": {"parse": []},
    }


def build_embeds(payload: dict[str, Any]) -> list[discord.Embed]:
    """``discord.Embed`` objects for the embeds of a :func:`message_payload` body."""
    return [discord.Embed.from_dict(embed) for embed in payload["embeds"]]


def check_limits(payload: dict[str, Any]) -> list[str]:
    """Every Discord limit ``payload`` breaks (empty when it is valid); used by tests and the preview."""
    problems = []
    if len(payload.get("content") or "") > MAX_CONTENT:
        problems.append("content over 2000")
    embeds = payload.get("embeds", [])
    if len(embeds) > MAX_EMBEDS:
        problems.append("more than 10 embeds")
    if sum(embed_size(e) for e in embeds) > MAX_TOTAL:
        problems.append("embeds over 6000 characters")
    for embed in embeds:
        checks: list[tuple[int, int, str]] = [
            (len(embed.get("title", "")), MAX_EMBED_TITLE, "title"),
            (len(embed.get("description", "")), MAX_EMBED_DESCRIPTION, "description"),
            (len(embed.get("fields", [])), MAX_EMBED_FIELDS, "fields"),
            (len(embed.get("footer", {}).get("text", "")), MAX_FOOTER, "footer"),
            (len(embed.get("author", {}).get("name", "")), MAX_AUTHOR, "author"),
        ]
        problems.extend(f"embed {name} over {limit}" for size, limit, name in checks if size > limit)
    if not (payload.get("content") or embeds):
        problems.append("empty message")
    if len(payload.get("components", [])) > 5:
        problems.append("more than 5 action rows")
    for row in payload.get("components", []):
        for component in row["components"]:
            if len(component.get("custom_id", "")) > MAX_CUSTOM_ID:
                problems.append("custom_id over 100")
            if len(component.get("label", "")) > MAX_BUTTON_LABEL:
                problems.append("button label over 80")
            options = component.get("options", [])
            if len(options) > MAX_OPTIONS:
                problems.append("more than 25 options")
            for option in options:
                if any(len(option.get(key, "")) > MAX_OPTION for key in ("label", "value", "description")):
                    problems.append("select option over 100")
    if payload.get("allowed_mentions") != {"parse": []}:
        problems.append("mentions allowed")
    return problems

