"""Block Kit rendering: escaping hostile text, Slack's size limits, layouts per reply kind."""

from __future__ import annotations

import json
import re
from datetime import date, datetime, timezone
from typing import Any

import pytest

from adapters.slack.render import (
    MAX_BLOCKS,
    MAX_HEADER_TEXT,
    MAX_SECTION_TEXT,
    MAX_TOTAL_TEXT,
    FEEDBACK_ACTIONS,
    SHARE_ACTION,
    SUBSCRIBE_ACTION,
    block_text_length,
    escape,
    escape_fit,
    iter_texts,
    render_message,
)
from bot.models import Link, Paper, RankedPaper, Reply, ReplyKind, Section
from bot.present import present

HOSTILE = "<!channel> & <@U123> <!here> <#C999|general> <https://evil.example|click>"
PUBLISHED = datetime(2026, 11, 20, 8, 0, tzinfo=timezone.utc)


def ranked(i: int, *, title: str | None = None, summary: str = "A short abstract. More.", authors=("Ada", "Bob"),
           terms: tuple[str, ...] = ("generalization",), **paper: Any) -> RankedPaper:
    p = Paper(f"2511.{i:05d}", title or f"Paper number {i}", summary, authors=authors, author_count=len(authors),
              published_at=PUBLISHED, upvotes=i * 3, **paper)
    return present(RankedPaper(p, score=1.0, matched_terms=terms), i)


def search_reply(papers: list[RankedPaper], topic: str = "generalization", more: int = 0) -> Reply:
    return Reply(kind=ReplyKind.SEARCH, title=f"Papers on “{topic}”", topic=topic,
                 sections=(Section(papers=tuple(papers), topic=topic, more=more),),
                 footer=f"Get new ones daily: /papers subscribe {topic}")


def assert_within_limits(message: dict[str, Any]) -> None:
    blocks = message["blocks"]
    assert message["text"], "a fallback text is always set"
    assert len(blocks) <= MAX_BLOCKS
    assert block_text_length(blocks) < 12_000
    for block in blocks:
        if block["type"] == "header":
            assert block["text"]["type"] == "plain_text"
            assert len(block["text"]["text"]) <= MAX_HEADER_TEXT
        if block["type"] == "section":
            assert len(block["text"]["text"]) <= MAX_SECTION_TEXT
        if block["type"] == "context":
            assert len(block["elements"]) <= 10
        if block["type"] == "actions":
            for element in block["elements"]:
                assert len(element["text"]["text"]) <= 75
                assert len(element["value"]) <= 2000
    json.dumps(message)  # serializable as the request body


def assert_nothing_pings(message: dict[str, Any]) -> None:
    """No special mention or user/channel mention survives; only our own ``<url|label>`` links."""
    for text in [message["text"], *iter_texts(message["blocks"])]:
        assert "<!" not in text
        assert "<@" not in text
        assert "<#" not in text
        for match in re.finditer(r"<([^>]*)>", text):
            assert match.group(1).startswith(("https://", "http://")), match.group(0)


def test_escape_replaces_the_three_control_characters() -> None:
    assert escape("a & b < c > d") == "a &amp; b &lt; c &gt; d"
    assert escape_fit("<!channel>", 100) == "&lt;!channel&gt;"


def test_escape_fit_never_splits_an_entity_and_respects_the_limit() -> None:
    text = "&" * 50
    for limit in range(2, 40):
        cut = escape_fit(text, limit)
        assert len(cut) <= limit
        assert cut.endswith("…")
        assert re.fullmatch(r"(&amp;)*…", cut)


def test_search_renders_linked_titles_meta_summary_links_and_why() -> None:
    item = ranked(1, github_repo="https://github.com/x/y", github_stars=1234, project_page="https://proj.example")
    message = render_message(search_reply([item]))
    assert_within_limits(message)
    paper_block = message["blocks"][1]
    text = paper_block["text"]["text"]
    assert text.startswith("*1. <https://huggingface.co/papers/2511.00001|Paper number 1>*")
    assert "Ada, Bob · 2026-11-20 · ▲ 3" in text
    assert "A short abstract." in text
    assert "<https://arxiv.org/abs/2511.00001|arXiv>" in text
    assert "<https://arxiv.org/pdf/2511.00001|PDF>" in text
    assert "<https://github.com/x/y|Code ★ 1,234>" in text
    assert "<https://proj.example|Project page>" in text
    assert "_Why it matched: generalization_" in text
    assert message["blocks"][0] == {"type": "header", "text": {"type": "plain_text", "text": "Papers on “generalization”",
                                                              "emoji": True}}


