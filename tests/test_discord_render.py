"""Discord rendering: pure functions on hostile titles and very long lists, against every limit."""

from __future__ import annotations

import dataclasses
import json
from datetime import date, datetime, timezone

import discord
import pytest

from adapters.controls import parse_control_id, topic_key
from adapters.discord.render import (
    MAX_CONTENT,
    MAX_EMBED_DESCRIPTION,
    MAX_EMBED_TITLE,
    MAX_EMBEDS,
    MAX_TOTAL,
    build_embeds,
    check_limits,
    embed_size,
    escape_fit,
    escape_text,
    message_payload,
    safe_url,
    SHARE_PREFIX,
    SUBSCRIBE_PREFIX,
)
from bot.core import channel_setting_reply
from bot.models import Paper, RankedPaper, Reply, ReplyKind, Section
from bot.present import present

HOSTILE_TITLE = "@everyone @here <@123456789012345678> <@&456789012345678901> <#789> **bold** __u__ [x](https://evil.example) `code` ||spoiler|| <@123>"


def paper(n: int, *, title: str | None = None, summary: str = "A short abstract. More text.", **extra: object) -> Paper:
    return Paper(paper_id=f"2501.{n:05d}", title=title or f"Paper number {n}", summary=summary,
                 authors=("Ada Lovelace", "Alan Turing", "Grace Hopper", "Edsger Dijkstra"), author_count=4,
                 published_at=datetime(2025, 1, 6, tzinfo=timezone.utc), upvotes=100 - n, **extra)  # type: ignore[arg-type]


def ranked(n: int, **kwargs: object) -> RankedPaper:
    return present(RankedPaper(paper(n, **kwargs), score=1.0, matched_terms=("generalization",)), n)  # type: ignore[arg-type]


def search_reply(papers: list[RankedPaper], *, topic: str = "generalization", more: int = 0) -> Reply:
    return Reply(kind=ReplyKind.SEARCH, title=f"Papers on “{topic}”", topic=topic,
                 sections=(Section(papers=tuple(papers), topic=topic, more=more),),
                 footer=f"Get new ones daily: /papers subscribe {topic}")


def all_text(payload: dict) -> str:
    """Everything Discord shows (custom ids and select option values are data, never displayed)."""
    def visible(component: dict) -> dict:
        options = [{k: v for k, v in o.items() if k != "value"} for o in component.get("options", ())]
        return {k: v for k, v in component.items() if k != "custom_id"} | ({"options": options} if options else {})

    shown = {**payload, "components": [[visible(b) for b in row["components"]] for row in payload["components"]]}
    return json.dumps(shown, ensure_ascii=False)


def test_a_paper_renders_as_a_linked_embed_with_facts_summary_links_and_why() -> None:
    item = ranked(1, github_repo="https://github.com/a/b", github_stars=1234, project_page="https://proj.example")
    payload = message_payload(search_reply([item]))
    assert payload["allowed_mentions"] == {"parse": []}
    assert payload["content"] == "**Papers on “generalization”**"
    [embed] = payload["embeds"]
    assert embed["title"] == "1. Paper number 1"
    assert embed["url"] == "https://huggingface.co/papers/2501.00001"
    lines = embed["description"].split("\n")
    assert lines[0] == "Ada Lovelace, Alan Turing, Grace Hopper + 1 more · 06 Jan 2025 · ▲ 99"
    assert lines[1] == "A short abstract."
    assert lines[2] == ("[Paper page](https://huggingface.co/papers/2501.00001) · [arXiv](https://arxiv.org/abs/2501.00001)"
                        " · [PDF](https://arxiv.org/pdf/2501.00001) · [Code ★ 1,234](https://github.com/a/b)"
                        " · [Project page](https://proj.example)")
    assert lines[3] == "*Matched: generalization*"
    assert embed["footer"] == {"text": "Get new ones daily: /papers subscribe generalization"}
    assert check_limits(payload) == []


def test_hostile_title_authors_and_topic_cannot_ping_or_format() -> None:
    item = present(RankedPaper(Paper(paper_id="2501.00001", title=HOSTILE_TITLE, summary=HOSTILE_TITLE,
                                     authors=("@everyone", "<@&456789012345678901>")),
                               matched_terms=("@here",)), 1)
    reply = search_reply([item], topic="@everyone <@123456789012345678>")
    payload = message_payload(reply)
    text = all_text(payload)
    for raw in ("@everyone", "@here", "<@123456789012345678>", "<@&456789012345678901>", "<#789>", "<@123>"):
        assert raw not in text, raw
    assert "@\u200beveryone" in text and "<\u200b@\u200b123456789012345678>" in text
    embed = payload["embeds"][0]
    assert "\\*\\*bold\\*\\*" in embed["title"] and "\\[x\\](https://evil.example)" not in embed["title"]
    assert "\\[x]" in embed["title"] and "\\`code\\`" in embed["title"] and "\\|\\|spoiler\\|\\|" in embed["title"]
    assert payload["allowed_mentions"] == {"parse": []}
    # The topic rides in the custom id unchanged (it is data, never shown as markdown) ...
    custom_ids = [c["custom_id"] for c in payload["components"][0]["components"]]
    assert custom_ids == [SHARE_PREFIX + reply.topic, SUBSCRIBE_PREFIX + reply.topic]
    assert parse_control_id(custom_ids[1]).topic == reply.topic
    assert check_limits(payload) == []


