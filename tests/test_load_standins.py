"""The load benchmark's Hugging Face stand-in answers what the benchmark claims: 50 papers per
topic, in the API's shape, fresh for each topic, every one of them on the topic."""

from __future__ import annotations

import json

from benchmarks.load import PAPERS_PER_SEARCH, _search_items
from bot.hf_client import _parse_items
from bot.ranking import rank_for_topic
from bot.sample import sample_records


def test_each_topic_gets_fifty_fresh_matching_papers() -> None:
    records = sample_records()
    answers = {topic: _parse_items(json.loads(_search_items(topic, records)))
               for topic in ("graph neural networks", "in-context learning")}
    ids = [{p.paper_id for p in papers} for papers in answers.values()]
    assert [len(papers) for papers in answers.values()] == [PAPERS_PER_SEARCH] * 2
    assert all(len(found) == PAPERS_PER_SEARCH for found in ids) and not ids[0] & ids[1]
    for topic, papers in answers.items():
        assert len(rank_for_topic(topic, papers)) == PAPERS_PER_SEARCH
