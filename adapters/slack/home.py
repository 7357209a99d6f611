"""Paperboy's App Home tab and its Add topic modal, as pure view builders.

The Home tab lists the person's topics (each with a Remove button), an Add
topic button that opens a modal, when their alerts arrive, and the channel
posts they set up. Home views allow 100 blocks; lists are cut with "and N more".
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from adapters.slack.payloads import TOPIC_BLOCK, TOPIC_INPUT
from adapters.slack.render import button, context_block, escape_fit, header_block, plain, section_block
from bot.schedule import format_time
from storage.repositories import AlertSetting, ChannelSetting

HOME_MAX_BLOCKS = 100
TOPICS_SHOWN = 40
CHANNELS_SHOWN = 20

REMOVE_TOPIC_ACTION = "paperboy_home_remove"
ADD_TOPIC_ACTION = "paperboy_home_add"
ADD_TOPIC_CALLBACK = "paperboy_add_topic"

_CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{1,30}$")


def _channel_mention(channel_id: str) -> str:
    """``<#C123>`` for a real channel id; anything else is shown escaped."""
    return f"<#{channel_id}>" if _CHANNEL_ID.match(channel_id) else escape_fit(channel_id, 80)


def _alert_line(setting: AlertSetting | None, default_time: str, default_zone: str) -> str:
    if setting is None or not setting.topics:
        return f"Your alerts would arrive daily at {default_time} {escape_fit(default_zone, 64)} once you follow a topic."
    at = format_time(setting.alert_time) if setting.alert_time else default_time
    zone = escape_fit(setting.timezone or default_zone, 64)
    if setting.paused_reason:
        return f"Your alerts are paused ({escape_fit(setting.paused_reason, 200)}). Turn them on with `/papers alerts on`."
    if not setting.enabled:
        return "Your alerts are off. Turn them on with `/papers alerts on`."
    return f"Your alerts arrive by direct message daily at *{at} {zone}*."


def _channel_line(channel: ChannelSetting) -> str:
    when = f"{format_time(channel.post_time)} {escape_fit(channel.timezone, 64)}"
    if channel.enabled:
        state = f"daily at {when}, top {channel.top_n}"
    elif channel.paused_reason:
        state = f"paused ({escape_fit(channel.paused_reason, 200)})"
    else:
        state = "off"
    return f"• {_channel_mention(channel.channel.channel)} — {state}"


def home_view(setting: AlertSetting | None, channels: Sequence[ChannelSetting], *,
              default_time: str, default_zone: str) -> dict[str, Any]:
    """The Home tab for one person."""
    topics = setting.topics if setting else ()
    blocks: list[dict[str, Any]] = [
        header_block("Paperboy — ML papers people are reading"),
        section_block("Search any time with `/papers &lt;topic&gt;`; follow topics to get new papers on them by "
                      "direct message once a day."),
        {"type": "divider"},
        header_block("Your topics"),
    ]
    if topics:
        for topic in topics[:TOPICS_SHOWN]:
            blocks.append({
                "type": "section",
                "text": {"type": "mrkdwn", "text": f"• {escape_fit(topic, 250)}"},
                "accessory": button("Remove", REMOVE_TOPIC_ACTION, topic, style="danger"),
            })
        if len(topics) > TOPICS_SHOWN:
            blocks.append(context_block(f"… and {len(topics) - TOPICS_SHOWN} more"))
    else:
        blocks.append(section_block("You follow no topics yet."))
    blocks.append({"type": "actions", "elements": [button("Add topic", ADD_TOPIC_ACTION, "add", style="primary")]})
    blocks.append(context_block(_alert_line(setting, default_time, default_zone)
                                + " Change it: `/papers alerts on HH:MM Area/City`"))
    blocks.append({"type": "divider"})
    blocks.append(header_block("Channel posts you set up"))
    if channels:
        lines = [_channel_line(c) for c in channels[:CHANNELS_SHOWN]]
        if len(channels) > CHANNELS_SHOWN:
            lines.append(f"… and {len(channels) - CHANNELS_SHOWN} more")
        blocks.append(section_block("\n".join(lines)))
    else:
        blocks.append(section_block("None yet. In a channel, run `/papers channel on 09:00 Europe/Berlin`."))
    return {"type": "home", "blocks": blocks[:HOME_MAX_BLOCKS]}


def add_topic_modal() -> dict[str, Any]:
    """The modal the Add topic button opens."""
    return {
        "type": "modal",
        "callback_id": ADD_TOPIC_CALLBACK,
        "title": plain("Follow a topic"),
        "submit": plain("Follow"),
        "close": plain("Cancel"),
        "blocks": [
            {
                "type": "input",
                "block_id": TOPIC_BLOCK,
                "label": plain("Topic"),
                "element": {"type": "plain_text_input", "action_id": TOPIC_INPUT, "max_length": 200,
                            "placeholder": plain("e.g. diffusion models")},
                "hint": plain("You get a direct message with new papers on it once a day."),
            }
        ],
    }
