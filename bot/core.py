"""The platform-neutral core: commands in, :class:`Reply` out.

Adapters call :meth:`Paperboy.handle` with a :class:`CommandContext` and the
text after ``/papers``. Handlers are registered on the instance with the
explicit signature ``(ctx, args) -> Reply``. ``handle`` never raises: any
failure becomes an error reply and a log line, never a traceback to a user.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, time
from time import perf_counter

from bot import commands as cmd
from bot.commands import HELP_LINES, CommandArgs, parse_command
from bot.feedback import DOWN, FEWER, UP, TopicTaste, learn, paper_terms, personalise
from bot.matching import PaperTerms
from bot.metrics import Metrics
from bot.models import CommandContext, Paper, Reply, ReplyKind, Section, UserRef
from bot.papers import NoPapersAvailable, Origin, PaperBatch, PaperService
from bot.present import present
from bot.ranking import rank_for_topic, rank_trending
from bot.schedule import format_time, next_occurrence, parse_timezone, utcnow
from bot.settings import Settings
from bot.text import InputError, unmatchable_topic_reason
from storage.repositories import ChannelSetting, Storage, TopicChange

log = logging.getLogger(__name__)

Handler = Callable[[CommandContext, CommandArgs], Awaitable[Reply]]
TERMS_SLICE_SECONDS = 0.002   # stemming fresh papers yields the loop this often (acks, other commands)
Clock = Callable[[], datetime]


async def prepare_terms(papers: Sequence[Paper]) -> None:
    """Compute the papers' stems (cached per paper) a slice at a time, letting the event loop run
    between slices: 50 fresh papers are many milliseconds of work, which would otherwise hold up
    every acknowledgement and answer waiting behind them. Papers already known cost a look-up."""
    deadline = perf_counter() + TERMS_SLICE_SECONDS
    for paper in papers:
        PaperTerms.of(paper)
        if perf_counter() > deadline:
            await asyncio.sleep(0)
            deadline = perf_counter() + TERMS_SLICE_SECONDS


def error_reply(message: str) -> Reply:
    return Reply(kind=ReplyKind.ERROR, title="Something went wrong", lines=(message,))


class CommandRouter:
    """Command names to handlers, registered explicitly."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}

    def register(self, name: str, handler: Handler) -> None:
        if name in self._handlers:
            raise ValueError(f"command {name!r} registered twice")
        self._handlers[name] = handler

    def get(self, name: str) -> Handler | None:
        return self._handlers.get(name)

    def names(self) -> list[str]:
        return sorted(self._handlers)