@pytest.mark.parametrize("text", ["# Heading", "> quote", "- item", "1. numbered", "-# subtext"])
def test_line_start_markdown_is_neutralised(text: str) -> None:
    escaped = escape_text(text)
    assert escaped.startswith("\\") or escaped.startswith("1\\.")


def test_backslashes_cannot_unescape_markdown() -> None:
    assert escape_text("\\*bold*") == "\\\\\\*bold\\*"


def test_escape_fit_never_exceeds_its_limit_even_when_escaping_doubles_the_text() -> None:
    for limit in (1, 10, 100, 256):
        fitted = escape_fit("*" * 1000, limit)
        assert len(fitted) <= limit
        assert not fitted.endswith("\\") or fitted.endswith("\\*")


def test_urls_cannot_break_out_of_markdown_links() -> None:
    assert safe_url("https://github.com/a/b) [evil](x") == "https://github.com/a/b%29%20%5Bevil%5D%28x"


def test_ten_thousand_character_title_and_abstract_stay_within_embed_limits() -> None:
    huge = "word " * 2000
    item = RankedPaper(Paper(paper_id="2501.00001", title=huge, summary=huge, ai_summary=huge,
                             authors=tuple(f"Author {i} " * 20 for i in range(50))),
                       matched_terms=tuple(f"term{i}" for i in range(500)),
                       summary_line=huge, authors_line=huge, rank=1)
    payload = message_payload(search_reply([item] * 10))
    assert check_limits(payload) == []
    for embed in payload["embeds"]:
        assert len(embed["title"]) <= MAX_EMBED_TITLE
        assert len(embed["description"]) <= MAX_EMBED_DESCRIPTION
    assert sum(embed_size(e) for e in payload["embeds"]) <= MAX_TOTAL


def test_long_lists_are_cut_to_ten_embeds_and_6000_characters_with_and_n_more() -> None:
    papers = [ranked(n, summary=("Long sentence " * 40).strip() + ".") for n in range(1, 41)]
    payload = message_payload(search_reply(papers, more=60))
    assert len(payload["embeds"]) == MAX_EMBEDS
    assert sum(embed_size(e) for e in payload["embeds"]) <= MAX_TOTAL
    assert "…and 90 more." in payload["content"]
    assert check_limits(payload) == []


def test_when_even_short_forms_do_not_fit_embeds_are_dropped_and_counted() -> None:
    huge = "x" * 250
    papers = [RankedPaper(Paper(paper_id=f"2501.{n:05d}", title=huge), authors_line=huge * 2,
                          matched_terms=(huge,), rank=n) for n in range(1, 11)]
    payload = message_payload(search_reply(papers))
    shown = len(payload["embeds"])
    assert shown < 10
    assert f"…and {10 - shown} more" in payload["content"]
    assert check_limits(payload) == []


def test_personal_alert_sections_carry_their_topic_heading_and_cut_across_sections() -> None:
    sections = tuple(Section(papers=tuple(ranked(n + 10 * s) for n in range(1, 7)), heading=f"New on “topic {s}”",
                             topic=f"topic {s}", more=2) for s in range(3))
    reply = Reply(kind=ReplyKind.PERSONAL_ALERT, title="Your daily papers", sections=sections, ephemeral=False)
    payload = message_payload(reply)
    assert [e["author"]["name"] for e in payload["embeds"]][:7] == ["New on “topic 0”"] * 6 + ["New on “topic 1”"]
    assert len(payload["embeds"]) == 10
    assert "…and 14 more." in payload["content"]     # 8 papers beyond 10 embeds + 3 × 2 counted by the core
    # no share/subscribe buttons; three vote menus, each listing exactly the ten papers shown, with their topic
    menus = [row["components"][0] for row in payload["components"]]
    assert [m["custom_id"] for m in menus] == ["paperboy:fb:up:-", "paperboy:fb:down:-", "paperboy:fb:fewer:-"]
    for m in menus:
        assert [o["value"] for o in m["options"]] == [f"paperboy:vote/2501.{n:05d}:topic 0" for n in range(1, 7)] + [
            f"paperboy:vote/2501.{n:05d}:topic 1" for n in range(11, 15)]
        assert m["options"][6]["description"] == "New on “topic 1”"
    assert message_payload(reply, workspace="123456789012345678")["components"][0]["components"][0][
        "custom_id"] == "paperboy:fb:up:123456789012345678"
    assert payload["embeds"][-1]["footer"]["text"].startswith("Manage your topics: /papers subscriptions")
    assert check_limits(payload) == []


