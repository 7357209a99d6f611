"""One input, one log line: text from outside cannot forge a log record.

``GET /slack/oauth_redirect?error=x%0A<timestamp> ERROR ... FORGED`` (unauthenticated) reaches
the log through the install-failure callback; slack-bolt's OAuth flow also puts the ``code``
query value in a warning. Whatever the message, the formatter of ``configure_logging`` keeps a
record on one line, and traceback lines start with ``  | ``.
"""

from __future__ import annotations

import asyncio
import io
import logging
import re
from collections.abc import Iterator

import aiohttp
import pytest

from adapters.slack import SlackAdapter
from bot.app import build_app
from bot.logs import CONTINUATION, configure_logging, one_line
from tests.conftest import make_settings
from tests.fakes.slack_api import FakeSlackApi

FORGED = "\n2026-11-23 19:00:00,000 ERROR paperboy: FORGED admin password reset\r\n"
RECORD_START = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) ")


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    """The process's logging as ``paperboy run`` sets it up, written to a buffer; restored afterwards."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    stream = io.StringIO()
    configure_logging("INFO", ["secret-value-123"], stream=stream)
    try:
        yield stream
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)


def records(stream: io.StringIO) -> list[str]:
    lines = stream.getvalue().splitlines()
    assert all(RECORD_START.match(line) or line.startswith(CONTINUATION) for line in lines), lines
    return [line for line in lines if RECORD_START.match(line)]


def test_a_message_with_line_breaks_is_one_line(log_stream: io.StringIO) -> None:
    logging.getLogger("paperboy.test").warning("topic %s refused", "x" + FORGED + "\x1b[2J\u2028\x85")
    [line] = log_stream.getvalue().splitlines()
    assert "FORGED" in line and "\\n2026-11-23" in line and "\\x1b[2J\\u2028\\x85" in line


def test_a_traceback_stays_under_its_record(log_stream: io.StringIO) -> None:
    try:
        raise ValueError("bad input" + FORGED)
    except ValueError:
        logging.getLogger("paperboy.test").exception("failed on %r", "y" + FORGED)
    lines = log_stream.getvalue().splitlines()
    assert len(records(log_stream)) == 1 and len(lines) > 2
    assert all(line.startswith(CONTINUATION) for line in lines[1:])


def test_secrets_are_still_redacted(log_stream: io.StringIO) -> None:
    logging.getLogger("paperboy.test").info("token secret-value-123 and xoxb-1234567890-abcdef\nnext")
    [line] = log_stream.getvalue().splitlines()
    assert "secret-value-123" not in line and "xoxb-" not in line and "\\nnext" in line


def test_one_line() -> None:
    assert one_line("a\r\nb\tc\x00\u2029") == "a\\r\\nb\\tc\\x00\\u2029"
    assert one_line("Generalización — ok") == "Generalización — ok"


async def test_a_forged_oauth_error_is_one_record(log_stream: io.StringIO, sqlite_url: str) -> None:
    async with FakeSlackApi() as slack:
        settings = make_settings(DATABASE_URL=sqlite_url, PAPERBOY_OFFLINE_SAMPLE=False, SLACK_API_URL=slack.url,
                                 SLACK_SIGNING_SECRET="s" * 12, SLACK_CLIENT_ID="1.2", SLACK_CLIENT_SECRET="c" * 12)
        app = await asyncio.to_thread(build_app, settings)
        adapter = SlackAdapter(settings, app.core, app.storage, host="127.0.0.1", port=0)
        await adapter.start()
        try:
            async with aiohttp.ClientSession() as http:
                url = f"http://127.0.0.1:{adapter.http_port}/slack/oauth_redirect"
                for params in ({"error": "x" + FORGED}, {"code": "c" + FORGED, "state": "s" + FORGED}):
                    async with http.get(url, params=params) as response:
                        assert response.status in (200, 400)
        finally:
            await adapter.stop()
            await app.close()
    forged = [line for line in records(log_stream) if "FORGED" in line]
    assert forged and all(not line.startswith("2026-11-23 19:00:00,000") for line in forged)
    assert not [line for line in log_stream.getvalue().splitlines() if line.startswith("2026-11-23 19:00:00")]
