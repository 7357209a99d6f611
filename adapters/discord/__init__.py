"""Paperboy on Discord (discord.py 2.x): slash commands, embeds, buttons, DMs and channel posts."""

from adapters.discord.adapter import DiscordAdapter, invite_url
from adapters.discord.render import message_payload

__all__ = ["DiscordAdapter", "invite_url", "message_payload"]