def test_channel_digest_uses_the_same_rendering_without_buttons() -> None:
    reply = Reply(kind=ReplyKind.CHANNEL_DIGEST, title="Trending papers — Monday 06 January 2025",
                  sections=(Section(papers=tuple(ranked(n) for n in range(1, 4))),), day=date(2025, 1, 6),
                  ephemeral=False)
    payload = message_payload(reply)
    assert payload["content"] == "**Trending papers — Monday 06 January 2025**"
    assert len(payload["embeds"]) == 3 and payload["components"] == []
    assert payload["embeds"][-1]["footer"]["text"] == \
        "Change the time: /papers-channel on · stop it: /papers-channel off"


def test_settings_replies_are_one_embed_and_name_discord_commands() -> None:
    from datetime import time

    from storage.repositories import ChannelSetting
    from bot.models import ChannelRef

    setting = ChannelSetting(id=1, channel=ChannelRef("discord", "1", "2"), post_time=time(9), timezone="Europe/Berlin",
                             enabled=True, top_n=10, post_when_empty=False, created_by="3", paused_reason=None,
                             next_due_at=None, last_delivered_at=None)
    payload = message_payload(channel_setting_reply(setting, title="Daily post on"))
    [embed] = payload["embeds"]
    assert embed["title"] == "Daily post on"
    assert embed["description"] == ("The 10 trending papers are posted here every day at 09:00 Europe/Berlin.\n"
                                    "Days without new papers (weekends) get no post.")
    assert embed["footer"]["text"] == ("Change it: /papers-channel on HH:MM Area/City · stop it: /papers-channel off")
    assert payload["content"] == "" and payload["components"] == []


def test_long_item_lists_are_cut_with_and_n_more() -> None:
    reply = Reply(kind=ReplyKind.SUBSCRIPTIONS, title="Your topics", items=tuple("t" * 200 + str(i) for i in range(60)),
                  lines=("Your alerts arrive daily at 09:00 UTC.",), notices=("@everyone notice",))
    payload = message_payload(reply)
    description = payload["embeds"][0]["description"]
    shown = description.count("• ")
    assert 10 < shown <= 25
    assert f"…and {60 - shown} more" in description
    assert len(description) <= MAX_EMBED_DESCRIPTION
    assert payload["content"] == "*@\u200beveryone notice*"
    assert check_limits(payload) == []


def test_search_buttons_share_and_subscribe_and_their_limits() -> None:
    payload = message_payload(search_reply([ranked(1)]))
    row = payload["components"][0]
    assert row["type"] == 1
    assert [(b["label"], b["custom_id"], b["style"]) for b in row["components"]] == [
        ("Share in channel", "paperboy:share:generalization", 2),
        ("Subscribe to generalization", "paperboy:subscribe:generalization", 1)]
    # No papers: nothing to share, but the topic can still be followed.
    empty = Reply(kind=ReplyKind.SEARCH, title="Papers on “zzz”", topic="zzz", lines=("No papers matched “zzz”.",))
    assert [b["label"] for b in message_payload(empty)["components"][0]["components"]] == ["Subscribe to zzz"]
    # A topic too long for Discord's 100-character custom id keeps both buttons, carrying its key.
    long_topic = "t" * 200
    ids = [b["custom_id"] for b in message_payload(search_reply([ranked(1)], topic=long_topic))["components"][0]
           ["components"]]
    assert ids == [f"paperboy:share#{topic_key(long_topic)}", f"paperboy:subscribe#{topic_key(long_topic)}"]
    menus = message_payload(search_reply([ranked(1)], topic=long_topic))["components"][1:]
    assert [row["components"][0]["type"] for row in menus] == [3, 3, 3]      # vote menus carry the key too
    assert menus[0]["components"][0]["options"][0]["value"] == f"paperboy:vote/2501.00001#{topic_key(long_topic)}"
    # Labels stay within 80 characters.
    label = message_payload(search_reply([ranked(1)], topic="w " * 40))["components"][0]["components"][1]["label"]
    assert len(label) <= 80
    # A shared (public) copy keeps only "Subscribe".
    shared = message_payload(search_reply([ranked(1)]), share_button=False)
    assert [b["label"] for b in shared["components"][0]["components"]] == ["Subscribe to generalization"]


