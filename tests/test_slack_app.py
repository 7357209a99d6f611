"""The Slack app end to end: signed HTTP requests and Socket Mode payloads through slack-bolt,
the real core and storage, and the real slack_sdk clients talking to a fake Slack Web API.

Nothing reaches the internet: Slack is :class:`tests.fakes.slack_api.FakeSlackApi` and the
paper source a tiny Hugging Face stand-in, both real HTTP servers on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

import aiohttp
import pytest
from slack_bolt.request.async_request import AsyncBoltRequest

from adapters.base import Adapter, FailureKind, SendError
from adapters.slack import SlackAdapter
from adapters.slack.home import ADD_TOPIC_ACTION, ADD_TOPIC_CALLBACK, REMOVE_TOPIC_ACTION
from adapters.slack.render import FEEDBACK_ACTIONS, SHARE_ACTION, SUBSCRIBE_ACTION, iter_texts
from bot.app import App, build_app
from bot.models import ChannelRef, Reply, ReplyKind, Section, UserRef
from bot.ranking import rank_for_topic
from storage.models import PaperFeedback
from tests.conftest import make_settings
from tests.fakes.slack_api import HOSTILE_TITLE, FakeSlackApi, TinyHuggingFace, signed_headers

SECRET = "test-signing-secret"
BOT_TOKEN = "xoxb-1-test-token-NEVER-LOG-ME"
TEAM = "T1"


@dataclass
class Running:
    """One started Slack adapter in HTTP mode, and how to talk to it."""

    app: App
    adapter: SlackAdapter
    slack: FakeSlackApi
    hf: TinyHuggingFace
    http: aiohttp.ClientSession

    @property
    def events_url(self) -> str:
        return f"http://127.0.0.1:{self.adapter.http_port}/slack/events"

    async def post(self, body: str, *, content_type: str = "application/x-www-form-urlencoded",
                   headers: dict[str, str] | None = None) -> tuple[int, str]:
        headers = headers if headers is not None else signed_headers(SECRET, body, content_type=content_type)
        async with self.http.post(self.events_url, data=body.encode(), headers=headers) as response:
            return response.status, await response.text()

    async def slash(self, text: str, *, user: str = "U1", channel: str = "C1", key: str = "r1") -> dict[str, Any]:
        """Run ``/papers <text>`` and return what the app posted to the response URL."""
        before = len(self.slack.responses(key))
        status, body = await self.post(slash_body(text, self.slack, user=user, channel=channel, key=key))
        assert (status, body) == (200, "")
        calls = await self.slack.wait_for(f"response:{key}", before + 1)
        return calls[-1].params

    async def action(self, action_id: str, value: str, *, user: str = "U1", channel: str | None = "C1",
                     key: str = "a1") -> tuple[int, str]:
        payload = block_actions_payload(action_id, value, self.slack, user=user, channel=channel, key=key)
        return await self.post(urlencode({"payload": json.dumps(payload)}))


def slash_body(text: str, slack: FakeSlackApi, *, user: str = "U1", channel: str = "C1", key: str = "r1") -> str:
    """A slash command as Slack posts it (recorded field set)."""
    return urlencode({
        "token": "verification-token-unused", "team_id": TEAM, "team_domain": "paperlab", "channel_id": channel,
        "channel_name": "research", "user_id": user, "user_name": "ada", "command": "/papers", "text": text,
        "api_app_id": "A0PAPERBOY", "is_enterprise_install": "false", "response_url": slack.response_url(key),
        "trigger_id": "123.456.abc",
    })


def block_actions_payload(action_id: str, value: str, slack: FakeSlackApi, *, user: str = "U1",
                          channel: str | None = "C1", key: str = "a1") -> dict[str, Any]:
    payload: dict[str, Any] = {
        "type": "block_actions", "api_app_id": "A0PAPERBOY", "token": "unused", "trigger_id": "987.654.xyz",
        "team": {"id": TEAM, "domain": "paperlab"}, "user": {"id": user, "username": "ada", "team_id": TEAM},
        "container": {"type": "message", "message_ts": "1.2", "is_ephemeral": True},
        "response_url": slack.response_url(key),
        "actions": [{"type": "button", "action_id": action_id, "block_id": "b1", "value": value,
                     "action_ts": "1700000000.1"}],
    }
    if channel:
        payload["channel"] = {"id": channel, "name": "research"}
    else:
        payload["container"] = {"type": "view", "view_id": "V1"}
        del payload["response_url"]
    return payload


def event_body(event: dict[str, Any], *, team: str = TEAM) -> str:
    return json.dumps({"token": "unused", "team_id": team, "api_app_id": "A0PAPERBOY", "type": "event_callback",
                       "event_id": f"Ev{time.time_ns()}", "event_time": int(time.time()), "event": event,
                       "authorizations": [{"team_id": team, "user_id": "UBOTPAPERBOY", "is_bot": True}]})


def view_submission_payload(topic: str, *, user: str = "U1") -> dict[str, Any]:
    return {"type": "view_submission", "team": {"id": TEAM, "domain": "paperlab"},
            "user": {"id": user, "username": "ada", "team_id": TEAM}, "api_app_id": "A0PAPERBOY",
            "trigger_id": "1.2.3",
            "view": {"id": "V9", "type": "modal", "callback_id": ADD_TOPIC_CALLBACK,
                     "state": {"values": {"topic": {"topic_input": {"type": "plain_text_input", "value": topic}}}}}}


# --- fixtures -------------------------------------------------------------------------------------


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlackApi]:
    async with FakeSlackApi(team_id=TEAM) as fake:
        yield fake


@pytest.fixture
async def hf() -> AsyncIterator[TinyHuggingFace]:
    fake = await TinyHuggingFace().start()
    yield fake
    await fake.stop()


StartSlack = Callable[..., Awaitable[Running]]


@pytest.fixture
async def start_slack(sqlite_url: str, slack: FakeSlackApi, hf: TinyHuggingFace) -> AsyncIterator[StartSlack]:
    """Start the app in HTTP mode with extra settings; everything is stopped after the test."""
    started: list[Running] = []

    async def start(url: str = sqlite_url, **extra: Any) -> Running:
        values = dict(DATABASE_URL=url, PAPERBOY_HF_URL=hf.url, PAPERBOY_OFFLINE_SAMPLE=False,
                      SLACK_API_URL=slack.url, SLACK_SIGNING_SECRET=SECRET, SLACK_BOT_TOKEN=BOT_TOKEN)
        values.update(extra)
        settings = make_settings(**{k: v for k, v in values.items() if v is not None})
        app = await asyncio.to_thread(build_app, settings)
        adapter = SlackAdapter(settings, app.core, app.storage, host="127.0.0.1", port=0)
        await adapter.start()
        running = Running(app, adapter, slack, hf, aiohttp.ClientSession())
        started.append(running)
        return running

    yield start
    for running in started:
        await running.http.close()
        await running.adapter.stop()
        await running.app.close()


@pytest.fixture
async def running(start_slack: StartSlack) -> Running:
    return await start_slack()


# --- the slash command over HTTP ------------------------------------------------------------------


async def test_adapter_satisfies_the_protocol(running: Running) -> None:
    assert isinstance(running.adapter, Adapter)
    assert running.adapter.platform == "slack"
    async with running.http.get(f"http://127.0.0.1:{running.adapter.http_port}/healthz") as response:
        assert response.status == 200


async def test_slash_search_is_acked_before_the_papers_arrive_then_answered_ephemerally(running: Running) -> None:
    running.hf.hold = asyncio.Event()
    started = time.monotonic()
    status, body = await running.post(slash_body("generalization", running.slack))
    assert (status, body) == (200, "")          # the ack: an empty 200, while the paper source still hangs
    assert time.monotonic() - started < 3
    assert running.slack.responses() == []
    running.hf.hold.set()
    answer = (await running.slack.wait_for("response:r1"))[0].params
    assert answer["response_type"] == "ephemeral"
    assert answer["replace_original"] is False
    blocks = answer["blocks"]
    assert blocks[0]["text"]["text"] == "Papers on “generalization”"
    text = json.dumps(answer, ensure_ascii=False)
    assert "&lt;!channel&gt; Generalization &amp; &lt;@U123&gt;" in text
    assert "<!channel>" not in text and "<@U123>" not in text and "<!here>" not in text
    actions = [b for b in blocks if b["type"] == "actions" and b["elements"][0]["action_id"] == SHARE_ACTION][0]
    actions = actions["elements"]
    assert [(a["action_id"], a["value"]) for a in actions] == [(SHARE_ACTION, "generalization"),
                                                               (SUBSCRIBE_ACTION, "generalization")]
    assert answer["text"].startswith("Papers on “generalization” — 1.")
    # users.info was asked with the bot token for the caller's time zone.
    info = running.slack.calls_to("users.info")
    assert [c.params["user"] for c in info] == ["U1"] and info[0].token == BOT_TOKEN


@pytest.mark.parametrize("case", ["unsigned", "stale", "wrong_secret", "tampered"])
async def test_unsigned_or_stale_requests_are_rejected(running: Running, case: str) -> None:
    body = slash_body("generalization", running.slack)
    headers = {
        "unsigned": {"Content-Type": "application/x-www-form-urlencoded"},
        "stale": signed_headers(SECRET, body, timestamp=int(time.time()) - 600),
        "wrong_secret": signed_headers("not-the-secret", body),
        "tampered": signed_headers(SECRET, body.replace("generalization", "other")),
    }[case]
    status, _ = await running.post(body, headers=headers)
    assert status == 401
    assert running.slack.responses() == []
    assert running.hf.searches == []


async def test_every_subcommand_answers_in_block_kit(running: Running) -> None:
    storage = running.app.storage
    subscribed = await running.slash("subscribe Diffusion Models", key="s1")
    assert subscribed["blocks"][0]["text"]["text"] == "Subscribed to “diffusion models”"
    assert await storage.topics.topics(UserRef("slack", TEAM, "U1")) == ["diffusion models"]
    setting = await storage.topics.setting(UserRef("slack", TEAM, "U1"))
    assert setting is not None and setting.timezone == "Europe/Berlin"      # from users.info tz

    topics = await running.slash("subscriptions", key="s2")
    assert "• diffusion models" in json.dumps(topics, ensure_ascii=False)

    channel = await running.slash("channel on 08:30 Europe/Paris", key="s3")
    assert channel["blocks"][0]["text"]["text"] == "Daily post on"
    stored = await storage.channels.get(ChannelRef("slack", TEAM, "C1"))
    assert stored is not None and stored.enabled and stored.created_by == "U1"

    today = await running.slash("today", key="s4")
    assert today["blocks"][0]["type"] == "header" and today["blocks"][0]["text"]["text"].startswith("Trending papers")

    helped = await running.slash("help", key="s5")
    assert "/papers subscribe" in json.dumps(helped)

    bad = await running.slash("alerts on 25:99", key="s6")
    assert bad["response_type"] == "ephemeral"
    # users.info was asked once for all these commands (cached).
    assert len(running.slack.calls_to("users.info")) == 1


async def test_admins_only_channel_settings(start_slack: StartSlack, slack: FakeSlackApi) -> None:
    running = await start_slack(SLACK_ADMINS_ONLY_CHANNEL_SETTINGS="true")
    slack.users["U_ADMIN"] = {"is_admin": True}
    refused = await running.slash("channel on 09:00", user="U1", key="x1")
    assert refused["blocks"][0]["text"]["text"] == ":warning: *Not allowed*"
    assert await running.app.storage.channels.get(ChannelRef("slack", TEAM, "C1")) is None
    allowed = await running.slash("channel on 09:00", user="U_ADMIN", key="x2")
    assert allowed["blocks"][0]["text"]["text"] == "Daily post on"


async def test_socket_mode_payloads_go_through_the_same_handlers(slack: FakeSlackApi, hf: TinyHuggingFace,
                                                                 sqlite_url: str) -> None:
    settings = make_settings(DATABASE_URL=sqlite_url, PAPERBOY_HF_URL=hf.url, PAPERBOY_OFFLINE_SAMPLE=False,
                             SLACK_API_URL=slack.url, SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_APP_TOKEN="xapp-1-test")
    app = await asyncio.to_thread(build_app, settings)
    adapter = SlackAdapter(settings, app.core, app.storage)   # not started: no WebSocket in this test
    try:
        assert adapter.socket_mode and not adapter.serves_http
        payload = dict(parse_qsl(slash_body("generalization", slack)))
        response = await adapter.app.async_dispatch(AsyncBoltRequest(body=payload, mode="socket_mode"))
        assert response.status == 200
        answer = (await slack.wait_for("response:r1"))[0].params
        assert answer["blocks"][0]["text"]["text"] == "Papers on “generalization”"

        click = block_actions_payload(SUBSCRIBE_ACTION, "generalization", slack, key="a9")
        response = await adapter.app.async_dispatch(AsyncBoltRequest(body=click, mode="socket_mode"))
        assert response.status == 200
        confirmation = (await slack.wait_for("response:a9"))[0].params
        assert confirmation["blocks"][0]["text"]["text"] == "Subscribed to “generalization”"
    finally:
        await adapter.stop()      # closes the adapter's shared HTTP session
        await app.close()


# --- buttons --------------------------------------------------------------------------------------


async def test_share_button_posts_the_results_publicly_crediting_the_sharer(running: Running) -> None:
    status, _ = await running.action(SHARE_ACTION, "generalization", key="share")
    assert status == 200
    shared = (await running.slack.wait_for("response:share"))[0].params
    assert shared["response_type"] == "in_channel"
    assert shared["replace_original"] is False
    assert not [b for b in shared["blocks"] if b["type"] == "actions"]
    assert shared["blocks"][-1]["elements"][0]["text"] == "Shared by <@U1>"
    assert "<!channel>" not in json.dumps(shared)


async def test_subscribe_button_subscribes_and_confirms_privately(running: Running) -> None:
    await running.action(SUBSCRIBE_ACTION, "generalization", key="sub")
    answer = (await running.slack.wait_for("response:sub"))[0].params
    assert answer["response_type"] == "ephemeral"
    assert answer["blocks"][0]["text"]["text"] == "Subscribed to “generalization”"
    assert await running.app.storage.topics.topics(UserRef("slack", TEAM, "U1")) == ["generalization"]


async def test_forged_button_value_is_validated(running: Running) -> None:
    await running.action(SUBSCRIBE_ACTION, "x" * 5000, key="forged")
    answer = (await running.slack.wait_for("response:forged"))[0].params
    assert answer["response_type"] == "ephemeral"
    assert await running.app.storage.topics.topics(UserRef("slack", TEAM, "U1")) == []


# --- App Home -------------------------------------------------------------------------------------


def feedback_rows(blocks: list[dict[str, Any]]) -> list[tuple[str, list[tuple[str, str, str]]]]:
    """Each paper section's text and the (label, action id, value) of the buttons right under it."""
    rows = []
    for block, after in zip(blocks, blocks[1:]):
        if block["type"] == "section" and after["type"] == "actions" and \
                after["elements"][0]["action_id"] in FEEDBACK_ACTIONS.values():
            rows.append((block["text"]["text"],
                         [(e["text"]["text"], e["action_id"], e["value"]) for e in after["elements"]]))
    return rows


