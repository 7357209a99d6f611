"""Alerts that learn: votes stored per person, topic and paper; re-ranking and threshold; reset.

Core tests run the real core against real storage (SQLite and PostgreSQL) with an
in-process paper source; the delivery test runs a whole delivery pass against the
fake Hugging Face server. Button round trips on Slack and Discord are in
test_slack_app.py and test_discord_adapter.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import date, datetime, time, timedelta, timezone

import pytest
from sqlalchemy import func, select

from adapters.fake import FakeAdapter
from bot.app import App, build_app
from bot.core import Paperboy
from bot.feedback import (
    DOWN,
    FEWER,
    MAX_DROPPED_SHARE,
    UP,
    Vote,
    learn,
    paper_terms,
    parse_paper_id,
    personalise,
)
from bot.models import CommandContext, Paper, ReplyKind, UserRef
from bot.papers import PaperService
from bot.ranking import rank_for_topic
from bot.text import InputError
from scheduler.delivery import run_delivery_pass
from storage.models import PaperFeedback
from storage.repositories import Storage
from tests.conftest import make_settings
from tests.delivery_support import add_person, paper, serving_feed, set_feed
from tests.fakes.hf_api import FakeHuggingFace

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=timezone.utc)
ANN = UserRef("slack", "T1", "U_ANN")
BOB = UserRef("slack", "T1", "U_BOB")
TOPIC = "generalization"


def _p(pid: str, title: str, summary: str, upvotes: int) -> Paper:
    return Paper(pid, title, summary, upvotes=upvotes, published_at=NOW - timedelta(days=3))


LANGUAGE = [
    _p("2511.00011", "Length Generalization in Large Language Models",
       "Large language models fail on longer inputs; we study length generalization of transformers.", 5),
    _p("2511.00012", "Compositional Generalization of Language Models",
       "We test whether language models compose known skills; text reasoning benchmarks.", 4),
    _p("2511.00013", "Why Language Models Struggle to Generalize to Longer Math Problems",
       "Language models and arithmetic reasoning over long inputs.", 3),
]
ROBOTS = [
    _p("2511.00021", "Generalization of Robot Grasping Policies",
       "Robot manipulation policies trained in simulation; grasping unseen objects with a robot arm.", 90),
    _p("2511.00022", "Sim-to-Real Generalization for Legged Robot Locomotion",
       "Legged robot controllers transfer from simulation to real robot hardware.", 80),
    _p("2511.00023", "Generalization Benchmarks for Robot Manipulation",
       "A benchmark of robot manipulation tasks for policy generalization on real robots.", 70),
]
CORPUS = LANGUAGE + ROBOTS


class Source:
    """Answers searches with :data:`CORPUS` (the core ranks; this stands in for Hugging Face)."""

    async def search(self, query: str, *, limit: int = 50) -> list[Paper]:
        return CORPUS[:limit]

    async def daily_papers(self, **kwargs: object) -> list[Paper]:
        return []


@pytest.fixture
async def core(storage: Storage) -> AsyncIterator[Paperboy]:
    clock = lambda: NOW  # noqa: E731
    settings = make_settings(PAPERBOY_SEARCH_RESULTS=6)
    service = PaperService(Source(), storage.papers, clock=clock)
    await storage.papers.save(CORPUS, fetched_at=NOW)   # what searches leave in the stored copy
    yield Paperboy(settings, storage, service, clock=clock)


def ctx(user: UserRef = ANN) -> CommandContext:
    return CommandContext(user=user)


def ids(reply) -> list[str]:  # noqa: ANN001
    return [p.paper.paper_id for p in reply.papers]


async def vote(core: Paperboy, how: str, paper_id: str, topic: str = TOPIC, user: UserRef = ANN):  # noqa: ANN201
    return await core.handle(ctx(user), f"/papers feedback {how} {paper_id} {topic}")


# --- the learner, pure ---------------------------------------------------------------------------


def _votes(*pairs: tuple[Paper, str]) -> list[Vote]:
    return [Vote(p.paper_id, how, p.title, paper_terms(p)) for p, how in pairs]


def test_no_votes_means_exactly_the_ranking_given() -> None:
    ranked = rank_for_topic(TOPIC, CORPUS, now=NOW)
    assert learn(TOPIC, []) is None
    assert personalise(ranked, None) == ranked
    assert personalise(ranked, learn(TOPIC, [])) == ranked


def test_liked_terms_go_up_and_disliked_terms_down_with_an_explanation() -> None:
    ranked = rank_for_topic(TOPIC, CORPUS, now=NOW)
    assert ranked[0].paper is ROBOTS[2]                 # for everyone, a robot paper leads
    one_each = personalise(ranked, learn(TOPIC, _votes((LANGUAGE[0], UP), (ROBOTS[0], FEWER))))
    assert one_each[0].paper is LANGUAGE[0] and one_each[-1].paper is ROBOTS[0]
    assert len(one_each) == len(ranked)                 # two votes re-rank, they leave nothing out
    taste = learn(TOPIC, _votes((LANGUAGE[0], UP), (LANGUAGE[1], UP), (ROBOTS[0], FEWER), (ROBOTS[1], DOWN)))
    assert taste is not None
    mine = personalise(ranked, taste)
    # the language papers lead, the unseen one included; the two turned down are left out (the learned
    # threshold); the third robot paper, only loosely like them, drops from first place to last
    assert [r.paper.paper_id for r in mine] == ["2511.00011", "2511.00012", "2511.00013", "2511.00023"]
    first_robot = next(r for r in mine if r.paper in ROBOTS)
    assert any("turned down" in why and "on “robot" in why for why in first_robot.matched_terms)
    assert any(why.startswith("you liked 2 papers on") for why in mine[0].matched_terms)
    assert "language" in taste.strongest(positive=True) and "robot" in taste.strongest(positive=False)


def test_a_few_votes_cannot_blank_a_topic() -> None:
    ranked = rank_for_topic(TOPIC, CORPUS, now=NOW)
    every_paper_turned_down = learn(TOPIC, _votes(*((p, FEWER) for p in CORPUS)))
    assert every_paper_turned_down is not None and every_paper_turned_down.has_threshold
    kept = personalise(ranked, every_paper_turned_down)
    assert len(kept) >= len(ranked) - int(len(ranked) * MAX_DROPPED_SHARE) > 0
    two_votes = learn(TOPIC, _votes((ROBOTS[0], FEWER), (ROBOTS[1], FEWER)))
    assert two_votes is not None and not two_votes.has_threshold
    assert len(personalise(ranked, two_votes)) == len(ranked)   # two votes re-rank, they drop nothing


@pytest.mark.parametrize("hostile", ["<!channel>", "../../etc/passwd", "2401.1234567", "sample:", "sample:A B",
                                     "x" * 300, "", "2401.12345\n@everyone", "sample:" + "a" * 81])
def test_paper_ids_from_outside_are_checked(hostile: str) -> None:
    with pytest.raises(InputError):
        parse_paper_id(hostile)


def test_real_paper_ids_pass() -> None:
    for good in ("2401.12345", "2401.1234", "2401.12345v2", "hep-th/9901001", "sample:grokking-in-llms"):
        assert parse_paper_id(good) == good


# --- the core: votes, ranking, show, reset ---------------------------------------------------------


async def test_a_person_without_feedback_sees_exactly_the_unpersonalised_ranking(core: Paperboy) -> None:
    await vote(core, "up", LANGUAGE[0].paper_id)           # someone else's votes change nothing for Bob
    await vote(core, "fewer", ROBOTS[0].paper_id)
    anonymous = await core.search_reply(TOPIC)
    bob = await core.handle(ctx(BOB), f"/papers {TOPIC}")
    assert bob == anonymous
    assert ids(bob) == [r.paper.paper_id for r in rank_for_topic(TOPIC, CORPUS, now=NOW, source_ranked=True)]


async def test_feedback_changes_that_persons_ranking_and_says_why(core: Paperboy) -> None:
    before = await core.handle(ctx(), f"/papers {TOPIC}")
    assert ids(before).index(ROBOTS[2].paper_id) < ids(before).index(LANGUAGE[2].paper_id)
    liked = await vote(core, "up", LANGUAGE[0].paper_id)
    assert liked.kind is ReplyKind.CONFIRMATION and "more like this" in liked.title
    assert "1 vote on this topic" in liked.lines[1]
    await vote(core, "down", ROBOTS[1].paper_id)
    await vote(core, "fewer", ROBOTS[0].paper_id)
    after = await core.handle(ctx(), f"/papers {TOPIC}")
    assert ids(after)[0] == LANGUAGE[0].paper_id
    assert ROBOTS[0].paper_id not in ids(after) and ROBOTS[1].paper_id not in ids(after)   # left out for Ann
    assert ids(after).index(ROBOTS[2].paper_id) > max(ids(after).index(p.paper_id) for p in LANGUAGE)
    assert after.lines == (f"Ranked for you from your 3 votes on “{TOPIC}” (see /papers feedback).",)
    assert any(w.startswith("you liked 1 paper on") for p in after.papers[:3] for w in p.matched_terms)
    # another topic is untouched
    other = await core.handle(ctx(), "/papers language models")
    assert other == await core.search_reply("language models")


async def test_voting_again_replaces_the_vote(core: Paperboy, storage: Storage) -> None:
    await vote(core, "up", ROBOTS[0].paper_id)
    again = await vote(core, "fewer", ROBOTS[0].paper_id)
    assert "1 vote on this topic" in again.lines[1]
    [stored] = await storage.feedback.votes(ANN, TOPIC)
    assert stored.vote == FEWER


async def test_feedback_shows_what_was_learned_and_reset_forgets_it(core: Paperboy) -> None:
    empty = await core.handle(ctx(), "/papers feedback")
    assert "not voted on any paper yet" in empty.lines[0]
    unpersonalised = await core.handle(ctx(), f"/papers {TOPIC}")
    await vote(core, "up", LANGUAGE[0].paper_id)
    await vote(core, "up", LANGUAGE[1].paper_id)
    await vote(core, "fewer", ROBOTS[0].paper_id)
    await vote(core, "up", ROBOTS[2].paper_id, topic="robot learning")
    shown = await core.handle(ctx(), "/papers feedback")
    assert len(shown.items) == 2
    gen = next(i for i in shown.items if i.startswith(f"“{TOPIC}”"))
    assert "3 votes (2 👍, 0 👎, 1 fewer like this)" in gen and "more of:" in gen and "language" in gen
    assert "less of:" in gen and "robot" in gen.split("less of:")[1]
    assert "left out" in gen          # three votes with one turned down: the threshold applies

    reset_one = await core.handle(ctx(), f"/papers feedback reset {TOPIC.upper()}")
    assert reset_one.title == "Votes forgotten" and "Forgot 3 votes" in reset_one.lines[0]
    assert await core.handle(ctx(), f"/papers {TOPIC}") == unpersonalised
    left = await core.handle(ctx(), "/papers feedback")
    assert len(left.items) == 1 and left.items[0].startswith("“robot learning”")
    nothing = await core.handle(ctx(), f"/papers feedback reset {TOPIC}")
    assert nothing.title == f"No votes on “{TOPIC}”" and "robot learning" in nothing.lines[0]
    everything = await core.handle(ctx(), "/papers feedback reset")
    assert "Forgot 1 vote on any topic" in everything.lines[0]
    assert (await core.handle(ctx(), "/papers feedback")).items == ()


@pytest.mark.parametrize("text", ["/papers feedback up <!channel> generalization",
                                  "/papers feedback up 2511.99999 generalization",
                                  "/papers feedback sideways 2511.00011 generalization",
                                  "/papers feedback up 2511.00011",
                                  "/papers feedback up sample:nope generalization",
                                  "/papers feedback up 2511.00011 " + "x" * 300])
async def test_bad_votes_get_a_clear_answer_and_store_nothing(core: Paperboy, storage: Storage, text: str) -> None:
    reply = await core.handle(ctx(), text)
    assert reply.kind in (ReplyKind.HELP, ReplyKind.ERROR)
    assert (reply.notices or reply.lines)
    async with storage.db.read() as session:
        assert (await session.execute(select(func.count()).select_from(PaperFeedback))).scalar_one() == 0


# --- alerts: the delivery pass uses each person's taste ---------------------------------------------

THURSDAY, FRIDAY = date(2026, 11, 19), date(2026, 11, 20)
VOTED_ON = [  # Thursday's feed: what Ann votes on
    paper("2511.30001", "Length Generalization in Large Language Models",
          "Large language models fail on longer inputs; length generalization of transformers."),
    paper("2511.30002", "Generalization of Robot Grasping Policies",
          "Robot manipulation policies; grasping unseen objects with a robot arm."),
    paper("2511.30003", "Sim-to-Real Generalization for Legged Robots",
          "Legged robot controllers transfer from simulation to real robot hardware."),
]
ALERT_FEED = [  # Friday's feed: seven papers on generalization, the robot ones most upvoted
    paper("2511.40001", "Robot Manipulation Policies that Generalize", "Robot arm manipulation policies.", upvotes=90),
    paper("2511.40002", "Generalization of Legged Robot Controllers", "Legged robot locomotion.", upvotes=80),
    paper("2511.40003", "Generalization Bounds for Robot Learning", "Robot learning theory.", upvotes=70),
    paper("2511.40004", "Robotic Generalization Benchmark", "A robot benchmark.", upvotes=60),
    paper("2511.40005", "Compositional Generalization in Language Models",
          "Language models compose skills; text reasoning.", upvotes=10),
    paper("2511.40006", "Why Large Language Models Fail at Length Generalization",
          "Large language models and long inputs.", upvotes=5),
    paper("2511.40007", "Generalization in Multilingual Language Models", "Language models across languages.",
          upvotes=3),
]


@pytest.fixture
def hf() -> Iterator[FakeHuggingFace]:
    with serving_feed(THURSDAY, VOTED_ON) as server:
        yield server


@pytest.fixture
async def app(db_url: str, hf: FakeHuggingFace) -> AsyncIterator[App]:
    application = build_app(make_settings(DATABASE_URL=db_url, PAPERBOY_HF_URL=hf.url, PAPERBOY_OFFLINE_SAMPLE=False,
                                          PAPERBOY_DAILY_CACHE_SECONDS=0))
    application.adapters.add(FakeAdapter(application.core, platform="slack"))
    try:
        yield application
    finally:
        await application.close()


async def test_alerts_use_each_persons_learned_ranking_and_threshold(app: App, hf: FakeHuggingFace) -> None:
    ann, bob = UserRef("slack", "T1", "U_ANN"), UserRef("slack", "T1", "U_BOB")
    thursday_noon = datetime(2026, 11, 19, 12, tzinfo=timezone.utc)
    for person in (ann, bob):
        await add_person(app.storage, person, [TOPIC], at=time(8, 0), tz="UTC", after=thursday_noon)
    await app.papers.daily(THURSDAY)                     # Thursday's papers are stored, as an alert leaves them
    core = app.core
    for how, paper_id in (("up", "2511.30001"), ("fewer", "2511.30002"), ("down", "2511.30003")):
        reply = await core.handle(CommandContext(user=ann), f"/papers feedback {how} {paper_id} {TOPIC}")
        assert reply.kind is ReplyKind.CONFIRMATION, reply

    set_feed(hf, FRIDAY, ALERT_FEED)
    report = await run_delivery_pass(app, now=datetime(2026, 11, 20, 8, 1, tzinfo=timezone.utc))
    assert report.sent == 2
    adapter = app.adapters.get("slack")
    assert isinstance(adapter, FakeAdapter)
    [to_bob] = adapter.sent_to("U_BOB")
    [to_ann] = adapter.sent_to("U_ANN")
    # Bob gave no feedback: the five most relevant, exactly as ranked for everyone
    everyone = [r.paper.paper_id for r in rank_for_topic(TOPIC, ALERT_FEED + VOTED_ON,
                                                          now=datetime(2026, 11, 20, 8, 1, tzinfo=timezone.utc))]
    assert ids(to_bob.reply) == everyone[:5]
    # Ann: the language-model papers first, robot papers fewer and lower, each reason given; the papers
    # she voted on are not news to her
    ann_ids = ids(to_ann.reply)
    assert not set(ann_ids) & {p.paper_id for p in VOTED_ON}
    assert set(ann_ids[:3]) == {"2511.40005", "2511.40006", "2511.40007"}
    robots = ("2511.40001", "2511.40002", "2511.40003", "2511.40004")
    assert sum(pid in ann_ids for pid in robots) < sum(pid in ids(to_bob.reply) for pid in robots)
    assert any(w.startswith("you liked 1 paper on") for p in to_ann.reply.papers for w in p.matched_terms)
