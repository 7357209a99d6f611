"""Parsing the text after ``/papers`` into a command name and its arguments.

Parsing is pure: no storage, no network. Anything it cannot make sense of
becomes the ``help`` command carrying what was wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import time

from bot.schedule import looks_like_time, parse_time_of_day, parse_timezone
from bot.text import InputError, clean_line, normalize_topic

MAX_COMMAND_LENGTH = 4000
MAX_CHANNEL_TOP_N = 25

SEARCH = "search"
TODAY = "today"
SUBSCRIBE = "subscribe"
UNSUBSCRIBE = "unsubscribe"
SUBSCRIPTIONS = "subscriptions"
CHANNEL_ON = "channel_on"
CHANNEL_OFF = "channel_off"
CHANNEL_SHOW = "channel_show"
ALERTS_ON = "alerts_on"
ALERTS_OFF = "alerts_off"
ALERTS_SHOW = "alerts_show"
HELP = "help"

_ALIASES = {
    "trending": TODAY, "today": TODAY, "daily": TODAY,
    "subscribe": SUBSCRIBE, "follow": SUBSCRIBE,
    "unsubscribe": UNSUBSCRIBE, "unfollow": UNSUBSCRIBE,
    "subscriptions": SUBSCRIPTIONS, "topics": SUBSCRIPTIONS, "list": SUBSCRIPTIONS,
    "help": HELP, "?": HELP, "-h": HELP, "--help": HELP,
    "search": SEARCH, "find": SEARCH,
}


@dataclass(frozen=True, slots=True)
class CommandArgs:
    """A parsed command: which one, and its validated arguments."""

    name: str
    topic: str | None = None
    at: time | None = None
    timezone: str | None = None
    top_n: int | None = None              # channel posts: how many papers
    post_when_empty: bool | None = None   # channel posts: post on days without new papers too
    problem: str | None = None


def parse_top_n(text: str) -> int:
    """How many papers a channel post lists: a whole number from 1 to :data:`MAX_CHANNEL_TOP_N`.

    Only ASCII digits make a number: ``str.isdigit`` also accepts ``²`` and ``①``, which ``int``
    then refuses, and ``int`` reads ``٣`` as 3, which nobody types as a count.
    """
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_CHANNEL_TOP_N:
        raise InputError(f"`top` takes a number from 1 to {MAX_CHANNEL_TOP_N}, for example `top 5`.")
    return int(text)


def _schedule_args(name: str, words: list[str], example: str, *, channel_options: bool) -> CommandArgs:
    """``[HH:MM] [Area/City]`` in either order, validated; for channels also ``[top N] [always|new-only]``."""
    at: time | None = None
    zone: str | None = None
    top_n: int | None = None
    post_when_empty: bool | None = None
    try:
        pending = list(words)
        while pending:
            word = pending.pop(0)
            if at is None and looks_like_time(word):
                at = parse_time_of_day(word)
            elif zone is None and ("/" in word or word.upper() == "UTC"):
                zone = parse_timezone(word)
            elif channel_options and top_n is None and word.casefold().startswith("top"):
                number = word[3:].lstrip("=") or (pending.pop(0) if pending else "")
                top_n = parse_top_n(number)
            elif channel_options and post_when_empty is None and word.casefold() in ("always", "new-only"):
                post_when_empty = word.casefold() == "always"
            else:
                raise InputError(f"I don't understand `{word[:40]}` here. Example: `{example}`.")
    except InputError as exc:
        return CommandArgs(HELP, problem=str(exc))
    return CommandArgs(name, at=at, timezone=zone, top_n=top_n, post_when_empty=post_when_empty)


def _scheduled_command(words: list[str], *, on: str, off: str, show: str, example: str) -> CommandArgs:
    if not words or words[0] in ("show", "status"):
        return CommandArgs(show) if len(words) <= 1 else CommandArgs(HELP, problem=f"Try `{example}`.")
    action, rest = words[0], words[1:]
    if action in ("off", "stop", "disable"):
        return CommandArgs(off) if not rest else CommandArgs(HELP, problem=f"`{action}` takes nothing after it.")
    channel_options = on == CHANNEL_ON
    if action in ("on", "start", "enable"):
        return _schedule_args(on, rest, example, channel_options=channel_options)
    if looks_like_time(action) or "/" in action:
        return _schedule_args(on, words, example, channel_options=channel_options)
    return CommandArgs(HELP, problem=f"I don't understand `{action[:40]}`. Example: `{example}`.")


def parse_command(text: str, *, max_topic_length: int = 200) -> CommandArgs:
    """Parse the text after ``/papers`` (a leading ``/papers`` is tolerated)."""
    if len(text) > MAX_COMMAND_LENGTH:
        return CommandArgs(HELP, problem=f"That command is {len(text):,} characters long; "
                                         f"topics are limited to {max_topic_length}.")
    line = clean_line(text)
    if line.lower().startswith("/papers"):
        line = line[len("/papers"):].strip()
    if not line:
        return CommandArgs(TODAY)
    head, _, rest = line.partition(" ")
    keyword = head.casefold()
    rest = rest.strip()
    words = rest.split()

    if keyword == "channel":
        return _scheduled_command([w.casefold() if "/" not in w else w for w in words], on=CHANNEL_ON,
                                  off=CHANNEL_OFF, show=CHANNEL_SHOW, example="/papers channel on 09:00 Europe/Berlin")
    if keyword == "alerts":
        return _scheduled_command([w.casefold() if "/" not in w else w for w in words], on=ALERTS_ON,
                                  off=ALERTS_OFF, show=ALERTS_SHOW, example="/papers alerts on 08:30 America/New_York")

    name = _ALIASES.get(keyword)
    if name in (TODAY, SUBSCRIPTIONS, HELP):
        if rest and name != HELP:
            return CommandArgs(HELP, problem=f"`{keyword}` takes nothing after it. "
                                             f"To search for it, use `/papers search {line[:60]}`.")
        return CommandArgs(name)
    if name in (SUBSCRIBE, UNSUBSCRIBE, SEARCH):
        if not rest:
            return CommandArgs(HELP, problem=f"`{keyword}` needs a topic, for example `/papers {keyword} diffusion models`.")
        topic_text = rest
    else:
        name, topic_text = SEARCH, line
    try:
        # Removing must work for any stored topic, even one from before unmatchable topics were refused.
        topic = normalize_topic(topic_text, max_length=max_topic_length, matchable=name != UNSUBSCRIBE)
    except InputError as exc:
        return CommandArgs(HELP, problem=str(exc))
    return CommandArgs(name, topic=topic)


HELP_LINES = (
    "/papers <topic> — the papers on a topic, best first (e.g. /papers generalization)",
    "/papers today — today's trending papers",
    "/papers subscribe <topic> — a daily direct message with new papers on a topic",
    "/papers unsubscribe <topic> — stop following a topic",
    "/papers subscriptions — the topics you follow and when your alerts arrive",
    "/papers alerts on [HH:MM] [Area/City] | off — when your personal alerts arrive",
    "/papers channel on [HH:MM] [Area/City] [top N] [always] — a daily trending post in this channel "
    "(N papers, 1 to 25; always: also on days without new papers)",
    "/papers channel off — stop this channel's daily post",
    "/papers channel — show this channel's setting",
    "/papers help — this list",
)
