"""Supervision of long-lived connections: start each on its own, restart it, report its state.

A *connection* is anything that must stay up for the process to be useful: a
platform's event socket (Slack Socket Mode, the Discord gateway), a listener,
the delivery scheduler. It is an object with a ``name`` and::

    async def run(self, connected: Callable[[], None]) -> None

``run`` connects, calls ``connected()`` once it really is connected, and returns
or raises when the connection ends. The :class:`Supervisor` runs every
connection in its own task, so one platform being down never holds up another
or the scheduler, and restarts a connection that ended with capped exponential
backoff plus jitter. Each failed attempt is one log line (what went wrong and
when the next try is); the full traceback is logged once per connection, at
DEBUG. A connection that raises :class:`CredentialsRejected` is not retried:
one line names the setting to fix and the connection stays stopped.

The state of every connection (connecting, connected, backing off, stopped;
since when; the last error) is what ``/healthz``, ``paperboy status`` and the
metrics report. Cancelling :meth:`Supervisor.run` or calling
:meth:`Supervisor.stop` stops everything promptly.

This module is platform-neutral: it imports no platform SDK.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from bot.schedule import utcnow

log = logging.getLogger(__name__)

INITIAL_DELAY_SECONDS = 1.0
MAX_DELAY_SECONDS = 60.0
STABLE_AFTER_SECONDS = 60.0   # a connection up this long starts its backoff from the beginning again


class CredentialsRejected(Exception):
    """The remote service refused a credential: retrying cannot help until the setting is fixed.

    ``setting`` is the name of the setting to fix (``"SLACK_BOT_TOKEN"``, ``"DISCORD_TOKEN"``);
    ``detail`` is the service's own reason (an error code, never the secret).
    """

    def __init__(self, setting: str, detail: str = "") -> None:
        self.setting = setting
        self.detail = detail
        super().__init__(f"{setting} was rejected" + (f" ({detail})" if detail else ""))


class Connection(Protocol):
    """Something long-lived the supervisor keeps up."""

    name: str

    async def run(self, connected: Callable[[], None]) -> None:
        """Connect, call ``connected()`` once connected, return or raise when the connection ends."""


class ConnectionState(enum.Enum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    BACKING_OFF = "backing off"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class ConnectionStatus:
    """One connection's state, as health checks and metrics see it."""

    name: str
    state: ConnectionState
    since: datetime                        # connected: since when; otherwise: down since when
    last_error: str | None = None
    failures: int = 0                      # consecutive failed attempts
    retry_at: datetime | None = None       # when backing off: the next attempt
    rejected_setting: str | None = None    # stopped because this setting was rejected

    @property
    def up(self) -> bool:
        return self.state is ConnectionState.CONNECTED

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"state": self.state.value, "since": self.since.isoformat(timespec="seconds")}
        if self.last_error:
            out["last_error"] = self.last_error
        if self.failures:
            out["failures"] = self.failures
        if self.retry_at is not None:
            out["retry_at"] = self.retry_at.isoformat(timespec="seconds")
        if self.rejected_setting:
            out["rejected_setting"] = self.rejected_setting
        return out


