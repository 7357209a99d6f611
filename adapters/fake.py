"""Adapters for tests and benchmarks: an in-memory one and one that posts over HTTP.

:class:`FakeAdapter` records every message in ``outbox`` and runs commands end
to end with the awaitable :meth:`FakeAdapter.inject` -- no threads, queues or
sleeps. Failures can be switched on per target (:meth:`FakeAdapter.fail`) or
for every send (:meth:`FakeAdapter.rate_limit_storm`), so the delivery code's
handling of each :class:`~adapters.base.FailureKind` can be tested.

:class:`HttpPlatformAdapter` sends each message as a small JSON document to a
fake platform API on loopback (``POST {base_url}/send``) with aiohttp (as
slack_sdk's ``AsyncWebClient`` does) and maps HTTP answers to :class:`~adapters.base.SendError` the way the Slack and
Discord adapters map theirs (429 + ``Retry-After`` -> ``RATE_LIMITED``).
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp

from adapters.base import DeliveryKey, FailureKind, HistoryUnavailable, SendError, SentMessage
from bot.models import ChannelRef, CommandContext, Reply, UserRef

if TYPE_CHECKING:
    from bot.core import Paperboy

Target = ChannelRef | UserRef


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """One message the fake adapter was asked to send (or a command's answer)."""

    target: Target
    reply: Reply
    via: str  # "channel", "dm" or "response"
    key: DeliveryKey | None = None


@dataclass
class _Failure:
    kind: FailureKind
    remaining: int | None  # None: fail forever
    retry_after: float | None = None
    detail: str = ""


def target_id(target: Target) -> str:
    return target.channel if isinstance(target, ChannelRef) else target.user


@dataclass
class FakeAdapter:
    """An adapter that keeps what it sends; failures are switched on per target id."""

    core: Paperboy | None = None
    platform: str = "fake"
    send_delay: float = 0.0
    outbox: list[OutboxItem] = field(default_factory=list)
    attempts: int = 0
    started: bool = False
    _failures: dict[str, _Failure] = field(default_factory=dict)
    _storm: _Failure | None = None
    _ids: Any = field(default_factory=lambda: itertools.count(1))
    on_send: Callable[[OutboxItem], Awaitable[None]] | None = None
    keeps_history: bool = True       # False: find_delivery raises HistoryUnavailable (a workspace without the scopes)
    lookups: int = 0

    async def start(self) -> None:
        self.started = True

    async def start_sending(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.started = False

    # --- switching failures ---

    def fail(self, target: str, kind: FailureKind, *, times: int | None = None, retry_after: float | None = None,
             detail: str = "") -> None:
        """Make sends to channel or user id ``target`` fail with ``kind`` (``times`` times, or always)."""
        self._failures[target] = _Failure(kind, times, retry_after, detail)

    def heal(self, target: str | None = None) -> None:
        """Stop failing sends to ``target`` (or to everyone)."""
        if target is None:
            self._failures.clear()
            self._storm = None
        else:
            self._failures.pop(target, None)

    def rate_limit_storm(self, times: int, *, retry_after: float = 0.01) -> None:
        """The next ``times`` sends, to anyone, are answered with a 429."""
        self._storm = _Failure(FailureKind.RATE_LIMITED, times, retry_after, "ratelimited")

    # --- sending ---

    def _maybe_fail(self, target: Target) -> None:
        for failure, key in ((self._storm, None), (self._failures.get(target_id(target)), target_id(target))):
            if failure is None:
                continue
            if failure.remaining is not None:
                if failure.remaining <= 0:
                    continue
                failure.remaining -= 1
            raise SendError(failure.kind, failure.detail or failure.kind.value, retry_after=failure.retry_after)

    async def _send(self, target: Target, reply: Reply, via: str, key: DeliveryKey | None = None) -> SentMessage:
        self.attempts += 1
        if self.send_delay:
            await asyncio.sleep(self.send_delay)
        self._maybe_fail(target)
        item = OutboxItem(target, reply, via, key)
        self.outbox.append(item)
        if self.on_send is not None:
            await self.on_send(item)
        return SentMessage(channel=target_id(target), message_id=str(next(self._ids)))

    async def send_to_channel(self, channel: ChannelRef, reply: Reply, *, key: DeliveryKey | None = None) -> SentMessage:
        return await self._send(channel, reply, "channel", key)

    async def send_to_user(self, user: UserRef, reply: Reply, *, key: DeliveryKey | None = None) -> SentMessage:
        return await self._send(user, reply, "dm", key)

    async def find_delivery(self, target: Target, key: DeliveryKey) -> SentMessage | None:
        """The outbox message sent to ``target`` with ``key`` (as a platform's history would show it)."""
        self.lookups += 1
        if not self.keeps_history:
            raise HistoryUnavailable("history switched off")
        for index, item in enumerate(self.outbox):
            if item.key is not None and item.key.delivery_id == key.delivery_id and item.target == target:
                return SentMessage(channel=target_id(target), message_id=str(index + 1))
        return None

    # --- commands end to end ---

    async def inject(self, text: str, *, user: str = "U1", channel: str | None = "C1", workspace: str = "W1",
                     user_timezone: str | None = None, can_manage_channel: bool = True) -> Reply:
        """Run ``text`` (a ``/papers`` command) through the core as this platform would; returns the answer."""
        if self.core is None:
            raise RuntimeError("FakeAdapter.inject needs the core")
        who = UserRef(self.platform, workspace, user)
        where = ChannelRef(self.platform, workspace, channel) if channel else None
        ctx = CommandContext(user=who, channel=where, user_timezone=user_timezone,
                             can_manage_channel=can_manage_channel)
        reply = await self.core.handle(ctx, text)
        self.outbox.append(OutboxItem(where or who, reply, "response"))
        return reply

    # --- reading the outbox ---

    def sent(self, via: str | None = None) -> list[OutboxItem]:
        return [item for item in self.outbox if via is None or item.via == via]

    def sent_to(self, target: str) -> list[OutboxItem]:
        """Messages delivered to channel or user id ``target`` (command answers excluded)."""
        return [item for item in self.outbox if item.via != "response" and target_id(item.target) == target]


def message_document(target: Target, reply: Reply, key: DeliveryKey | None = None) -> dict[str, Any]:
    """The JSON a fake platform receives: who, what kind, which papers under which headings, which delivery."""
    return {
        "key": key.delivery_id if key is not None else None,
        "platform": target.platform,
        "workspace": target.workspace,
        "target": target_id(target),
        "via": "channel" if isinstance(target, ChannelRef) else "dm",
        "kind": reply.kind.value,
        "title": reply.title,
        "day": reply.day.isoformat() if reply.day else None,
        "sections": [{"heading": s.heading, "papers": [p.paper.paper_id for p in s.papers]} for s in reply.sections],
    }


ERROR_KINDS = {"channel_not_found": FailureKind.TARGET_GONE, "not_in_channel": FailureKind.NOT_IN_CHANNEL,
               "forbidden": FailureKind.FORBIDDEN, "dms_closed": FailureKind.DMS_CLOSED,
               "invalid_auth": FailureKind.INSTALL_GONE}
JSON_HEADERS = {"Content-Type": "application/json"}


class HttpPlatformAdapter:
    """Posts messages to a fake platform API over HTTP (tests and benchmarks).

    One aiohttp ``ClientSession`` with a connection pool of ``concurrency``
    keep-alive connections, created at the first send (it needs the running
    event loop).
    """

    def __init__(self, base_url: str, *, platform: str = "fake", concurrency: int = 64,
                 timeout: float = 30.0) -> None:
        self.platform = platform
        self._url = base_url.rstrip("/") + "/send"
        self._concurrency = max(1, concurrency)
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._concurrency),
                timeout=aiohttp.ClientTimeout(total=self._timeout), trust_env=False)
        return self._session

    async def start(self) -> None:
        self._client()

    async def start_sending(self) -> None:
        self._client()

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _post(self, target: Target, reply: Reply, key: DeliveryKey | None) -> SentMessage:
        body = json.dumps(message_document(target, reply, key), separators=(",", ":")).encode()
        try:
            async with self._client().post(self._url, data=body, headers=JSON_HEADERS) as response:
                status = response.status
                payload = await response.read()
                retry_after = response.headers.get("Retry-After", "1")
                json_answer = response.content_type == "application/json"
        except aiohttp.ClientConnectorError as exc:   # never connected: nothing was sent
            raise SendError(FailureKind.TRANSIENT, type(exc).__name__) from exc
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:   # the request may have been taken
            raise SendError(FailureKind.UNKNOWN_OUTCOME, type(exc).__name__) from exc
        if status == 200:
            return SentMessage(channel=target_id(target), message_id=str(json.loads(payload).get("id", "")))
        if status == 429:
            scope = json.loads(payload).get("scope") if json_answer else None
            raise SendError(FailureKind.RATE_LIMITED, "ratelimited", retry_after=float(retry_after),
                            target_only=scope == "target")
        error = ""
        if json_answer:
            try:
                error = str(json.loads(payload).get("error", ""))
            except ValueError:
                error = ""
        raise SendError(ERROR_KINDS.get(error, FailureKind.TRANSIENT), error or str(status))

    async def send_to_channel(self, channel: ChannelRef, reply: Reply, *, key: DeliveryKey | None = None) -> SentMessage:
        return await self._post(channel, reply, key)

    async def send_to_user(self, user: UserRef, reply: Reply, *, key: DeliveryKey | None = None) -> SentMessage:
        return await self._post(user, reply, key)

    async def find_delivery(self, target: Target, key: DeliveryKey) -> SentMessage | None:
        """Ask the fake platform's history (``GET /history``) whether ``key`` reached ``target``."""
        params = {"workspace": target.workspace, "target": target_id(target), "key": str(key.delivery_id)}
        try:
            async with self._client().get(self._url.removesuffix("/send") + "/history", params=params) as response:
                status = response.status
                payload = await response.read()
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise SendError(FailureKind.TRANSIENT, type(exc).__name__) from exc
        if status != 200:
            raise SendError(FailureKind.RATE_LIMITED if status == 429 else FailureKind.TRANSIENT, str(status),
                            retry_after=1.0 if status == 429 else None)
        found = json.loads(payload).get("id")
        return SentMessage(channel=target_id(target), message_id=str(found)) if found else None
