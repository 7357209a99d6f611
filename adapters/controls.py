"""Ids of buttons and other controls that carry a topic: one scheme for every platform.

A control (a Discord button's ``custom_id``, at most 100 characters; a Slack
button's ``value``, at most 2,000; a Discord autocomplete choice's ``value``,
at most 100) names an action and a topic. Topics may be 200 characters, so:

``paperboy:<action>:<topic>``
    the literal form, used whenever it fits the platform's limit. Readable, and
    what every button issued before keys existed carries.
``paperboy:<action>#<key>``
    the keyed form, used when the literal one does not fit. ``key`` is
    :func:`topic_key` of the (normalised) topic: 16 characters of base32 of its
    SHA-256, so it is the same in every process and after restarts.

``<action>`` is ``[a-z0-9_-]+``, optionally followed by ``/<arg>`` (``[A-Za-z0-9._-]+``, e.g. a
paper id) for controls that carry one more value: ``paperboy:up/2511.00001:<topic>``. Neither
``:`` nor ``#`` can appear before the topic part, so the two forms never read as each other.

A keyed control is resolved back to its topic (:func:`resolve_topic`) first among the topics
the person follows (alert controls, the unsubscribe choices), then in the stored table of
keyed topics (``control_topics``), which :func:`remember_topics` fills for every topic about to
be rendered in keyed form. Share of a search is the case that needs the table: that topic is
stored nowhere else. Autocomplete choices use :func:`choice_value` / :func:`choice_name`.

A new control (say a 👍 button under a paper in an alert) reuses all of this::

    custom_id = control_id("up", topic, arg=paper.paper_id, limit=DISCORD_LIMIT)  # or SLACK_VALUE_LIMIT
    await remember_topics(storage, [topic], action_length=len("up/" + paper.paper_id))  # before sending
    ...
    ref = parse_control_id(pressed_custom_id)        # None: not ours, ignore it
    topic = await topic_of(storage, ref, user=who_pressed, max_length=settings.max_topic_length)

Whatever comes back from a control is outside text (anyone can send any ``custom_id`` or
``value``): :func:`read_topic` puts it through :func:`bot.text.normalize_topic`, exactly as a
typed topic, and an unknown key is refused with a reason, never guessed.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.models import UserRef
from bot.text import InputError, normalize_topic, shorten

if TYPE_CHECKING:
    from storage.repositories import Storage

PREFIX = "paperboy:"
KEY_LENGTH = 16
DISCORD_LIMIT = 100          # custom_id, and autocomplete choice name and value
SLACK_VALUE_LIMIT = 2000     # a Block Kit button's value
CHOICE_KEY_PREFIX = "paperboy#"

_HEAD = re.compile(r"(?P<action>[a-z0-9_-]+)(?:/(?P<arg>[A-Za-z0-9._-]{1,64}))?")
_KEY = re.compile(rf"[a-z2-7]{{{KEY_LENGTH}}}")

STALE_CONTROL = "That button no longer knows its topic; search or subscribe again by typing the topic."


@dataclass(frozen=True, slots=True)
class ControlRef:
    """What a control id says: the action, its optional argument, and the topic or its key."""

    action: str
    arg: str | None = None
    topic: str | None = None      # the literal form
    key: str | None = None        # the keyed form


def topic_key(topic: str) -> str:
    """A short, stable key for ``topic``: 16 lower-case base32 characters of its SHA-256."""
    digest = hashlib.sha256(topic.encode("utf-8", "surrogatepass")).digest()
    return base64.b32encode(digest).decode("ascii").lower()[:KEY_LENGTH]


def _head(action: str, arg: str | None) -> str:
    head = action if arg is None else f"{action}/{arg}"
    if not _HEAD.fullmatch(head):
        raise ValueError(f"not a control action: {head!r}")
    return head


def literal_id(action: str, topic: str, *, arg: str | None = None) -> str:
    """``paperboy:<action>[/<arg>]:<topic>`` (whatever its length)."""
    return f"{PREFIX}{_head(action, arg)}:{topic}"


def keyed_id(action: str, topic: str, *, arg: str | None = None) -> str:
    """``paperboy:<action>[/<arg>]#<key>``."""
    return f"{PREFIX}{_head(action, arg)}#{topic_key(topic)}"


