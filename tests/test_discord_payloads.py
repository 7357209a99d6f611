"""Pure translation of recorded Discord interaction payloads, client set-up and error mapping."""

from __future__ import annotations

from datetime import time
from typing import Any

import aiohttp
import discord
import pytest
from discord.http import Route

from adapters.base import FailureKind
from adapters.controls import topic_key
from adapters.discord.adapter import BOT_PERMISSIONS, invite_url, make_client, rebase_route, shard_options
from adapters.discord.commands import timezone_choices, topic_choices
from adapters.discord.errors import send_error
from adapters.discord.payloads import command_args, context_from_interaction, context_from_payload, focused_option
from bot import commands as cmd
from bot.commands import CommandArgs
from bot.models import ChannelRef, UserRef
from tests.conftest import make_settings
from tests.fakes.discord_api import (
    BOT_USER,
    CHANNEL_ID,
    GUILD_ID,
    MODERATOR_PERMISSIONS,
    USER_ID,
    autocomplete_payload,
    slash_payload,
)


@pytest.mark.parametrize(("path", "options", "expected"), [
    (("papers", "search"), {"topic": "  Diffusion   Models "}, CommandArgs(cmd.SEARCH, topic="diffusion models")),
    (("papers", "today"), {}, CommandArgs(cmd.TODAY)),
    (("papers", "subscribe"), {"topic": "Generalization"}, CommandArgs(cmd.SUBSCRIBE, topic="generalization")),
    (("papers", "unsubscribe"), {"topic": "generalization"}, CommandArgs(cmd.UNSUBSCRIBE, topic="generalization")),
    (("papers", "subscriptions"), {}, CommandArgs(cmd.SUBSCRIPTIONS)),
    (("papers", "help"), {}, CommandArgs(cmd.HELP)),
    (("papers", "alerts", "on"), {"time": "8:30", "timezone": "america/new_york"},
     CommandArgs(cmd.ALERTS_ON, at=time(8, 30), timezone="America/New_York")),
    (("papers", "alerts", "on"), {}, CommandArgs(cmd.ALERTS_ON)),
    (("papers", "alerts", "off"), {}, CommandArgs(cmd.ALERTS_OFF)),
    (("papers", "alerts", "show"), {}, CommandArgs(cmd.ALERTS_SHOW)),
    (("papers-channel", "on"), {"time": "9am", "timezone": "Europe/Berlin"},
     CommandArgs(cmd.CHANNEL_ON, at=time(9, 0), timezone="Europe/Berlin")),
    (("papers-channel", "on"), {"timezone": "UTC"}, CommandArgs(cmd.CHANNEL_ON, timezone="UTC")),
    (("papers-channel", "on"), {"top": 5, "post_when_empty": True},
     CommandArgs(cmd.CHANNEL_ON, top_n=5, post_when_empty=True)),
    (("papers-channel", "on"), {"post_when_empty": False}, CommandArgs(cmd.CHANNEL_ON, post_when_empty=False)),
    (("papers-channel", "off"), {}, CommandArgs(cmd.CHANNEL_OFF)),
    (("papers-channel", "show"), {}, CommandArgs(cmd.CHANNEL_SHOW)),
])
def test_recorded_slash_commands_translate_to_core_commands(path: tuple[str, ...], options: dict[str, str],
                                                            expected: CommandArgs) -> None:
    payload = slash_payload(*path, **options)
    assert command_args(payload["data"]) == expected


