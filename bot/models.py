"""The platform-neutral model: papers, who asked, and what the bot answers.

Everything here is a frozen dataclass of plain values. Adapters translate a
platform's payloads into these and render :class:`Reply` back; the core never
sees a raw payload and never produces markup. All text in a :class:`Reply` is
plain text: renderers escape every string they place into a message.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import date, datetime
from urllib.parse import quote_plus

HF_SITE = "https://huggingface.co"


@dataclass(frozen=True, slots=True)
class Paper:
    """One paper as the Hugging Face papers API describes it.

    ``paper_id`` is the arXiv id when one is known; papers from the offline
    sample that have none use ``sample:<slug>`` and link to a search instead.
    """

    paper_id: str
    title: str
    summary: str = ""
    authors: tuple[str, ...] = ()
    author_count: int = 0
    published_at: datetime | None = None
    upvotes: int = 0
    ai_summary: str | None = None
    ai_keywords: tuple[str, ...] = ()
    github_repo: str | None = None
    github_stars: int | None = None
    project_page: str | None = None
    organization: str | None = None
    feed_date: date | None = None

    @property
    def arxiv_id(self) -> str | None:
        """The arXiv id, or None for papers known only by title."""
        return None if self.paper_id.startswith("sample:") else self.paper_id

    @property
    def page_url(self) -> str:
        """The Hugging Face paper page, or a papers search for the title."""
        if self.arxiv_id:
            return f"{HF_SITE}/papers/{self.arxiv_id}"
        return f"{HF_SITE}/papers?q={quote_plus(self.title)}"

    @property
    def arxiv_url(self) -> str | None:
        return f"https://arxiv.org/abs/{self.arxiv_id}" if self.arxiv_id else None

    @property
    def pdf_url(self) -> str | None:
        return f"https://arxiv.org/pdf/{self.arxiv_id}" if self.arxiv_id else None


@dataclass(frozen=True, slots=True)
class Link:
    """A labelled URL shown under a paper (paper page, arXiv, PDF, code, ...)."""

    label: str
    url: str


@dataclass(frozen=True, slots=True)
class RankedPaper:
    """A paper in an answer, with the figures that put it there.

    ``matched_terms`` are the topic words found in the paper (why it matched);
    empty for the trending list, where popularity alone decides.
    """

    paper: Paper
    score: float = 0.0
    matched_terms: tuple[str, ...] = ()
    rank: int = 0
    summary_line: str = ""
    authors_line: str = ""
    links: tuple[Link, ...] = ()


class ReplyKind(enum.Enum):
    """What a reply is, so adapters can choose a layout and buttons."""

    SEARCH = "search"
    TRENDING = "trending"
    CHANNEL_DIGEST = "channel_digest"
    PERSONAL_ALERT = "personal_alert"
    SUBSCRIPTIONS = "subscriptions"
    CHANNEL_SETTING = "channel_setting"
    ALERT_SETTING = "alert_setting"
    CONFIRMATION = "confirmation"
    HELP = "help"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class Section:
    """A group of papers under an optional heading (alerts group by topic)."""

    papers: tuple[RankedPaper, ...]
    heading: str | None = None
    topic: str | None = None
    more: int = 0


@dataclass(frozen=True, slots=True)
class Reply:
    """What the core answers; adapters decide how it looks.

    ``title`` is the headline, ``lines`` plain-text paragraphs, ``sections``
    the papers, ``items`` a plain list (e.g. a user's topics), ``notices``
    caveats such as "from the stored copy of ...", ``footer`` a hint on how to
    change a setting. ``topic`` is set on search replies so adapters can offer
    a "Subscribe to <topic>" button. ``ephemeral`` asks for an answer only the
    caller sees, where the platform allows it.
    """

    kind: ReplyKind
    title: str
    lines: tuple[str, ...] = ()
    sections: tuple[Section, ...] = ()
    items: tuple[str, ...] = ()
    notices: tuple[str, ...] = ()
    footer: str | None = None
    topic: str | None = None
    ephemeral: bool = True
    day: date | None = None

    @property
    def papers(self) -> tuple[RankedPaper, ...]:
        """All papers of all sections, in order."""
        return tuple(p for s in self.sections for p in s.papers)

    @property
    def is_error(self) -> bool:
        return self.kind is ReplyKind.ERROR


@dataclass(frozen=True, slots=True)
class ChannelRef:
    """A place messages go: ``platform`` is 'slack', 'discord' or 'console'."""

    platform: str
    workspace: str
    channel: str


@dataclass(frozen=True, slots=True)
class UserRef:
    """A person on a platform, within one workspace (Slack team, Discord guild)."""

    platform: str
    workspace: str
    user: str


@dataclass(frozen=True, slots=True)
class CommandContext:
    """Who sent a command, from where, and what the platform tells about them.

    ``user_timezone`` is the person's IANA zone when the platform knows it
    (Slack does). ``can_manage_channel`` is the adapter's verdict on whether
    this person may change the channel's daily post.
    """

    user: UserRef
    channel: ChannelRef | None = None
    user_timezone: str | None = None
    can_manage_channel: bool = True
    display_name: str | None = None
    extra: dict[str, str] = field(default_factory=dict, hash=False, compare=False)