async def feedback_count(running: Running) -> int:
    from sqlalchemy import func, select

    async with running.app.storage.db.read() as session:
        return (await session.execute(select(func.count()).select_from(PaperFeedback))).scalar_one()


async def test_feedback_buttons_under_every_paper_record_the_vote_and_confirm_privately(running: Running) -> None:
    answer = await running.slash("generalization", key="f0")
    papers = [b for b in answer["blocks"] if b["type"] == "section" and b["text"]["text"].startswith("*")]
    rows = feedback_rows(answer["blocks"])
    assert len(rows) == len(papers) == 3
    assert [[label for label, _, _ in buttons] for _, buttons in rows] == [["👍", "👎", "Fewer like this"]] * 3
    compositional = next(buttons for text, buttons in rows if "Compositional" in text)
    assert compositional[0][1:] == (FEEDBACK_ACTIONS["up"], "paperboy:vote/2511.00003:generalization")

    started = time.monotonic()
    status, body = await running.action(compositional[0][1], compositional[0][2], key="f1")
    assert (status, body) == (200, "") and time.monotonic() - started < 3
    confirmation = (await running.slack.wait_for("response:f1"))[0].params
    assert confirmation["response_type"] == "ephemeral" and confirmation["replace_original"] is False
    assert confirmation["blocks"][0]["text"]["text"] == "👍 Noted: more like this"
    [stored] = await running.app.storage.feedback.votes(UserRef("slack", TEAM, "U1"), "generalization")
    assert (stored.paper_id, stored.vote) == ("2511.00003", "up")

    again = await running.slash("generalization", key="f2")
    assert "Ranked for you from your 1 vote" in json.dumps(again, ensure_ascii=False)
    other = await running.slash("generalization", user="U2", key="f3")      # nobody else's ranking moves
    assert "Ranked for you" not in json.dumps(other, ensure_ascii=False)
    assert [t for t, _ in feedback_rows(other["blocks"])] == [t for t, _ in rows]


