"""Discord send failures in the scheduler's neutral terms (:class:`adapters.base.FailureKind`)."""

from __future__ import annotations

import asyncio

import aiohttp
import discord

from adapters.base import FailureKind, SendError

DMS_CLOSED = 50007          # Cannot send messages to this user
UNKNOWN_CHANNEL = 10003
UNKNOWN_GUILD = 10004
UNKNOWN_USER = 10013
MISSING_ACCESS = 50001      # the bot cannot see the channel (or left the server)
MISSING_PERMISSIONS = 50013

CODES = {
    DMS_CLOSED: FailureKind.DMS_CLOSED,
    UNKNOWN_CHANNEL: FailureKind.TARGET_GONE,
    UNKNOWN_GUILD: FailureKind.TARGET_GONE,
    UNKNOWN_USER: FailureKind.TARGET_GONE,
    MISSING_ACCESS: FailureKind.FORBIDDEN,
    MISSING_PERMISSIONS: FailureKind.FORBIDDEN,
}


def _retry_after(exc: discord.HTTPException) -> float | None:
    headers = getattr(exc.response, "headers", None) or {}
    for name in ("Retry-After", "X-RateLimit-Reset-After"):
        try:
            return float(headers[name])
        except (KeyError, TypeError, ValueError):
            continue
    return None


def send_error(exc: BaseException) -> SendError:
    """What a failed send means; ``detail`` is Discord's error code, never a token or a body."""
    if isinstance(exc, discord.RateLimited):   # longer than we agreed to wait (max_ratelimit_timeout)
        return SendError(FailureKind.RATE_LIMITED, "rate limited", retry_after=exc.retry_after)
    if isinstance(exc, discord.HTTPException):
        detail = f"{exc.code}" if exc.code else f"http {exc.status}"
        if exc.code in CODES:
            return SendError(CODES[exc.code], detail)
        if exc.status == 429:                   # discord.py's own retries ran out (or no Via header)
            return SendError(FailureKind.RATE_LIMITED, detail, retry_after=_retry_after(exc))
        if exc.status == 401:
            return SendError(FailureKind.INSTALL_GONE, detail)
        if exc.status == 403:
            return SendError(FailureKind.FORBIDDEN, detail)
        if exc.status == 404:
            return SendError(FailureKind.TARGET_GONE, detail)
        return SendError(FailureKind.TRANSIENT, detail)
    if isinstance(exc, (aiohttp.ClientError, OSError, asyncio.TimeoutError)):
        return SendError(FailureKind.TRANSIENT, type(exc).__name__)
    return SendError(FailureKind.TRANSIENT, type(exc).__name__)
