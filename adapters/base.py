"""What every platform adapter offers, and how sending can fail.

An adapter is composed with the core, never derived from it: it is handed the
core, translates platform events into :class:`bot.models.CommandContext` plus
command text, and renders :class:`bot.models.Reply` back. Scheduled delivery
uses only :meth:`Adapter.send_to_channel` and :meth:`Adapter.send_to_user`,
addressed by plain stored references.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from bot.models import ChannelRef, Reply, UserRef
from bot.supervision import Connection


class FailureKind(enum.Enum):
    """Why a send failed, in platform-neutral terms the scheduler acts on."""

    RATE_LIMITED = "rate_limited"        # try again after ``retry_after`` seconds
    TARGET_GONE = "target_gone"          # channel deleted/archived/unknown: pause this subscription
    NOT_IN_CHANNEL = "not_in_channel"    # bot must be invited: pause and tell whoever set it up
    FORBIDDEN = "forbidden"              # missing permissions: pause and tell whoever set it up
    DMS_CLOSED = "dms_closed"            # the user does not accept DMs: pause their alerts
    INSTALL_GONE = "install_gone"        # token revoked / uninstalled: disable the workspace
    MISCONFIGURED = "misconfigured"      # the app lacks a scope or uses the wrong token: tell the operator,
                                         # pause nobody (every send would fail the same way), retry later
    UNKNOWN_OUTCOME = "unknown_outcome"  # the request may have been accepted (a timeout or a dropped connection
                                         # after it was written): look before sending again
    TRANSIENT = "transient"              # anything else; retry a bounded number of times


class SendError(Exception):
    """A send that did not go through; ``kind`` says what to do about it.

    ``detail`` is the platform's error code (never a token or a payload).

    ``target_only`` (rate limits): only this channel or person is limited, not the workspace
    (Slack's posting limit is per channel; its workspace limit and Discord's global one are not).
    """

    def __init__(self, kind: FailureKind, detail: str = "", retry_after: float | None = None, *,
                 target_only: bool = False) -> None:
        super().__init__(f"{kind.value}: {detail}" if detail else kind.value)
        self.kind = kind
        self.detail = detail
        self.retry_after = retry_after
        self.target_only = target_only


class HistoryUnavailable(Exception):
    """The platform cannot be asked whether a message went out (e.g. the history scopes were not granted)."""


NONCE_PREFIX = "paperboy:"


@dataclass(frozen=True, slots=True)
class DeliveryKey:
    """One scheduled delivery, the same over every attempt, pass and process.

    ``not_before``: the message cannot have been posted earlier (the delivery's due time), which
    bounds how far back a platform's history is searched for it.
    """

    delivery_id: int
    not_before: datetime

    @property
    def nonce(self) -> str:
        """Discord's message nonce for this delivery (Discord allows at most 25 characters)."""
        return f"{NONCE_PREFIX}{self.delivery_id}"


@dataclass(frozen=True, slots=True)
class SentMessage:
    """Where a message landed: the platform's ids, for logs and tests."""

    channel: str
    message_id: str


@runtime_checkable
class Adapter(Protocol):
    """A platform connection: lifecycle plus addressed sends."""

    platform: str

    async def start(self) -> None:
        """Connect and begin handling events; returns once running."""

    async def start_sending(self) -> None:
        """Prepare to send only (a one-shot delivery pass): no listener, no event connection."""

    async def stop(self) -> None:
        """Disconnect and release resources."""

    async def send_to_channel(self, channel: ChannelRef, reply: Reply, *, key: DeliveryKey | None = None) -> SentMessage:
        """Post ``reply`` in a channel; raises :class:`SendError`. ``key`` marks a scheduled delivery
        (Discord nonce, Slack message metadata) so a repeat can be recognised."""

    async def send_to_user(self, user: UserRef, reply: Reply, *, key: DeliveryKey | None = None) -> SentMessage:
        """Send ``reply`` as a direct message; raises :class:`SendError`."""

    async def find_delivery(self, target: ChannelRef | UserRef, key: DeliveryKey) -> SentMessage | None:
        """The message of ``key`` if it already reached ``target``, else None (send it).

        Raises :class:`HistoryUnavailable` when the platform cannot be asked (the caller then
        sends anyway) and :class:`SendError` when asking failed for now (the caller must not send).
        """


@runtime_checkable
class SupervisedAdapter(Protocol):
    """An adapter whose long-lived connections ``paperboy run`` hands to its supervisor.

    Constructing the adapter is its set-up step and touches no network; :meth:`connections`
    returns the :class:`bot.supervision.Connection` objects to keep up (each connects in its
    ``run``). :meth:`Adapter.stop` then releases what sending holds.
    """

    def connections(self) -> list[Connection]: ...


class StartStopConnection:
    """An adapter without :meth:`SupervisedAdapter.connections`, supervised through ``start``/``stop``:
    connected once ``start()`` returns, held until cancelled, then ``stop()``. A ``start()`` that
    raises is tried again on the same adapter."""

    def __init__(self, adapter: Adapter) -> None:
        self.adapter = adapter
        self.name = adapter.platform

    async def run(self, connected: Callable[[], None]) -> None:
        await self.adapter.start()
        try:
            connected()
            await asyncio.Event().wait()
        finally:
            await asyncio.shield(self.adapter.stop())


def connections_of(adapter: Any) -> list[Connection]:
    """The connections that keep ``adapter`` up."""
    if isinstance(adapter, SupervisedAdapter):
        return list(adapter.connections())
    return [StartStopConnection(adapter)]


class AdapterRegistry:
    """The running adapters by platform name, for scheduled sends."""

    def __init__(self) -> None:
        self._adapters: dict[str, Adapter] = {}

    def add(self, adapter: Adapter) -> None:
        self._adapters[adapter.platform] = adapter

    def get(self, platform: str) -> Adapter | None:
        return self._adapters.get(platform)

    def __contains__(self, platform: object) -> bool:
        return platform in self._adapters

    def __iter__(self):
        return iter(list(self._adapters.values()))

    def platforms(self) -> list[str]:
        return sorted(self._adapters)
