"""Logging set-up: a filter that blanks every configured secret and token-shaped string, and a
formatter that keeps every record on its own line, whatever text from outside it carries."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import IO

_TOKEN_SHAPES = re.compile(
    r"(xox[abposr]-[A-Za-z0-9-]{8,}|xapp-[A-Za-z0-9-]{8,}|hf_[A-Za-z0-9]{16,}"
    r"|[MN][A-Za-z\d_-]{23,27}\.[A-Za-z\d_-]{6}\.[A-Za-z\d_-]{27,})"
)
REDACTED = "[redacted]"
# Everything that can end or rewrite a line on a terminal or in a log file: C0 and C1 controls (\n, \r,
# ESC, ...) and Unicode's own line and paragraph separators.
_LINE_BREAKERS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
CONTINUATION = "  | "


def _escape_char(match: re.Match[str]) -> str:
    char = match[0]
    named = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(char)
    if named:
        return named
    return f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"


def one_line(text: str) -> str:
    """``text`` with every line break and control character written as an escape (``\\n``, ``\\x1b``)."""
    return _LINE_BREAKERS.sub(_escape_char, text)


class OneLineFormatter(logging.Formatter):
    """One input, one line: a record's message is always a single line, however many line breaks
    the text from outside in it holds (a query string, a request body, a paper title), so nobody
    can forge a log line. A traceback follows on lines of its own, each starting with ``  | ``,
    so none of them can pass for a record either."""

    def format(self, record: logging.LogRecord) -> str:
        record.message = record.getMessage()
        if self.usesTime():
            record.asctime = self.formatTime(record, self.datefmt)
        line = one_line(self.formatMessage(record))
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        blocks = [record.exc_text or "", self.formatStack(record.stack_info) if record.stack_info else ""]
        for block in blocks:
            line += "".join("\n" + CONTINUATION + one_line(part) for part in block.splitlines() if part)
        return line


class RedactSecrets(logging.Filter):
    """Replaces secrets in a record's message and arguments before any handler sees it."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self._secrets = sorted({s for s in secrets if len(s) >= 6}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return _TOKEN_SHAPES.sub(REDACTED, text)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        redacted = self.redact(message)
        if redacted != message or record.args:
            record.msg, record.args = redacted, None
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        return True


def configure_logging(level: str, secrets: Iterable[str], *, stream: IO[str] | None = None) -> None:
    """Log to stderr (or ``stream``), one line per record, with secrets redacted on every handler."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(OneLineFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactSecrets(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # slack_sdk logs every connection retry at INFO: the supervisor already logs one line per attempt.
    for noisy in ("httpx", "httpcore", "aiosqlite", "apscheduler.executors.default", "slack_sdk.web",
                  "slack_sdk.socket_mode", "alembic.runtime.plugins"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
