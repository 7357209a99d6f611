"""Relevance benchmark: how well `/papers <topic>` and the alerts find what a researcher means.

Runs the labelled set in ``benchmarks/relevance/`` (queries, one judgement per
(query, paper) for every paper of the bundled sample, and GUIDELINE.md) against

  - **before**: the matcher and ranking of an earlier revision (``--baseline``,
    default the revision before field-aware matching), loaded from git;
  - **after**: the matcher and ranking in this working tree.

Per query and macro-averaged, it prints

  - P@5      relevant papers among the first five of the `/papers` answer,
             divided by min(5, number of relevant papers) (so 1.0 is reachable
             for a query with two relevant papers);
  - nDCG@10  graded (gains 3 and 1 for grades 2 and 1) over the first ten;
  - R        recall of the alert set (the papers an alert on this topic sends);
  - MP       precision of the alert set (0 when nothing would be sent).

`/papers` gets its candidates ranked by Hugging Face's search. The benchmark
simulates that order with the only real one it has: the order of the seed pages
in ``tests/data/seeds`` (Hugging Face's search order for "generalization",
the query that fetched the sample). "after+HF" ranks with that order fused in;
"after" ranks the same candidates without it.

``--sweep`` also prints the alert set's macro recall and precision at other
thresholds (how the alert threshold was chosen).

    python benchmarks/relevance.py [--baseline REV] [--per-query] [--sweep]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import subprocess
import sys
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.models import Paper  # noqa: E402
from bot.sample import _slug, load_sample, parse_card_page, parse_title_abstract_page  # noqa: E402
from bot.text import clean_line  # noqa: E402

DATA = Path(__file__).resolve().parent / "relevance"
SEEDS = ROOT / "tests" / "data" / "seeds"
BASELINE_REVISION = "a17acad"  # main before field-aware matching
NOW = datetime(2026, 3, 1, tzinfo=timezone.utc)


@dataclass(frozen=True)
class Query:
    id: str
    text: str
    kind: str
    grades: dict[str, int]  # paper id -> grade, every paper of the corpus

    @property
    def relevant(self) -> set[str]:
        return {pid for pid, grade in self.grades.items() if grade > 0}


@dataclass(frozen=True)
class Result:
    """What one system answers for one query: the `/papers` order and the alert set."""

    ranking: list[str]
    alert: set[str]


@dataclass(frozen=True)
class Scores:
    p5: float
    ndcg10: float
    recall: float
    alert_precision: float
    sent: int


def load_queries(papers: Sequence[Paper]) -> list[Query]:
    """The labelled set; refuses it unless every (query, paper) pair is judged exactly once."""
    document = json.loads((DATA / "queries.json").read_text(encoding="utf-8"))
    ids = {p.paper_id for p in papers}
    grades: dict[str, dict[str, int]] = {q["id"]: {} for q in document["queries"]}
    with (DATA / "judgements.tsv").open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            per_query = grades[row["query_id"]]
            if row["paper_id"] not in ids or row["paper_id"] in per_query:
                raise SystemExit(f"judgements.tsv: unknown or repeated pair {row['query_id']} {row['paper_id']}")
            per_query[row["paper_id"]] = int(row["grade"])
    queries = []
    for q in document["queries"]:
        if set(grades[q["id"]]) != ids:
            raise SystemExit(f"judgements.tsv: query {q['id']} does not judge every paper of the sample")
        if not any(grades[q["id"]].values()):
            raise SystemExit(f"judgements.tsv: query {q['id']} has no relevant paper")
        queries.append(Query(q["id"], q["query"], q["kind"], grades[q["id"]]))
    return queries


def hugging_face_order(papers: Sequence[Paper]) -> list[Paper]:
    """The sample in the order Hugging Face's search listed it on the seed pages."""
    position: dict[str, int] = {}
    for path in sorted(SEEDS.glob("*.txt")):
        lines = path.read_text(encoding="utf-8").splitlines()
        records = parse_card_page(lines) if any(clean_line(l) == "·" for l in lines) else parse_title_abstract_page(lines)
        for record in records:
            position.setdefault(f"sample:{_slug(record['title'])}", len(position))
    missing = [p.paper_id for p in papers if p.paper_id not in position]
    if missing:
        raise SystemExit(f"{len(missing)} sample papers are not on the seed pages, e.g. {missing[0]}")
    return sorted(papers, key=lambda p: position[p.paper_id])


# --- the systems ---------------------------------------------------------------------------------


def load_baseline(revision: str) -> tuple[types.ModuleType, types.ModuleType]:
    """bot/matching.py and bot/ranking.py as they were at ``revision`` (read from git, not installed)."""
    modules = []
    for name in ("matching", "ranking"):
        source = subprocess.run(["git", "-C", str(ROOT), "show", f"{revision}:bot/{name}.py"],
                                check=True, capture_output=True, text=True).stdout
        source = source.replace("from bot.matching import", "from _baseline_matching import")
        module = types.ModuleType(f"_baseline_{name}")
        sys.modules[module.__name__] = module
        exec(compile(source, f"{revision}:bot/{name}.py", "exec"), module.__dict__)  # noqa: S102 - our own history
        modules.append(module)
    return modules[0], modules[1]