@pytest.mark.parametrize(("path", "options", "problem"), [
    (("papers", "alerts", "on"), {"time": "25:00"}, "hours run 00-23"),
    (("papers-channel", "on"), {"timezone": "Mars/Olympus"}, "is not a time zone I know"),
    (("papers-channel", "on"), {"top": 40}, "from 1 to 25"),
    (("papers", "search"), {"topic": "\u200b \u202e"}, "Give a topic"),
    (("papers", "search"), {"topic": "x" * 300}, "the limit is 200"),
    (("papers", "frobnicate"), {}, "Unknown command /papers frobnicate"),
])
def test_invalid_options_become_help_with_the_problem(path: tuple[str, ...], options: dict[str, str],
                                                      problem: str) -> None:
    args = command_args(slash_payload(*path, **options)["data"])
    assert args.name == cmd.HELP
    assert args.problem and problem in args.problem


def test_guild_member_context() -> None:
    ctx = context_from_payload(slash_payload("papers", "today"))
    assert ctx.user == UserRef("discord", GUILD_ID, USER_ID)
    assert ctx.channel == ChannelRef("discord", GUILD_ID, CHANNEL_ID)
    assert ctx.can_manage_channel is False
    assert ctx.display_name == "Ada Lovelace"
    assert context_from_payload(slash_payload("papers", "today", permissions=MODERATOR_PERMISSIONS)).can_manage_channel
    assert context_from_payload(slash_payload("papers", "today", permissions=str(1 << 3))).can_manage_channel


def test_direct_message_context_has_no_channel_and_a_dm_workspace() -> None:
    ctx = context_from_payload(slash_payload("papers", "today", guild_id=None))
    assert ctx.user == UserRef("discord", "dm", USER_ID)
    assert ctx.channel is None
    assert ctx.can_manage_channel is False


@pytest.mark.parametrize("guild_id", [GUILD_ID, None])
@pytest.mark.parametrize("permissions", ["0", MODERATOR_PERMISSIONS])
def test_discord_interaction_gives_the_same_context_as_the_raw_payload(guild_id: str | None, permissions: str) -> None:
    client = discord.Client(intents=discord.Intents.none())
    client._connection.user = discord.ClientUser(state=client._connection, data=BOT_USER)  # noqa: SLF001 - as after login
    payload = slash_payload("papers", "today", guild_id=guild_id, permissions=permissions)
    interaction = discord.Interaction(data=payload, state=client._connection)  # noqa: SLF001
    assert context_from_interaction(interaction) == context_from_payload(payload)


def test_focused_option_of_an_autocomplete_payload() -> None:
    payload = autocomplete_payload("papers", "alerts", "on", focused="timezone", value="berl", time="08:00")
    assert focused_option(payload["data"]) == ("timezone", "berl")
    assert focused_option(slash_payload("papers", "today")["data"]) is None


def test_topic_choices_filter_the_persons_topics() -> None:
    topics = ["diffusion models", "generalization", "domain generalization", "x" * 150]
    assert [c.value for c in topic_choices(topics, "gen")] == ["generalization", "domain generalization"]
    choices = topic_choices(topics, "")
    assert [c.value for c in choices][:3] == ["diffusion models", "domain generalization", "generalization"]
    # Over 100 characters: shown cut with "…", chosen by its key (adapters.controls).
    assert choices[3].name == "x" * 99 + "…" and choices[3].value == "paperboy#" + topic_key("x" * 150)
    assert len(topic_choices([f"t{i}" for i in range(40)], "t")) == 25


def test_timezone_choices() -> None:
    assert [c.value for c in timezone_choices("berlin")] == ["Europe/Berlin"]
    assert timezone_choices("new y")[0].value == "America/New_York"
    assert len(timezone_choices("")) == 25


# --- client set-up ------------------------------------------------------------------------------------


def test_invite_url_asks_for_exactly_the_needed_permissions() -> None:
    url = invite_url(123)
    assert url.startswith("https://discord.com/oauth2/authorize?client_id=123")
    assert "scope=bot+applications.commands" in url
    assert f"permissions={BOT_PERMISSIONS.value}" in url
    assert BOT_PERMISSIONS.value == (1 << 10) | (1 << 11) | (1 << 14) | (1 << 38)   # view, send, embed, threads
    assert BOT_PERMISSIONS.value == 274877926400


