"""Pure translation: recorded Slack payloads into contexts, error codes into failure kinds, the manifest."""

from __future__ import annotations

from importlib import resources

import pytest

from adapters.base import FailureKind
from adapters.slack.adapter import BOT_SCOPES
from adapters.slack.errors import failure_kind, retry_after_seconds, send_error
from adapters.slack.home import ADD_TOPIC_CALLBACK, add_topic_modal
from adapters.slack.payloads import (
    action_value,
    interaction_context,
    slash_payload_to_context,
    submitted_topic,
    user_profile_facts,
)
from bot.models import ChannelRef, UserRef

# As bolt parses a slash command's form body (field set recorded from a real workspace, ids changed).
SLASH = {
    "token": "gIkuvaNzQIHg97ATvDxqgjtO", "team_id": "T0001", "team_domain": "example", "enterprise_id": "E0001",
    "enterprise_name": "Globular Construct Inc", "channel_id": "C2147483705", "channel_name": "test",
    "user_id": "U2147483697", "user_name": "Steve", "command": "/papers", "text": "subscribe  Diffusion Models",
    "api_app_id": "A123456", "is_enterprise_install": "false",
    "response_url": "https://hooks.slack.com/commands/1234/5678", "trigger_id": "13345224609.738474920.8088930838d88f008e0",
}

BLOCK_ACTIONS = {
    "type": "block_actions",
    "user": {"id": "U2147483697", "username": "steve", "name": "steve", "team_id": "T0001"},
    "api_app_id": "A123456", "token": "x", "container": {"type": "message", "message_ts": "1.2", "is_ephemeral": True},
    "trigger_id": "1.2.3", "team": {"id": "T0001", "domain": "example"},
    "channel": {"id": "C2147483705", "name": "test"}, "response_url": "https://hooks.slack.com/actions/1/2/3",
    "actions": [{"action_id": "paperboy_subscribe", "block_id": "x", "text": {"type": "plain_text", "text": "Subscribe"},
                 "value": "generalization", "type": "button", "action_ts": "1.3"}],
}

HOME_ACTION = {
    "type": "block_actions", "user": {"id": "U9", "username": "ann", "team_id": "T0001"},
    "container": {"type": "view", "view_id": "V1"}, "team": {"id": "T0001"}, "trigger_id": "4.5.6",
    "view": {"id": "V1", "type": "home"},
    "actions": [{"action_id": "paperboy_home_remove", "value": "graph networks", "type": "button"}],
}

VIEW_SUBMISSION = {
    "type": "view_submission", "team": {"id": "T0001", "domain": "example"},
    "user": {"id": "U9", "username": "ann", "team_id": "T0001"},
    "view": {"id": "V2", "type": "modal", "callback_id": ADD_TOPIC_CALLBACK,
             "state": {"values": {"topic": {"topic_input": {"type": "plain_text_input", "value": " Graph  Networks "}}}}},
}


def test_slash_payload_to_context() -> None:
    ctx, text = slash_payload_to_context(SLASH, user_timezone="America/Chicago", can_manage_channel=False)
    assert ctx.user == UserRef("slack", "T0001", "U2147483697")
    assert ctx.channel == ChannelRef("slack", "T0001", "C2147483705")
    assert (ctx.user_timezone, ctx.can_manage_channel, ctx.display_name) == ("America/Chicago", False, "Steve")
    assert text == "subscribe  Diffusion Models"


def test_slash_payload_with_empty_text() -> None:
    ctx, text = slash_payload_to_context({**SLASH, "text": ""})
    assert text == "" and ctx.can_manage_channel and ctx.user_timezone is None


def test_button_and_home_and_modal_payloads() -> None:
    ctx = interaction_context(BLOCK_ACTIONS, user_timezone="Europe/Oslo")
    assert ctx.user == UserRef("slack", "T0001", "U2147483697")
    assert ctx.channel == ChannelRef("slack", "T0001", "C2147483705")
    assert action_value(BLOCK_ACTIONS) == "generalization"
    home = interaction_context(HOME_ACTION)
    assert home.channel is None and home.user == UserRef("slack", "T0001", "U9")
    assert action_value(HOME_ACTION) == "graph networks"
    assert submitted_topic(VIEW_SUBMISSION["view"]) == " Graph  Networks "
    assert submitted_topic({"state": {"values": {}}}) == ""
    assert interaction_context(VIEW_SUBMISSION).user.workspace == "T0001"


