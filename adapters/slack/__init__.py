"""Slack: slack-bolt's AsyncApp, Block Kit rendering, App Home and multi-workspace install.

``render_message`` is pure and imports no Slack library (the CLI's preview uses
it); ``SlackAdapter`` is loaded on first use so importing this package stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from adapters.slack.render import render_message

if TYPE_CHECKING:
    from adapters.slack.adapter import SlackAdapter

__all__ = ["SlackAdapter", "render_message"]


def __getattr__(name: str) -> Any:
    if name == "SlackAdapter":
        from adapters.slack.adapter import SlackAdapter

        return SlackAdapter
    raise AttributeError(name)
