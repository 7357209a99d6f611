"""Discord interactions to neutral commands: pure functions over plain values.

:func:`command_args` reads an application-command interaction's ``data``
(the slash command, its subcommand and options) and returns the core's
:class:`~bot.commands.CommandArgs`, validating topics, times and time zones
exactly as the text commands are validated. :func:`context_from_payload`
and :func:`context_from_interaction` build the :class:`CommandContext` from a
raw payload (recorded in tests) or from discord.py's ``Interaction``; both go
through :func:`command_context`, so they cannot disagree.

Identity: a person is ``UserRef("discord", guild_id or "dm", user_id)`` (topics
are kept per server, as Slack keeps them per workspace); a channel is
``ChannelRef("discord", guild_id, channel_id)``, and None in direct messages,
which have no daily channel post.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bot import commands as cmd
from bot.commands import CommandArgs
from bot.models import ChannelRef, CommandContext, UserRef
from bot.schedule import parse_time_of_day, parse_timezone
from bot.text import InputError, normalize_topic

PLATFORM = "discord"
DM_WORKSPACE = "dm"

PAPERS = "papers"
PAPERS_CHANNEL = "papers-channel"

OPTION_SUBCOMMAND = 1
OPTION_GROUP = 2

MANAGE_CHANNELS = 1 << 4
ADMINISTRATOR = 1 << 3

# (command, subcommand group, subcommand) -> core command name
COMMANDS: dict[tuple[str, ...], str] = {
    (PAPERS, "search"): cmd.SEARCH,
    (PAPERS, "today"): cmd.TODAY,
    (PAPERS, "subscribe"): cmd.SUBSCRIBE,
    (PAPERS, "unsubscribe"): cmd.UNSUBSCRIBE,
    (PAPERS, "subscriptions"): cmd.SUBSCRIPTIONS,
    (PAPERS, "help"): cmd.HELP,
    (PAPERS, "alerts", "on"): cmd.ALERTS_ON,
    (PAPERS, "alerts", "off"): cmd.ALERTS_OFF,
    (PAPERS, "alerts", "show"): cmd.ALERTS_SHOW,
    (PAPERS, "feedback", "show"): cmd.FEEDBACK_SHOW,
    (PAPERS, "feedback", "reset"): cmd.FEEDBACK_RESET,
    (PAPERS_CHANNEL, "on"): cmd.CHANNEL_ON,
    (PAPERS_CHANNEL, "off"): cmd.CHANNEL_OFF,
    (PAPERS_CHANNEL, "show"): cmd.CHANNEL_SHOW,
}
TOPIC_COMMANDS = {cmd.SEARCH, cmd.SUBSCRIBE, cmd.UNSUBSCRIBE}


def command_path(data: Mapping[str, Any]) -> tuple[tuple[str, ...], dict[str, Any]]:
    """The command's path (``("papers", "alerts", "on")``) and its leaf options by name."""
    path = [str(data.get("name", ""))]
    options = list(data.get("options") or [])
    while options and options[0].get("type") in (OPTION_SUBCOMMAND, OPTION_GROUP):
        path.append(str(options[0]["name"]))
        options = list(options[0].get("options") or [])
    values = {str(o["name"]): o.get("value") for o in options if "name" in o}
    return tuple(path), values


def focused_option(data: Mapping[str, Any]) -> tuple[str, str] | None:
    """The option being typed in an autocomplete interaction: its name and current text."""
    options = list(data.get("options") or [])
    while options:
        for option in options:
            if option.get("focused"):
                return str(option["name"]), str(option.get("value") or "")
        options = [o for o in options if o.get("type") in (OPTION_SUBCOMMAND, OPTION_GROUP)]
        options = list(options[0].get("options") or []) if options else []
    return None


def command_args(data: Mapping[str, Any], *, max_topic_length: int = 200) -> CommandArgs:
    """The core command for an application-command interaction's ``data``."""
    path, values = command_path(data)
    name = COMMANDS.get(path)
    if name is None:
        return CommandArgs(cmd.HELP, problem=f"Unknown command /{' '.join(path)[:60]}.")
    try:
        if name in TOPIC_COMMANDS:
            return CommandArgs(name, topic=normalize_topic(str(values.get("topic") or ""),
                                                           max_length=max_topic_length,
                                                           matchable=name != cmd.UNSUBSCRIBE))
        if name == cmd.FEEDBACK_RESET:
            raw_topic = values.get("topic")
            topic = normalize_topic(str(raw_topic), max_length=max_topic_length, matchable=False) if raw_topic else None
            return CommandArgs(name, topic=topic)
        if name in (cmd.CHANNEL_ON, cmd.ALERTS_ON):
            raw_time, raw_zone = values.get("time"), values.get("timezone")
            at = parse_time_of_day(str(raw_time)) if raw_time else None
            zone = parse_timezone(str(raw_zone)) if raw_zone else None
            if name == cmd.ALERTS_ON:
                return CommandArgs(name, at=at, timezone=zone)
            raw_top, always = values.get("top"), values.get("post_when_empty")
            top_n = cmd.parse_top_n(str(raw_top)) if raw_top is not None else None
            return CommandArgs(name, at=at, timezone=zone, top_n=top_n,
                               post_when_empty=bool(always) if always is not None else None)
    except InputError as exc:
        return CommandArgs(cmd.HELP, problem=str(exc))
    return CommandArgs(name)


def can_manage_channels(permissions: int | None) -> bool:
    """Whether resolved channel permissions include Manage Channels (administrators have all)."""
    return permissions is not None and bool(permissions & (MANAGE_CHANNELS | ADMINISTRATOR))


def command_context(*, user_id: int | str, guild_id: int | str | None, channel_id: int | str | None,
                    permissions: int | None, display_name: str | None = None) -> CommandContext:
    """The neutral context of an interaction, from the few facts it depends on."""
    workspace = str(guild_id) if guild_id else DM_WORKSPACE
    channel = ChannelRef(PLATFORM, str(guild_id), str(channel_id)) if guild_id and channel_id else None
    return CommandContext(
        user=UserRef(PLATFORM, workspace, str(user_id)),
        channel=channel,
        can_manage_channel=bool(guild_id) and can_manage_channels(permissions),
        display_name=display_name,
    )


def user_ref(*, user_id: int | str, guild_id: int | str | None) -> UserRef:
    return UserRef(PLATFORM, str(guild_id) if guild_id else DM_WORKSPACE, str(user_id))


def context_from_payload(payload: Mapping[str, Any]) -> CommandContext:
    """The context of a raw interaction payload (as the gateway delivers it)."""
    member = payload.get("member") or {}
    user = member.get("user") or payload.get("user") or {}
    raw_permissions = member.get("permissions")
    channel_id = payload.get("channel_id") or (payload.get("channel") or {}).get("id")
    display = member.get("nick") or user.get("global_name") or user.get("username")
    return command_context(user_id=user["id"], guild_id=payload.get("guild_id"), channel_id=channel_id,
                           permissions=int(raw_permissions) if raw_permissions is not None else None,
                           display_name=display)


def context_from_interaction(interaction: Any) -> CommandContext:
    """The context of a ``discord.Interaction`` (its resolved channel permissions included)."""
    guild_id = interaction.guild_id
    return command_context(
        user_id=interaction.user.id,
        guild_id=guild_id,
        channel_id=interaction.channel_id,
        permissions=interaction.permissions.value if guild_id else None,
        display_name=interaction.user.display_name,
    )
