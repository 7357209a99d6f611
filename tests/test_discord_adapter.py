"""The Discord adapter end to end against a fake Discord REST API on 127.0.0.1.

The real discord.py client logs in, syncs the command tree and sends through its
own HTTP client (rate limits included); interactions are recorded gateway
payloads fed to discord.py's own ``parse_interaction_create``, so the command
tree, autocomplete and buttons run exactly as in production, then the test
asserts the callback and follow-up bodies the fake received. No gateway
connection is made and nothing reaches the internet: the paper source is the
fake Hugging Face server.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import pytest

from adapters.base import Adapter, DeliveryKey, FailureKind, SendError
from adapters.discord import DiscordAdapter, message_payload
from bot.app import App, build_app
from bot.models import ChannelRef, Reply, ReplyKind, UserRef
from tests.conftest import make_settings
from adapters.discord.render import check_limits, feedback_option_value
from adapters.controls import topic_key
from tests.fakes.discord_api import (
    APPLICATION_ID,
    CHANNEL_ID,
    GUILD_ID,
    MODERATOR_PERMISSIONS,
    USER_ID,
    FakeDiscordApi,
    autocomplete_payload,
    button_payload,
    interaction_payload,
    message_with,
    slash_payload,
)
from tests.fakes.hf_api import FakeHuggingFace, seed_papers

TOKEN = "MTIz.discord-bot-token.NEVER-LOG-ME"
HOSTILE_TITLE = "@everyone Generalization **now** <@123456789012345678> <@&456789012345678901>"
EPHEMERAL = 64
HOSTILE_SUMMARY = ("Generalization [x](http://x.example) read the [arXiv](http://evil.example/abs/1) version "
                   "||spoiler|| <t:1700000000:R> <#123456789012345678> `code` ~~gone~~")


@dataclass
class Running:
    app: App
    adapter: DiscordAdapter
    api: FakeDiscordApi
    hf: Any = None

    async def interact(self, payload: dict[str, Any], endpoint: str = "edit_original") -> dict[str, Any]:
        """Feed one interaction and return the body of its answer at ``endpoint``."""
        before = len(self.api.calls_to(endpoint))
        self.adapter.dispatch_interaction(payload)
        calls = await self.api.wait_for(endpoint, before + 1)
        return calls[before].body

    def callback_for(self, payload: dict[str, Any]) -> dict[str, Any]:
        [call] = [c for c in self.api.calls_to("interaction_callback") if c.params["interaction"] == payload["id"]]
        assert call.params["token"] == payload["token"]
        return call.body


@pytest.fixture
def hf() -> Any:
    papers = seed_papers()
    # The most upvoted paper (first in trending), made squarely about "generalization" (search ranks by
    # relevance first), so that both answers have to show the hostile title and summary safely.
    papers[0] = {**papers[0], "title": HOSTILE_TITLE + " " + papers[0]["title"],
                 "summary": "We study generalization. " + HOSTILE_SUMMARY + " " + papers[0]["summary"],
                 "ai_summary": HOSTILE_SUMMARY}
    with FakeHuggingFace(papers) as fake:
        yield fake


@pytest.fixture
async def api() -> AsyncIterator[FakeDiscordApi]:
    async with FakeDiscordApi() as fake:
        yield fake


Start = Callable[..., Awaitable[Running]]


@pytest.fixture
async def start_discord(sqlite_url: str, api: FakeDiscordApi, hf: Any) -> AsyncIterator[Start]:
    started: list[Running] = []

    async def start(url: str = sqlite_url, **extra: Any) -> Running:
        values = dict(DATABASE_URL=url, PAPERBOY_HF_URL=hf.url, PAPERBOY_OFFLINE_SAMPLE=False,
                      DISCORD_TOKEN=TOKEN, DISCORD_API_URL=api.url, **extra)
        settings = make_settings(**values)
        app = await asyncio.to_thread(build_app, settings)
        adapter = DiscordAdapter(settings, app.core, app.storage)
        await adapter.login()            # REST only: no gateway connection in tests
        running = Running(app, adapter, api, hf)
        started.append(running)
        return running

    yield start
    for running in started:
        await running.adapter.stop()
        await running.app.close()


@pytest.fixture
async def running(start_discord: Start) -> Running:
    return await start_discord()


def without_select_defaults(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """discord.py adds ``required: true`` to select menus and ``default: false`` to their options (defaults)."""
    def clean(component: dict[str, Any]) -> dict[str, Any]:
        if component.get("type") != 3:
            return component
        options = [{k: v for k, v in o.items() if not (k == "default" and v is False)} for o in component["options"]]
        return {k: v for k, v in component.items() if k != "required"} | {"options": options}

    return [{**row, "components": [clean(c) for c in row["components"]]} for row in rows]


def without_flags(embeds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """discord.py adds ``flags: 0`` to every embed it sends; Discord ignores it."""
    return [{k: v for k, v in e.items() if k != "flags"} for e in embeds]


# --- login, sync, invite ---------------------------------------------------------------------------------


async def test_login_syncs_commands_globally_and_logs_the_invite_url(
        start_discord: Start, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    running = await start_discord()
    assert isinstance(running.adapter, Adapter) and running.adapter.platform == "discord"
    api = running.api
    assert api.names() == ["get_me", "get_application", "sync_global"]
    assert all(c.authorization == f"Bot {TOKEN}" for c in api.calls)
    commands = {c["name"]: c for c in api.calls_to("sync_global")[0].body}
    assert set(commands) == {"papers", "papers-channel"}
    papers = commands["papers"]
    assert [o["name"] for o in papers["options"]] == ["search", "today", "subscribe", "unsubscribe",
                                                      "subscriptions", "help", "alerts", "feedback"]
    assert papers.get("default_member_permissions") is None
    channel = commands["papers-channel"]
    assert str(channel["default_member_permissions"]) == "16"     # Manage Channels
    assert channel["contexts"] == [0]                             # servers only
    assert [o["name"] for o in channel["options"]] == ["on", "off", "show"]
    on_options = {o["name"]: o for o in channel["options"][0]["options"]}
    assert on_options["timezone"]["autocomplete"] is True
    assert (on_options["top"]["type"], on_options["top"]["min_value"], on_options["top"]["max_value"]) == (4, 1, 25)
    assert on_options["post_when_empty"]["type"] == 5
    unsubscribe = [o for o in papers["options"] if o["name"] == "unsubscribe"][0]
    assert unsubscribe["options"][0]["autocomplete"] is True
    url = running.adapter.invite_url
    assert url == (f"https://discord.com/oauth2/authorize?client_id={APPLICATION_ID}"
                   "&scope=bot+applications.commands&permissions=274877926400")
    assert url in caplog.text
    assert TOKEN not in caplog.text


async def test_guild_id_syncs_to_that_server_only(start_discord: Start) -> None:
    running = await start_discord(DISCORD_GUILD_ID=GUILD_ID)
    assert running.api.names() == ["get_me", "get_application", "sync_guild"]
    assert running.api.calls_to("sync_guild")[0].params["guild"] == GUILD_ID
    assert {c["name"] for c in running.api.commands[GUILD_ID]} == {"papers", "papers-channel"}


async def test_start_sending_logs_in_over_rest_without_syncing_commands(
        sqlite_url: str, api: FakeDiscordApi, hf: Any) -> None:
    """What ``paperboy deliver --now`` does: enough to send, no command sync, no gateway."""
    settings = make_settings(DATABASE_URL=sqlite_url, PAPERBOY_HF_URL=hf.url, DISCORD_TOKEN=TOKEN,
                             DISCORD_API_URL=api.url)
    app = await asyncio.to_thread(build_app, settings)
    adapter = DiscordAdapter(settings, app.core, app.storage)
    try:
        await adapter.start_sending()
        await adapter.send_to_channel(ChannelRef("discord", GUILD_ID, CHANNEL_ID),
                                      await app.core.search_reply("generalization"))
        assert api.names() == ["get_me", "get_application", "create_message"]   # no command sync
        assert adapter.client.ws is None   # never connected to the gateway
    finally:
        await adapter.stop()
        await app.close()


# --- sends --------------------------------------------------------------------------------------------------


async def search(running: Running, topic: str = "generalization") -> Reply:
    return await running.app.core.search_reply(topic)


async def test_send_to_channel_posts_the_previewed_payload_with_no_mentions(running: Running) -> None:
    reply = await search(running)
    sent = await running.adapter.send_to_channel(ChannelRef("discord", GUILD_ID, CHANNEL_ID), reply)
    [call] = running.api.calls_to("create_message")
    assert call.params["channel"] == CHANNEL_ID and sent.channel == CHANNEL_ID and sent.message_id
    preview = message_payload(reply)
    assert call.body["allowed_mentions"] == {"parse": []}
    assert call.body["content"] == preview["content"]
    assert without_flags(call.body["embeds"]) == preview["embeds"]
    assert without_select_defaults(call.body["components"]) == preview["components"]
    assert "@everyone" not in str(call.body) and "<@123456789012345678>" not in str(call.body)


async def test_send_to_user_opens_a_dm_then_posts(running: Running) -> None:
    reply = Reply(kind=ReplyKind.PERSONAL_ALERT, title="Your daily papers", lines=("Nothing new.",), ephemeral=False)
    sent = await running.adapter.send_to_user(UserRef("discord", GUILD_ID, USER_ID), reply)
    assert running.api.names()[-2:] == ["create_dm", "create_message"]
    assert running.api.calls_to("create_dm")[0].body == {"recipient_id": int(USER_ID)}
    dm_channel = running.api.calls_to("create_message")[0].params["channel"]
    assert sent.channel == dm_channel != CHANNEL_ID
    assert running.api.calls_to("create_message")[0].body["allowed_mentions"] == {"parse": []}


async def test_a_delivery_sent_twice_with_its_nonce_is_created_once(running: Running) -> None:
    """A repeat of a scheduled delivery (a retry after a timeout, a pass after a crash) carries the
    same nonce with ``enforce_nonce``; Discord answers with the message it already created (the fake
    follows discord-api-docs, Create Message ``enforce_nonce``)."""
    reply = Reply(kind=ReplyKind.CHANNEL_DIGEST, title="Trending", lines=("x",), ephemeral=False)
    channel = ChannelRef("discord", GUILD_ID, CHANNEL_ID)
    key = DeliveryKey(4242, datetime(2026, 11, 20, 9, tzinfo=timezone.utc))
    first = await running.adapter.send_to_channel(channel, reply, key=key)
    again = await running.adapter.send_to_channel(channel, reply, key=key)
    calls = running.api.calls_to("create_message")
    assert [(c.body["nonce"], c.body["enforce_nonce"]) for c in calls] == [("paperboy:4242", True)] * 2
    assert len(running.api.created) == 1 and again.message_id == first.message_id
    other = await running.adapter.send_to_channel(channel, reply, key=DeliveryKey(4243, key.not_before))
    assert len(running.api.created) == 2 and other.message_id != first.message_id
    # a DM alert is keyed the same way
    user = UserRef("discord", GUILD_ID, USER_ID)
    dm_first = await running.adapter.send_to_user(user, reply, key=DeliveryKey(7, key.not_before))
    dm_again = await running.adapter.send_to_user(user, reply, key=DeliveryKey(7, key.not_before))
    assert dm_again.message_id == dm_first.message_id and len(running.api.created) == 3


async def test_past_the_nonce_window_a_repeat_is_created_again(running: Running) -> None:
    """The bound of the guarantee: Discord checks a nonce for "the past few minutes" only."""
    now = [1000.0]
    running.api.clock = lambda: now[0]
    reply = Reply(kind=ReplyKind.CHANNEL_DIGEST, title="Trending", lines=("x",), ephemeral=False)
    channel = ChannelRef("discord", GUILD_ID, CHANNEL_ID)
    key = DeliveryKey(99, datetime(2026, 11, 20, 9, tzinfo=timezone.utc))
    await running.adapter.send_to_channel(channel, reply, key=key)
    now[0] += running.api.nonce_window + 1
    await running.adapter.send_to_channel(channel, reply, key=key)
    assert len(running.api.created) == 2


def test_a_delivery_nonce_fits_discords_25_characters() -> None:
    assert len(DeliveryKey(10 ** 16 - 1, datetime(2026, 1, 1, tzinfo=timezone.utc)).nonce) <= 25


@pytest.mark.parametrize(("code", "kind"), [(50007, FailureKind.DMS_CLOSED), (10003, FailureKind.TARGET_GONE),
                                            (50013, FailureKind.FORBIDDEN), (50035, FailureKind.TRANSIENT)])
async def test_channel_send_failures_raise_their_kind(running: Running, code: int, kind: FailureKind) -> None:
    running.api.fail("create_message", code, channel=CHANNEL_ID)
    reply = Reply(kind=ReplyKind.CHANNEL_DIGEST, title="Trending", lines=("x",), ephemeral=False)
    with pytest.raises(SendError) as caught:
        await running.adapter.send_to_channel(ChannelRef("discord", GUILD_ID, CHANNEL_ID), reply)
    assert caught.value.kind is kind and caught.value.detail == str(code)
    assert TOKEN not in str(caught.value)


async def test_dm_to_a_person_who_does_not_accept_dms_raises_dms_closed(running: Running) -> None:
    running.api.fail("create_message", 50007)
    reply = Reply(kind=ReplyKind.PERSONAL_ALERT, title="Your daily papers", lines=("x",), ephemeral=False)
    with pytest.raises(SendError) as caught:
        await running.adapter.send_to_user(UserRef("discord", GUILD_ID, USER_ID), reply)
    assert caught.value.kind is FailureKind.DMS_CLOSED


async def test_short_429_is_retried_by_discord_py(running: Running) -> None:
    running.api.rate_limit("create_message", retry_after=0.05)
    running.api.rate_limit("create_message", retry_after=0.05, is_global=True)
    reply = Reply(kind=ReplyKind.CHANNEL_DIGEST, title="Trending", lines=("x",), ephemeral=False)
    sent = await running.adapter.send_to_channel(ChannelRef("discord", GUILD_ID, CHANNEL_ID), reply)
    assert sent.message_id and len(running.api.calls_to("create_message")) == 3


async def test_429s_are_counted_in_the_metrics(running: Running) -> None:
    running.api.rate_limit("create_message", retry_after=0.05, times=2)
    reply = Reply(kind=ReplyKind.CHANNEL_DIGEST, title="Trending", lines=("x",), ephemeral=False)
    await running.adapter.send_to_channel(ChannelRef("discord", GUILD_ID, CHANNEL_ID), reply)
    registry = running.app.metrics.registry
    assert registry.get_sample_value("paperboy_rate_limit_waits_total", {"platform": "discord"}) == 2


async def test_long_429_is_not_waited_for_but_reported_with_retry_after(running: Running) -> None:
    running.api.rate_limit("create_message", retry_after=120.0)
    reply = Reply(kind=ReplyKind.CHANNEL_DIGEST, title="Trending", lines=("x",), ephemeral=False)
    started = time.monotonic()
    with pytest.raises(SendError) as caught:
        await running.adapter.send_to_channel(ChannelRef("discord", GUILD_ID, CHANNEL_ID), reply)
    assert time.monotonic() - started < 5
    assert caught.value.kind is FailureKind.RATE_LIMITED and caught.value.retry_after == 120.0


async def test_persistent_429_ends_after_discord_py_tries_instead_of_forever(running: Running) -> None:
    running.api.rate_limit("create_message", retry_after=0.01, times=None)
    reply = Reply(kind=ReplyKind.CHANNEL_DIGEST, title="Trending", lines=("x",), ephemeral=False)
    with pytest.raises(SendError) as caught:
        await running.adapter.send_to_channel(ChannelRef("discord", GUILD_ID, CHANNEL_ID), reply)
    assert caught.value.kind is FailureKind.RATE_LIMITED
    assert len(running.api.calls_to("create_message")) == 5


async def test_429_without_discords_proxy_header_is_reported_not_retried(running: Running) -> None:
    running.api.rate_limit("create_message", retry_after=3, via=False)
    reply = Reply(kind=ReplyKind.CHANNEL_DIGEST, title="Trending", lines=("x",), ephemeral=False)
    with pytest.raises(SendError) as caught:
        await running.adapter.send_to_channel(ChannelRef("discord", GUILD_ID, CHANNEL_ID), reply)
    assert caught.value.kind is FailureKind.RATE_LIMITED and caught.value.retry_after == 3.0
    assert len(running.api.calls_to("create_message")) == 1


# --- slash commands -----------------------------------------------------------------------------------------


async def test_search_defers_ephemerally_then_edits_in_the_results_with_buttons(running: Running) -> None:
    payload = slash_payload("papers", "search", topic="Generalization")
    body = await running.interact(payload)
    names = running.api.names()
    assert names.index("interaction_callback") < names.index("edit_original")
    assert running.callback_for(payload) == {"type": 5, "data": {"flags": EPHEMERAL}}
    edit = running.api.calls_to("edit_original")[0]
    assert edit.params == {"app": APPLICATION_ID, "token": payload["token"]}
    assert body["allowed_mentions"] == {"parse": []}
    assert body["content"].startswith("**Papers on “generalization”**")
    assert 1 <= len(body["embeds"]) <= 10
    assert all(e["url"].startswith("https://huggingface.co/papers/") for e in body["embeds"])
    buttons = body["components"][0]["components"]
    assert [(b["label"], b["custom_id"]) for b in buttons] == [
        ("Share in channel", "paperboy:share:generalization"),
        ("Subscribe to generalization", "paperboy:subscribe:generalization")]
    menus = [row["components"][0] for row in body["components"][1:]]
    assert [(m["type"], m["custom_id"]) for m in menus] == [
        (3, "paperboy:fb:up:-"), (3, "paperboy:fb:down:-"), (3, "paperboy:fb:fewer:-")]
    assert all(len(m["options"]) == len(body["embeds"]) for m in menus)   # every paper shown can be rated
    assert check_limits(body) == []
    text = json.dumps(body, ensure_ascii=False)
    assert "@everyone" not in text and "<@123456789012345678>" not in text and "<@&456789012345678901>" not in text
    assert any("@\u200beveryone Generalization \\*\\*now\\*\\*" in e["title"] for e in body["embeds"])


async def test_subscribe_then_unsubscribe_autocompletes_own_topics(running: Running) -> None:
    body = await running.interact(slash_payload("papers", "subscribe", topic="Diffusion Models"))
    assert body["embeds"][0]["title"] == "Subscribed to “diffusion models”"
    await running.interact(slash_payload("papers", "subscribe", topic="generalization"))
    await running.interact(slash_payload("papers", "subscribe", topic="robotics", user_id="830000000000000099"))

    payload = autocomplete_payload("papers", "unsubscribe", focused="topic", value="gen")
    assert await running.interact(payload, endpoint="interaction_callback") == {"type": 8, "data": {"choices": [
        {"name": "generalization", "value": "generalization"}]}}
    everything = autocomplete_payload("papers", "unsubscribe", focused="topic", value="")
    choices = (await running.interact(everything, endpoint="interaction_callback"))["data"]["choices"]
    assert [c["value"] for c in choices] == [
        "diffusion models", "generalization"]         # not the other person's "robotics"

    body = await running.interact(slash_payload("papers", "unsubscribe", topic="generalization"))
    assert body["embeds"][0]["title"] == "Unsubscribed from “generalization”"
    topics = await running.app.storage.topics.topics(UserRef("discord", GUILD_ID, USER_ID))
    assert topics == ["diffusion models"]


async def test_timezone_is_autocompleted(running: Running) -> None:
    payload = autocomplete_payload("papers-channel", "on", focused="timezone", value="berlin", time="09:00")
    body = await running.interact(payload, endpoint="interaction_callback")
    assert body["data"]["choices"] == [{"name": "Europe/Berlin", "value": "Europe/Berlin"}]


async def test_channel_commands_are_rechecked_against_manage_channels(running: Running) -> None:
    body = await running.interact(slash_payload("papers-channel", "on", time="08:15", timezone="Europe/Berlin"))
    assert body["embeds"][0]["title"] == "Not allowed"
    channel = ChannelRef("discord", GUILD_ID, CHANNEL_ID)
    assert await running.app.storage.channels.get(channel) is None

    body = await running.interact(slash_payload("papers-channel", "on", time="08:15", timezone="europe/berlin",
                                                permissions=MODERATOR_PERMISSIONS))
    assert body["embeds"][0]["title"] == "Daily post on"
    assert "08:15 Europe/Berlin" in body["embeds"][0]["description"]
    setting = await running.app.storage.channels.get(channel)
    assert setting is not None and setting.enabled and setting.created_by == USER_ID

    body = await running.interact(slash_payload("papers-channel", "show"))
    assert body["embeds"][0]["title"] == "This channel's daily post"
    body = await running.interact(slash_payload("papers-channel", "off", permissions=MODERATOR_PERMISSIONS))
    assert body["embeds"][0]["title"] == "Daily post off"


async def test_today_alerts_and_subscriptions(running: Running) -> None:
    body = await running.interact(slash_payload("papers", "today"))
    assert body["content"].startswith("**Trending papers")
    assert not body.get("components") and 1 <= len(body["embeds"]) <= 10
    body = await running.interact(slash_payload("papers", "alerts", "on", time="07:45", timezone="Asia/Tokyo"))
    assert body["embeds"][0]["description"].startswith("Your alerts arrive daily at 07:45 Asia/Tokyo.")
    body = await running.interact(slash_payload("papers", "subscriptions"))
    assert body["embeds"][0]["title"] == "Your topics"
    body = await running.interact(slash_payload("papers", "alerts", "off"))
    assert body["embeds"][0]["title"] == "Alerts off"


async def test_paused_alerts_notice_is_shown_on_the_next_command(running: Running) -> None:
    user = UserRef("discord", GUILD_ID, USER_ID)
    await running.interact(slash_payload("papers", "subscribe", topic="generalization"))
    await running.app.storage.topics.pause(user, "dms closed", "Your alerts are paused: allow DMs from Paperboy.")
    body = await running.interact(slash_payload("papers", "subscriptions"))
    assert "*Your alerts are paused: allow DMs from Paperboy.*" in body["content"]
    body = await running.interact(slash_payload("papers", "subscriptions"))
    assert "paused: allow" not in (body["content"] or "")     # shown once


async def test_invalid_option_answers_with_help_and_the_problem(running: Running) -> None:
    body = await running.interact(slash_payload("papers", "alerts", "on", time="31:00"))
    assert body["embeds"][0]["title"].startswith("Paperboy")
    assert "hours run 00-23" in body["content"]


# --- buttons ---------------------------------------------------------------------------------------------


async def test_share_button_reposts_the_results_publicly_naming_who_shared(running: Running) -> None:
    components = message_payload(await search(running))["components"]
    payload = button_payload("paperboy:share:generalization", message_with(components))
    body = await running.interact(payload, endpoint="followup")
    assert running.callback_for(payload) == {"type": 6}          # acknowledged; the ephemeral message stays
    assert running.api.calls_to("followup")[0].query.get("wait") in ("1", "true")
    assert not (body.get("flags") or 0) & EPHEMERAL               # public
    assert body["content"].startswith(f"<@{USER_ID}> shared a search:\n**Papers on “generalization”**")
    assert body["allowed_mentions"] == {"parse": []}              # the sharer's name shows, nobody is pinged
    assert [b["label"] for b in body["components"][0]["components"]] == ["Subscribe to generalization"]
    assert len(body["components"]) == 1                           # no vote menus on a post for everyone
    assert len(body["embeds"]) >= 1


async def test_subscribe_button_subscribes_the_presser(running: Running) -> None:
    components = message_payload(await search(running))["components"]
    payload = button_payload("paperboy:subscribe:generalization", message_with(components),
                             user_id="830000000000000042")
    body = await running.interact(payload)
    assert running.callback_for(payload) == {"type": 5, "data": {"flags": EPHEMERAL}}
    assert body["embeds"][0]["title"] == "Subscribed to “generalization”"
    assert await running.app.storage.topics.topics(UserRef("discord", GUILD_ID, "830000000000000042")) == [
        "generalization"]


async def test_commands_in_direct_messages_use_the_dm_workspace(running: Running) -> None:
    body = await running.interact(slash_payload("papers", "subscribe", topic="robotics", guild_id=None))
    assert body["embeds"][0]["title"] == "Subscribed to “robotics”"
    assert await running.app.storage.topics.topics(UserRef("discord", "dm", USER_ID)) == ["robotics"]


@pytest.mark.parametrize("db", ["postgresql"])
async def test_subscribe_and_channel_on_postgresql(start_discord: Start, postgres_url: str, db: str) -> None:
    running = await start_discord(postgres_url)
    await running.interact(slash_payload("papers", "subscribe", topic="generalization"))
    body = await running.interact(slash_payload("papers-channel", "on", permissions=MODERATOR_PERMISSIONS,
                                                top=4, post_when_empty=True))
    assert body["embeds"][0]["title"] == "Daily post on"
    setting = await running.app.storage.channels.get(ChannelRef("discord", GUILD_ID, CHANNEL_ID))
    assert setting is not None and (setting.top_n, setting.post_when_empty) == (4, True)
    assert await running.app.storage.topics.topics(UserRef("discord", GUILD_ID, USER_ID)) == ["generalization"]


async def test_api_url_is_per_client_and_leaks_into_no_global_state(running: Running) -> None:
    from discord.http import Route
    from discord.webhook.async_ import async_context

    from adapters.discord.adapter import RebasedWebhookAdapter

    assert Route.BASE == "https://discord.com/api/v10"
    assert not isinstance(async_context.get(), RebasedWebhookAdapter)       # this test's own context
    inside = running.adapter._context.run(async_context.get)  # noqa: SLF001 - the context the gateway runs in
    assert isinstance(inside, RebasedWebhookAdapter) and inside.base == running.api.url


# --- long topics and what buttons carry -----------------------------------------------------------------

LONG_TOPIC = ("generalization " * 13).strip()        # 194 characters: Discord's custom_id holds 100


async def test_a_200_character_topic_keeps_share_subscribe_and_unsubscribe_working(running: Running) -> None:
    """custom_id and choice values are at most 100 characters (Discord API docs, Message Components and
    Application Commands "Autocomplete"); long topics travel as a key (adapters.controls)."""
    body = await running.interact(slash_payload("papers", "search", topic=LONG_TOPIC))
    buttons = body["components"][0]["components"]
    assert [b["label"][:16] for b in buttons] == ["Share in channel", "Subscribe to gen"]
    assert all(len(b["custom_id"]) <= 100 and "#" in b["custom_id"] for b in buttons)

    # Share: the topic is stored nowhere but the key table, and still found after the click.
    share = button_payload(buttons[0]["custom_id"], message_with(body["components"]))
    shared = await running.interact(share, endpoint="followup")
    assert shared["content"].startswith(f"<@{USER_ID}> shared a search:\n**Papers on “{LONG_TOPIC}”**")
    assert shared["embeds"]

    subscribe = button_payload(buttons[1]["custom_id"], message_with(body["components"]))
    confirmed = await running.interact(subscribe)
    assert confirmed["embeds"][0]["title"] == f"Subscribed to “{LONG_TOPIC}”"
    person = UserRef("discord", GUILD_ID, USER_ID)
    assert await running.app.storage.topics.topics(person) == [LONG_TOPIC]

    # Autocomplete lists it cut with "…", its value a key that the command resolves back.
    listed = await running.interact(autocomplete_payload("papers", "unsubscribe", focused="topic", value="gen"),
                                    endpoint="interaction_callback")
    [choice] = listed["data"]["choices"]
    assert len(choice["name"]) <= 100 and choice["name"].endswith("…") and len(choice["value"]) <= 100
    gone = await running.interact(slash_payload("papers", "unsubscribe", topic=choice["value"]))
    assert gone["embeds"][0]["title"] == f"Unsubscribed from “{LONG_TOPIC}”"
    assert await running.app.storage.topics.topics(person) == []


async def test_a_key_nobody_issued_is_refused_with_a_reason(running: Running) -> None:
    components = [{"type": 1, "components": [{"type": 2, "style": 1, "label": "Subscribe",
                                              "custom_id": "paperboy:subscribe#abcdefghijklmnop"}]}]
    body = await running.interact(button_payload("paperboy:subscribe#abcdefghijklmnop", message_with(components)))
    assert "no longer knows its topic" in json.dumps(body)
    assert await running.app.storage.topics.topics(UserRef("discord", GUILD_ID, USER_ID)) == []


@pytest.mark.parametrize("action", ["share", "subscribe"])
async def test_a_forged_custom_id_goes_through_the_same_normaliser_as_typed_text(running: Running,
                                                                                 action: str) -> None:
    custom_id = f"paperboy:{action}:@everyone \u202e<@&1>\x00 Generalization"
    components = [{"type": 1, "components": [{"type": 2, "style": 1, "label": "x", "custom_id": custom_id}]}]
    payload = button_payload(custom_id, message_with(components))
    body = await running.interact(payload, endpoint="followup" if action == "share" else "edit_original")
    assert body["allowed_mentions"] == {"parse": []}
    labels = [b["label"] for row in body.get("components") or [] for b in row["components"]]
    text = json.dumps([body.get("content"), body.get("embeds"), labels], ensure_ascii=False)  # what people see
    assert "\u202e" not in text and "\\u0000" not in text and "@everyone" not in text and "<@&1>" not in text
    if action == "share":
        searched = [q.get("q") for path, q in running.hf.requests if path == "/api/papers/search"]
        assert searched and all("\u202e" not in q and "\x00" not in q for q in searched)
        assert searched[-1] == "@everyone <@&1> generalization"
    else:
        assert await running.app.storage.topics.topics(UserRef("discord", GUILD_ID, USER_ID)) == [
            "@everyone <@&1> generalization"]


async def test_markup_from_papers_and_topics_stays_text_in_embeds_and_in_the_shared_public_message(
        running: Running) -> None:
    """A summary's second masked link (discord.utils.escape_markdown escapes only the first) and a shared
    topic full of links reach Discord as text: the only live links are the bot's own."""
    from tests.discord_markdown import live_links, live_markup

    topic = "[a](http://a.example) [verify](http://evil.example) generalization"
    custom_id = f"paperboy:share:{topic}"
    components = [{"type": 1, "components": [{"type": 2, "style": 2, "label": "Share", "custom_id": custom_id}]}]
    shared = await running.interact(button_payload(custom_id, message_with(components)), endpoint="followup")
    assert not (shared.get("flags") or 0) & EPHEMERAL                      # public
    lead = f"<@{USER_ID}> shared a search:\n"
    content = shared["content"].removeprefix(lead).replace("**Papers on “", "Papers on “", 1).replace("”**", "”", 1)
    assert live_markup(content) == [] and "evil.example" in content
    hostile = [e for e in shared["embeds"] if "evil.example" in e["description"]]
    assert hostile, "the paper with the hostile summary is among the results"
    for embed in shared["embeds"]:
        assert all(url.startswith(("https://huggingface.co/", "https://arxiv.org/", "https://github.com/example/",
                                   "https://project")) for url in live_links(embed["description"])), embed
        assert [m for m in live_markup(embed["description"]) if not m.startswith("link ")] == []
        assert live_markup(embed["title"].split(". ", 1)[1]) == []


