"""Discord's long-lived gateway connection, in the shape the supervisor runs.

One :meth:`DiscordGateway.run` is one life of the connection: log in over REST
(and sync the slash commands, once per process), ask ``GET /gateway/bot`` for
the gateway URL, connect, call ``connected()`` when READY arrives, and return
or raise when the connection ends for good. The supervisor restarts it with
back-off; a token Discord rejects is not retried.

* **Gateway URL.** Discord's documentation says clients get the gateway URL
  from Get Gateway Bot. discord.py's plain ``Client`` never asks: it opens the
  built-in ``wss://gateway.discord.gg/`` (``DiscordWebSocket.DEFAULT_GATEWAY``),
  also after a session is invalidated. Each run asks ``GET /gateway/bot`` and
  the client's socket opener (an instance attribute of that client's
  ``HTTPClient``, like the REST rebase) replaces the built-in URL with the one
  Discord gave, keeping discord.py's query (``v``, ``encoding``,
  ``compress``). Resumes go to READY's ``resume_gateway_url`` untouched. So
  ``DISCORD_API_URL`` aims REST and gateway at a Discord-compatible endpoint.
* **Drops.** Inside a run discord.py itself resumes (op 6 on
  ``resume_gateway_url``) after a dropped socket, op 7 RECONNECT, or a
  resumable INVALID_SESSION, and re-identifies after a non-resumable one. Any
  other end — the socket cannot be reopened, a close code discord.py does not
  handle, an unexpected error — ends the run: the client is connected with
  ``reconnect=False``, so discord.py's own retry loop never runs. That loop
  is where discord.py issue #10520 lives (``client.py`` ``connect``: after a
  failed first connect ``self.ws`` is None and ``self.ws.sequence`` raises
  AttributeError, which kills the gateway task while REST keeps working, the
  bot "running deaf"), and it logs a full traceback per retry.
* **Silence.** Login, command sync and Get Gateway Bot get :data:`LOGIN_DEADLINE`
  seconds together; discord.py gives the websocket handshake and HELLO 60.
* **Rejected token.** HTTP 401 at login (discord.py's ``LoginFailure``) or the
  gateway closing with 4004 raises :class:`bot.supervision.CredentialsRejected`
  naming ``DISCORD_TOKEN``: the supervisor logs one line and stops retrying.
* **Clean restart.** Every run ends by closing its client (socket and HTTP
  session); discord.py cannot log a closed client in again (its connector is
  closed with the session), so the next run builds a fresh one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import discord
import yarl
from discord.gateway import DiscordWebSocket

from bot.supervision import CredentialsRejected

if TYPE_CHECKING:
    from adapters.discord.adapter import DiscordAdapter

log = logging.getLogger(__name__)

AUTHENTICATION_FAILED = 4004      # gateway close code: the token in IDENTIFY is wrong
TOKEN_SETTING = "DISCORD_TOKEN"
LOGIN_DEADLINE = 60.0   # seconds for login, command sync and Get Gateway Bot (discord.py allows the socket 60 too)

# What discord.py logs on every client it builds or logs in, expected here: Paperboy asks for no intent
# and uses no voice. With a fresh client per restart they would repeat on every retry.
EXPECTED_NOTICES = {
    "discord.state": frozenset({"Guilds intent seems to be disabled. This may cause state related issues."}),
    "discord.client": frozenset({"logging in using static token",
                                 "PyNaCl is not installed, voice will NOT be supported",
                                 "davey is not installed, voice will NOT be supported"}),
}


class ExpectedNotices(logging.Filter):
    """Drops discord.py's log lines that say what Paperboy chose (no intents, no voice), once per attempt."""

    def __init__(self, messages: frozenset[str]) -> None:
        super().__init__()
        self.messages = messages

    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg not in self.messages


def quiet_expected_notices() -> None:
    """Install :class:`ExpectedNotices` on discord.py's loggers (once; idempotent)."""
    for name, messages in EXPECTED_NOTICES.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, ExpectedNotices) for f in logger.filters):
            logger.addFilter(ExpectedNotices(messages))


class GatewayAddress:
    """Where one client's new gateway sessions go: the URL of the latest Get Gateway Bot answer."""

    def __init__(self) -> None:
        self.url: yarl.URL | None = None

    def aim(self, http: discord.http.HTTPClient) -> None:
        """Make ``http`` (one client's) open ``self.url`` wherever discord.py would open its built-in default."""
        connect = http.ws_connect
        default = DiscordWebSocket.DEFAULT_GATEWAY

        async def ws_connect(url: str, **kwargs: Any) -> Any:
            target = yarl.URL(url)
            same = (target.scheme, target.host, target.path) == (default.scheme, default.host, default.path)
            if self.url is not None and same:
                target = self.url.with_query(target.query)
            return await connect(str(target), **kwargs)

        http.ws_connect = ws_connect  # type: ignore[method-assign]

    async def look_up(self, http: discord.http.HTTPClient) -> yarl.URL:
        """Ask Get Gateway Bot (through ``http``, so through ``DISCORD_API_URL``) and remember the URL."""
        _, url, _ = await http.get_bot_gateway()
        self.url = yarl.URL(url)
        return self.url


class DiscordGateway:
    """The Discord gateway as one supervised connection (``name`` and ``run``)."""

    name = "discord"

    def __init__(self, adapter: DiscordAdapter, *, login_deadline: float = LOGIN_DEADLINE) -> None:
        self.adapter = adapter
        self.login_deadline = login_deadline

    async def run(self, connected: Callable[[], None]) -> None:
        """Log in, connect, call ``connected()`` on READY; returns or raises when the connection ends.

        Runs in the adapter's context, where interaction answers use its API base URL.
        """
        session = asyncio.create_task(self._session(connected), name="discord-gateway",
                                      context=self.adapter.context)
        await session

    async def _session(self, connected: Callable[[], None]) -> None:
        client = self.adapter.fresh_client()
        ready: asyncio.Future[Any] | None = None
        try:
            url = await self._log_in(client)
            log.debug("Discord gateway at %s", url)
            ready = asyncio.ensure_future(client.wait_for("connect"))
            ready.add_done_callback(lambda done: _call_if_done(done, connected))
            await client.connect(reconnect=False)
        except discord.ConnectionClosed as exc:
            if exc.code == AUTHENTICATION_FAILED:
                raise CredentialsRejected(TOKEN_SETTING, "gateway close 4004 authentication failed") from None
            raise
        finally:
            if ready is not None:
                ready.cancel()
            await client.close()


    async def _log_in(self, client: discord.Client) -> yarl.URL:
        """Login, command sync and Get Gateway Bot within :attr:`login_deadline`: a Discord that accepts
        and never answers would otherwise hold the attempt for aiohttp's 5-minute default."""
        try:
            async with asyncio.timeout(self.login_deadline):
                await self.adapter.login()
                return await self.adapter.gateway.look_up(client.http)
        except TimeoutError:
            raise ConnectionError(f"Discord did not answer the login within {self.login_deadline:g} s") from None


async def login_or_rejected(login: Awaitable[None]) -> None:
    """Await a REST login; Discord's 401 becomes :class:`CredentialsRejected` naming ``DISCORD_TOKEN``."""
    try:
        await login
    except discord.LoginFailure:
        raise CredentialsRejected(TOKEN_SETTING, "HTTP 401 Unauthorized") from None


def _call_if_done(done: asyncio.Future[Any], connected: Callable[[], None]) -> None:
    if not done.cancelled() and done.exception() is None:
        connected()
