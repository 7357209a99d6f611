"""Parsing the text after ``/papers`` into a command name and its arguments.

Parsing is pure: no storage, no network. Anything it cannot make sense of
becomes the ``help`` command carrying what was wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import time

from bot.feedback import parse_paper_id, parse_vote
from bot.schedule import looks_like_time, parse_time_of_day, parse_timezone
from bot.text import InputError, clean_line, normalize_topic

MAX_COMMAND_LENGTH = 4000
MAX_CHANNEL_TOP_N = 25

SEARCH = "search"
SEARCH_SHARED = "search_shared"   # a search re-posted for a whole channel: never personalised
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
FEEDBACK_SHOW = "feedback_show"
FEEDBACK_RESET = "feedback_reset"
FEEDBACK_VOTE = "feedback_vote"
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
    paper_id: str | None = None           # feedback votes: which paper
    vote: str | None = None               # feedback votes: up, down or fewer
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


def vote_args(vote: str, paper_id: str, topic: str, *, max_topic_length: int = 200) -> CommandArgs:
    """A 👍 / 👎 / "fewer like this" vote, validated whether typed or read back from a button."""
    try:
        return CommandArgs(FEEDBACK_VOTE, vote=parse_vote(vote), paper_id=parse_paper_id(paper_id),
                           topic=normalize_topic(topic, max_length=max_topic_length))
    except InputError as exc:
        return CommandArgs(HELP, problem=str(exc))


def _feedback_command(rest: str, *, max_topic_length: int) -> CommandArgs:
    """``feedback`` [show] · ``feedback reset [topic]`` · ``feedback up|down|fewer <paper id> <topic>``."""
    action, _, tail = rest.partition(" ")
    action, tail = action.casefold(), tail.strip()
    if action in ("", "show", "status"):
        if tail:
            return CommandArgs(HELP, problem="`feedback show` takes nothing after it.")
        return CommandArgs(FEEDBACK_SHOW)
    if action in ("reset", "clear", "forget"):
        if not tail:
            return CommandArgs(FEEDBACK_RESET)
        try:
            # any topic voted on can be forgotten, even one the matching rules now refuse
            return CommandArgs(FEEDBACK_RESET, topic=normalize_topic(tail, max_length=max_topic_length,
                                                                      matchable=False))
        except InputError as exc:
            return CommandArgs(HELP, problem=str(exc))
    paper, _, topic = tail.partition(" ")
    if action in ("up", "down", "fewer", "like", "dislike", "less"):
        if not paper or not topic.strip():
            return CommandArgs(HELP, problem="A vote names the paper and the topic: "
                                             "`/papers feedback up 2401.12345 diffusion models`.")
        return vote_args(action, paper, topic, max_topic_length=max_topic_length)
    return CommandArgs(HELP, problem=f"I don't understand `feedback {action[:40]}`. "
                                     "Try `/papers feedback` or `/papers feedback reset <topic>`.")


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

    if keyword == "feedback":
        return _feedback_command(rest, max_topic_length=max_topic_length)

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
    "/papers feedback — what your 👍 / 👎 / fewer-like-this votes taught, per topic",
    "/papers feedback reset [topic] — forget those votes (all topics, or one)",
    "/papers help — this list",
)
