"""Slack payloads into the neutral model: pure functions, tested on recorded payloads.

Slash commands arrive as form fields (``team_id``, ``user_id``, ``channel_id``,
``text``...); button clicks and modal submissions as JSON with nested ``team``,
``user`` and ``channel`` objects. Socket Mode delivers the same shapes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bot.models import ChannelRef, CommandContext, UserRef
from bot.schedule import parse_timezone
from bot.text import InputError

PLATFORM = "slack"
TOPIC_BLOCK = "topic"
TOPIC_INPUT = "topic_input"


def _nested_id(body: Mapping[str, Any], key: str) -> str | None:
    value = body.get(key)
    if isinstance(value, Mapping):
        return value.get("id")
    return None


def team_of(body: Mapping[str, Any]) -> str:
    """The workspace a payload belongs to (slash form field, ``team.id``, or the user's team)."""
    team = body.get("team_id") or _nested_id(body, "team")
    if not team and isinstance(body.get("user"), Mapping):
        team = body["user"].get("team_id")
    if not team:
        raise ValueError("payload names no workspace")
    return str(team)


def slash_payload_to_context(payload: Mapping[str, Any], *, user_timezone: str | None = None,
                             can_manage_channel: bool = True) -> tuple[CommandContext, str]:
    """A ``/papers`` slash command as the caller's context and the text after the command."""
    team = team_of(payload)
    user = UserRef(PLATFORM, team, str(payload["user_id"]))
    channel_id = payload.get("channel_id")
    channel = ChannelRef(PLATFORM, team, str(channel_id)) if channel_id else None
    ctx = CommandContext(user=user, channel=channel, user_timezone=user_timezone,
                         can_manage_channel=can_manage_channel, display_name=payload.get("user_name"))
    return ctx, str(payload.get("text") or "")


def interaction_context(body: Mapping[str, Any], *, user_timezone: str | None = None,
                        can_manage_channel: bool = True) -> CommandContext:
    """The context of a button click or modal submission (channel only when it happened in one)."""
    team = team_of(body)
    user_obj = body.get("user") or {}
    user = UserRef(PLATFORM, team, str(user_obj["id"]))
    channel_id = _nested_id(body, "channel")
    channel = ChannelRef(PLATFORM, team, channel_id) if channel_id else None
    return CommandContext(user=user, channel=channel, user_timezone=user_timezone,
                          can_manage_channel=can_manage_channel,
                          display_name=user_obj.get("username") or user_obj.get("name"))


def action_value(body: Mapping[str, Any]) -> str:
    """The ``value`` of the first action in a ``block_actions`` payload."""
    actions = body.get("actions") or []
    return str(actions[0].get("value") or "") if actions else ""


def submitted_topic(view: Mapping[str, Any]) -> str:
    """The topic typed into the Add topic modal."""
    values = (view.get("state") or {}).get("values") or {}
    field = (values.get(TOPIC_BLOCK) or {}).get(TOPIC_INPUT) or {}
    return str(field.get("value") or "")


def user_profile_facts(user: Any) -> tuple[str | None, bool]:
    """From a ``users.info`` user object: the IANA zone and whether they administer the workspace.

    Anything Slack (or a proxy in between) answers is checked: a zone that is not a known IANA
    name is None (the defaults apply), and only ``true`` makes an admin.
    """
    if not isinstance(user, Mapping):
        return None, False
    raw_tz = user.get("tz")
    try:
        tz = parse_timezone(raw_tz) if isinstance(raw_tz, str) and raw_tz else None
    except InputError:
        tz = None
    is_admin = any(user.get(flag) is True for flag in ("is_admin", "is_owner", "is_primary_owner"))
    return tz, is_admin
