"""Work done once per paper, and the caches that make it so, invalidated when the data changes."""

from __future__ import annotations

from dataclasses import replace

from bot.matching import PaperTerms
from bot.models import Paper


def test_stems_are_computed_once_per_paper_id_and_follow_the_current_copy() -> None:
    first = Paper(paper_id="2501.09999", title="Grokking beyond toy tasks", summary="We study grokking.",
                  upvotes=3)
    again = replace(first, upvotes=250)            # the same paper fetched later, with more upvotes
    terms, terms_again = PaperTerms.of(first), PaperTerms.of(again)
    assert terms_again.title is terms.title          # the stems were not computed a second time
    assert terms_again.paper is again and terms_again.paper.upvotes == 250   # ranking sees today's copy
    edited = replace(again, title="Grokking in large language models")
    assert "languag" in PaperTerms.of(edited).title  # a changed title is stemmed anew
    assert "languag" not in PaperTerms.of(again).title
