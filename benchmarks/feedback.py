"""Alerts that learn, simulated: people with a hidden interest vote on their daily alerts for 30 days.

Each simulated person follows one topic but really cares about a narrower
interest inside it (papers on language models, on vision, on learning
theory...). The interests are hand-written patterns over the title and
abstract, defined here and never shown to the learner: a paper is of interest
when the pattern is in its title or at least twice in its abstract.

Papers: the bundled offline sample (174 real papers from the Hugging Face
papers site), split once into a pool the days are drawn from and a held-out
pool for measuring. Every day a feed of :data:`FEED_SIZE` papers is drawn
from the first pool; the alert is what production sends for the topic: the
delivery pass's own :class:`scheduler.delivery.AlertMatcher` (the papers above
the alert threshold, re-ranked and thresholded by :func:`bot.feedback.personalise`
with the person's votes so far, at most :data:`ALERT_PAPERS`, never a paper
sent or voted on before). The person then votes on what they got:

* ``diligent``: votes on every paper -- 👍 if it is of interest, else 👎, or
  "fewer like this" for every other off-interest paper;
* ``casual``: votes on 40% of the papers and gets 10% of those votes wrong;
* ``silent``: never votes.

Alert precision (the share of alert papers of interest) is measured on
:data:`EVAL_DAYS` held-out days -- the same days for "day 1" (before any vote)
and "day 30" (after 29 days of votes) -- so the gain is not the learner
recognising papers it was shown. The silent person's alerts are compared with
the unpersonalised ones on every day: they must be identical.

Run: ``python benchmarks/feedback.py`` (about a minute; figures are exact, not timed).
"""

from __future__ import annotations

import random
import re
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from statistics import mean

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.feedback import DOWN, FEWER, UP, Vote, learn, paper_terms  # noqa: E402
from bot.models import Paper  # noqa: E402
from bot.papers import Origin, PaperBatch  # noqa: E402
from bot.sample import load_sample  # noqa: E402
from scheduler.delivery import ALERT_PAPERS_PER_TOPIC, AlertMatcher  # noqa: E402

DAYS = 30
FEED_SIZE = 30
ALERT_PAPERS = ALERT_PAPERS_PER_TOPIC
EVAL_DAYS = 20
SEEDS = 5
HELD_OUT_SHARE = 0.35
NOW = datetime(2026, 11, 23, tzinfo=timezone.utc)


@dataclass(frozen=True)
class Interest:
    """What a simulated person really wants inside the topic they follow."""

    topic: str
    name: str
    pattern: re.Pattern[str]

    def wants(self, paper: Paper) -> bool:
        return bool(self.pattern.search(paper.title)) or len(self.pattern.findall(paper.summary)) >= 2


def _rx(text: str) -> re.Pattern[str]:
    return re.compile(text, re.IGNORECASE)


PEOPLE = (
    Interest("generalization", "language models", _rx(r"\b(language models?|llms?|large language)\b")),
    Interest("generalization", "vision", _rx(r"\b(image\w*|vision|visual|video|segmentation|depth|camera|3d)\b")),
    Interest("generalization", "reasoning", _rx(r"\b(reasoning|math\w*|arithmetic|logic\w*)\b")),
    Interest("generalization", "learning theory",
             _rx(r"\b(grokking|overfitting|sgd|theor\w*|bounds?|provabl\w*|memoriz\w*)\b")),
    Interest("generalization", "distribution shift",
             _rx(r"\b(out-of-distribution|ood|distribution shifts?|domain generalization|domain shift)\b")),
    Interest("language models", "reasoning", _rx(r"\b(reasoning|math\w*|arithmetic|logic\w*)\b")),
    Interest("transformers", "length generalization", _rx(r"\b(length|longer|long)\b")),
)


@dataclass
class Person:
    interest: Interest
    style: str
    rng: random.Random
    votes: list[Vote] = field(default_factory=list)
    sent: set[str] = field(default_factory=set)

    def alert(self, feed: list[Paper], *, learned: bool = True, remember: bool = True) -> list[Paper]:
        """What production would send this person from ``feed`` today (the delivery pass's own matcher)."""
        topic = self.interest.topic
        taste = learn(topic, self.votes) if learned else None
        matcher = AlertMatcher(PaperBatch(feed, Origin.LIVE), now=NOW)
        reply, _ = matcher.compose([topic], set(self.sent), {topic: taste} if taste is not None else None)
        chosen = [r.paper for r in reply.papers] if reply is not None else []
        if remember:
            self.sent.update(p.paper_id for p in chosen)
        return chosen

    def react(self, alert: list[Paper]) -> None:
        """Vote on today's alert the way this person does (newest votes first, as storage returns them)."""
        if self.style == "silent":
            return
        off_topic = 0
        for paper in alert:
            if self.style == "casual" and self.rng.random() > 0.4:
                continue
            liked = self.interest.wants(paper)
            if self.style == "casual" and self.rng.random() < 0.1:
                liked = not liked
            if liked:
                vote = UP
            else:
                off_topic += 1
                vote = FEWER if off_topic % 2 == 0 else DOWN
            self.votes.insert(0, Vote(paper.paper_id, vote, paper.title, paper_terms(paper)))