@pytest.mark.parametrize(("value", "expected"), [("1", (False, None)), ("auto", (True, None)), (" AUTO ", (True, None)),
                                                 ("4", (True, 4))])
def test_shard_options(value: str, expected: tuple[bool, int | None]) -> None:
    assert shard_options(value) == expected


@pytest.mark.parametrize("value", ["0", "many"])
def test_bad_shard_settings_are_refused(value: str) -> None:
    with pytest.raises(ValueError, match="DISCORD_SHARDS"):
        shard_options(value)


async def test_clients_request_no_intents_and_allow_no_mentions() -> None:
    plain = make_client(make_settings(DISCORD_TOKEN="t"))
    sharded = make_client(make_settings(DISCORD_TOKEN="t", DISCORD_SHARDS="auto"))
    fixed = make_client(make_settings(DISCORD_TOKEN="t", DISCORD_SHARDS="3"))
    assert type(plain) is discord.Client
    assert isinstance(sharded, discord.AutoShardedClient) and sharded.shard_count is None
    assert isinstance(fixed, discord.AutoShardedClient) and fixed.shard_count == 3
    for client in (plain, sharded, fixed):
        assert client.intents.value == 0
        assert not (client.intents.members or client.intents.presences or client.intents.message_content)
        assert client.allowed_mentions is not None and client.allowed_mentions.to_dict() == {"parse": []}
    await plain.close()


def test_rebase_route_changes_only_this_routes_url() -> None:
    route = Route("POST", "/channels/{channel_id}/messages", channel_id=5)
    rebased = rebase_route(route, "http://127.0.0.1:1/api/v10")
    assert rebased.url == "http://127.0.0.1:1/api/v10/channels/5/messages"
    assert route.url == "https://discord.com/api/v10/channels/5/messages"
    assert Route.BASE == "https://discord.com/api/v10"
    assert rebased.channel_id == 5 and rebased.key == route.key


# --- error mapping ----------------------------------------------------------------------------------------


class _Response:
    def __init__(self, status: int, headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.reason = "reason"
        self.headers = headers or {}


def http_error(status: int, code: int = 0, headers: dict[str, str] | None = None) -> discord.HTTPException:
    data: Any = {"message": "m", "code": code} if code else "error"
    cls = {403: discord.Forbidden, 404: discord.NotFound}.get(status, discord.HTTPException)
    return cls(_Response(status, headers), data)  # type: ignore[arg-type]


@pytest.mark.parametrize(("error", "kind"), [
    (http_error(403, 50007), FailureKind.DMS_CLOSED),
    (http_error(404, 10003), FailureKind.TARGET_GONE),
    (http_error(404, 10013), FailureKind.TARGET_GONE),
    (http_error(403, 50013), FailureKind.FORBIDDEN),
    (http_error(403, 50001), FailureKind.FORBIDDEN),
    (http_error(429, 0, {"Retry-After": "7"}), FailureKind.RATE_LIMITED),
    (http_error(401, 0), FailureKind.INSTALL_GONE),
    (http_error(400, 50035), FailureKind.TRANSIENT),
    (http_error(503, 0), FailureKind.TRANSIENT),
    (discord.RateLimited(45.0), FailureKind.RATE_LIMITED),
    (aiohttp.ClientConnectionError(), FailureKind.TRANSIENT),
    (TimeoutError(), FailureKind.TRANSIENT),
])
def test_send_errors_map_to_neutral_failures(error: BaseException, kind: FailureKind) -> None:
    mapped = send_error(error)
    assert mapped.kind is kind
    if isinstance(error, discord.RateLimited):
        assert mapped.retry_after == 45.0
    if isinstance(error, discord.HTTPException) and error.status == 429:
        assert mapped.retry_after == 7.0
    if isinstance(error, discord.HTTPException) and error.code:
        assert mapped.detail == str(error.code)
