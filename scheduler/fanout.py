"""Sending many messages at once: bounded concurrency, rate-limit gates, bounded retries.

A 429 (``FailureKind.RATE_LIMITED``) closes a gate for ``retry_after``
seconds, then the send is retried (at most ``max_rate_limited`` times). Which
gate depends on what the platform limited: a 429 that concerns one channel or
person only (``SendError.target_only``: Slack's posting limit is per channel)
closes that *target's* gate, so the rest of its workspace keeps sending; any
other 429 closes the gate of the *scope* -- the platform and workspace, where
Slack's workspace-wide limit and Discord's global one apply. Several targets of
one workspace limited at once (:data:`WORKSPACE_SIGNAL`) is Slack limiting the
workspace, and closes the workspace gate too.

Transient failures and unknown outcomes (a timeout: the platform may have
taken the message) are retried a few times with a short backoff; the caller's
``attempt`` decides what a retry after an unknown outcome does (look before
sending again). Any other failure is returned at once, so the caller can pause
that target. A failing or slow target only ever holds one of the
``concurrency`` workers, and one workspace at most ``per_scope`` of them
(:func:`fan_out`); all other targets keep flowing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

from adapters.base import FailureKind, SendError

log = logging.getLogger(__name__)

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]

DEFAULT_RETRY_AFTER = 1.0
MAX_RETRY_AFTER = 300.0
WORKSPACE_SIGNAL = 3   # targets of one workspace limited at the same time: the workspace itself is limited


class RateGates:
    """Per-scope and per-target "closed until" instants set by 429 answers."""

    def __init__(self, *, sleep: Sleep = asyncio.sleep, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._closed_until: dict[Hashable, float] = {}
        self._limited_targets: dict[Hashable, dict[Hashable, float]] = {}   # scope -> target -> until
        self._sleep = sleep
        self._monotonic = monotonic

    def close(self, scope: Hashable, seconds: float) -> None:
        until = self._monotonic() + seconds
        if until > self._closed_until.get(scope, 0.0):
            self._closed_until[scope] = until

    def close_target(self, scope: Hashable, target: Hashable, seconds: float) -> None:
        """Close one target's gate; with :data:`WORKSPACE_SIGNAL` targets closed at once, the scope's too."""
        now = self._monotonic()
        self.close((scope, target), seconds)
        limited = self._limited_targets.setdefault(scope, {})
        limited[target] = now + seconds
        for other, until in list(limited.items()):
            if until <= now:
                del limited[other]
        if len(limited) >= WORKSPACE_SIGNAL:
            self.close(scope, min(limited.values()) - now)

    def closed_for(self, key: Hashable) -> float:
        """Seconds until the gate of ``key`` opens (0 when open)."""
        return max(0.0, self._closed_until.get(key, 0.0) - self._monotonic())

    async def wait(self, *keys: Hashable) -> float:
        """Wait while any gate of ``keys`` is closed; returns the seconds waited."""
        waited = 0.0
        while True:
            remaining = max((self._closed_until.get(key, 0.0) for key in keys), default=0.0) - self._monotonic()
            if remaining <= 0:
                for key in keys:
                    until = self._closed_until.get(key)
                    if until is not None and until <= self._monotonic():
                        del self._closed_until[key]
                return waited
            await self._sleep(remaining)
            waited += remaining


@dataclass(frozen=True, slots=True)
class SendResult(Generic[T]):
    """How one send ended: its value, or the error that stopped it."""

    value: T | None
    error: SendError | None
    attempts: int
    rate_limited: int

    @property
    def ok(self) -> bool:
        return self.error is None


class Sender:
    """Sends with the gate, retry and timeout rules above."""

    def __init__(self, *, gates: RateGates | None = None, max_rate_limited: int = 10, max_transient: int = 3,
                 transient_backoff: float = 0.5, timeout: float = 60.0, sleep: Sleep = asyncio.sleep) -> None:
        self.gates = gates or RateGates(sleep=sleep)
        self.max_rate_limited = max_rate_limited
        self.max_transient = max_transient
        self.transient_backoff = transient_backoff
        self.timeout = timeout
        self._sleep = sleep
        self.rate_limited_total = 0

    async def send(self, scope: Hashable, attempt: Callable[[], Awaitable[T]], *,
                   target: Hashable | None = None) -> SendResult[T]:
        """Call ``attempt`` until it succeeds, fails for good, or runs out of retries.

        ``target`` (a channel or person) has its own gate besides the scope's, for 429s that
        concern it alone.
        """
        rate_limited = transient = attempts = 0
        gates = (scope,) if target is None else (scope, (scope, target))
        while True:
            await self.gates.wait(*gates)
            attempts += 1
            try:
                async with asyncio.timeout(self.timeout):  # unlike wait_for, no extra task per send
                    value = await attempt()
                return SendResult(value, None, attempts, rate_limited)
            except SendError as exc:
                error = exc
            except asyncio.TimeoutError:   # the request may have reached the platform
                error = SendError(FailureKind.UNKNOWN_OUTCOME, "timed out")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - an adapter bug must not stop the fan-out
                log.exception("send to %s raised", scope)
                error = SendError(FailureKind.TRANSIENT, type(exc).__name__)
            if error.kind is FailureKind.RATE_LIMITED:
                rate_limited += 1
                self.rate_limited_total += 1
                if rate_limited >= self.max_rate_limited:
                    return SendResult(None, error, attempts, rate_limited)
                wait = error.retry_after if error.retry_after is not None else DEFAULT_RETRY_AFTER
                wait = min(max(wait, 0.0), MAX_RETRY_AFTER)
                if error.target_only and target is not None:
                    self.gates.close_target(scope, target, wait)
                else:
                    self.gates.close(scope, wait)
                continue
            if error.kind in (FailureKind.TRANSIENT, FailureKind.UNKNOWN_OUTCOME):
                transient += 1
                if transient >= self.max_transient:
                    return SendResult(None, error, attempts, rate_limited)
                await self._sleep(self.transient_backoff * 2 ** (transient - 1))
                continue
            return SendResult(None, error, attempts, rate_limited)


async def fan_out(items: AsyncIterator[T], handle: Callable[[T], Awaitable[None]], *, concurrency: int,
                  scope_of: Callable[[T], Hashable] | None = None, per_scope: int | None = None,
                  max_parked: int | None = None) -> None:
    """Run ``handle`` over ``items`` with at most ``concurrency`` at a time.

    Items are pulled from ``items`` only as workers free up (a bounded queue),
    so a producer that streams from the database never runs far ahead.

    With ``scope_of`` and ``per_scope``, at most ``per_scope`` workers handle
    items of one scope (a workspace) at once. Further items of a busy scope are
    parked and handled by that scope's own workers as they finish, so a scope
    whose rate-limit gate is closed holds ``per_scope`` workers, never all of
    them. At most ``max_parked`` items (default ``concurrency * 50``) wait
    parked; beyond that a worker handles the item itself, so memory stays bounded.

    ``handle`` must not raise; if it does, the error is logged and the
    remaining items still run.
    """
    queue: asyncio.Queue[T | None] = asyncio.Queue(maxsize=concurrency * 2)
    busy: dict[Hashable, int] = {}
    parked: dict[Hashable, deque[T]] = {}
    parked_limit = max_parked if max_parked is not None else concurrency * 50
    parked_count = 0

    async def run_one(item: T) -> None:
        try:
            await handle(item)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001
            log.exception("delivery handler failed")

    async def run_scope(scope: Hashable, item: T) -> None:
        """Handle ``item``, then whatever was parked for its scope meanwhile."""
        nonlocal parked_count
        busy[scope] = busy.get(scope, 0) + 1
        try:
            await run_one(item)
            while waiting := parked.get(scope):
                next_item = waiting.popleft()
                parked_count -= 1
                if not waiting:
                    del parked[scope]
                await run_one(next_item)
        finally:
            busy[scope] -= 1
            if not busy[scope]:
                del busy[scope]

    async def worker() -> None:
        nonlocal parked_count
        while True:
            item = await queue.get()
            if item is None:
                return
            if scope_of is None or per_scope is None:
                await run_one(item)
                continue
            scope = scope_of(item)
            if busy.get(scope, 0) >= per_scope and parked_count < parked_limit:
                parked.setdefault(scope, deque()).append(item)
                parked_count += 1
                continue
            await run_scope(scope, item)

    workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
    try:
        async for item in items:
            await queue.put(item)
        for _ in workers:
            await queue.put(None)
        await asyncio.gather(*workers)
    finally:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
