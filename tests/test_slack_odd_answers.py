"""Slack answers that are not Slack's JSON: every surface keeps working through the real clients.

A proxy or load balancer in front of Slack can answer any Web API method with ``503 text/plain``
(Envoy's "upstream connect error"), an HTML error page, or JSON of the wrong shape. slack_sdk hands
a ``text/plain`` body over as a ``str`` and reads other non-JSON content types as ``{}``
(python-slack-sdk ``slack_sdk/web/async_internal_utils.py``, ``_request_with_session``);
``AsyncSlackResponse.validate`` raises ``SlackApiError`` for a status other than 200 and
``AttributeError`` for a 200 whose body is not an object (it calls ``data.get("ok")``), and
``AsyncSlackResponse.get`` raises ``AttributeError`` on a ``str`` body. The fake Slack
(:meth:`FakeSlackApi.answer_raw`) sends exactly those bodies; slack-bolt and slack_sdk are real.
"""

from __future__ import annotations

import json
import logging
from urllib.parse import urlencode

import pytest

from adapters.base import FailureKind, SendError
from adapters.slack.home import ADD_TOPIC_ACTION
from adapters.slack.render import SHARE_ACTION, SUBSCRIBE_ACTION
from bot.models import ChannelRef, UserRef
from tests.fakes.slack_api import HTML_ERROR_PAGE, PROXY_503, FakeSlackApi
from tests.test_slack_app import (  # noqa: F401 - fixtures
    TEAM,
    Running,
    digest,
    event_body,
    hf,
    running,
    slack,
    start_slack,
    view_submission_payload,
)

ODD_ANSWERS = {
    "proxy 503 text/plain": dict(status=503, body=PROXY_503, content_type="text/plain"),
    "HTML 502 page": dict(status=502, body=HTML_ERROR_PAGE, content_type="text/html"),
    "200 text/plain": dict(status=200, body="ok", content_type="text/plain"),
    "200 JSON list": dict(status=200, body="[1]", content_type="application/json"),
    "200 JSON of the wrong types": dict(status=200, body=json.dumps(
        {"ok": True, "user": "x", "channel": 5, "ts": {}, "team_id": ["T"], "bot_id": 3}),
        content_type="application/json"),
    "200 empty body": dict(status=200, body="", content_type="application/json"),
}


def no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    noisy = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert noisy == [], [r.getMessage() for r in noisy]


@pytest.fixture(params=list(ODD_ANSWERS))
def odd(request: pytest.FixtureRequest, slack: FakeSlackApi) -> str:
    """Every Web API method answers oddly from the very first call (auth.test included)."""
    slack.answer_raw("*", **ODD_ANSWERS[request.param])
    return request.param


async def test_commands_even_help_are_answered_and_users_info_costs_nothing(
        running: Running, odd: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    helped = await running.slash("help", key="h")
    assert "/papers subscribe" in json.dumps(helped)
    found = await running.slash("generalization", key="g")
    assert found["blocks"][0]["text"]["text"] == "Papers on “generalization”"
    subscribed = await running.slash("subscribe diffusion models", key="s")
    assert subscribed["blocks"][0]["text"]["text"] == "Subscribed to “diffusion models”"
    setting = await running.app.storage.topics.setting(UserRef("slack", TEAM, "U1"))
    assert setting is not None and setting.next_due_at is not None     # default zone: alerts will run
    channel = await running.slash("channel on 09:00", key="c")
    assert channel["blocks"][0]["text"]["text"] == "Daily post on"
    assert running.slack.calls_to("users.info")                          # asked, failed, defaults used
    no_tracebacks(caplog)


async def test_buttons_modal_and_app_home_keep_working(running: Running, odd: str,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    status, _ = await running.action(SHARE_ACTION, "generalization", key="share")
    assert status == 200
    shared = (await running.slack.wait_for("response:share"))[0].params
    assert shared["response_type"] == "in_channel"
    status, _ = await running.action(SUBSCRIBE_ACTION, "graph networks", key="sub")
    assert status == 200
    assert (await running.slack.wait_for("response:sub"))[0].params["blocks"][0]["text"]["text"] == \
        "Subscribed to “graph networks”"

    status, _ = await running.action(ADD_TOPIC_ACTION, "add", channel=None)
    assert status == 200
    await running.slack.wait_for("views.open")
    status, body = await running.post(urlencode({"payload": json.dumps(view_submission_payload("Robotics"))}))
    assert (status, body) == (200, "")
    assert "robotics" in await running.app.storage.topics.topics(UserRef("slack", TEAM, "U1"))

    before = len(running.slack.calls_to("views.publish"))
    status, _ = await running.post(event_body({"type": "app_home_opened", "user": "U1", "channel": "D1",
                                               "tab": "home", "event_ts": "1.1"}), content_type="application/json")
    assert status == 200
    await running.slack.wait_for("views.publish", before + 1)
    no_tracebacks(caplog)


async def test_deliveries_fail_with_a_classified_send_error(running: Running, odd: str,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="adapters")
    sends = (running.adapter.send_to_channel(ChannelRef("slack", TEAM, "C1"), digest()),
             running.adapter.send_to_user(UserRef("slack", TEAM, "U7"), digest()))
    for send in sends:
        try:
            sent = await send
        except SendError as exc:      # a 200 Slack's client cannot read: it may have been posted
            assert exc.kind in (FailureKind.TRANSIENT, FailureKind.UNKNOWN_OUTCOME)
            assert exc.kind is FailureKind.TRANSIENT or odd.startswith("200")
            assert exc.detail in ("http_503", "http_502", "unexpected_answer", "no_dm_channel"), exc.detail
        else:            # 200 with JSON of the wrong types: Slack took it; the message id is just unknown
            assert odd == "200 JSON of the wrong types" and sent.channel
    no_tracebacks(caplog)
    assert await running.app.storage.workspaces.is_active("slack", TEAM)


async def test_a_503_then_slack_again(running: Running, caplog: pytest.LogCaptureFixture) -> None:
    """Once the proxy lets Slack through again, the same process sends normally."""
    running.slack.answer_raw("chat.postMessage", times=1)
    with pytest.raises(SendError) as raised:
        await running.adapter.send_to_channel(ChannelRef("slack", TEAM, "C1"), digest())
    assert (raised.value.kind, raised.value.detail) == (FailureKind.TRANSIENT, "http_503")
    sent = await running.adapter.send_to_channel(ChannelRef("slack", TEAM, "C1"), digest())
    assert sent.message_id