class Paperboy:
    """Answers commands against storage and the paper source."""

    def __init__(self, settings: Settings, storage: Storage, papers: PaperService, *,
                 clock: Clock = utcnow, metrics: Metrics | None = None) -> None:
        self.metrics = metrics
        self.settings = settings
        self.storage = storage
        self.papers = papers
        self.clock = clock
        self.router = CommandRouter()
        for name, handler in (
            (cmd.SEARCH, self._search), (cmd.TODAY, self._today), (cmd.HELP, self._help),
            (cmd.SEARCH_SHARED, self._search_shared),
            (cmd.SUBSCRIBE, self._subscribe), (cmd.UNSUBSCRIBE, self._unsubscribe),
            (cmd.SUBSCRIPTIONS, self._subscriptions),
            (cmd.CHANNEL_ON, self._channel_on), (cmd.CHANNEL_OFF, self._channel_off),
            (cmd.CHANNEL_SHOW, self._channel_show),
            (cmd.ALERTS_ON, self._alerts_on), (cmd.ALERTS_OFF, self._alerts_off),
            (cmd.ALERTS_SHOW, self._subscriptions),
            (cmd.FEEDBACK_SHOW, self._feedback_show), (cmd.FEEDBACK_RESET, self._feedback_reset),
            (cmd.FEEDBACK_VOTE, self._feedback_vote),
        ):
            self.router.register(name, handler)

    # --- entry point -----------------------------------------------------------------

    def parse(self, text: str) -> CommandArgs:
        return parse_command(text, max_topic_length=self.settings.max_topic_length)

    async def handle(self, ctx: CommandContext, text: str) -> Reply:
        """Answer one ``/papers`` command; never raises (parsing included)."""
        try:
            args = self.parse(text)
        except Exception:  # noqa: BLE001 - a parser bug must still get the person an answer
            log.exception("parsing a command failed")
            return await self._help(ctx, CommandArgs(cmd.HELP, problem="I could not read that command."))
        return await self.dispatch(ctx, args)

    async def dispatch(self, ctx: CommandContext, args: CommandArgs) -> Reply:
        """Run a parsed command (adapters with structured commands call this directly); timed in the metrics."""
        started = perf_counter()
        try:
            return await self._answer(ctx, args)
        finally:
            if self.metrics is not None:
                self.metrics.command_answered(ctx.user.platform, args.name, perf_counter() - started)

    async def _answer(self, ctx: CommandContext, args: CommandArgs) -> Reply:
        handler = self.router.get(args.name)
        if handler is None:
            return await self._help(ctx, CommandArgs(cmd.HELP, problem=f"Unknown command {args.name!r}."))
        ctx = _with_known_zone(ctx)
        try:
            reply = await handler(ctx, args)
            notice = await self.storage.topics.after_command(ctx.user, ctx.user_timezone)
        except InputError as exc:
            return Reply(kind=ReplyKind.ERROR, title="That did not work", lines=(str(exc),))
        except NoPapersAvailable:
            return error_reply("Hugging Face cannot be reached right now and no papers are stored yet. "
                               "Please try again in a few minutes.")
        except Exception:  # noqa: BLE001 - the user gets a message, the log gets the traceback
            log.exception("command %s failed", args.name)
            return error_reply("Sorry, that failed on my side. It has been logged; please try again shortly.")
        if notice:
            reply = _with_notice(reply, notice)
        return reply

    # --- papers ------------------------------------------------------------------------

    async def taste(self, user: UserRef, topic: str) -> TopicTaste | None:
        """What ``user``'s votes on ``topic`` taught, or None when they gave none."""
        return learn(topic, await self.storage.feedback.votes(user, topic))

    async def search_reply(self, topic: str, *, limit: int | None = None, user: UserRef | None = None) -> Reply:
        """The ranked papers on ``topic`` (a normalized topic), re-ranked by ``user``'s votes when given."""
        limit = limit or self.settings.search_results
        problem = unmatchable_topic_reason(topic)
        if problem:   # a topic that reached the core without the parser (e.g. a button's stored value)
            return Reply(kind=ReplyKind.ERROR, title="That did not work", lines=(problem,))
        batch = await self.papers.search(topic, deadline=self.settings.answer_deadline_seconds)
        await prepare_terms(batch.papers)
        # Live candidates come in Hugging Face's search order, which is evidence of relevance too.
        ranked = rank_for_topic(topic, batch.papers, now=self.clock(), source_ranked=batch.origin is Origin.LIVE)
        taste = await self.taste(user, topic) if user is not None else None
        ranked = personalise(ranked, taste)
        shown = [present(r, i + 1) for i, r in enumerate(ranked[:limit])]
        notices = tuple(n for n in (batch.notice(),) if n)
        if not shown:
            return Reply(kind=ReplyKind.SEARCH, title=f"Papers on “{topic}”", topic=topic, notices=notices,
                         lines=(f"No papers matched “{topic}”. Try fewer or broader words.",),
                         footer=f"Follow it anyway: /papers subscribe {topic}")
        lines = (personal_line(taste),) if taste is not None else ()
        return Reply(
            kind=ReplyKind.SEARCH,
            title=f"Papers on “{topic}”",
            lines=lines,
            sections=(Section(papers=tuple(shown), topic=topic, more=len(ranked) - len(shown)),),
            notices=notices,
            topic=topic,
            footer=f"Get new ones daily: /papers subscribe {topic}",
        )

    async def trending_reply(self, *, limit: int | None = None, kind: ReplyKind = ReplyKind.TRENDING,
                             batch: PaperBatch | None = None) -> Reply:
        """The day's trending papers (the latest day that has any)."""
        limit = limit or self.settings.trending_results
        batch = batch or await self.papers.daily(deadline=self.settings.answer_deadline_seconds)
        ranked = rank_trending(list(batch.papers))
        shown = [present(r, i + 1) for i, r in enumerate(ranked[:limit])]
        notices = tuple(n for n in (batch.notice(),) if n)
        day = batch.day
        title = f"Trending papers — {day:%A %d %B %Y}" if day else "Trending papers"
        if not shown:
            return Reply(kind=kind, title=title, lines=("No papers on the daily feed yet today.",),
                         notices=notices, day=day, ephemeral=kind is ReplyKind.TRENDING)
        return Reply(kind=kind, title=title, day=day, notices=notices,
                     sections=(Section(papers=tuple(shown), more=len(ranked) - len(shown)),),
                     ephemeral=kind is ReplyKind.TRENDING)

    async def _search(self, ctx: CommandContext, args: CommandArgs) -> Reply:
        assert args.topic is not None
        return await self.search_reply(args.topic, user=ctx.user)

    async def _search_shared(self, ctx: CommandContext, args: CommandArgs) -> Reply:
        assert args.topic is not None
        return await self.search_reply(args.topic)

    async def _today(self, ctx: CommandContext, args: CommandArgs) -> Reply:
        return await self.trending_reply()

    async def _help(self, ctx: CommandContext, args: CommandArgs) -> Reply:
        return Reply(kind=ReplyKind.HELP, title="Paperboy — ML papers people are reading", lines=HELP_LINES,
                     notices=(args.problem,) if args.problem else ())

    # --- personal topics -------------------------------------------------------------------

    async def _subscribe(self, ctx: CommandContext, args: CommandArgs) -> Reply:
        assert args.topic is not None
        problem = unmatchable_topic_reason(args.topic)
        if problem:
            raise InputError(problem)
        limit = self.settings.max_topics_per_user
        change, count = await self.storage.topics.add(ctx.user, args.topic, limit=limit)
        if change is TopicChange.LIMIT:
            return Reply(kind=ReplyKind.ERROR, title="Too many topics",
                         lines=(f"You already follow {count} topics, the most allowed is {limit}. "
                                "Remove one with /papers unsubscribe <topic> first.",))
        if change is TopicChange.ALREADY:
            return Reply(kind=ReplyKind.CONFIRMATION, title=f"You already follow “{args.topic}”", topic=args.topic,
                         lines=("Nothing changed.",))
        when = await self._ensure_alert_schedule(ctx)
        return Reply(kind=ReplyKind.CONFIRMATION, title=f"Subscribed to “{args.topic}”", topic=args.topic,
                     lines=(f"You will get a direct message with new papers on it {when}.",
                            f"You follow {count} of at most {limit} topics."),
                     footer="See them all: /papers subscriptions")

    async def _unsubscribe(self, ctx: CommandContext, args: CommandArgs) -> Reply:
        assert args.topic is not None
        change = await self.storage.topics.remove(ctx.user, args.topic)
        if change is TopicChange.MISSING:
            topics = await self.storage.topics.topics(ctx.user)
            hint = ("You follow: " + ", ".join(topics)) if topics else "You follow no topics."
            return Reply(kind=ReplyKind.ERROR, title=f"You don't follow “{args.topic}”", lines=(hint,))
        return Reply(kind=ReplyKind.CONFIRMATION, title=f"Unsubscribed from “{args.topic}”",
                     lines=("No more alerts for it.",), footer="See the rest: /papers subscriptions")

    async def _subscriptions(self, ctx: CommandContext, args: CommandArgs) -> Reply:
        setting = await self.storage.topics.setting(ctx.user)
        topics = setting.topics if setting else ()
        lines = []
        if not topics:
            lines.append("You follow no topics yet. Try /papers subscribe generalization")
        if setting is not None:
            lines.append(self._alert_status(setting.enabled, setting.paused_reason, setting.alert_time,
                                            setting.timezone, ctx))
        return Reply(kind=ReplyKind.SUBSCRIPTIONS, title="Your topics", items=tuple(topics), lines=tuple(lines),
                     footer="Change the time: /papers alerts on HH:MM Area/City")

    # --- personal alert time -----------------------------------------------------------------

    def _alert_zone(self, ctx: CommandContext, stored: str | None) -> str:
        return stored or ctx.user_timezone or self.settings.default_timezone

    def _alert_status(self, enabled: bool, paused: str | None, at: time | None, tz: str | None,
                      ctx: CommandContext) -> str:
        when = f"{format_time(at or self.settings.default_post_time)} {self._alert_zone(ctx, tz)}"
        if paused:
            return f"Your alerts are paused ({paused}). Turn them back on with /papers alerts on"
        if not enabled:
            return "Your alerts are off. Turn them on with /papers alerts on"
        return f"Your alerts arrive daily at {when}."

    async def _ensure_alert_schedule(self, ctx: CommandContext) -> str:
        """Make sure a person with topics has a next alert time; say when it is."""
        setting = await self.storage.topics.setting(ctx.user)
        assert setting is not None
        at = setting.alert_time or self.settings.default_post_time
        zone = self._alert_zone(ctx, setting.timezone)
        if setting.enabled and setting.next_due_at is None:
            due = next_occurrence(self.clock(), at, zone)
            await self.storage.topics.set_alerts(ctx.user, enabled=True, next_due_at=due,
                                                 tz=zone if setting.timezone is None else None)
        if not setting.enabled:
            return "once you turn alerts on (/papers alerts on)"
        return f"daily at {format_time(at)} {zone}"

    async def _alerts_on(self, ctx: CommandContext, args: CommandArgs) -> Reply:
        setting = await self.storage.topics.setting(ctx.user)
        at = args.at or (setting.alert_time if setting else None) or self.settings.default_post_time
        zone = args.timezone or self._alert_zone(ctx, setting.timezone if setting else None)
        topics = setting.topics if setting else ()
        due = next_occurrence(self.clock(), at, zone) if topics else None   # no topics: nothing is due yet
        await self.storage.topics.set_alerts(ctx.user, enabled=True, alert_time=at, tz=zone, next_due_at=due)
        lines = [f"Your alerts arrive daily at {format_time(at)} {zone}."]
        if not topics:
            lines.append("You follow no topics yet: /papers subscribe <topic>")
        return Reply(kind=ReplyKind.ALERT_SETTING, title="Alerts on", lines=tuple(lines))

    async def _alerts_off(self, ctx: CommandContext, args: CommandArgs) -> Reply:
        await self.storage.topics.set_alerts(ctx.user, enabled=False)
        return Reply(kind=ReplyKind.ALERT_SETTING, title="Alerts off",
                     lines=("You keep your topics; turn alerts back on with /papers alerts on",))

    # --- feedback: votes and what they taught ------------------------------------------------

    async def _feedback_vote(self, ctx: CommandContext, args: CommandArgs) -> Reply:
        assert args.topic is not None and args.paper_id is not None and args.vote is not None
        paper = await self.papers.known(args.paper_id)
        if paper is None:
            return Reply(kind=ReplyKind.ERROR, title="I don't know that paper",
                         lines=("That vote names a paper I have not shown anyone, so it was not recorded.",))
        count = await self.storage.feedback.record(ctx.user, args.topic, paper.paper_id, args.vote,
                                                   title=paper.title, terms=paper_terms(paper))
        effect = {UP: f"Your alerts and answers on “{args.topic}” now lean towards papers like it.",
                  DOWN: f"Your alerts and answers on “{args.topic}” now lean away from papers like it.",
                  FEWER: f"You will get fewer papers like it on “{args.topic}”."}[args.vote]
        title = {UP: "👍 Noted: more like this", DOWN: "👎 Noted: not for you",
                 FEWER: "Noted: fewer like this"}[args.vote]
        return Reply(kind=ReplyKind.CONFIRMATION, title=title, topic=args.topic,
                     lines=(f"“{paper.title}” on “{args.topic}”. {effect}",
                            f"{count} vote{'s' if count != 1 else ''} on this topic so far."),
                     footer=f"See what was learned: /papers feedback · undo: /papers feedback reset {args.topic}")

    async def _feedback_show(self, ctx: CommandContext, args: CommandArgs) -> Reply:
        by_topic = await self.storage.feedback.by_topic(ctx.user)
        if not by_topic:
            return Reply(kind=ReplyKind.SUBSCRIPTIONS, title="What your votes taught",
                         lines=("You have not voted on any paper yet. Use 👍, 👎 or “Fewer like this” under the papers "
                                "in your alerts and search answers; each vote tunes that topic for you alone.",))
        items = tuple(describe_taste(TopicTaste(topic, votes)) for topic, votes in by_topic.items())
        return Reply(kind=ReplyKind.SUBSCRIPTIONS, title="What your votes taught", items=items,
                     lines=("Each topic is tuned for you alone; people who never vote get the usual ranking.",),
                     footer="Forget it: /papers feedback reset <topic> · all topics: /papers feedback reset")

    async def _feedback_reset(self, ctx: CommandContext, args: CommandArgs) -> Reply:
        forgotten = await self.storage.feedback.reset(ctx.user, args.topic)
        where = f"on “{args.topic}”" if args.topic else "on any topic"
        if not forgotten:
            voted = await self.storage.feedback.by_topic(ctx.user)
            hint = ("You have votes on: " + ", ".join(f"“{t}”" for t in voted)) if voted else "You have no votes."
            return Reply(kind=ReplyKind.CONFIRMATION, title=f"No votes {where}", lines=(hint,))
        return Reply(kind=ReplyKind.CONFIRMATION, title="Votes forgotten",
                     lines=(f"Forgot {forgotten} vote{'s' if forgotten != 1 else ''} {where}; "
                            "those papers are ranked the usual way again.",))

    # --- channel posts ----------------------------------------------------------------------

    def _channel_problem(self, ctx: CommandContext) -> Reply | None:
        if ctx.channel is None:
            return Reply(kind=ReplyKind.ERROR, title="Not in a channel",
                         lines=("Run this command in the channel that should get the daily post.",))
        if not ctx.can_manage_channel:
            return Reply(kind=ReplyKind.ERROR, title="Not allowed",
                         lines=("Only people who may manage this channel can change its daily post.",))
        return None

    async def _channel_on(self, ctx: CommandContext, args: CommandArgs) -> Reply:
        problem = self._channel_problem(ctx)
        if problem:
            return problem
        assert ctx.channel is not None
        existing = await self.storage.channels.get(ctx.channel)
        at = args.at or (existing.post_time if existing else self.settings.default_post_time)
        zone = args.timezone or (existing.timezone if existing else None) or ctx.user_timezone \
            or self.settings.default_timezone
        top_n = args.top_n or (existing.top_n if existing else self.settings.trending_results)
        post_when_empty = args.post_when_empty if args.post_when_empty is not None else \
            (existing.post_when_empty if existing else False)
        due = next_occurrence(self.clock(), at, zone)
        setting = await self.storage.channels.enable(ctx.channel, post_time=at, tz=zone, created_by=ctx.user.user,
                                                     next_due_at=due, top_n=top_n, post_when_empty=post_when_empty)
        return channel_setting_reply(setting, title="Daily post on")

    async def _channel_off(self, ctx: CommandContext, args: CommandArgs) -> Reply:
        problem = self._channel_problem(ctx)
        if problem:
            return problem
        assert ctx.channel is not None
        changed = await self.storage.channels.disable(ctx.channel)
        lines = ("This channel will get no more daily posts.",) if changed else \
            ("This channel had no daily post switched on.",)
        return Reply(kind=ReplyKind.CHANNEL_SETTING, title="Daily post off", lines=lines,
                     footer="Switch it on again: /papers channel on HH:MM Area/City")

    async def _channel_show(self, ctx: CommandContext, args: CommandArgs) -> Reply:
        if ctx.channel is None:
            return self._channel_problem(ctx) or error_reply("Not in a channel.")
        setting = await self.storage.channels.get(ctx.channel)
        if setting is None:
            return Reply(kind=ReplyKind.CHANNEL_SETTING, title="No daily post here",
                         lines=("This channel gets no daily post.",),
                         footer="Switch it on: /papers channel on 09:00 Europe/Berlin")
        return channel_setting_reply(setting, title="This channel's daily post")