async def test_a_full_command_pool_still_defers_at_once_and_answers_busy(start_discord: Start,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """One worker, one queue place: a third command is deferred like the others, then told "busy"."""
    from bot.work import BUSY_MESSAGE

    running = await start_discord(PAPERBOY_COMMAND_WORKERS="1", PAPERBOY_COMMAND_QUEUE="1")
    release, started = asyncio.Event(), asyncio.Event()
    dispatch = running.app.core.dispatch

    async def slow_dispatch(ctx: Any, args: Any) -> Reply:
        started.set()
        await release.wait()
        return await dispatch(ctx, args)

    monkeypatch.setattr(running.app.core, "dispatch", slow_dispatch)
    payloads = [slash_payload("papers", "help") for _ in range(3)]
    running.adapter.dispatch_interaction(payloads[0])
    await started.wait()
    for payload in payloads[1:]:
        running.adapter.dispatch_interaction(payload)
    await running.api.wait_for("interaction_callback", 3)          # all three deferred
    busy = (await running.api.wait_for("edit_original", 1))[0].body
    assert BUSY_MESSAGE in json.dumps(busy)
    release.set()
    edits = await running.api.wait_for("edit_original", 3)
    assert sum(BUSY_MESSAGE in json.dumps(e.body) for e in edits) == 1


# --- feedback menus ------------------------------------------------------------------------------------------


def choice_payload(custom_id: str, value: str, message: dict[str, Any], *, guild_id: str | None = GUILD_ID,
                   user_id: str = USER_ID) -> dict[str, Any]:
    """A choice in a string select menu (component type 3) on ``message``, as the gateway delivers it."""
    return interaction_payload(3, {"component_type": 3, "custom_id": custom_id, "values": [value]},
                               guild_id=guild_id, user_id=user_id, message=message)


def menu(components: list[dict[str, Any]], vote: str) -> dict[str, Any]:
    return next(row["components"][0] for row in components
                if row["components"][0].get("custom_id", "").startswith(f"paperboy:fb:{vote}:"))


async def feedback_rows(running: Running) -> int:
    from sqlalchemy import func, select

    from storage.models import PaperFeedback

    async with running.app.storage.db.read() as session:
        return (await session.execute(select(func.count()).select_from(PaperFeedback))).scalar_one()


async def test_a_vote_from_the_menu_is_recorded_and_confirmed_only_to_the_voter(running: Running) -> None:
    searched = await running.interact(slash_payload("papers", "search", topic="generalization"))
    up = menu(searched["components"], "up")
    second = up["options"][1]
    payload = choice_payload(up["custom_id"], second["value"], message_with(searched["components"]))
    started = time.monotonic()
    body = await running.interact(payload)
    assert running.callback_for(payload) == {"type": 5, "data": {"flags": EPHEMERAL}}   # answered in time
    assert time.monotonic() - started < 3
    assert body["embeds"][0]["title"] == "👍 Noted: more like this"
    paper_id = second["value"].split("/", 1)[1].split(":", 1)[0]      # paperboy:vote/<paper id>:<topic>
    [stored] = await running.app.storage.feedback.votes(UserRef("discord", GUILD_ID, USER_ID), "generalization")
    assert (stored.paper_id, stored.vote) == (paper_id, "up")
    again = await running.interact(slash_payload("papers", "search", topic="generalization"))
    assert "Ranked for you from your 1 vote" in again["content"]


async def test_a_dm_alert_vote_counts_for_the_server_the_alert_was_for(running: Running) -> None:
    await running.interact(slash_payload("papers", "subscribe", topic="generalization"))
    alert = await search(running)
    alert = Reply(kind=ReplyKind.PERSONAL_ALERT, title="New papers on your topics", sections=alert.sections,
                  ephemeral=False)
    await running.adapter.send_to_user(UserRef("discord", GUILD_ID, USER_ID), alert)
    sent = running.api.calls_to("create_message")[-1].body
    assert check_limits(sent) == []
    fewer = menu(sent["components"], "fewer")
    assert fewer["custom_id"] == f"paperboy:fb:fewer:{GUILD_ID}"
    dm_message = message_with(sent["components"], flags=0)
    payload = choice_payload(fewer["custom_id"], fewer["options"][0]["value"], dm_message, guild_id=None)
    body = await running.interact(payload)
    assert body["embeds"][0]["title"] == "Noted: fewer like this"
    [stored] = await running.app.storage.feedback.votes(UserRef("discord", GUILD_ID, USER_ID), "generalization")
    assert stored.vote == "fewer"
    # someone else pressing a menu forwarded from that DM has no topics on that server: refused
    stranger = choice_payload(fewer["custom_id"], fewer["options"][1]["value"], dm_message, guild_id=None,
                              user_id="830000000000000077")
    refused = await running.interact(stranger)
    assert "another server" in refused["embeds"][0]["description"]
    assert await feedback_rows(running) == 1


async def test_long_topics_travel_as_a_key_resolved_against_the_voters_own_topics(running: Running) -> None:
    long_topic = "generalization of " + "very " * 30 + "deep networks"
    await running.interact(slash_payload("papers", "subscribe", topic=long_topic))
    value = feedback_option_value(long_topic, "2501.00001")
    assert value == f"paperboy:vote/2501.00001#{topic_key(long_topic)}" and len(value) <= 100
    await running.app.papers.search("generalization")                       # the paper is known
    components = [{"type": 1, "components": [{"type": 3, "custom_id": "paperboy:fb:up:-", "options": [
        {"label": "1. A paper", "value": value}]}]}]
    body = await running.interact(choice_payload("paperboy:fb:up:-", value, message_with(components)))
    assert body["embeds"][0]["title"] == "👍 Noted: more like this"
    assert len(await running.app.storage.feedback.votes(UserRef("discord", GUILD_ID, USER_ID), long_topic)) == 1


@pytest.mark.parametrize(("custom_id", "value"), [
    ("paperboy:fb:up:-", "paperboy:vote/<@123456789012345678>:generalization"),
    ("paperboy:fb:up:-", "paperboy:vote/2501.99999:generalization"),          # well formed, never shown
    ("paperboy:fb:sideways:-", "paperboy:vote/2501.00001:generalization"),
    ("paperboy:fb:up:../../etc", "paperboy:vote/2501.00001:generalization"),
    ("paperboy:fb:" + "x" * 80, "paperboy:vote/2501.00001:generalization"),
    ("paperboy:fb:up:-", "paperboy:vote/2501.00001#abcdefghijklmnop"),       # a key nobody's topic has
    ("paperboy:fb:up:-", "paperboy:subscribe:generalization"),               # another control's value
    ("paperboy:fb:up:-", "|"),
    ("paperboy:fb:down:-", "paperboy:vote/2501.00001:\u200b\u202e \u2066"),     # invisible: no topic at all
])
async def test_forged_menus_are_refused_with_an_answer_and_store_nothing(running: Running, custom_id: str,
                                                                          value: str) -> None:
    await running.app.papers.search("generalization")
    components = [{"type": 1, "components": [{"type": 3, "custom_id": custom_id, "options": [
        {"label": "x", "value": value[:100]}]}]}]
    payload = choice_payload(custom_id, value[:100], message_with(components))
    body = await running.interact(payload)
    assert running.callback_for(payload) == {"type": 5, "data": {"flags": EPHEMERAL}}
    text = json.dumps(body, ensure_ascii=False)
    assert body["embeds"] and "Traceback" not in text and "@everyone" not in text.replace("@\u200beveryone", "")
    assert body["allowed_mentions"] == {"parse": []}
    assert await feedback_rows(running) == 0