def precision(interest: Interest, alert: list[Paper]) -> float | None:
    return sum(interest.wants(p) for p in alert) / len(alert) if alert else None


def split(papers: list[Paper], seed: int) -> tuple[list[Paper], list[Paper]]:
    shuffled = list(papers)
    random.Random(seed).shuffle(shuffled)
    cut = int(len(shuffled) * HELD_OUT_SHARE)
    return shuffled[cut:], shuffled[:cut]


def held_out_precision(person: Person, eval_feeds: list[list[Paper]]) -> tuple[float, float]:
    """Mean precision and mean alert size over the held-out days, with the person's votes so far."""
    scores, sizes = [], []
    for feed in eval_feeds:
        alert = person.alert(feed, remember=False)
        sizes.append(len(alert))
        value = precision(person.interest, alert)
        if value is not None:
            scores.append(value)
    return mean(scores), mean(sizes)


def run() -> None:
    papers = load_sample()
    rows: dict[tuple[str, str], list[tuple[float, float, float, float]]] = {}
    silent_differences = silent_days = 0
    for seed in range(SEEDS):
        pool, held_out = split(papers, seed)
        eval_rng = random.Random(1000 + seed)
        eval_feeds = [eval_rng.sample(held_out, min(FEED_SIZE, len(held_out))) for _ in range(EVAL_DAYS)]
        for interest in PEOPLE:
            for style in ("diligent", "casual", "silent"):
                person = Person(interest, style, random.Random(seed * 7919 + ("diligent", "casual", "silent").index(style)))
                day_rng = random.Random(seed)      # the same days for every style
                before, size_before = held_out_precision(person, eval_feeds)
                for _ in range(DAYS - 1):
                    feed = day_rng.sample(pool, FEED_SIZE)
                    if style == "silent":
                        plain = person.alert(feed, learned=False, remember=False)
                        alert = person.alert(feed)
                        silent_days += 1
                        silent_differences += [p.paper_id for p in plain] != [p.paper_id for p in alert]
                    else:
                        alert = person.alert(feed)
                    person.react(alert)
                after, size_after = held_out_precision(person, eval_feeds)
                rows.setdefault((f"{interest.topic} → {interest.name}", style), []).append(
                    (before, after, size_before, size_after))

    print(f"Alert precision on {EVAL_DAYS} held-out days (feeds of {FEED_SIZE} papers, alerts of up to "
          f"{ALERT_PAPERS}), day 1 (no votes yet) vs day 30 (after 29 days of votes); mean of {SEEDS} runs\n")
    print(f"{'person (topic → hidden interest)':44s} {'style':9s} {'day 1':>6s} {'day 30':>6s} {'gain':>6s} "
          f"{'papers/alert d1→d30':>20s}")
    by_style: dict[str, list[tuple[float, float, float, float]]] = {}
    for (who, style), values in rows.items():
        b, a = mean(v[0] for v in values), mean(v[1] for v in values)
        sb, sa = mean(v[2] for v in values), mean(v[3] for v in values)
        by_style.setdefault(style, []).extend(values)
        print(f"{who:44s} {style:9s} {b:6.3f} {a:6.3f} {a - b:+6.3f} {sb:9.2f} → {sa:4.2f}")
    print()
    for style, values in by_style.items():
        b, a = mean(v[0] for v in values), mean(v[1] for v in values)
        worse = sum(1 for v in values if v[1] < v[0] - 1e-9)
        print(f"macro {style:9s} day 1 {b:.3f}  day 30 {a:.3f}  gain {a - b:+.3f}  "
              f"(runs where day 30 < day 1: {worse} of {len(values)})")
    print(f"\nSilent people: {silent_differences} of {silent_days} daily alerts differ from the unpersonalised "
          "alert (must be 0).")


if __name__ == "__main__":
    run()