def test_content_stays_within_2000_characters() -> None:
    reply = Reply(kind=ReplyKind.SEARCH, title="t" * 5000, topic="x", notices=("n" * 5000,) * 5,
                  sections=(Section(papers=(ranked(1),), more=10**6),), lines=("l" * 3000,))
    payload = message_payload(reply)
    assert len(payload["content"]) <= MAX_CONTENT
    assert check_limits(payload) == []


def test_shared_by_lead_line_comes_first() -> None:
    payload = message_payload(search_reply([ranked(1)]), lead="<@830000000000000001> shared a search:")
    assert payload["content"].startswith("<@830000000000000001> shared a search:\n**Papers on")


def test_discord_embeds_built_for_sending_serialise_to_the_previewed_payload() -> None:
    payload = message_payload(search_reply([ranked(n) for n in range(1, 6)]))
    embeds = build_embeds(payload)
    assert all(isinstance(e, discord.Embed) for e in embeds)
    sent = [{k: v for k, v in e.to_dict().items() if k != "flags"} for e in embeds]
    assert sent == payload["embeds"]


def test_check_limits_reports_broken_payloads() -> None:
    bad = {"content": "x" * 2001, "embeds": [{"title": "t" * 300, "description": "d" * 5000}] * 11,
           "components": [], "allowed_mentions": {"parse": ["everyone"]}}
    problems = check_limits(bad)
    assert {"content over 2000", "more than 10 embeds", "embeds over 6000 characters", "embed title over 256",
            "embed description over 4096", "mentions allowed"} <= set(problems)


# --- every markdown construct in outside text -----------------------------------------------------------

MARKUP = {
    "masked links": "Generalization [x](http://x.example) read the [arXiv](http://evil.example/abs/1) version",
    "heading": "# Breaking results",
    "heading 3": "### results",
    "subtext": "-# small print",
    "list": "- item",
    "star list": "* item",
    "plus list": "+ item",
    "numbered list": "12. item",
    "block quote": "> quoted",
    "multi-line quote": ">>> quoted",
    "spoiler": "a ||hidden|| b",
    "code span": "use `rm -rf` now",
    "code block": "```py\nprint(1)```",
    "bold": "**bold**",
    "underline": "__under__",
    "strike": "~~gone~~",
    "timestamp": "due <t:1700000000:R>",
    "user mention": "hi <@123456789012345678> and <@!123456789012345678>",
    "role mention": "hi <@&456789012345678901>",
    "channel": "see <#789012345678901234>",
    "slash command": "run </papers search:1234567890>",
    "custom emoji": "<:pepe:123456789012345678>",
    "everyone": "@everyone and @here",
    "escape of an escape": "\\[x](http://evil.example)",
}


@pytest.mark.parametrize("name", list(MARKUP))
def test_escape_text_leaves_no_markup_live(name: str) -> None:
    from tests.discord_markdown import live_markup, unescape

    raw = MARKUP[name]
    if name != "escape of an escape":      # that one only turns live under an escaper that forgets "\\"
        assert live_markup(raw), f"the test input must be live markup: {raw!r}"
    for escaped in (escape_text(raw), escape_text(raw, single_line=False)):
        assert live_markup(escaped) == [], escaped
        assert not set("*_~`|[") & set(unescape(escaped)), escaped     # no marker character left bare


def test_markup_in_titles_summaries_authors_and_topics_never_renders() -> None:
    """Every construct at once, in every outside field, in an embed and in the shared (public) copy."""
    from tests.discord_markdown import live_links, live_markup

    hostile = " ".join(v for v in MARKUP.values())
    item = present(RankedPaper(dataclasses.replace(paper(1, title="# " + hostile, summary="> " + hostile),
                                                   authors=("- " + hostile, "1. Ada")),
                               score=1.0, matched_terms=("[m](http://evil.example)",)), 1)
    topic = "- [verify](http://evil.example) ||generalization||"
    for payload in (message_payload(search_reply([item], topic=topic)),
                    message_payload(search_reply([item], topic=topic), share_button=False,
                                    lead="<@830000000000000001> shared a search:")):
        content = payload["content"].removeprefix("<@830000000000000001> shared a search:\n")
        assert content.startswith("**Papers on “") and "”**" in content         # the bot's own bold title
        assert live_markup(content.replace("**Papers on “", "Papers on “", 1).replace("”**", "”", 1)) == []
        [embed] = payload["embeds"]
        assert embed["title"].startswith("1. ")                             # the bot's own rank
        assert live_markup(embed["title"].removeprefix("1. ")) == []
        description = embed["description"]
        own = ["https://huggingface.co/papers/2501.00001", "https://arxiv.org/abs/2501.00001",
               "https://arxiv.org/pdf/2501.00001"]
        assert live_links(description) == own            # only the bot's own links are live
        assert [m for m in live_markup(description) if not m.startswith("link ")] == []
        assert "evil.example" in description              # shown, as text
        assert check_limits(payload) == []
