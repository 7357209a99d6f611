"""The slash commands and buttons, wired to the core.

Shape (Discord does not let a command group also be a command, so
``/papers <topic>`` cannot exist next to ``/papers today``; the topic goes in
``/papers search topic:``, the first subcommand the picker offers):

* ``/papers search topic`` · ``today`` · ``subscribe topic`` ·
  ``unsubscribe topic`` (autocompleted from the person's own topics) ·
  ``subscriptions`` · ``alerts on [time] [timezone]`` · ``alerts off`` ·
  ``alerts show`` · ``help``
* ``/papers-channel on [time] [timezone] [top] [post_when_empty]`` · ``off`` · ``show``: a top-level
  group of its own because Discord applies a command's default permissions
  (here Manage Channels) to top-level commands only. Server-only. The
  permission is checked again on use from the interaction's resolved channel
  permissions (:attr:`CommandContext.can_manage_channel`).

Every command defers at once (ephemeral, "thinking…") and then edits that
response with the reply within Discord's 15 minutes. Buttons are a
:class:`discord.ui.DynamicItem` whose ``custom_id`` carries the action and the
topic, so they keep working after restarts without any stored view.
"""

import asyncio
import logging
import re
from dataclasses import replace
from typing import Any, Optional

import discord
from discord import app_commands

from adapters.controls import (
    ControlRef,
    choice_key,
    choice_name,
    choice_value,
    parse_control_id,
    remember_topics,
    resolve_topic,
    topic_of,
)
from adapters.discord.payloads import (
    PAPERS,
    PAPERS_CHANNEL,
    command_args,
    context_from_interaction,
    user_ref,
)
from adapters.discord.render import (
    BUTTON_PRIMARY,
    DM_WORKSPACE_ID,
    FEEDBACK_HERE,
    FEEDBACK_PREFIX,
    MAX_CUSTOM_ID,
    STRING_SELECT,
    build_embeds,
    feedback_topics,
    message_payload,
    read_feedback_option,
)
from bot import commands as cmd
from bot.commands import CommandArgs, vote_args
from bot.core import Paperboy, error_reply
from bot.models import Reply
from bot.schedule import search_timezones
from bot.settings import Settings
from bot.text import InputError
from bot.work import BUSY_MESSAGE, WorkPool
from storage.repositories import Storage

log = logging.getLogger(__name__)

FOLLOW_UP_DEADLINE = 14 * 60.0      # an interaction token lasts 15 minutes
MAX_CHOICES = 25
MAX_CHOICE_LENGTH = 100
BUTTON_TEMPLATE = re.compile(r"paperboy:(?P<action>share|subscribe)[:#].+", re.DOTALL)   # adapters.controls ids
# Anything under the feedback prefix is taken and checked in the callback, so a forged id gets an answer.
FEEDBACK_TEMPLATE = re.compile(re.escape(FEEDBACK_PREFIX) + r"(?P<rest>.*)", re.DOTALL)
_FEEDBACK_ID = re.compile(r"(?P<vote>[a-z]{1,10}):(?P<where>\d{1,20}|dm|-)")
NOT_YOUR_BUTTON = "That menu belongs to an alert for another server's topics, so the vote was not recorded."
NO_MENTIONS = discord.AllowedMentions.none()


def topic_choices(topics: list[str], current: str) -> list[app_commands.Choice[str]]:
    """A person's topics matching what they typed, as autocomplete choices (at most 25).

    A topic over 100 characters is shown cut with "…" and chosen by its key
    (:func:`adapters.controls.choice_value`), which the command resolves back to the topic.
    """
    needle = current.strip().casefold()
    matching = [t for t in topics if needle in t.casefold()]
    matching.sort(key=lambda t: (not t.casefold().startswith(needle), t))
    return [app_commands.Choice(name=choice_name(t, limit=MAX_CHOICE_LENGTH),
                                value=choice_value(t, limit=MAX_CHOICE_LENGTH))
            for t in matching[:MAX_CHOICES]]


def timezone_choices(current: str) -> list[app_commands.Choice[str]]:
    """IANA zones containing what was typed (``berlin`` finds ``Europe/Berlin``)."""
    return [app_commands.Choice(name=z, value=z) for z in search_timezones(current, limit=MAX_CHOICES)]