@pytest.mark.parametrize("action_id, value", [
    (FEEDBACK_ACTIONS["up"], "paperboy:vote/<!channel>:generalization"),
    (FEEDBACK_ACTIONS["down"], "paperboy:vote/2511.00003:" + "x" * 5000),
    (FEEDBACK_ACTIONS["fewer"], "|"),
    (FEEDBACK_ACTIONS["up"], "paperboy:vote/2511.99999:generalization"),     # well formed, never shown
    (FEEDBACK_ACTIONS["up"], "paperboy:vote/../../etc/passwd:generalization"),
    (FEEDBACK_ACTIONS["down"], "2511.00003|generalization"),
    (FEEDBACK_ACTIONS["down"], "paperboy:subscribe:generalization"),          # another control's value
    (FEEDBACK_ACTIONS["up"], "paperboy:vote/2511.00003#abcdefghijklmnop"),    # a key nobody's topic has
])
async def test_forged_feedback_values_are_refused_cleanly(running: Running, action_id: str, value: str) -> None:
    await running.slash("generalization", key="h0")      # the papers are known to the bot
    status, _ = await running.action(action_id, value, key="h1")
    assert status == 200
    answer = (await running.slack.wait_for("response:h1"))[0].params
    assert answer["response_type"] == "ephemeral"
    text = json.dumps(answer, ensure_ascii=False)
    assert "Traceback" not in text and "<!channel>" not in text
    assert answer["blocks"][0]["text"]["text"].startswith(":warning:") or "feedback" in text
    assert await feedback_count(running) == 0


