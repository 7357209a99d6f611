"""The terminal console: type ``/papers ...`` and read the answer as plain text.

Commands are attributed to a local console user in a local console channel, so
subscriptions and channel settings made here are stored like any other.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Callable
from typing import TextIO

from adapters.base import DeliveryKey, HistoryUnavailable, SentMessage
from bot.core import Paperboy
from bot.models import ChannelRef, CommandContext, RankedPaper, Reply, ReplyKind, UserRef

CONSOLE_USER = UserRef("console", "local", "console-user")
CONSOLE_CHANNEL = ChannelRef("console", "local", "console")
PROMPT = "paperboy> "
ASKING = "asking Hugging Face…"
ASKING_CHECK_SECONDS = 0.25   # how soon, and how often, a command in progress is looked at


def console_context(*, timezone: str | None = None) -> CommandContext:
    """Who a console command comes from."""
    return CommandContext(user=CONSOLE_USER, channel=CONSOLE_CHANNEL, user_timezone=timezone,
                          can_manage_channel=True, display_name="you")


def _paper_lines(item: RankedPaper) -> list[str]:
    paper = item.paper
    meta = [m for m in (item.authors_line,
                        paper.published_at.strftime("%Y-%m-%d") if paper.published_at else "",
                        f"▲ {paper.upvotes}") if m]
    lines = [f"{item.rank:>2}. {paper.title}", f"    {' · '.join(meta)}"]
    if item.summary_line:
        lines.append(f"    {item.summary_line}")
    for link in item.links:
        lines.append(f"    {link.label}: {link.url}")
    if item.matched_terms:
        lines.append(f"    Why: {', '.join(item.matched_terms)}")
    return lines


def render_text(reply: Reply) -> str:
    """A reply as plain text for the terminal (no markup, nothing to escape)."""
    out: list[str] = []
    marker = "!" if reply.kind is ReplyKind.ERROR else "#"
    out.append(f"{marker} {reply.title}")
    for notice in reply.notices:
        out.append(f"  Note: {notice}")
    out.extend(reply.lines)
    out.extend(f"  • {item}" for item in reply.items)
    for section in reply.sections:
        if section.heading:
            out.append("")
            out.append(f"## {section.heading}")
        for item in section.papers:
            out.append("")
            out.extend(_paper_lines(item))
        if section.more:
            out.append("")
            out.append(f"   … and {section.more} more")
    if reply.footer:
        out.append("")
        out.append(reply.footer)
    return "\n".join(out)


class LineReader:
    """Blocking reads in a daemon thread, handed to the event loop one line at a time.

    Unlike a read in the loop's default executor, a read still waiting for input
    never holds up shutdown: on SIGTERM the process exits at once.
    """

    def __init__(self, read_line: Callable[[], str]) -> None:
        self._read_line = read_line
        self._thread: threading.Thread | None = None
        self._wanted = threading.Event()
        self._lines: asyncio.Queue[str] | None = None

    def _read_forever(self, loop: asyncio.AbstractEventLoop, lines: asyncio.Queue[str]) -> None:
        while True:
            self._wanted.wait()
            self._wanted.clear()
            try:
                line = self._read_line()
            except (OSError, ValueError):   # stdin closed under us
                line = ""
            try:
                loop.call_soon_threadsafe(lines.put_nowait, line)
            except RuntimeError:            # the loop is gone: nobody is waiting any more
                return
            if not line:
                return

    async def next(self) -> str:
        """The next line, or "" at end of input."""
        if self._lines is None:
            self._lines = asyncio.Queue()
            self._thread = threading.Thread(target=self._read_forever, name="console-stdin", daemon=True,
                                            args=(asyncio.get_running_loop(), self._lines))
            self._thread.start()
        self._wanted.set()   # read only when asked, so nothing typed is consumed after quitting
        return await self._lines.get()


class ConsoleAdapter:
    """Reads commands from a terminal and prints replies; also receives scheduled posts."""

    platform = "console"

    def __init__(self, core: Paperboy, *, stdin: TextIO | None = None, stdout: TextIO | None = None,
                 timezone: str | None = None) -> None:
        self._core = core
        self._stdin = stdin or sys.stdin
        self._stdout = stdout or sys.stdout
        self._timezone = timezone
        self._task: asyncio.Task[None] | None = None
        self._counter = 0

    def _print(self, text: str) -> None:
        self._stdout.write(text + "\n")
        self._stdout.flush()

    async def ask(self, text: str) -> Reply:
        """Answer one command line as the console user."""
        return await self._core.handle(console_context(timezone=self._timezone), text)

    async def start(self) -> None:
        self._task = asyncio.create_task(self.repl())

    async def start_sending(self) -> None:
        """Sends print to stdout; nothing to prepare."""

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()

    async def wait(self) -> None:
        if self._task:
            await asyncio.gather(self._task, return_exceptions=True)

    def _asking_upstream(self) -> bool:
        papers = getattr(self._core, "papers", None)
        return getattr(papers, "asking", 0) > 0

    async def _ask_showing_progress(self, text: str) -> Reply:
        """:meth:`ask`, saying "asking Hugging Face…" once if the answer waits on Hugging Face."""
        answer = asyncio.ensure_future(self.ask(text))
        said = False
        while not answer.done():
            await asyncio.wait({answer}, timeout=ASKING_CHECK_SECONDS)
            if not answer.done() and not said and self._asking_upstream():
                self._print(ASKING)
                said = True
        return answer.result()

    async def repl(self, read_line: Callable[[], str] | None = None) -> None:
        """Prompt, answer, repeat until end of input or ``quit``."""
        self._print("Paperboy console. Try /papers generalization, /papers today or /papers help; quit to leave.")
        lines = LineReader(read_line or self._stdin.readline)
        while True:
            self._stdout.write(PROMPT)
            self._stdout.flush()
            line = await lines.next()
            if not line:
                self._print("")
                return
            line = line.strip()
            if line.casefold() in ("quit", "exit", ":q"):
                return
            if not line:
                continue
            text = line if line.casefold().startswith("/papers") else f"/papers {line}"
            self._print(render_text(await self._ask_showing_progress(text)))

    async def send_to_channel(self, channel: ChannelRef, reply: Reply, *, key: DeliveryKey | None = None) -> SentMessage:
        self._counter += 1
        self._print(f"\n[daily post for #{channel.channel}]\n{render_text(reply)}")
        return SentMessage(channel=channel.channel, message_id=str(self._counter))

    async def send_to_user(self, user: UserRef, reply: Reply, *, key: DeliveryKey | None = None) -> SentMessage:
        self._counter += 1
        self._print(f"\n[direct message for {user.user}]\n{render_text(reply)}")
        return SentMessage(channel=user.user, message_id=str(self._counter))

    async def find_delivery(self, target: ChannelRef | UserRef, key: DeliveryKey) -> SentMessage | None:
        """A terminal keeps no history to look in."""
        raise HistoryUnavailable("the console keeps no history")