def test_search_has_share_and_subscribe_buttons_carrying_the_topic() -> None:
    message = render_message(search_reply([ranked(1)], topic="diffusion models"))
    actions = [b for b in message["blocks"] if b["type"] == "actions"
               and b["elements"][0]["action_id"] not in FEEDBACK_ACTIONS.values()]
    assert len(actions) == 1
    share, subscribe = actions[0]["elements"]
    assert (share["action_id"], share["value"]) == (SHARE_ACTION, "diffusion models")
    assert (subscribe["action_id"], subscribe["value"]) == (SUBSCRIBE_ACTION, "diffusion models")
    assert subscribe["text"]["text"] == "Subscribe to “diffusion models”"
    plain = render_message(search_reply([ranked(1)]), interactive=False)["blocks"]
    assert [[e["action_id"] for e in b["elements"]] for b in plain if b["type"] == "actions"] == [
        list(FEEDBACK_ACTIONS.values())]                     # only the paper's own vote buttons
    assert not [b for b in render_message(search_reply([ranked(1)]), interactive=False, feedback=False)["blocks"]
                if b["type"] == "actions"]


def test_search_without_results_still_offers_subscribe_only() -> None:
    reply = Reply(kind=ReplyKind.SEARCH, title="Papers on “x”", topic="x", lines=("No papers matched “x”.",))
    actions = [b for b in render_message(reply)["blocks"] if b["type"] == "actions"]
    assert [e["action_id"] for e in actions[0]["elements"]] == [SUBSCRIBE_ACTION]


def test_hostile_titles_authors_abstracts_and_topics_cannot_ping() -> None:
    item = ranked(1, title=HOSTILE, summary=HOSTILE + " " + "x" * 10_000, authors=(HOSTILE, "<@U999>"),
                  terms=("<!everyone>",), organization="<!subteam^S1>")
    reply = Reply(kind=ReplyKind.SEARCH, title=f"Papers on “{HOSTILE}”", topic=HOSTILE,
                  sections=(Section(papers=(item,), topic=HOSTILE),), notices=(HOSTILE,), lines=(HOSTILE,),
                  items=(HOSTILE,), footer=HOSTILE)
    message = render_message(reply)
    assert_within_limits(message)
    assert_nothing_pings(message)
    text = json.dumps(message, ensure_ascii=False)
    assert "&lt;!channel&gt; &amp; &lt;@U123&gt;" in text


def test_ten_thousand_character_abstract_and_title_are_cut_not_rejected() -> None:
    long_title = "Generalization " * 800
    item = ranked(1, title=long_title, summary="word " * 2500)
    item = RankedPaper(item.paper, matched_terms=("a" * 5000,), rank=1, summary_line="y" * 10_000,
                       authors_line="z" * 10_000, links=item.links + (Link("x" * 500, "https://e.example/" + "q" * 5000),))
    message = render_message(search_reply([item]))
    assert_within_limits(message)
    text = message["blocks"][1]["text"]["text"]
    assert "…" in text
    # The long sample-style URL is dropped rather than broken; the good links remain.
    assert "<https://arxiv.org/abs/2511.00001|arXiv>" in text
    assert "q" * 1000 not in text


def test_sample_paper_with_huge_title_has_no_broken_link() -> None:
    paper = Paper("sample:x", "<b>" * 3000, "abstract")
    message = render_message(search_reply([present(RankedPaper(paper), 1)]))
    assert_within_limits(message)
    assert_nothing_pings(message)


@pytest.mark.parametrize("count", [30, 49, 50, 51, 200])
def test_very_long_lists_are_cut_with_and_n_more(count: int) -> None:
    papers = [ranked(i + 1, summary="Sentence " * 40 + ".") for i in range(count)]
    message = render_message(search_reply(papers, more=7))
    assert_within_limits(message)
    shown = [b for b in message["blocks"] if b["type"] == "section" and "huggingface.co/papers/" in b["text"]["text"]]
    assert 0 < len(shown) < count
    more = [b for b in message["blocks"] if b["type"] == "context" and "more" in b["elements"][0]["text"]]
    assert more[0]["elements"][0]["text"] == f"… and {count - len(shown) + 7:,} more"
    # The buttons and the footer survive the cut.
    assert message["blocks"][-2]["type"] == "actions"
    assert message["blocks"][-1]["type"] == "context"


def test_many_fat_papers_respect_the_total_text_budget() -> None:
    papers = [ranked(i + 1, title="T" * 290, authors=tuple("A" * 60 for _ in range(3)),
                     project_page="https://p.example/" + "p" * 300, github_repo="https://g.example/" + "g" * 300)
              for i in range(25)]
    message = render_message(search_reply(papers))
    assert_within_limits(message)
    assert block_text_length(message["blocks"]) <= MAX_TOTAL_TEXT