def run_system(matching: types.ModuleType, ranking: types.ModuleType, *, hf_order: bool) -> Callable[[str, list[Paper]], Result]:
    def run(topic: str, candidates: list[Paper]) -> Result:
        if hf_order:
            ranked = ranking.rank_for_topic(topic, candidates, now=NOW, source_ranked=True)
        else:
            ranked = ranking.rank_for_topic(topic, candidates, now=NOW)
        alert = {doc.paper.paper_id for doc, _ in matching.TopicIndex(candidates).match(topic)}
        return Result(ranking=[r.paper.paper_id for r in ranked], alert=alert)
    return run


# --- metrics -------------------------------------------------------------------------------------


def score(query: Query, result: Result) -> Scores:
    relevant = query.relevant
    top5 = result.ranking[:5]
    p5 = sum(pid in relevant for pid in top5) / min(5, len(relevant))
    gains = [2 ** query.grades.get(pid, 0) - 1 for pid in result.ranking[:10]]
    dcg = sum(g / math.log2(i + 2) for i, g in enumerate(gains))
    ideal = sorted((2 ** g - 1 for g in query.grades.values()), reverse=True)[:10]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    hits = len(result.alert & relevant)
    return Scores(p5=p5, ndcg10=dcg / idcg, recall=hits / len(relevant),
                  alert_precision=hits / len(result.alert) if result.alert else 0.0, sent=len(result.alert))


def macro(scores: Sequence[Scores]) -> Scores:
    n = len(scores)
    return Scores(p5=sum(s.p5 for s in scores) / n, ndcg10=sum(s.ndcg10 for s in scores) / n,
                  recall=sum(s.recall for s in scores) / n,
                  alert_precision=sum(s.alert_precision for s in scores) / n, sent=round(sum(s.sent for s in scores) / n))


def fmt(s: Scores) -> str:
    return f"{s.p5:4.2f} {s.ndcg10:4.2f} {s.recall:4.2f} {s.alert_precision:4.2f} {s.sent:3d}"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", default=BASELINE_REVISION, help="git revision of the 'before' matcher")
    parser.add_argument("--per-query", action="store_true", help="print every query, not only the macro figures")
    parser.add_argument("--sweep", action="store_true", help="alert recall and precision at other thresholds")
    args = parser.parse_args(argv)

    papers = load_sample()
    queries = load_queries(papers)
    hf_ranked = hugging_face_order(papers)
    import bot.matching as matching
    import bot.ranking as ranking

    systems: dict[str, Callable[[str, list[Paper]], Result]] = {}
    try:
        systems["before"] = run_system(*load_baseline(args.baseline), hf_order=False)
    except (subprocess.CalledProcessError, FileNotFoundError) as exc:
        print(f"(before: revision {args.baseline} not readable from git: {exc}; showing 'after' only)")
    systems["after"] = run_system(matching, ranking, hf_order=False)
    if "source_ranked" in ranking.rank_for_topic.__code__.co_varnames:
        systems["after+HF"] = run_system(matching, ranking, hf_order=True)

    results = {name: [score(q, system(q.text, hf_ranked)) for q in queries] for name, system in systems.items()}
    print(f"{len(queries)} queries x {len(papers)} papers, every pair judged (benchmarks/relevance/GUIDELINE.md)")
    print("columns per system: P@5 nDCG@10 recall alert-precision papers-sent")
    header = " | ".join(f"{name:^22}" for name in systems)
    if args.per_query:
        print(f"{'query':<52} rel | {header}")
        for i, q in enumerate(queries):
            cells = " | ".join(fmt(results[name][i]) for name in systems)
            print(f"{q.id} {q.text[:48]:<48} {len(q.relevant):3d} | {cells}")
    print(f"{'':<52}     | {header}")
    print(f"{'macro (' + str(len(queries)) + ' queries)':<52}     | " + " | ".join(fmt(macro(results[n])) for n in systems))
    if args.sweep:
        print(f"alert threshold sweep (after; the shipped threshold is {matching.ALERT_THRESHOLD}):")
        print("threshold  recall  precision  papers-sent")
        for step in range(6, 17):
            threshold = step / 20
            sweep = []
            for q in queries:
                alert = {doc.paper.paper_id for doc, _ in matching.TopicIndex(hf_ranked).match(q.text, threshold=threshold)}
                sweep.append(score(q, Result(ranking=[], alert=alert)))
            m = macro(sweep)
            print(f"{threshold:9.2f}  {m.recall:6.2f}  {m.alert_precision:9.2f}  {m.sent:11d}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
