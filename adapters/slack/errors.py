"""Slack Web API errors in neutral terms (:class:`adapters.base.FailureKind`).

Only Slack's error code is kept (``SendError.detail``); a token or a message
body never reaches a log line or an exception message.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from adapters.base import FailureKind, SendError

NOT_IN_CHANNEL_CODES = frozenset({"not_in_channel"})
TARGET_GONE_CODES = frozenset({"channel_not_found", "is_archived"})
# The token is refused for good (Paperboy does not rotate tokens, so an expired one is gone too):
# sends disable the workspace, auth.test refuses requests, a connection stops.
INSTALL_GONE_CODES = frozenset({"invalid_auth", "token_revoked", "account_inactive", "not_authed", "token_expired"})
DMS_CLOSED_CODES = frozenset({"cannot_dm_bot", "user_not_found", "user_disabled", "user_not_visible"})
FORBIDDEN_CODES = frozenset({"restricted_action"})      # this channel does not let the bot post
# The app itself is set up wrong (a scope missing from the manifest, the wrong kind of token): every
# send fails alike, so nobody's post or alerts are paused; the operator is told in the log.
MISCONFIGURED_CODES = frozenset({"missing_scope", "not_allowed_token_type", "no_permission", "ekm_access_denied",
                                 "team_access_not_granted"})
RATE_LIMITED_CODES = frozenset({"ratelimited", "rate_limited"})

DEFAULT_RETRY_AFTER = 30.0


def retry_after_seconds(headers: Mapping[str, Any] | None) -> float | None:
    """The ``Retry-After`` header in seconds (slack_sdk gives header values as lists)."""
    if not headers:
        return None
    for key, value in headers.items():
        if key.lower() == "retry-after":
            raw = value[0] if isinstance(value, (list, tuple)) and value else value
            try:
                return max(0.0, float(raw))
            except (TypeError, ValueError):
                return None
    return None


def failure_kind(code: str, *, to_user: bool = False) -> FailureKind:
    """Which :class:`FailureKind` a Slack error code means for a send."""
    if code in RATE_LIMITED_CODES:
        return FailureKind.RATE_LIMITED
    if code in NOT_IN_CHANNEL_CODES:
        return FailureKind.NOT_IN_CHANNEL
    if code in TARGET_GONE_CODES:
        return FailureKind.DMS_CLOSED if to_user else FailureKind.TARGET_GONE
    if code in INSTALL_GONE_CODES:
        return FailureKind.INSTALL_GONE
    if code in DMS_CLOSED_CODES:
        return FailureKind.DMS_CLOSED if to_user else FailureKind.TARGET_GONE
    if code in FORBIDDEN_CODES:
        return FailureKind.FORBIDDEN
    if code in MISCONFIGURED_CODES:
        return FailureKind.MISCONFIGURED
    return FailureKind.TRANSIENT


def send_error(code: str, *, status: int | None = None, headers: Mapping[str, Any] | None = None,
               to_user: bool = False) -> SendError:
    """A :class:`SendError` for a Slack answer (``status`` 429 always means rate limited)."""
    kind = FailureKind.RATE_LIMITED if status == 429 else failure_kind(code, to_user=to_user)
    retry_after = None
    if kind is FailureKind.RATE_LIMITED:
        retry_after = retry_after_seconds(headers)
        if retry_after is None:
            retry_after = DEFAULT_RETRY_AFTER
    return SendError(kind, code or (f"http_{status}" if status else "unknown_error"), retry_after=retry_after)