async def test_a_dm_alert_carries_feedback_buttons_that_work_from_the_dm(running: Running) -> None:
    await running.slash("generalization", key="d0")      # stores the papers, as an alert's feed does
    await running.app.papers.writer.flush()
    ranked = rank_for_topic("generalization", [p for p in (await running.app.storage.papers.all_papers())[0]])
    alert = Reply(kind=ReplyKind.PERSONAL_ALERT, title="New papers on your topics", ephemeral=False,
                  sections=(Section(papers=tuple(ranked), heading="generalization", topic="generalization"),))
    await running.adapter.send_to_user(UserRef("slack", TEAM, "U7"), alert)
    posted = running.slack.calls_to("chat.postMessage")[-1].params
    rows = feedback_rows(posted["blocks"])
    assert len(rows) == len(ranked) == 3
    label, action_id, value = rows[0][1][2]
    assert label == "Fewer like this"
    await running.action(action_id, value, user="U7", channel="DU7", key="d1")
    confirmation = (await running.slack.wait_for("response:d1"))[0].params
    assert confirmation["blocks"][0]["text"]["text"] == "Noted: fewer like this"
    [stored] = await running.app.storage.feedback.votes(UserRef("slack", TEAM, "U7"), "generalization")
    assert stored.vote == "fewer" and stored.paper_id == ranked[0].paper.paper_id