def channel_setting_reply(setting: ChannelSetting, *, title: str) -> Reply:
    """A channel's post setting, said plainly."""
    when = f"{format_time(setting.post_time)} {setting.timezone}"
    if setting.enabled:
        lines = [f"The {setting.top_n} trending papers are posted here every day at {when}.",
                 "Also on days without new papers (the latest list again)." if setting.post_when_empty else
                 "Days without new papers (weekends) get no post."]
        if setting.next_due_at:
            lines.append(f"Next post: {setting.next_due_at:%Y-%m-%d %H:%M} UTC.")
    elif setting.paused_reason:
        lines = [f"Paused ({setting.paused_reason}). Switch it back on with /papers channel on"]
    else:
        lines = [f"Off (was {when})."]
    return Reply(kind=ReplyKind.CHANNEL_SETTING, title=title, lines=tuple(lines),
                 footer="Change it: /papers channel on HH:MM Area/City · stop it: /papers channel off")


def personal_line(taste: TopicTaste) -> str:
    """The line above results re-ranked by a person's votes."""
    n = taste.vote_count
    return f"Ranked for you from your {n} vote{'s' if n != 1 else ''} on “{taste.topic}” (see /papers feedback)."


def describe_taste(taste: TopicTaste) -> str:
    """One topic's learned taste in words: votes, terms up and down, and the threshold."""
    parts = [f"“{taste.topic}”: {taste.vote_count} vote{'s' if taste.vote_count != 1 else ''} "
             f"({taste.liked} 👍, {taste.disliked} 👎, {taste.fewer} fewer like this)"]
    more, less = taste.strongest(positive=True), taste.strongest(positive=False)
    if more:
        parts.append("more of: " + ", ".join(more))
    if less:
        parts.append("less of: " + ", ".join(less))
    if taste.has_threshold:
        parts.append("papers much like those you turned down are left out")
    return "; ".join(parts) + "."


def _with_notice(reply: Reply, notice: str) -> Reply:
    from dataclasses import replace

    return replace(reply, notices=(*reply.notices, notice))


def _with_known_zone(ctx: CommandContext) -> CommandContext:
    """``ctx`` with the platform's zone for the person in canonical form, or none when it is not a
    zone we know (a platform's answer is outside input: never stored, never used unchecked)."""
    if not ctx.user_timezone:
        return ctx
    try:
        zone = parse_timezone(ctx.user_timezone)
    except InputError:
        log.warning("ignoring the unknown time zone %r the platform gave for a user", ctx.user_timezone[:80])
        zone = None
    return ctx if zone == ctx.user_timezone else dataclasses.replace(ctx, user_timezone=zone)