def test_team_falls_back_to_the_users_team_and_a_payload_without_one_is_refused() -> None:
    payload = {**HOME_ACTION, "team": None}
    assert interaction_context(payload).user.workspace == "T0001"
    with pytest.raises(ValueError):
        interaction_context({"user": {"id": "U1"}})


def test_user_profile_facts() -> None:
    assert user_profile_facts({"tz": "Asia/Kolkata", "is_admin": False}) == ("Asia/Kolkata", False)
    assert user_profile_facts({"is_owner": True}) == (None, True)
    assert user_profile_facts({"is_primary_owner": True, "tz": ""}) == (None, True)


@pytest.mark.parametrize(("code", "kind"), [
    ("not_in_channel", FailureKind.NOT_IN_CHANNEL),
    ("channel_not_found", FailureKind.TARGET_GONE),
    ("is_archived", FailureKind.TARGET_GONE),
    ("invalid_auth", FailureKind.INSTALL_GONE),
    ("token_revoked", FailureKind.INSTALL_GONE),
    ("account_inactive", FailureKind.INSTALL_GONE),
    ("token_expired", FailureKind.INSTALL_GONE),   # no token rotation: an expired token is gone
    ("ratelimited", FailureKind.RATE_LIMITED),
    ("restricted_action", FailureKind.FORBIDDEN),
    ("missing_scope", FailureKind.MISCONFIGURED),
    ("not_allowed_token_type", FailureKind.MISCONFIGURED),
    ("internal_error", FailureKind.TRANSIENT),
    ("fatal_error", FailureKind.TRANSIENT),
    ("", FailureKind.TRANSIENT),
])
def test_failure_kinds_for_channels(code: str, kind: FailureKind) -> None:
    assert failure_kind(code) is kind


def test_failure_kinds_for_direct_messages() -> None:
    assert failure_kind("cannot_dm_bot", to_user=True) is FailureKind.DMS_CLOSED
    assert failure_kind("user_not_found", to_user=True) is FailureKind.DMS_CLOSED
    assert failure_kind("channel_not_found", to_user=True) is FailureKind.DMS_CLOSED
    assert failure_kind("missing_scope", to_user=True) is FailureKind.MISCONFIGURED   # the app's fault, not theirs


def test_http_429_is_rate_limited_with_retry_after() -> None:
    error = send_error("ratelimited", status=429, headers={"Retry-After": ["17"]})
    assert (error.kind, error.retry_after, error.detail) == (FailureKind.RATE_LIMITED, 17.0, "ratelimited")
    assert send_error("", status=429, headers={}).retry_after == 30.0
    assert send_error("not_in_channel").retry_after is None
    assert retry_after_seconds({"retry-after": "3"}) == 3.0
    assert retry_after_seconds({"Retry-After": "soon"}) is None


def test_manifest_declares_the_command_scopes_events_and_modes() -> None:
    text = (resources.files("adapters.slack") / "manifest.yaml").read_text()
    bot_scopes = []
    lines = text.splitlines()
    start = lines.index("    bot:")
    for line in lines[start + 1:]:
        if not line.startswith("      - "):
            break
        bot_scopes.append(line.split("-", 1)[1].split("#")[0].strip())
    assert tuple(bot_scopes) == BOT_SCOPES == ("commands", "chat:write", "im:write", "users:read",
                                               "channels:history", "groups:history", "im:history")
    for needed in ("command: /papers", "home_tab_enabled: true", "messages_tab_enabled: true",
                   "- app_home_opened", "- app_uninstalled", "- tokens_revoked", "is_enabled: true",
                   "socket_mode_enabled: true"):
        assert needed in text, needed


def test_add_topic_modal_shape() -> None:
    modal = add_topic_modal()
    assert modal["callback_id"] == ADD_TOPIC_CALLBACK
    assert modal["blocks"][0]["block_id"] == "topic"
    assert modal["blocks"][0]["element"]["action_id"] == "topic_input"
