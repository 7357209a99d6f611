"""Input that looks like numbers or topics but is not: only ASCII digits are numbers, and topics
that could never match a paper are refused with a reason, on every path that takes a topic.

``str.isdigit`` is true for ``²`` and ``①`` (which ``int`` then refuses) and ``int`` reads ``٣``
(Arabic-Indic three) as 3; ``\\d`` in a regular expression matches ``٣`` too.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from adapters.discord.payloads import command_args
from bot import commands as cmd
from bot.commands import parse_command
from bot.core import Paperboy
from bot.hf_client import HuggingFaceClient
from bot.models import ChannelRef, CommandContext, ReplyKind, UserRef
from bot.papers import PaperService
from bot.sample import load_sample
from bot.schedule import looks_like_time, parse_time_of_day
from bot.text import InputError, normalize_topic
from storage.repositories import Storage
from tests.conftest import make_settings
from tests.fakes.hf_api import FakeHuggingFace

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 11, 20, 15, 0, tzinfo=timezone.utc)
USER = UserRef("slack", "T1", "U1")
CTX = CommandContext(user=USER, channel=ChannelRef("slack", "T1", "C1"))

NOT_ASCII_NUMBERS = ["²", "①", "٣", "३", "৩", "１", "⁵", "𝟓"]
NEVER_MATCH = {
    "\u200d\u200c": "invisible",
    "\u2800": "invisible",
    "\u3164\u3164": "invisible",
    "\u2060\u200d": "invisible",        # word joiner (stripped) + zero-width joiner (kept)
    "\u0301": "invisible",              # a lone combining accent
    "!!! ???": "punctuation or symbols",
    "🚀 ✨": "punctuation or symbols",
    "the of and": "common words",
    "The Of AND for": "common words",
}


@pytest.fixture
def hf() -> Iterator[FakeHuggingFace]:
    with FakeHuggingFace() as server:
        yield server


@pytest.fixture
async def core(storage: Storage, hf: FakeHuggingFace) -> AsyncIterator[Paperboy]:
    async def no_sleep(seconds: float) -> None:
        return None

    async with HuggingFaceClient(hf.url, retries=0, sleep=no_sleep) as client:
        papers = PaperService(client, storage.papers, sample=load_sample, clock=lambda: NOW)
        yield Paperboy(make_settings(), storage, papers, clock=lambda: NOW)


# --- digits ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("digit", NOT_ASCII_NUMBERS)
def test_only_ascii_digits_are_numbers_for_top_n_and_times(digit: str) -> None:
    for text in (f"channel on top {digit}", f"channel on top{digit}", f"channel on top={digit}"):
        args = parse_command(text)
        assert args.name == cmd.HELP and "`top` takes a number from 1 to 25" in (args.problem or "")
    assert not looks_like_time(f"{digit}:30") and not looks_like_time(f"0{digit}00")
    with pytest.raises(InputError):
        parse_time_of_day(f"{digit}am")
    args = parse_command(f"alerts on {digit}:30")
    assert args.name == cmd.HELP and args.problem


@pytest.mark.parametrize("digit", NOT_ASCII_NUMBERS)
async def test_a_channel_command_with_unicode_digits_gets_a_clear_answer(core: Paperboy, digit: str) -> None:
    reply = await core.handle(CTX, f"/papers channel on top {digit}")
    assert reply.kind is ReplyKind.HELP and "`top` takes a number from 1 to 25" in reply.notices[0]
    assert await core.storage.channels.get(CTX.channel) is None     # nothing half-written
    good = await core.handle(CTX, "/papers channel on 09:30 UTC top 3")
    assert good.kind is ReplyKind.CHANNEL_SETTING and "The 3 trending papers" in good.lines[0]


def test_discord_top_option_takes_only_ascii_digits() -> None:
    data = {"name": "papers-channel", "options": [{"type": 1, "name": "on", "options": [
        {"type": 3, "name": "top", "value": "②"}]}]}
    args = command_args(data)
    assert args.name == cmd.HELP and "`top` takes a number" in (args.problem or "")


async def test_handle_never_raises_even_when_parsing_fails(core: Paperboy, monkeypatch: pytest.MonkeyPatch) -> None:
    """Parsing sits inside handle's promise: a parser bug is an answer and a log line, not a traceback."""
    def broken(text: str) -> cmd.CommandArgs:
        raise OverflowError("a parser bug")

    monkeypatch.setattr(core, "parse", broken)
    reply = await core.handle(CTX, "/papers anything")
    assert reply.kind is ReplyKind.HELP and reply.notices == ("I could not read that command.",)