class DiscordCommands:
    """Slash-command and button handlers for one client; builds the command tree."""

    def __init__(self, settings: Settings, core: Paperboy, storage: Storage) -> None:
        self.settings = settings
        self.core = core
        self.storage = storage
        self.button_type = self._make_button_type()
        # Slash commands are deferred at once, then worked on here (at most command_workers at a time).
        self.pool = WorkPool(workers=settings.command_workers, queue_size=settings.command_queue, name="discord")
        self.select_type = self._make_select_type()

    # --- rendering to discord.py objects ---------------------------------------------------------------

    def view_for(self, payload: dict[str, Any]) -> discord.ui.View | None:
        """A view whose buttons serialise to exactly ``payload["components"]``."""
        if not payload["components"]:
            return None
        view = discord.ui.View(timeout=None)
        for row, action_row in enumerate(payload["components"]):
            for component in action_row["components"]:
                item_type = self.select_type if component.get("type") == STRING_SELECT else self.button_type
                view.add_item(item_type(component, row=row))
        return view

    def send_kwargs(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Keyword arguments for discord.py's send/edit calls that produce ``payload``."""
        kwargs: dict[str, Any] = {"content": payload["content"] or None, "embeds": build_embeds(payload),
                                  "allowed_mentions": NO_MENTIONS}
        view = self.view_for(payload)
        if view is not None:
            kwargs["view"] = view
        return kwargs

    # --- slash commands ------------------------------------------------------------------------------

    async def answer(self, interaction: discord.Interaction) -> None:
        """Defer at once, then run the command in the pool and replace the deferral with the reply
        (with "busy, try again" when the pool's queue is full)."""
        try:
            await interaction.response.defer(ephemeral=True, thinking=True)
        except discord.HTTPException as exc:  # too late (3 s) or the interaction is gone
            log.warning("could not defer interaction %s: %s", interaction.id, exc.status)
            return
        if not self.pool.submit(lambda: self._work(interaction)):
            log.warning("Discord command refused: %d running and %d waiting", self.pool.running, self.pool.queued)
            await self._edit(interaction, error_reply(BUSY_MESSAGE))

    async def _work(self, interaction: discord.Interaction) -> None:
        ctx = context_from_interaction(interaction)
        args = command_args(interaction.data or {}, max_topic_length=self.settings.max_topic_length)
        key = choice_key(args.topic) if args.name == cmd.UNSUBSCRIBE and args.topic else None
        if key is not None:       # a long topic chosen from the autocomplete list
            topic = await resolve_topic(self.storage, key, user=ctx.user)
            args = CommandArgs(cmd.UNSUBSCRIBE, topic=topic) if topic else \
                CommandArgs(cmd.HELP, problem="You do not follow that topic any more; see /papers subscriptions.")
        reply = await self._dispatch(ctx, args)
        await self._edit(interaction, reply)

    async def _dispatch(self, ctx: Any, args: CommandArgs) -> Reply:
        try:
            return await asyncio.wait_for(self.core.dispatch(ctx, args), FOLLOW_UP_DEADLINE)
        except asyncio.TimeoutError:
            log.error("command %s took longer than Discord's follow-up window", args.name)
            return error_reply("That took too long. Please try again in a minute.")

    async def _edit(self, interaction: discord.Interaction, reply: Reply) -> None:
        await self.remember_controls(reply)
        payload = message_payload(reply)
        try:
            await interaction.edit_original_response(**self.send_kwargs(payload))
        except discord.HTTPException as exc:
            log.warning("could not answer interaction %s: HTTP %s, code %s", interaction.id, exc.status, exc.code)

    async def unsubscribe_choices(self, interaction: discord.Interaction,
                                  current: str) -> list[app_commands.Choice[str]]:
        topics = await self.storage.topics.topics(user_ref(user_id=interaction.user.id,
                                                           guild_id=interaction.guild_id))
        return topic_choices(topics, current)

    async def timezone_choices(self, interaction: discord.Interaction,
                               current: str) -> list[app_commands.Choice[str]]:
        return timezone_choices(current)

    # --- buttons -------------------------------------------------------------------------------------

    async def remember_controls(self, reply: Reply) -> None:
        """Store the topic of a reply's buttons when their ids carry it as a key (too long to fit)."""
        if reply.topic:
            await remember_topics(self.storage, [reply.topic], limit=MAX_CUSTOM_ID)
        for topic, head in feedback_topics(reply):      # the vote menus carry "vote/<paper id>" too
            await remember_topics(self.storage, [topic], limit=MAX_CUSTOM_ID, action_length=head)

    async def _button_topic(self, interaction: discord.Interaction, control: ControlRef) -> str:
        """The topic a pressed button carries, checked as typed text (:class:`InputError` if unusable)."""
        user = user_ref(user_id=interaction.user.id, guild_id=interaction.guild_id)
        return await topic_of(self.storage, control, user=user, max_length=self.settings.max_topic_length)

    async def share(self, interaction: discord.Interaction, control: ControlRef) -> None:
        """Re-post the search results publicly in the channel, saying who shared them."""
        await interaction.response.defer()   # a component: acknowledge without changing the message
        try:
            topic = await self._button_topic(interaction, control)
        except InputError as exc:
            refused = message_payload(error_reply(str(exc)))
            await interaction.followup.send(ephemeral=True, **self.send_kwargs(refused))
            return
        try:
            reply = await asyncio.wait_for(self.core.search_reply(topic), FOLLOW_UP_DEADLINE)
        except Exception:  # noqa: BLE001 - the person gets a message, the log the traceback
            log.exception("sharing a search failed")
            failed = message_payload(error_reply("Sharing failed; please try again."))
            await interaction.followup.send(ephemeral=True, **self.send_kwargs(failed))
            return
        await self.remember_controls(reply)
        payload = message_payload(reply, share_button=False, feedback=False,
                                  lead=f"<@{interaction.user.id}> shared a search:")
        try:
            await interaction.followup.send(ephemeral=False, **self.send_kwargs(payload))
        except discord.HTTPException as exc:
            log.warning("could not share in channel %s: HTTP %s, code %s", interaction.channel_id, exc.status,
                        exc.code)

    async def subscribe(self, interaction: discord.Interaction, control: ControlRef) -> None:
        """Subscribe the person who pressed the button; they alone see the confirmation."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            args = CommandArgs(cmd.SUBSCRIBE, topic=await self._button_topic(interaction, control))
        except InputError as exc:
            args = CommandArgs(cmd.HELP, problem=str(exc))
        reply = await self._dispatch(context_from_interaction(interaction), args)
        await self._edit(interaction, reply)

    async def vote(self, interaction: discord.Interaction, custom_id: str) -> None:
        """A choice in a 👍 / 👎 / "fewer like this" menu: checked like a typed vote, confirmed privately.

        The voter is whoever Discord says chose; the menu's custom id and the option's value are data to
        validate. A vote from a DM alert lands on the topics of the server the alert was for, and only
        when the voter follows topics there.
        """
        await interaction.response.defer(ephemeral=True, thinking=True)
        ctx = context_from_interaction(interaction)
        values = (interaction.data or {}).get("values") or [""]
        option = read_feedback_option(str(values[0]))
        parsed = _FEEDBACK_ID.fullmatch(custom_id[len(FEEDBACK_PREFIX):])
        if parsed is None or option is None:
            await self._edit(interaction, error_reply("That menu is not one of mine; the vote was not recorded."))
            return
        where = parsed["where"]
        if interaction.guild_id is None and where not in (FEEDBACK_HERE, DM_WORKSPACE_ID):
            ctx = replace(ctx, user=user_ref(user_id=interaction.user.id, guild_id=where))
            if await self.storage.topics.setting(ctx.user) is None:
                await self._edit(interaction, error_reply(NOT_YOUR_BUTTON))
                return
        paper_id, control = option
        try:
            topic = await topic_of(self.storage, control, user=ctx.user, max_length=self.settings.max_topic_length)
        except InputError as exc:
            args = CommandArgs(cmd.HELP, problem=str(exc))
        else:
            args = vote_args(parsed["vote"], paper_id, topic, max_topic_length=self.settings.max_topic_length)
        await self._edit(interaction, await self._dispatch(ctx, args))

    def _make_select_type(self) -> type[discord.ui.DynamicItem[discord.ui.Select]]:
        commands = self

        class FeedbackMenu(discord.ui.DynamicItem[discord.ui.Select], template=FEEDBACK_TEMPLATE):
            """A 👍 / 👎 / "fewer like this" menu; its custom id names the vote and where it counts."""

            def __init__(self, component: dict[str, Any], *, row: int | None = None) -> None:
                options = [discord.SelectOption(label=o["label"], value=o["value"], description=o.get("description"))
                           for o in component.get("options") or ()]
                super().__init__(discord.ui.Select(custom_id=component["custom_id"],
                                                   placeholder=component.get("placeholder"),
                                                   options=options or [discord.SelectOption(label="-")]), row=row)
                self.custom_id_text = component["custom_id"]

            @classmethod
            async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Item[Any],
                                     match: re.Match[str]) -> "FeedbackMenu":
                options = [{"label": o.label, "value": o.value} for o in getattr(item, "options", ())]
                return cls({"custom_id": match.string, "options": options})

            async def callback(self, interaction: discord.Interaction) -> None:
                await commands.vote(interaction, self.custom_id_text)

        return FeedbackMenu

    def _make_button_type(self) -> type[discord.ui.DynamicItem[discord.ui.Button]]:
        commands = self

        class TopicButton(discord.ui.DynamicItem[discord.ui.Button], template=BUTTON_TEMPLATE):
            """"Share in channel" / "Subscribe to <topic>": the custom id carries action and topic (or its key)."""

            def __init__(self, component: dict[str, Any], *, row: int | None = None) -> None:
                style = discord.ButtonStyle.primary if component.get("style") == BUTTON_PRIMARY \
                    else discord.ButtonStyle.secondary
                super().__init__(discord.ui.Button(label=component.get("label"), style=style,
                                                   custom_id=component["custom_id"]), row=row)
                control = parse_control_id(component["custom_id"])
                if control is None:    # matches the template but is not a valid id: an unknown key
                    match = BUTTON_TEMPLATE.fullmatch(component["custom_id"])
                    control = ControlRef(match["action"] if match else "subscribe", key="")
                self.control = control

            @classmethod
            async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Item[Any],
                                     match: re.Match[str]) -> "TopicButton":
                return cls({"custom_id": match.string, "label": getattr(item, "label", None)})

            async def callback(self, interaction: discord.Interaction) -> None:
                if self.control.action == "share":
                    await commands.share(interaction, self.control)
                else:
                    await commands.subscribe(interaction, self.control)

        return TopicButton

    # --- the command tree ---------------------------------------------------------------------------

    def groups(self) -> list[app_commands.Group]:
        """``/papers`` and ``/papers-channel`` with every subcommand, bound to this object."""
        answer = self.answer
        max_topic = min(self.settings.max_topic_length, 6000)
        Topic = app_commands.Range[str, 1, max_topic]  # noqa: N806 - a type alias
        Time = app_commands.Range[str, 1, 10]  # noqa: N806
        TopN = app_commands.Range[int, 1, cmd.MAX_CHANNEL_TOP_N]  # noqa: N806

        papers = app_commands.Group(
            name=PAPERS, description="ML papers people are reading (Hugging Face Daily Papers)",
            allowed_contexts=app_commands.AppCommandContext(guild=True, dm_channel=True),
            allowed_installs=app_commands.AppInstallationType(guild=True))

        @papers.command(name="search", description="The papers on a topic, best first")
        @app_commands.describe(topic="What to look for, e.g. generalization or diffusion models")
        async def search(interaction: discord.Interaction, topic: Topic) -> None:  # type: ignore[valid-type]
            await answer(interaction)

        @papers.command(name="today", description="Today's trending papers")
        async def today(interaction: discord.Interaction) -> None:
            await answer(interaction)

        @papers.command(name="subscribe", description="A daily direct message with new papers on a topic")
        @app_commands.describe(topic="The topic to follow")
        async def subscribe(interaction: discord.Interaction, topic: Topic) -> None:  # type: ignore[valid-type]
            await answer(interaction)

        @papers.command(name="unsubscribe", description="Stop following a topic")
        @app_commands.describe(topic="One of your topics")
        @app_commands.autocomplete(topic=self.unsubscribe_choices)
        async def unsubscribe(interaction: discord.Interaction, topic: Topic) -> None:  # type: ignore[valid-type]
            await answer(interaction)

        @papers.command(name="subscriptions", description="The topics you follow and when alerts arrive")
        async def subscriptions(interaction: discord.Interaction) -> None:
            await answer(interaction)

        @papers.command(name="help", description="What Paperboy can do")
        async def help_(interaction: discord.Interaction) -> None:
            await answer(interaction)

        alerts = app_commands.Group(name="alerts", description="When your personal alerts arrive", parent=papers)

        @alerts.command(name="on", description="Daily alerts by direct message, at a time of your choosing")
        @app_commands.describe(time="Time of day, e.g. 08:30", timezone="IANA time zone, e.g. Europe/Berlin")
        @app_commands.autocomplete(timezone=self.timezone_choices)
        async def alerts_on(interaction: discord.Interaction, time: Optional[Time] = None,  # type: ignore[valid-type]
                            timezone: Optional[str] = None) -> None:
            await answer(interaction)

        @alerts.command(name="off", description="Pause your alerts (your topics are kept)")
        async def alerts_off(interaction: discord.Interaction) -> None:
            await answer(interaction)

        @alerts.command(name="show", description="Your topics and alert time")
        async def alerts_show(interaction: discord.Interaction) -> None:
            await answer(interaction)

        feedback = app_commands.Group(name="feedback", description="What your 👍 / 👎 votes taught",
                                      parent=papers)

        @feedback.command(name="show", description="What your votes taught, per topic")
        async def feedback_show(interaction: discord.Interaction) -> None:
            await answer(interaction)

        @feedback.command(name="reset", description="Forget your votes (on one topic, or all)")
        @app_commands.describe(topic="The topic to forget votes on (leave empty for all)")
        async def feedback_reset(interaction: discord.Interaction,
                                 topic: Optional[Topic] = None) -> None:  # type: ignore[valid-type]
            await answer(interaction)

        channel = app_commands.Group(
            name=PAPERS_CHANNEL, description="This channel's daily post of trending papers",
            guild_only=True, allowed_contexts=app_commands.AppCommandContext(guild=True),
            default_permissions=discord.Permissions(manage_channels=True),
            allowed_installs=app_commands.AppInstallationType(guild=True))

        @channel.command(name="on", description="Post the trending papers here every day")
        @app_commands.describe(time="Time of day, e.g. 09:00", timezone="IANA time zone, e.g. Europe/Berlin",
                               top="How many papers each post lists (1-25)",
                               post_when_empty="Also post on days without new papers (weekends)")
        @app_commands.autocomplete(timezone=self.timezone_choices)
        async def channel_on(interaction: discord.Interaction, time: Optional[Time] = None,  # type: ignore[valid-type]
                             timezone: Optional[str] = None,
                             top: Optional[TopN] = None,  # type: ignore[valid-type]
                             post_when_empty: Optional[bool] = None) -> None:
            await answer(interaction)

        @channel.command(name="off", description="Stop this channel's daily post")
        async def channel_off(interaction: discord.Interaction) -> None:
            await answer(interaction)

        @channel.command(name="show", description="This channel's daily post setting")
        async def channel_show(interaction: discord.Interaction) -> None:
            await answer(interaction)

        return [papers, channel]

    def build_tree(self, client: discord.Client) -> app_commands.CommandTree:
        """The client's command tree with both groups, and the buttons registered for dispatch."""
        tree = app_commands.CommandTree(client)
        for group in self.groups():
            tree.add_command(group)
        tree.error(self._on_tree_error)
        client.add_dynamic_items(self.button_type, self.select_type)
        return tree

    async def _on_tree_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        log.error("slash command failed: %s", type(error).__name__, exc_info=error)
        if not interaction.response.is_done():
            return
        await self._edit(interaction, error_reply("Sorry, that failed on my side. Please try again shortly."))