def control_id(action: str, topic: str, *, arg: str | None = None, limit: int = DISCORD_LIMIT) -> str:
    """The id for a control: literal when it fits in ``limit`` characters, keyed otherwise."""
    literal = literal_id(action, topic, arg=arg)
    if len(literal) <= limit:
        return literal
    keyed = keyed_id(action, topic, arg=arg)
    if len(keyed) > limit:
        raise ValueError(f"control id over {limit} characters even keyed: {keyed!r}")
    return keyed


def parse_control_id(custom_id: str) -> ControlRef | None:
    """The parts of a control id, or None when it is not one of ours (never raises)."""
    if not isinstance(custom_id, str) or not custom_id.startswith(PREFIX):
        return None
    rest = custom_id[len(PREFIX):]
    match = _HEAD.match(rest)
    if match is None or match.end() >= len(rest):
        return None
    action, arg, sep, tail = match["action"], match["arg"], rest[match.end()], rest[match.end() + 1:]
    if sep == ":":
        return ControlRef(action, arg, topic=tail)
    if sep == "#" and _KEY.fullmatch(tail):
        return ControlRef(action, arg, key=tail)
    return None


# --- autocomplete choices ------------------------------------------------------------------------


def choice_name(topic: str, *, limit: int = DISCORD_LIMIT) -> str:
    """What an autocomplete list shows for ``topic``: cut with "…" when longer than ``limit``."""
    return shorten(topic, limit)


def choice_value(topic: str, *, limit: int = DISCORD_LIMIT) -> str:
    """The value sent back when ``topic`` is chosen: the topic, or ``paperboy#<key>`` when too long."""
    return topic if len(topic) <= limit else CHOICE_KEY_PREFIX + topic_key(topic)


def choice_key(value: str) -> str | None:
    """The key in a :func:`choice_value`, or None for a typed topic."""
    if value.startswith(CHOICE_KEY_PREFIX) and _KEY.fullmatch(value[len(CHOICE_KEY_PREFIX):]):
        return value[len(CHOICE_KEY_PREFIX):]
    return None


# --- reading back ------------------------------------------------------------------------------


def read_topic(raw: str, *, max_length: int, matchable: bool = True) -> str:
    """A topic read back from a control, normalised and checked exactly as a typed one.

    Raises :class:`InputError` (with a message for the person) when it is not a usable topic;
    ``matchable=False`` (removing a topic) skips the "no paper could ever match" check, as
    ``/papers unsubscribe`` does.
    """
    return normalize_topic(raw, max_length=max_length, matchable=matchable)


async def remember_topics(storage: Storage, topics: Iterable[str], *, limit: int = DISCORD_LIMIT,
                          action_length: int = 16) -> None:
    """Store every topic whose literal control id might not fit ``limit``, so its key resolves later.

    ``action_length`` is the longest ``<action>[/<arg>]`` the caller will use with these topics.
    """
    long = {t for t in topics if len(PREFIX) + action_length + 1 + len(t) > limit}
    if long:
        await storage.control_topics.remember({topic_key(t): t for t in long})


async def resolve_topic(storage: Storage, key: str, *, user: UserRef | None = None) -> str | None:
    """The topic whose :func:`topic_key` is ``key``: the person's own topics first, then the stored table."""
    if user is not None:
        for topic in await storage.topics.topics(user):
            if topic_key(topic) == key:
                return topic
    topic = await storage.control_topics.lookup(key)
    return topic if topic is not None and topic_key(topic) == key else None


async def topic_of(storage: Storage, ref: ControlRef, *, user: UserRef | None, max_length: int,
                   matchable: bool = True) -> str:
    """The normalised topic a parsed control carries (:class:`InputError` when unusable or unknown)."""
    if ref.topic is not None:
        return read_topic(ref.topic, max_length=max_length, matchable=matchable)
    assert ref.key is not None
    topic = await resolve_topic(storage, ref.key, user=user)
    if topic is None:
        raise InputError(STALE_CONTROL)
    return read_topic(topic, max_length=max_length, matchable=matchable)
