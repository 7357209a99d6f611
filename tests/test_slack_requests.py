"""Nothing from an HTTP request is read before Slack's signature on it is verified.

Signature scheme: api.slack.com "Verifying requests from Slack" (``v0=`` + HMAC-SHA256 of
``v0:<timestamp>:<raw body>``, five minutes of clock skew). Unsigned and signed hostile bodies
are posted to the real HTTP listener (aiohttp + slack-bolt) of a started adapter.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time

import pytest

from adapters.slack.requests import check_body, check_signature
from tests.test_slack_app import SECRET, Running, hf, running, slack, start_slack  # noqa: F401 - fixtures

MARKER = "HOSTILE-BODY-MARKER"

HOSTILE_BODIES: dict[str, tuple[bytes, str]] = {
    "invalid UTF-8": (b"command=%2Fpapers&text=" + MARKER.encode() + b"\xff\xfe\xc3(", "application/x-www-form-urlencoded"),
    "payload not JSON": (f"payload=%7Bnot-json{MARKER}".encode(), "application/x-www-form-urlencoded"),
    "payload a JSON list": (f"payload=%5B1%5D&x={MARKER}".encode(), "application/x-www-form-urlencoded"),
    "JSON body a list": (f'["{MARKER}"]'.encode(), "application/json"),
    "JSON body not JSON": (f"{{{MARKER}".encode(), "application/json"),
}


def sign(body: bytes, timestamp: str, secret: str = SECRET) -> str:
    return "v0=" + hmac.new(secret.encode(), b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256).hexdigest()


async def post(running: Running, body: bytes, headers: dict[str, str]) -> int:
    async with running.http.post(running.events_url, data=body, headers=headers) as response:
        await response.read()
        return response.status


def quiet_and_unlogged(caplog: pytest.LogCaptureFixture) -> None:
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert MARKER not in caplog.text
    assert all(len(r.getMessage()) < 300 for r in caplog.records)


@pytest.mark.parametrize("case", list(HOSTILE_BODIES))
@pytest.mark.parametrize("timestamp", ["now", "not-a-number", "1e9", "١٧٠٠٠٠٠٠٠٠", ""])
async def test_unsigned_hostile_bodies_get_401_unparsed_and_unlogged(
        running: Running, case: str, timestamp: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    body, content_type = HOSTILE_BODIES[case]
    stamp = str(int(time.time())) if timestamp == "now" else timestamp
    headers = {"Content-Type": content_type, "X-Slack-Request-Timestamp": stamp,
               "X-Slack-Signature": sign(body, stamp, "not-the-secret")}
    assert await post(running, body, headers) == 401
    quiet_and_unlogged(caplog)
    assert running.slack.calls == [] and running.hf.searches == []


@pytest.mark.parametrize("case", list(HOSTILE_BODIES))
async def test_signed_bodies_bolt_cannot_read_get_400_without_a_traceback(
        running: Running, case: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    body, content_type = HOSTILE_BODIES[case]
    stamp = str(int(time.time()))
    headers = {"Content-Type": content_type, "X-Slack-Request-Timestamp": stamp,
               "X-Slack-Signature": sign(body, stamp)}
    assert await post(running, body, headers) == 400
    quiet_and_unlogged(caplog)


async def test_a_large_unsigned_post_adds_one_short_line_to_the_log(running: Running,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    """slack-bolt logs the whole body of an unsigned request at INFO; here it is never read into a log."""
    caplog.set_level(logging.DEBUG)
    body = ("text=" + MARKER * 40_000).encode()            # about 760 KB, under aiohttp's 1 MB limit
    assert await post(running, body, {"Content-Type": "application/x-www-form-urlencoded"}) == 401
    quiet_and_unlogged(caplog)
    assert len(caplog.text) < 1000


async def test_a_signed_request_still_works(running: Running) -> None:
    from tests.test_slack_app import slash_body

    body = slash_body("help", running.slack).encode()
    stamp = str(int(time.time()))
    headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Slack-Request-Timestamp": stamp,
               "X-Slack-Signature": sign(body, stamp)}
    assert await post(running, body, headers) == 200
    await running.slack.wait_for("response:r1")


def test_check_signature_reasons() -> None:
    body, stamp = b"a=1", "1700000000"
    good = {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": sign(body, stamp)}
    assert check_signature(SECRET, body, good, now=1700000000) is None
    assert check_signature(SECRET, body, good, now=1700000000 + 301) == "stale timestamp"
    assert check_signature(SECRET, body + b"2", good, now=1700000000) == "bad signature"
    assert check_signature(SECRET, body, {}, now=0) == "unsigned"
    assert check_signature(SECRET, body, {**good, "X-Slack-Request-Timestamp": "1" * 40}, now=0) == \
        "malformed timestamp"
    assert check_signature(SECRET, body, {**good, "X-Slack-Signature": "v0=é"}, now=1700000000) == "bad signature"
    assert check_body(b'{"type": "event_callback"}', "application/json") is None
    assert check_body(b"payload=%7B%7D", "application/x-www-form-urlencoded") is None


@pytest.mark.parametrize("timestamp", ["abc", "1e9", "١٧٠٠٠٠٠٠٠٠", "-1", " 1700000000"])
async def test_a_correctly_signed_request_with_a_non_numeric_timestamp_gets_401(
        running: Running, timestamp: str, caplog: pytest.LogCaptureFixture) -> None:
    """slack_sdk's SignatureVerifier calls int() on the header (ValueError, a 500 through bolt)."""
    caplog.set_level(logging.DEBUG)
    body = f"text={MARKER}".encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Slack-Request-Timestamp": timestamp,
               "X-Slack-Signature": sign(body, timestamp)}
    assert await post(running, body, headers) == 401
    quiet_and_unlogged(caplog)
