"""Slack's HTTP requests checked before anything in them is read.

Slack signs every request it sends (api.slack.com, "Verifying requests from Slack"):
``X-Slack-Signature`` is ``v0=`` + the hex HMAC-SHA256, keyed with the signing secret, of
``v0:<X-Slack-Request-Timestamp>:<raw body bytes>``; a timestamp more than five minutes
from now is refused. :func:`check_signature` computes that over the raw bytes, so no body is
decoded, parsed or logged before it is known to come from Slack; slack-bolt's own check
decodes the body as UTF-8 first, parses it in ``AsyncBoltRequest`` first, and logs unsigned
bodies at INFO. :func:`check_body` then refuses a signed body bolt could not read (not UTF-8,
a ``payload`` that is not a JSON object) with 400 instead of a 500 and a traceback.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from urllib.parse import parse_qsl

MAX_CLOCK_SKEW_SECONDS = 300
_MAX_TIMESTAMP_DIGITS = 12


def check_signature(secret: str, body: bytes, headers: Mapping[str, str], *, now: float | None = None) -> str | None:
    """None when ``body`` and ``headers`` carry Slack's valid signature; otherwise why not (for the log)."""
    timestamp = headers.get("X-Slack-Request-Timestamp") or ""
    signature = headers.get("X-Slack-Signature") or ""
    if not timestamp or not signature:
        return "unsigned"
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= _MAX_TIMESTAMP_DIGITS):
        return "malformed timestamp"
    if abs((time.time() if now is None else now) - int(timestamp)) > MAX_CLOCK_SKEW_SECONDS:
        return "stale timestamp"
    digest = hmac.new(secret.encode(), b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(("v0=" + digest).encode(), signature.encode("utf-8", "replace")):
        return "bad signature"
    return None


def check_body(body: bytes, content_type: str) -> str | None:
    """None when slack-bolt can read this (signed) body; otherwise why not."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return "body is not UTF-8"
    try:
        if content_type == "application/json":
            parsed = json.loads(text) if text else {}
            return None if isinstance(parsed, dict) else "JSON body is not an object"
        form = dict(parse_qsl(text, keep_blank_values=True))
        if "payload" in form:
            payload = json.loads(form["payload"])
            return None if isinstance(payload, dict) else "payload is not a JSON object"
    except ValueError:               # json.JSONDecodeError, and parse_qsl's own complaints
        return "body is not valid JSON"
    return None
