"""What the core says about a paper: the summary line, the authors line, the links."""

from __future__ import annotations

from dataclasses import replace

from bot.models import Link, Paper, RankedPaper
from bot.text import clean_line, first_sentence, shorten

SUMMARY_LIMIT = 280
AUTHORS_SHOWN = 3


def summary_line(paper: Paper) -> str:
    """``ai_summary`` when present, else the abstract's first sentence, trimmed."""
    if paper.ai_summary and paper.ai_summary.strip():
        return shorten(clean_line(paper.ai_summary), SUMMARY_LIMIT)
    return first_sentence(paper.summary, limit=SUMMARY_LIMIT)


def authors_line(paper: Paper) -> str:
    """The first few authors and how many in all (``A, B, C + 9 more``)."""
    names = [clean_line(a) for a in paper.authors if a and a.strip()]
    total = max(paper.author_count, len(names))
    if names:
        shown = ", ".join(shorten(n, 60) for n in names[:AUTHORS_SHOWN])
        extra = total - min(len(names), AUTHORS_SHOWN)
        return f"{shown} + {extra} more" if extra > 0 else shown
    if total:
        return f"{total} author{'s' if total != 1 else ''}"
    return paper.organization or ""


def paper_links(paper: Paper) -> tuple[Link, ...]:
    """Paper page, arXiv abstract, PDF, code (with stars) and project page, when known."""
    links = [Link("Paper page", paper.page_url)]
    if paper.arxiv_url:
        links.append(Link("arXiv", paper.arxiv_url))
    if paper.pdf_url:
        links.append(Link("PDF", paper.pdf_url))
    if paper.github_repo and paper.github_repo.startswith(("https://", "http://")):
        stars = f" ★ {paper.github_stars:,}" if paper.github_stars else ""
        links.append(Link(f"Code{stars}", paper.github_repo))
    if paper.project_page and paper.project_page.startswith(("https://", "http://")):
        links.append(Link("Project page", paper.project_page))
    return tuple(links)


def present(ranked: RankedPaper, rank: int) -> RankedPaper:
    """``ranked`` with its display fields filled in and its position set."""
    paper = ranked.paper
    return replace(ranked, rank=rank, summary_line=summary_line(paper), authors_line=authors_line(paper),
                   links=paper_links(paper))