async def test_app_home_lists_topics_alert_time_and_channels(running: Running) -> None:
    await running.slash("subscribe diffusion models", key="h1")
    await running.slash("subscribe <!channel> & friends", key="h2")
    await running.slash("channel on 07:45 Asia/Tokyo", key="h3")
    status, _ = await running.post(event_body({"type": "app_home_opened", "user": "U1", "channel": "D1",
                                               "tab": "home", "event_ts": "1.1"}), content_type="application/json")
    assert status == 200
    publish = (await running.slack.wait_for("views.publish"))[0]
    assert publish.params["user_id"] == "U1" and publish.token == BOT_TOKEN
    view = publish.params["view"]
    assert view["type"] == "home"
    text = json.dumps(view, ensure_ascii=False)
    removes = [b["accessory"] for b in view["blocks"] if b.get("accessory", {}).get("action_id") == REMOVE_TOPIC_ACTION]
    assert [r["value"] for r in removes] == ["diffusion models", "<!channel> & friends"]
    shown = json.dumps(list(iter_texts(view["blocks"])), ensure_ascii=False)
    assert "&lt;!channel&gt; &amp; friends" in shown and "<!channel>" not in shown
    assert any(e.get("action_id") == ADD_TOPIC_ACTION for b in view["blocks"] if b["type"] == "actions"
               for e in b["elements"])
    assert "09:00 Europe/Berlin" in text                 # alert time: the default in the person's zone
    assert "<#C1> — daily at 07:45 Asia/Tokyo" in text


async def test_home_remove_button_unsubscribes_and_republishes(running: Running) -> None:
    await running.slash("subscribe diffusion models", key="h1")
    status, _ = await running.action(REMOVE_TOPIC_ACTION, "diffusion models", channel=None)
    assert status == 200
    publish = (await running.slack.wait_for("views.publish"))[0]
    assert await running.app.storage.topics.topics(UserRef("slack", TEAM, "U1")) == []
    assert "You follow no topics yet." in json.dumps(publish.params["view"])


async def test_add_topic_opens_a_modal_whose_submission_subscribes(running: Running) -> None:
    status, _ = await running.action(ADD_TOPIC_ACTION, "add", channel=None)
    assert status == 200
    opened = (await running.slack.wait_for("views.open"))[0]
    assert opened.params["trigger_id"] == "987.654.xyz"
    assert opened.params["view"]["callback_id"] == ADD_TOPIC_CALLBACK

    status, body = await running.post(urlencode({"payload": json.dumps(view_submission_payload("   "))}))
    assert status == 200
    errors = json.loads(body)
    assert errors["response_action"] == "errors" and "topic" in errors["errors"]

    status, body = await running.post(urlencode({"payload": json.dumps(view_submission_payload("Graph Networks"))}))
    assert (status, body) == (200, "")
    assert await running.app.storage.topics.topics(UserRef("slack", TEAM, "U1")) == ["graph networks"]
    await running.slack.wait_for("views.publish")


async def test_add_topic_over_the_limit_shows_the_error_in_the_modal(start_slack: StartSlack) -> None:
    running = await start_slack(PAPERBOY_MAX_TOPICS="1")
    await running.slash("subscribe one", key="l1")
    status, body = await running.post(urlencode({"payload": json.dumps(view_submission_payload("two"))}))
    assert status == 200
    answer = json.loads(body)
    assert answer["response_action"] == "errors"
    assert "most allowed is 1" in answer["errors"]["topic"]


# --- sending (what the scheduler uses) -------------------------------------------------------------


def digest() -> Reply:
    return Reply(kind=ReplyKind.CHANNEL_DIGEST, title="Trending papers — Friday 20 November 2026", ephemeral=False,
                 lines=(f"Top: {HOSTILE_TITLE}",))


async def test_send_to_channel_posts_with_chat_post_message(running: Running) -> None:
    sent = await running.adapter.send_to_channel(ChannelRef("slack", TEAM, "C42"), digest())
    call = running.slack.calls_to("chat.postMessage")[-1]
    assert (sent.channel, call.params["channel"], call.token) == ("C42", "C42", BOT_TOKEN)
    assert sent.message_id
    assert call.params["text"] and call.params["blocks"][0]["type"] == "header"
    assert "link_names" not in call.params and "parse" not in call.params
    assert call.params["unfurl_links"] is False
    assert "<!channel>" not in json.dumps(call.params)


async def test_send_to_user_opens_the_dm_first(running: Running) -> None:
    sent = await running.adapter.send_to_user(UserRef("slack", TEAM, "U7"), digest())
    methods = [c.method for c in running.slack.calls if c.method in ("conversations.open", "chat.postMessage")]
    assert methods == ["conversations.open", "chat.postMessage"]
    assert running.slack.calls_to("conversations.open")[0].params["users"] == "U7"
    assert running.slack.calls_to("chat.postMessage")[0].params["channel"] == "DU7"
    assert sent.channel == "DU7"


