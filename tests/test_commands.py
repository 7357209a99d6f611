"""Parsing the text after /papers, including hostile and malformed input."""

from __future__ import annotations

from datetime import time

import pytest

from bot import commands as cmd
from bot.commands import parse_command
from bot.schedule import parse_time_of_day, parse_timezone
from bot.text import InputError, normalize_topic


@pytest.mark.parametrize("text", ["", "/papers", "today", "/papers today", "TRENDING", "  today  "])
def test_trending_forms(text: str) -> None:
    assert parse_command(text).name == cmd.TODAY


def test_bare_topic_is_a_search_with_a_normalized_topic() -> None:
    args = parse_command("/papers   Diffusion   Models ")
    assert (args.name, args.topic) == (cmd.SEARCH, "diffusion models")


def test_search_keyword_allows_topics_that_collide_with_subcommands() -> None:
    assert parse_command("search help").topic == "help"
    assert parse_command("search today").name == cmd.SEARCH


@pytest.mark.parametrize("verb,name", [("subscribe", cmd.SUBSCRIBE), ("follow", cmd.SUBSCRIBE),
                                       ("unsubscribe", cmd.UNSUBSCRIBE), ("unfollow", cmd.UNSUBSCRIBE)])
def test_subscription_verbs(verb: str, name: str) -> None:
    args = parse_command(f"{verb} Graph Neural Networks")
    assert (args.name, args.topic) == (name, "graph neural networks")


def test_subscribe_without_topic_is_help_with_the_problem() -> None:
    args = parse_command("subscribe")
    assert args.name == cmd.HELP
    assert "needs a topic" in (args.problem or "")


def test_same_topic_however_typed() -> None:
    assert normalize_topic("Diffusion  Models") == normalize_topic("diffusion models") == "diffusion models"
    assert normalize_topic("“Diffusion Models”") == "diffusion models"


def test_ten_thousand_character_topic_is_refused_clearly() -> None:
    args = parse_command("a" * 10_000)
    assert args.name == cmd.HELP
    assert "10,000" in (args.problem or "")
    args = parse_command("x" * 201)
    assert args.name == cmd.HELP and "limit is 200" in (args.problem or "")


def test_control_and_bidi_characters_are_stripped() -> None:
    args = parse_command("subscribe diff\x00usion\u202e models\x1b[31m")
    assert args.topic == "diffusion models[31m"
    assert "\u202e" not in (args.topic or "")


@pytest.mark.parametrize("hostile,topic", [
    ("<!channel>", "<!channel>"),               # kept as text; adapters escape it when rendering
    ("@everyone", "@everyone"),
    ("<@U123ABC>", "<@u123abc>"),
    ("'; DROP TABLE papers; --", "; drop table papers; --"),   # a surrounding quote is dropped, nothing else
    ("🤖 Robots 🦾", "🤖 robots 🦾"),
    ("تعميم النماذج", "تعميم النماذج"),
    ("שלום  עולם", "שלום עולם"),
])
def test_hostile_and_international_topics_parse_to_plain_topics(hostile: str, topic: str) -> None:
    args = parse_command(f"subscribe {hostile}")
    assert (args.name, args.topic) == (cmd.SUBSCRIBE, topic)


def test_channel_subcommands() -> None:
    assert parse_command("channel").name == cmd.CHANNEL_SHOW
    assert parse_command("channel off").name == cmd.CHANNEL_OFF
    on = parse_command("channel on 9:30 europe/berlin")
    assert (on.name, on.at, on.timezone) == (cmd.CHANNEL_ON, time(9, 30), "Europe/Berlin")
    swapped = parse_command("channel on America/New_York 7pm")
    assert (swapped.at, swapped.timezone) == (time(19, 0), "America/New_York")
    bare = parse_command("channel on")
    assert (bare.name, bare.at, bare.timezone, bare.top_n, bare.post_when_empty) == (cmd.CHANNEL_ON, None, None,
                                                                                     None, None)
    options = parse_command("channel on 08:00 top 5 always Europe/Paris")
    assert (options.at, options.timezone, options.top_n, options.post_when_empty) == (time(8, 0), "Europe/Paris",
                                                                                      5, True)
    joined = parse_command("channel on top=12 new-only")
    assert (joined.top_n, joined.post_when_empty, joined.at) == (12, False, None)


@pytest.mark.parametrize("text,fragment", [
    ("channel on 25:00", "hours run 00-23"),
    ("channel on 9:30 Mars/Olympus", "not a time zone"),
    ("channel sometimes", "don't understand"),
    ("channel off now", "takes nothing"),
    ("alerts on 9:30 Europe/Nowhere", "not a time zone"),
    ("channel on top 0", "from 1 to 25"),
    ("channel on top 26", "from 1 to 25"),
    ("channel on top lots", "from 1 to 25"),
    ("channel on top", "from 1 to 25"),
    ("alerts on top 5", "don't understand"),           # only channel posts have a length
    ("alerts on always", "don't understand"),
])
def test_bad_schedules_explain_what_was_wrong(text: str, fragment: str) -> None:
    args = parse_command(text)
    assert args.name == cmd.HELP
    assert fragment in (args.problem or "")


def test_alerts_subcommands() -> None:
    assert parse_command("alerts").name == cmd.ALERTS_SHOW
    assert parse_command("alerts off").name == cmd.ALERTS_OFF
    args = parse_command("alerts 08:15 Asia/Tokyo")
    assert (args.name, args.at, args.timezone) == (cmd.ALERTS_ON, time(8, 15), "Asia/Tokyo")


def test_keywords_that_take_nothing_refuse_extra_words() -> None:
    args = parse_command("today please")
    assert args.name == cmd.HELP and "search" in (args.problem or "")


def test_time_and_zone_parsers() -> None:
    assert parse_time_of_day("0930") == time(9, 30)
    assert parse_time_of_day("12am") == time(0, 0)
    assert parse_timezone("utc") == "UTC"
    with pytest.raises(InputError):
        parse_time_of_day("13pm")
