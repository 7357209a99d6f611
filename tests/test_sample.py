"""The offline sample: parsing the seed pages, the bundled JSON, and loading it as papers."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path


from bot.sample import (build_sample, load_sample, main, parse_card_page, parse_title_abstract_page,
                        sample_records)
from tests.fakes.hf_api import seed_papers

ROOT = Path(__file__).resolve().parents[1]
#: The three Hugging Face papers pages the sample is built from, kept in the repository so no test skips.
SEEDS = ROOT / "tests" / "data" / "seeds"
CHROME = {"new", "Subscribe", "Daily Papers", "byAK and the research community",
          "Get trending papers in your email inbox!", "Get trending papers in your email inbox once a day!"}

CARD_PAGE = """new

Get trending papers in your email inbox!

Subscribe

Daily Papers

byAK and the research community

Mar 2

First  Paper Title

An abstract	on one line.

  • 5 authors
·
Jun 14, 2023

Second Paper

Its abstract.

Some Lab
·
Feb 15 12

Third Paper

Another abstract.

  • 1 author
·
Dec 21, 2025 3
""".splitlines()

TITLE_ABSTRACT_PAGE = """Get trending papers in your email inbox once a day!
Get trending papers in your email inbox!
SubscribeA Glued Title
Its abstract.
Second Title
Second abstract.
""".splitlines()


def test_card_page_blocks_give_title_abstract_byline_date_and_upvotes() -> None:
    first, second, third = parse_card_page(CARD_PAGE)
    assert first == {"title": "First Paper Title", "summary": "An abstract on one line.", "author_count": 5,
                     "published_at": "2023-06-14", "upvotes": 0}
    assert (second["organization"], second["author_count"], second["published_at"], second["upvotes"]) == (
        "Some Lab", 0, "2026-02-15", 12)  # no year: the pages were saved in 2026
    assert (third["author_count"], third["published_at"], third["upvotes"]) == (1, "2025-12-21", 3)


def test_title_abstract_page_drops_the_header_and_the_glued_subscribe() -> None:
    records = parse_title_abstract_page(TITLE_ABSTRACT_PAGE)
    assert [(r["title"], r["summary"]) for r in records] == [("A Glued Title", "Its abstract."),
                                                             ("Second Title", "Second abstract.")]
    assert all(r["published_at"] is None and r["author_count"] == 0 for r in records)


def test_each_seed_page_parses_completely() -> None:
    pages = sorted(SEEDS.glob("*.txt"))
    assert len(pages) == 3
    first = parse_title_abstract_page(pages[0].read_text(encoding="utf-8").splitlines())
    cards = [parse_card_page(p.read_text(encoding="utf-8").splitlines()) for p in pages[1:]]
    assert len(first) == 119  # 238 lines after the two header lines
    for page, records in zip(pages[1:], cards):
        separators = sum(1 for line in page.read_text(encoding="utf-8").splitlines() if line.strip() == "·")
        assert len(records) == separators  # one card per "·" line: none lost, none invented
    assert first[0]["title"] == "Multi-hop Reasoning via Early Knowledge Alignment"


def test_sample_is_built_from_the_seeds_without_chrome_or_duplicates() -> None:
    records = build_sample(SEEDS)
    titles = [r["title"] for r in records]
    assert len(records) == 174  # 206 cards and pairs on the three pages, 32 of them repeated
    assert len({t.casefold() for t in titles}) == len(titles)
    assert not CHROME & set(titles)
    assert not any(t.startswith(("Subscribe", "Get trending")) or t == "·" or "authors" in t for t in titles)
    assert all(len(r["summary"]) > 100 for r in records)
    by_title = {r["title"]: r for r in records}
    llaso = by_title["LLaSO: A Foundational Framework for Reproducible Research in Large Language and Speech Model"]
    assert (llaso["published_at"], llaso["upvotes"], llaso["author_count"]) == ("2025-08-21", 2, 8)
    peace = by_title["PEACE: Cross-Platform Hate Speech Detection- A Causality-guided Framework"]
    assert (peace["published_at"], peace["upvotes"], peace["author_count"]) == ("2023-06-14", 0, 5)
    assert by_title["Learning to Grasp Anything by Playing with Random Toys"]["organization"] == "Berkeley UC Berkeley"
    # On page 001 (titles and abstracts only) and on a card page too: the card's data is kept.
    grokked = by_title["Grokked Transformers are Implicit Reasoners: A Mechanistic Journey to the Edge of "
                       "Generalization"]
    assert (grokked["published_at"], grokked["upvotes"], grokked["author_count"]) == ("2024-05-23", 1, 4)
    assert [r["upvotes"] for r in records] == sorted((r["upvotes"] for r in records), reverse=True)


def test_the_committed_json_is_what_the_seeds_give() -> None:
    assert build_sample(SEEDS) == sample_records()


def test_build_command_writes_the_document(tmp_path: Path) -> None:
    target = tmp_path / "out" / "sample.json"
    assert main(["build", str(SEEDS), "--output", str(target)]) == 0
    document = json.loads(target.read_text(encoding="utf-8"))
    assert document["papers"] == sample_records()
    assert main(["build", str(tmp_path / "missing"), "--output", str(target)]) == 2


def test_build_command_runs_as_a_module(tmp_path: Path) -> None:
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    (seeds / "001.txt").write_text("\n".join(CARD_PAGE), encoding="utf-8")
    target = tmp_path / "sample.json"
    result = subprocess.run([sys.executable, "-m", "bot.sample", "build", str(seeds), "--output", str(target)],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "wrote 3 papers" in result.stdout
    assert len(json.loads(target.read_text(encoding="utf-8"))["papers"]) == 3


def test_loaded_sample_has_no_invented_arxiv_ids() -> None:
    papers = load_sample()
    assert len(papers) == len(sample_records()) > 150
    assert all(p.paper_id.startswith("sample:") and p.arxiv_id is None and p.arxiv_url is None for p in papers)
    assert all(p.page_url.startswith("https://huggingface.co/papers?q=") for p in papers)
    assert len({p.paper_id for p in papers}) == len(papers)
    assert all(p.authors == () for p in papers)


def test_loaded_sample_papers_carry_the_seed_figures() -> None:
    by_title = {p.title: p for p in load_sample()}
    llaso = by_title["LLaSO: A Foundational Framework for Reproducible Research in Large Language and Speech Model"]
    assert llaso.paper_id.startswith("sample:llaso-a-foundational-framework-for-reproducible-research")
    assert len(llaso.paper_id) <= len("sample:") + 80  # slugs are capped, ids stay short
    assert llaso.published_at == datetime(2025, 8, 21, tzinfo=timezone.utc)
    assert (llaso.upvotes, llaso.author_count, llaso.organization) == (2, 8, None)
    dated = [p for p in by_title.values() if p.published_at is not None]
    assert dated and all(p.published_at.tzinfo is timezone.utc for p in dated)
    assert by_title["Learning to Grasp Anything by Playing with Random Toys"].organization == "Berkeley UC Berkeley"


def test_load_sample_returns_a_fresh_list() -> None:
    first = load_sample()
    first.clear()
    assert load_sample()


def test_fake_serves_every_seed_paper_with_synthetic_ids() -> None:
    papers = seed_papers()
    assert len(papers) == len(sample_records())
    assert all(p["id"].startswith("2501.") for p in papers)
    assert len({p["id"] for p in papers}) == len(papers)
    assert any("ai_summary" in p for p in papers) and any("ai_summary" not in p for p in papers)
    assert any("githubRepo" in p for p in papers) and any("organization" in p for p in papers)
    assert all(p["authors"][0]["name"] == "Author 1" for p in papers)