def describe(exc: BaseException) -> str:
    """A one-line cause: the exception's type and first line of its message."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    name = type(exc).__name__
    return f"{name}: {text}" if text and text != name else name


class Backoff:
    """Capped exponential delays with jitter: ``initial * 2**n``, at most ``cap``, times 0.5-1.0."""

    def __init__(self, *, initial: float = INITIAL_DELAY_SECONDS, cap: float = MAX_DELAY_SECONDS,
                 rng: Callable[[], float] = random.random) -> None:
        self.initial = initial
        self.cap = cap
        self._rng = rng

    def delay(self, failures: int) -> float:
        """The wait after the ``failures``-th consecutive failure (1 = the first)."""
        base = min(self.cap, self.initial * 2 ** max(0, failures - 1))
        return base * (0.5 + self._rng() / 2)


StatusListener = Callable[[ConnectionStatus], None]


class Supervisor:
    """Runs named connections, each independently, restarting them until stopped."""

    def __init__(self, *, backoff: Backoff | None = None, stable_after: float = STABLE_AFTER_SECONDS,
                 clock: Callable[[], datetime] = utcnow, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.backoff = backoff or Backoff()
        self.stable_after = stable_after
        self._clock = clock
        self._monotonic = monotonic
        self._connections: dict[str, Connection] = {}
        self._status: dict[str, ConnectionStatus] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._listeners: list[StatusListener] = []
        self._changed: asyncio.Event | None = None
        self._traced: set[str] = set()

    # --- set-up --------------------------------------------------------------------------------

    def add(self, connection: Connection) -> None:
        """Register a connection (before :meth:`run`); names must be unique."""
        if connection.name in self._connections:
            raise ValueError(f"connection {connection.name!r} added twice")
        self._connections[connection.name] = connection
        self._status[connection.name] = ConnectionStatus(connection.name, ConnectionState.CONNECTING, self._clock())

    def on_change(self, listener: StatusListener) -> None:
        """Call ``listener`` with the new status whenever a connection's state changes."""
        self._listeners.append(listener)

    # --- what health checks read ---------------------------------------------------------------

    @property
    def names(self) -> list[str]:
        return list(self._connections)

    def statuses(self) -> list[ConnectionStatus]:
        """Every connection's status, in the order they were added."""
        return [self._status[name] for name in self._connections]

    def status(self, name: str) -> ConnectionStatus:
        return self._status[name]

    def healthy(self) -> bool:
        """True when every connection is connected."""
        return all(status.up for status in self._status.values())

    async def wait_for(self, predicate: Callable[[Supervisor], bool], timeout: float | None = None) -> None:
        """Wait until ``predicate(self)`` holds (re-checked at every state change)."""
        async with asyncio.timeout(timeout):
            while not predicate(self):
                changed = self._changed_event()
                changed.clear()
                await changed.wait()

    # --- running -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Run every connection until each has stopped for good, or until cancelled (which stops all)."""
        for name, connection in self._connections.items():
            if name not in self._tasks:
                self._tasks[name] = asyncio.create_task(self._keep_up(connection), name=f"supervise:{name}")
        try:
            await asyncio.gather(*self._tasks.values())
        except asyncio.CancelledError:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop every connection, the last added first (so the scheduler, added last, finishes its pass
        while the platforms it sends through are still up). Each connection bounds its own stop."""
        for name in reversed(list(self._tasks)):
            task = self._tasks[name]
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            self._set(name, ConnectionState.STOPPED, keep_error=True)

    async def _keep_up(self, connection: Connection) -> None:
        name = connection.name
        failures = 0
        while True:
            self._set(name, ConnectionState.CONNECTING, keep_error=True, failures=failures)
            started = self._monotonic()
            was_connected = False

            def connected() -> None:
                nonlocal was_connected
                was_connected = True
                self._set(name, ConnectionState.CONNECTED, failures=0)

            try:
                await connection.run(connected)
            except asyncio.CancelledError:
                raise
            except CredentialsRejected as exc:
                log.error("%s: %s rejected by the service (%s); fix that setting and restart Paperboy. "
                          "%s stays stopped.", name, exc.setting, exc.detail or "no reason given", name)
                self._set(name, ConnectionState.STOPPED, error=str(exc), rejected_setting=exc.setting)
                return
            except Exception as exc:  # noqa: BLE001 - every failure is retried; the cause is logged
                cause = describe(exc)
                if name not in self._traced:
                    self._traced.add(name)
                    log.debug("%s failed; full traceback (logged once)", name, exc_info=exc)
            else:
                cause = "connection ended"
            up_long_enough = was_connected and self._monotonic() - started >= self.stable_after
            failures = 1 if up_long_enough else failures + 1
            delay = self.backoff.delay(failures)
            log.warning("%s: %s; next try in %s s", name, cause, f"{delay:.1f}" if delay < 10 else f"{delay:.0f}")
            retry_at = self._clock() + timedelta(seconds=delay)
            self._set(name, ConnectionState.BACKING_OFF, error=cause, failures=failures, retry_at=retry_at)
            await asyncio.sleep(delay)

    # --- state ---------------------------------------------------------------------------------

    def _changed_event(self) -> asyncio.Event:
        if self._changed is None:
            self._changed = asyncio.Event()
        return self._changed

    def _set(self, name: str, state: ConnectionState, *, error: str | None = None, keep_error: bool = False,
             failures: int | None = None, retry_at: datetime | None = None,
             rejected_setting: str | None = None) -> None:
        """Record a state; ``since`` moves only when the connection goes up, goes down or stops."""
        old = self._status[name]
        if old.rejected_setting:
            return   # a rejected connection keeps saying why it stopped
        same_period = (old.up == (state is ConnectionState.CONNECTED)
                       and (state is ConnectionState.STOPPED) == (old.state is ConnectionState.STOPPED))
        new = ConnectionStatus(
            name, state,
            since=old.since if same_period else self._clock(),
            last_error=error if error is not None else (old.last_error if keep_error else None),
            failures=old.failures if failures is None else failures,
            retry_at=retry_at,
            rejected_setting=rejected_setting,
        )
        if new == old:
            return
        self._status[name] = new
        for listener in self._listeners:
            try:
                listener(new)
            except Exception:  # noqa: BLE001 - a broken listener must not stop supervision
                log.exception("connection state listener failed")
        if self._changed is not None:
            self._changed.set()