def test_channel_digest_has_date_header_numbers_and_setting_footer() -> None:
    papers = tuple(ranked(i + 1, terms=()) for i in range(10))
    reply = Reply(kind=ReplyKind.CHANNEL_DIGEST, title="Trending papers — Saturday 21 November 2026",
                  sections=(Section(papers=papers, more=3),), day=date(2026, 11, 21), ephemeral=False)
    message = render_message(reply)
    assert_within_limits(message)
    blocks = message["blocks"]
    assert blocks[0]["type"] == "header" and "21 November 2026" in blocks[0]["text"]["text"]
    numbered = [b["text"]["text"] for b in blocks if b["type"] == "section"]
    assert [t.split(".")[0] for t in numbered] == [f"*{i}" for i in range(1, 11)]
    assert "Why it matched" not in json.dumps(blocks)
    assert blocks[-2]["elements"][0]["text"] == "… and 3 more"
    assert "/papers channel on HH:MM Area/City" in blocks[-1]["elements"][0]["text"]
    assert not [b for b in blocks if b["type"] == "actions"]
    assert message["text"].startswith("Trending papers — Saturday 21 November 2026 — 1. Paper number 1; 2.")


def test_personal_alert_has_one_section_per_topic() -> None:
    sections = tuple(Section(papers=(ranked(i * 10 + 1), ranked(i * 10 + 2)), heading=f"New on “topic {i}”",
                             topic=f"topic {i}") for i in range(3))
    reply = Reply(kind=ReplyKind.PERSONAL_ALERT, title="New papers on your topics", sections=sections)
    message = render_message(reply)
    assert_within_limits(message)
    headings = [b["text"]["text"] for b in message["blocks"]
                if b["type"] == "section" and b["text"]["text"].startswith("*New on")]
    assert headings == ["*New on “topic 0”*", "*New on “topic 1”*", "*New on “topic 2”*"]
    assert sum(1 for b in message["blocks"] if b["type"] == "divider") == 2
    assert "Home tab" in message["blocks"][-1]["elements"][0]["text"]


def test_personal_alert_with_many_topics_is_cut_with_the_rest_counted() -> None:
    sections = tuple(Section(papers=tuple(ranked(t * 100 + i + 1) for i in range(10)), heading=f"New on “t{t}”",
                             topic=f"t{t}") for t in range(25))
    message = render_message(Reply(kind=ReplyKind.PERSONAL_ALERT, title="New papers", sections=sections))
    assert_within_limits(message)
    shown = sum(1 for b in message["blocks"] if b["type"] == "section" and "huggingface.co/papers/" in b["text"]["text"])
    mores = [b["elements"][0]["text"] for b in message["blocks"] if b["type"] == "context"
             and b["elements"][0]["text"].startswith("…")]
    counted = sum(int(re.search(r"and ([\d,]+)", m).group(1).replace(",", "")) for m in mores)
    assert shown + counted == 250
    assert any("other topics" in m for m in mores)


def test_error_and_plain_replies() -> None:
    error = render_message(Reply(kind=ReplyKind.ERROR, title="That did not work", lines=("Bad <time>.",)))
    assert error["blocks"][0]["text"]["text"] == ":warning: *That did not work*"
    assert error["blocks"][1]["text"]["text"] == "Bad &lt;time&gt;."
    topics = render_message(Reply(kind=ReplyKind.SUBSCRIPTIONS, title="Your topics", items=("a & b", "c"),
                                  footer="Change: /papers alerts on"))
    assert_within_limits(topics)
    assert topics["blocks"][1]["text"]["text"] == "• a &amp; b\n• c"


def test_huge_item_list_is_cut() -> None:
    message = render_message(Reply(kind=ReplyKind.SUBSCRIPTIONS, title="Your topics",
                                   items=tuple(f"topic {i} " + "w" * 150 for i in range(500))))
    assert_within_limits(message)
    assert re.search(r"… and \d+ more", message["blocks"][1]["text"]["text"])


def test_shared_by_credits_a_real_user_id_only() -> None:
    shared = render_message(search_reply([ranked(1)]), interactive=False, shared_by="U0ABC123")
    assert shared["blocks"][-1]["elements"][0]["text"] == "Shared by <@U0ABC123>"
    forged = render_message(search_reply([ranked(1)]), interactive=False, shared_by="<!channel>")
    assert_nothing_pings(forged)


def test_empty_strings_never_make_empty_text_objects() -> None:
    reply = Reply(kind=ReplyKind.SEARCH, title="  ", topic="t", lines=("", "  "), items=("",), footer=" ",
                  sections=(Section(papers=(ranked(1, title="", summary="", authors=(), terms=()),)),))
    message = render_message(reply)
    assert_within_limits(message)
    assert all(text.strip() for text in iter_texts(message["blocks"]))
    assert message["text"].strip()