async def test_a_dm_channel_is_opened_once_and_again_only_when_slack_forgets_it(running: Running) -> None:
    person = UserRef("slack", TEAM, "U7")
    for _ in range(3):
        await running.adapter.send_to_user(person, digest())
    assert len(running.slack.calls_to("conversations.open")) == 1
    assert [c.params["channel"] for c in running.slack.calls_to("chat.postMessage")] == ["DU7"] * 3
    running.slack.fail("chat.postMessage", "channel_not_found", times=1)
    sent = await running.adapter.send_to_user(person, digest())
    assert sent.channel == "DU7" and len(running.slack.calls_to("conversations.open")) == 2
    running.slack.fail("chat.postMessage", "cannot_dm_bot", times=1)     # other errors are not retried
    with pytest.raises(SendError) as raised:
        await running.adapter.send_to_user(person, digest())
    assert raised.value.kind is FailureKind.DMS_CLOSED and len(running.slack.calls_to("conversations.open")) == 2


async def test_a_slow_add_topic_submission_is_answered_in_time_and_still_done(running: Running,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Slack wants the modal answered within 3 s; a slow subscription must not make it time out."""
    release = asyncio.Event()
    core_dispatch = running.app.core.dispatch

    async def slow_dispatch(ctx: Any, args: Any) -> Reply:
        await release.wait()
        return await core_dispatch(ctx, args)

    monkeypatch.setattr(running.app.core, "dispatch", slow_dispatch)
    running.adapter.modal_ack_budget = 0.1
    started = time.monotonic()
    status, body = await running.post(urlencode({"payload": json.dumps(view_submission_payload("Slow Topic"))}))
    assert (status, body) == (200, "") and time.monotonic() - started < 2.0   # closed while the work goes on
    release.set()
    await running.slack.wait_for("views.publish")
    person = UserRef("slack", TEAM, "U1")
    assert await running.app.storage.topics.topics(person) == ["slow topic"]
    assert (await running.app.storage.topics.setting(person)).timezone == "Europe/Berlin"   # from users.info


@pytest.mark.parametrize(("code", "kind"), [
    ("not_in_channel", FailureKind.NOT_IN_CHANNEL),
    ("channel_not_found", FailureKind.TARGET_GONE),
    ("is_archived", FailureKind.TARGET_GONE),
    ("restricted_action", FailureKind.FORBIDDEN),
    ("missing_scope", FailureKind.MISCONFIGURED),
    ("internal_error", FailureKind.TRANSIENT),
    ("msg_too_long", FailureKind.TRANSIENT),
])
async def test_channel_error_codes_map_to_failure_kinds(running: Running, code: str, kind: FailureKind,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    running.slack.fail("chat.postMessage", code)
    with caplog.at_level(logging.DEBUG), pytest.raises(SendError) as raised:
        await running.adapter.send_to_channel(ChannelRef("slack", TEAM, "C1"), digest())
    assert (raised.value.kind, raised.value.detail) == (kind, code)
    assert code in caplog.text
    assert BOT_TOKEN not in caplog.text and BOT_TOKEN not in str(raised.value)
    assert await running.app.storage.workspaces.is_active("slack", TEAM)


@pytest.mark.parametrize("code", ["invalid_auth", "token_revoked", "account_inactive", "token_expired"])
async def test_install_gone_codes_deactivate_the_workspace(running: Running, code: str,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    storage = running.app.storage
    await running.slash("channel on 09:00", key="c1")
    await running.slash("subscribe generalization", key="c2")
    running.slack.fail("chat.postMessage", code)
    with caplog.at_level(logging.DEBUG), pytest.raises(SendError) as raised:
        await running.adapter.send_to_channel(ChannelRef("slack", TEAM, "C1"), digest())
    assert raised.value.kind is FailureKind.INSTALL_GONE
    assert BOT_TOKEN not in caplog.text
    assert not await storage.workspaces.is_active("slack", TEAM)
    channel = await storage.channels.get(ChannelRef("slack", TEAM, "C1"))
    assert channel is not None and not channel.enabled and code in (channel.paused_reason or "")
    alerts = await storage.topics.setting(UserRef("slack", TEAM, "U1"))
    assert alerts is not None and not alerts.enabled


@pytest.mark.parametrize(("method", "code", "kind"), [
    ("conversations.open", "cannot_dm_bot", FailureKind.DMS_CLOSED),
    ("conversations.open", "user_not_found", FailureKind.DMS_CLOSED),
    ("chat.postMessage", "channel_not_found", FailureKind.DMS_CLOSED),
    ("conversations.open", "token_revoked", FailureKind.INSTALL_GONE),
])
async def test_dm_error_codes(running: Running, method: str, code: str, kind: FailureKind) -> None:
    running.slack.fail(method, code)
    with pytest.raises(SendError) as raised:
        await running.adapter.send_to_user(UserRef("slack", TEAM, "U7"), digest())
    assert raised.value.kind is kind


async def test_a_short_429_is_retried_after_retry_after(running: Running) -> None:
    running.slack.rate_limit("chat.postMessage", retry_after=0, times=1)
    sent = await running.adapter.send_to_channel(ChannelRef("slack", TEAM, "C1"), digest())
    assert sent.message_id
    assert len(running.slack.calls_to("chat.postMessage")) == 2


async def test_persistent_429_becomes_rate_limited_with_retry_after(running: Running) -> None:
    running.slack.rate_limit("chat.postMessage", retry_after=0, times=None)
    with pytest.raises(SendError) as raised:
        await running.adapter.send_to_channel(ChannelRef("slack", TEAM, "C1"), digest())
    assert raised.value.kind is FailureKind.RATE_LIMITED
    assert raised.value.retry_after == 0
    assert len(running.slack.calls_to("chat.postMessage")) == 2     # the first try and one retry


async def test_long_retry_after_is_handed_to_the_scheduler_not_slept(running: Running) -> None:
    running.slack.rate_limit("chat.postMessage", retry_after=120, times=None)
    started = time.monotonic()
    with pytest.raises(SendError) as raised:
        await running.adapter.send_to_channel(ChannelRef("slack", TEAM, "C1"), digest())
    assert time.monotonic() - started < 5
    assert (raised.value.kind, raised.value.retry_after) == (FailureKind.RATE_LIMITED, 120)
    assert len(running.slack.calls_to("chat.postMessage")) == 1


async def test_unreachable_slack_is_transient(start_slack: StartSlack, running: Running) -> None:
    await running.slack.stop()
    with pytest.raises(SendError) as raised:
        await running.adapter.send_to_channel(ChannelRef("slack", TEAM, "C1"), digest())
    assert raised.value.kind is FailureKind.TRANSIENT


async def test_uninstall_in_single_workspace_mode_deactivates(running: Running) -> None:
    await running.slash("channel on 09:00", key="u1")
    status, _ = await running.post(event_body({"type": "app_uninstalled", "event_ts": "1.1"}),
                                   content_type="application/json")
    assert status == 200
    storage = running.app.storage
    for _ in range(200):          # the listener runs after the ack; wait on its effect, not on time
        if not await storage.workspaces.is_active("slack", TEAM):
            break
        await asyncio.sleep(0.01)
    assert not await storage.workspaces.is_active("slack", TEAM)
    channel = await storage.channels.get(ChannelRef("slack", TEAM, "C1"))
    assert channel is not None and not channel.enabled


def test_http_mode_requires_a_signing_secret(sqlite_url: str) -> None:
    settings = make_settings(DATABASE_URL=sqlite_url, SLACK_BOT_TOKEN=BOT_TOKEN)
    with pytest.raises(ValueError, match="SLACK_SIGNING_SECRET"):
        SlackAdapter(settings, core=None, storage=None)  # type: ignore[arg-type]


async def test_socket_mode_connects_and_answers_a_slash_command_over_the_websocket(
        slack: FakeSlackApi, hf: TinyHuggingFace, sqlite_url: str) -> None:
    settings = make_settings(DATABASE_URL=sqlite_url, PAPERBOY_HF_URL=hf.url, PAPERBOY_OFFLINE_SAMPLE=False,
                             SLACK_API_URL=slack.url, SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_APP_TOKEN="xapp-1-socket")
    app = await asyncio.to_thread(build_app, settings)
    adapter = SlackAdapter(settings, app.core, app.storage)
    try:
        await adapter.start()
        assert adapter.http_port is None                     # no HTTP server in Socket Mode
        opened = slack.calls_to("apps.connections.open")
        assert len(opened) == 1 and opened[0].token == "xapp-1-socket"
        await slack.wait_for("socket:connect")
        payload = dict(parse_qsl(slash_body("generalization", slack, key="ws")))
        await slack.socket_send({"envelope_id": "env-1", "type": "slash_commands", "payload": payload,
                                 "accepts_response_payload": True})
        ack = (await slack.wait_for("socket:ack"))[0].params
        assert ack["envelope_id"] == "env-1"
        answer = (await slack.wait_for("response:ws"))[0].params
        assert answer["blocks"][0]["text"]["text"] == "Papers on “generalization”"
    finally:
        await adapter.stop()
        await app.close()


# --- what users.info says is checked; App Home's own text is escaped -------------------------------


async def test_a_time_zone_slack_gives_that_is_no_zone_is_not_stored(running: Running) -> None:
    """users.info's ``tz`` is outside input: "Not/AZone" falls back to the default zone."""
    running.slack.users["U1"] = {"tz": "Not/AZone"}
    person = UserRef("slack", TEAM, "U1")
    subscribed = await running.slash("subscribe generalization", key="z1")
    assert subscribed["blocks"][0]["text"]["text"] == "Subscribed to “generalization”"
    setting = await running.app.storage.topics.setting(person)
    assert setting is not None and setting.timezone in (None, "UTC") and setting.next_due_at is not None
    alerts = await running.slash("alerts on 08:00", key="z2")
    assert "08:00 UTC" in json.dumps(alerts, ensure_ascii=False)
    channel = await running.slash("channel on 07:30", key="z3")
    assert channel["blocks"][0]["text"]["text"] == "Daily post on"
    stored = await running.app.storage.channels.get(ChannelRef("slack", TEAM, "C1"))
    assert stored is not None and stored.timezone == "UTC" and stored.next_due_at is not None
    assert "Not/AZone" not in json.dumps([subscribed, alerts, channel])


async def test_app_home_escapes_the_papers_topic_hint(running: Running) -> None:
    """``<topic>`` in mrkdwn is one of Slack's ``<…>`` control sequences; it must be ``&lt;topic&gt;``."""
    status, _ = await running.post(event_body({"type": "app_home_opened", "user": "U1", "channel": "D1",
                                               "tab": "home", "event_ts": "1.1"}), content_type="application/json")
    assert status == 200
    view = (await running.slack.wait_for("views.publish"))[0].params["view"]
    texts = [t for t in iter_texts(view["blocks"])]
    assert any("`/papers &lt;topic&gt;`" in t for t in texts)
    assert not [t for t in texts if "<topic>" in t]


@pytest.mark.parametrize("action", [SHARE_ACTION, SUBSCRIBE_ACTION, REMOVE_TOPIC_ACTION])
async def test_a_forged_button_value_goes_through_the_same_normaliser_as_typed_text(running: Running,
                                                                                   action: str) -> None:
    """A button value is outside text (anyone can post a block_actions payload with any value)."""
    person = UserRef("slack", TEAM, "U1")
    forged = "@everyone \u202e<@&1>\x00  Generalization"
    if action == REMOVE_TOPIC_ACTION:
        await running.slash("subscribe @everyone <@&1> generalization", key="pre")
        status, _ = await running.action(action, forged, channel=None)
        assert status == 200
        await running.slack.wait_for("views.publish")
        assert await running.app.storage.topics.topics(person) == []      # the same topic, so removed
        return
    await running.action(action, forged, key="f")
    answer = (await running.slack.wait_for("response:f"))[0].params
    shown = json.dumps(answer, ensure_ascii=False)
    assert "\u202e" not in shown and "\\u0000" not in shown and "<@&1>" not in shown and "<!everyone>" not in shown
    if action == SHARE_ACTION:
        assert running.hf.searches[-1] == "@everyone <@&1> generalization"
    else:
        assert await running.app.storage.topics.topics(person) == ["@everyone <@&1> generalization"]


async def test_a_200_character_topic_keeps_every_slack_control(running: Running) -> None:
    """Block Kit button values hold 2,000 characters, so the topic itself travels (adapters.controls)."""
    topic = ("generalization " * 13).strip()           # 194 characters
    answer = await running.slash(topic, key="long")
    actions = [b for b in answer["blocks"] if b["type"] == "actions"
               and b["elements"][0]["action_id"] == SHARE_ACTION][0]["elements"]
    assert [(a["action_id"], a["value"]) for a in actions] == [(SHARE_ACTION, topic), (SUBSCRIBE_ACTION, topic)]
    votes = [b["elements"] for b in answer["blocks"] if b["type"] == "actions"
             and b["elements"][0]["action_id"] == FEEDBACK_ACTIONS["up"]]
    assert votes and all(e["value"].endswith(":" + topic) for row in votes for e in row)   # the vote buttons too
    assert all(len(a["text"]["text"]) <= 75 for a in actions)
    await running.action(SUBSCRIBE_ACTION, topic, key="long-sub")
    await running.slack.wait_for("response:long-sub")
    person = UserRef("slack", TEAM, "U1")
    assert await running.app.storage.topics.topics(person) == [topic]
    status, _ = await running.action(REMOVE_TOPIC_ACTION, topic, channel=None)
    assert status == 200
    await running.slack.wait_for("views.publish")
    assert await running.app.storage.topics.topics(person) == []
async def test_topics_that_can_never_match_are_refused_on_every_slack_path(running: Running) -> None:
    """The slash command, the Share and Subscribe buttons and the Add-topic modal refuse a topic no
    paper could match (only stop words, punctuation or invisible characters), saying why; nothing
    is searched or stored. Remove still takes such a topic, so one stored earlier can go."""
    said = await running.slash("subscribe the of and", key="u1")
    assert "only common words" in json.dumps(said, ensure_ascii=False)
    await running.action(SHARE_ACTION, "\u200d\u200c", key="u2")
    shared = (await running.slack.wait_for("response:u2"))[0].params
    assert shared["response_type"] == "ephemeral" and "invisible characters" in json.dumps(shared)
    await running.action(SUBSCRIBE_ACTION, "\u2800", key="u3")
    subscribed = (await running.slack.wait_for("response:u3"))[0].params
    assert "invisible characters" in json.dumps(subscribed)
    status, body = await running.post(urlencode({"payload": json.dumps(view_submission_payload("!!! ???"))}))
    answer = json.loads(body)
    assert status == 200 and answer["response_action"] == "errors"
    assert "punctuation or symbols" in answer["errors"]["topic"]
    assert running.hf.searches == []
    user = UserRef("slack", TEAM, "U1")
    assert await running.app.storage.topics.topics(user) == []

    await running.app.storage.topics.add(user, "the of and", limit=25)     # stored before the rule
    status, _ = await running.action(REMOVE_TOPIC_ACTION, "the of and", channel=None)
    assert status == 200
    await running.slack.wait_for("views.publish")
    assert await running.app.storage.topics.topics(user) == []
