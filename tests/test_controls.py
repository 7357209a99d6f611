"""The control id scheme shared by the Slack and Discord buttons (``adapters.controls``)."""

from __future__ import annotations

import pytest

from adapters.controls import (
    ControlRef,
    choice_key,
    choice_name,
    choice_value,
    control_id,
    parse_control_id,
    remember_topics,
    resolve_topic,
    topic_key,
    topic_of,
)
from bot.models import UserRef
from bot.text import InputError
from storage.repositories import Storage

LONG = ("generalization of diffusion models under distribution shift in low resource languages "
        "with curriculum learning and synthetic data augmentation for robust evaluation benchmarks ok")


def test_short_topics_stay_literal_and_long_ones_get_a_stable_key() -> None:
    assert len(LONG) == 178
    assert control_id("share", "generalization") == "paperboy:share:generalization"
    keyed = control_id("subscribe", LONG)
    assert keyed == f"paperboy:subscribe#{topic_key(LONG)}" and len(keyed) <= 100
    assert len(topic_key(LONG)) == 16 and topic_key(LONG) == topic_key(LONG)     # stable, no process salt
    assert topic_key(LONG) != topic_key(LONG + "s")
    # 200 characters with the longest action and an argument still fit.
    assert len(control_id("subscribe", "é" * 200, arg="2511.00001")) <= 100
    assert control_id("share", LONG, limit=2000) == "paperboy:share:" + LONG   # Slack's 2000-character values


@pytest.mark.parametrize(("custom_id", "expected"), [
    ("paperboy:share:generalization", ControlRef("share", topic="generalization")),
    ("paperboy:share:c# and f#: a survey", ControlRef("share", topic="c# and f#: a survey")),
    ("paperboy:subscribe#abcdefghijklmnop", ControlRef("subscribe", key="abcdefghijklmnop")),
    ("paperboy:up/2511.00001:graph networks", ControlRef("up", arg="2511.00001", topic="graph networks")),
    ("paperboy:up/2511.00001#abcdefghijklmnop", ControlRef("up", arg="2511.00001", key="abcdefghijklmnop")),
    ("paperboy:share#not-a-key", None),
    ("paperboy:share#ABCDEFGHIJKLMNOP", None),
    ("paperboy:share", None),
    ("paperboy:SHARE:x", None),
    ("other:share:x", None),
    ("", None),
])
def test_parse_control_id(custom_id: str, expected: ControlRef | None) -> None:
    assert parse_control_id(custom_id) == expected


def test_round_trip_of_every_form() -> None:
    for topic in ("generalization", LONG, "c#: x", "a" * 200):
        for action, arg in (("share", None), ("subscribe", None), ("up", "2511.00001")):
            ref = parse_control_id(control_id(action, topic, arg=arg))
            assert ref is not None and (ref.action, ref.arg) == (action, arg)
            assert ref.topic == topic or ref.key == topic_key(topic)


def test_autocomplete_choices_cut_names_and_key_long_values() -> None:
    assert (choice_name("robotics"), choice_value("robotics")) == ("robotics", "robotics")
    name, value = choice_name(LONG), choice_value(LONG)
    assert len(name) <= 100 and name.endswith("…") and LONG.startswith(name[:-1].rstrip())
    assert len(value) <= 100 and choice_key(value) == topic_key(LONG)
    assert choice_key("robotics") is None and choice_key("paperboy#short") is None


async def test_keys_resolve_through_the_persons_topics_then_the_stored_table(storage: Storage) -> None:
    person = UserRef("discord", "G1", "U1")
    await storage.topics.add(person, LONG, limit=25)
    assert await resolve_topic(storage, topic_key(LONG), user=person) == LONG          # their own topic
    shared = "z" * 150
    assert await resolve_topic(storage, topic_key(shared)) is None                     # stored nowhere yet
    await remember_topics(storage, [shared, "short"])
    await remember_topics(storage, [shared])                                           # twice is fine
    assert await resolve_topic(storage, topic_key(shared)) == shared                   # Share of a search
    assert await storage.control_topics.lookup(topic_key("short")) is None             # short ones are not stored


async def test_what_a_control_carries_is_normalised_like_typed_text(storage: Storage) -> None:
    hostile = parse_control_id("paperboy:share:@everyone \u202e<@&1>\x00  Diffusion")
    assert hostile is not None
    assert await topic_of(storage, hostile, user=None, max_length=200) == "@everyone <@&1> diffusion"
    with pytest.raises(InputError):
        await topic_of(storage, ControlRef("share", topic="\x00\u202e "), user=None, max_length=200)
    with pytest.raises(InputError):
        await topic_of(storage, ControlRef("share", topic="x" * 5000), user=None, max_length=200)
    with pytest.raises(InputError, match="no longer knows"):
        await topic_of(storage, ControlRef("share", key="abcdefghijklmnop"), user=None, max_length=200)