@pytest.mark.parametrize("command", ["channel on top ²", "channel on top ①", "channel on top ٣", "alerts on ٩:٣٠"])
def test_paperboy_ask_answers_unicode_digits_and_exits_0(command: str, tmp_path: Path, hf: FakeHuggingFace) -> None:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "DATABASE_URL": f"sqlite:///{tmp_path / 'a.db'}",
           "PAPERBOY_HF_URL": hf.url, "PAPERBOY_HF_RETRIES": "0", "HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "bot.cli", "ask", command], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert "/papers help" in result.stdout or "/papers channel" in result.stdout
    assert ("`top` takes a number from 1 to 25" in result.stdout) or ("I don't understand" in result.stdout)


# --- topics that can never match -----------------------------------------------------------------------


@pytest.mark.parametrize(("topic", "reason"), NEVER_MATCH.items())
def test_unmatchable_topics_are_refused_with_a_reason(topic: str, reason: str) -> None:
    with pytest.raises(InputError, match=reason):
        normalize_topic(topic)
    for command in (topic, f"search {topic}", f"subscribe {topic}"):
        args = parse_command(command)
        assert args.name == cmd.HELP and reason in (args.problem or ""), command


def test_topics_with_a_real_word_are_kept() -> None:
    assert normalize_topic("the generalization of networks") == "the generalization of networks"
    assert normalize_topic("\u3164diffusion") == "diffusion"          # a Hangul filler is a blank
    assert normalize_topic("c") == "c"
    assert normalize_topic("self-supervised") == "self-supervised"
    assert normalize_topic("نموذج\u200cها") == "نموذج\u200cها"       # ZWNJ inside a Persian word stays


@pytest.mark.parametrize(("topic", "reason"), NEVER_MATCH.items())
async def test_every_topic_path_refuses_what_can_never_match(core: Paperboy, hf: FakeHuggingFace, topic: str,
                                                             reason: str) -> None:
    for text in (f"/papers {topic}", f"/papers search {topic}", f"/papers subscribe {topic}"):
        reply = await core.handle(CTX, text)
        assert reply.kind is ReplyKind.HELP and reason in reply.notices[0], text
    # A topic handed straight to the core (a share button's value, a structured Discord command).
    shared = await core.search_reply(topic)
    assert shared.is_error and reason in shared.lines[0]
    direct = await core.dispatch(CTX, cmd.CommandArgs(cmd.SUBSCRIBE, topic=topic))
    assert direct.is_error and reason in direct.lines[0]
    discord = command_args({"name": "papers", "options": [{"type": 1, "name": "subscribe", "options": [
        {"type": 3, "name": "topic", "value": topic}]}]})
    assert discord.name == cmd.HELP and reason in (discord.problem or "")
    assert await core.storage.topics.topics(USER) == []
    assert hf.count("/api/papers/search") == 0          # never sent to Hugging Face


async def test_a_stop_word_topic_stored_earlier_can_still_be_removed(core: Paperboy) -> None:
    await core.storage.topics.add(USER, "the of and", limit=25)
    reply = await core.handle(CTX, "/papers unsubscribe the of and")
    assert reply.kind is ReplyKind.CONFIRMATION and await core.storage.topics.topics(USER) == []


def test_slack_buttons_and_the_modal_refuse_unmatchable_topics() -> None:
    """The Slack adapter reads topics from buttons and the Add-topic modal through the same rule."""
    from adapters.slack.adapter import SlackAdapter

    topic_args = SlackAdapter._topic_args
    holder = type("Holder", (), {"_settings": make_settings()})()
    for name in (cmd.SEARCH, cmd.SUBSCRIBE):
        args = topic_args(holder, name, "the of and")
        assert args.name == cmd.HELP and "common words" in (args.problem or "")
    assert topic_args(holder, cmd.UNSUBSCRIBE, "the of and").topic == "the of and"
