"""The Discord adapter: a discord.py client wired to the core, plus addressed sends.

* Intents: none. Slash commands, autocomplete and buttons arrive as
  interactions, which need no gateway intent at all, so no privileged intent
  (members, presences, message content) is ever requested.
* Sharding: ``DISCORD_SHARDS=auto`` runs an ``AutoShardedClient`` with the
  shard count Discord recommends; a number above 1 runs that many shards in
  this process; the default ``1`` is a plain ``Client``.
* Commands sync to ``DISCORD_GUILD_ID`` when set (instant, for development),
  otherwise globally (Discord may take a while to show changes everywhere).
* Sends go through discord.py's REST client and its rate-limit handling,
  always with ``AllowedMentions.none()``; a 429 that asks for more than
  :data:`MAX_RATELIMIT_WAIT` seconds, or that outlasts discord.py's five
  tries, becomes ``SendError(RATE_LIMITED)`` instead of waiting forever.

``DISCORD_API_URL`` (e.g. ``http://127.0.0.1:8080/api/v10``) replaces the REST
base for this client only: discord.py builds URLs from ``Route.BASE``, a class
attribute shared by every client in the process, so instead of changing it
this adapter rewrites the prefix of its own requests — REST calls through a
wrapper on its ``HTTPClient.request``, interaction callbacks and webhooks
through discord.py's webhook-adapter context variable (``async_context``),
set in the context that the gateway task, and every task it spawns, runs in.
The gateway URL comes from ``GET /gateway/bot`` on that base too
(:mod:`adapters.discord.gateway`, which also says how drops are survived).
"""

from __future__ import annotations

import asyncio
import contextvars
import copy
import logging
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
import discord
from discord.http import Route
from discord.webhook.async_ import AsyncWebhookAdapter, async_context

from adapters.base import DeliveryKey, SendError, SentMessage
from adapters.discord.commands import DiscordCommands
from adapters.discord.errors import send_error
from adapters.discord.gateway import DiscordGateway, GatewayAddress, login_or_rejected, quiet_expected_notices
from adapters.discord.payloads import PLATFORM
from adapters.discord.render import message_payload
from bot.core import Paperboy
from bot.models import ChannelRef, Reply, UserRef
from bot.settings import Settings
from storage.repositories import Storage

log = logging.getLogger(__name__)

MAX_RATELIMIT_WAIT = 30.0   # discord.py's minimum; longer waits raise RateLimited instead of sleeping

# What the bot needs: see channels, post in them (and in threads), and embed links for paper cards.
# Interaction replies, follow-ups and DMs need no server permission at all.
BOT_PERMISSIONS = discord.Permissions(view_channel=True, send_messages=True, send_messages_in_threads=True,
                                      embed_links=True)
OAUTH_SCOPES = ("bot", "applications.commands")


def invite_url(application_id: int, guild_id: int | None = None) -> str:
    """The link a server admin opens to add Paperboy, with exactly :data:`BOT_PERMISSIONS`."""
    guild = discord.Object(guild_id) if guild_id else discord.utils.MISSING
    return discord.utils.oauth_url(application_id, permissions=BOT_PERMISSIONS, scopes=OAUTH_SCOPES, guild=guild)


def rebase_route(route: Route, base: str) -> Route:
    """A copy of ``route`` aimed at ``base`` instead of discord.com."""
    if not route.url.startswith(Route.BASE):
        return route
    rebased = copy.copy(route)
    rebased.url = base + route.url[len(Route.BASE):]
    return rebased


class RebasedWebhookAdapter(AsyncWebhookAdapter):
    """discord.py's webhook adapter (interaction callbacks, follow-ups) aimed at another base URL."""

    def __init__(self, base: str) -> None:
        super().__init__()
        self.base = base

    async def request(self, route: Route, *args: Any, **kwargs: Any) -> Any:
        return await super().request(rebase_route(route, self.base), *args, **kwargs)


def rebase_rest(http: discord.http.HTTPClient, base: str) -> None:
    """Aim one client's REST requests at ``base`` (an instance attribute; other clients are untouched)."""
    request = http.request

    async def rebased_request(route: Route, **kwargs: Any) -> Any:
        return await request(rebase_route(route, base), **kwargs)

    http.request = rebased_request  # type: ignore[method-assign]


def shard_options(value: str) -> tuple[bool, int | None]:
    """``DISCORD_SHARDS`` as (use AutoShardedClient, shard count or None for Discord's recommendation)."""
    text = value.strip().lower()
    if text == "auto":
        return True, None
    if not (text.isascii() and text.isdigit()):   # "٣" is no shard count, though int() reads it
        raise ValueError(f"DISCORD_SHARDS must be 'auto' or a number, not {value!r}")
    count = int(text)
    if count < 1:
        raise ValueError("DISCORD_SHARDS must be at least 1")
    return count > 1, count if count > 1 else None


def count_rate_limits(on_rate_limited: Callable[[], None]) -> aiohttp.TraceConfig:
    """An aiohttp trace calling ``on_rate_limited`` for every HTTP 429 the client receives (REST and
    interaction callbacks share the client's session); discord.py then waits, or raises past 30 s."""
    trace = aiohttp.TraceConfig()

    async def on_request_end(_session: Any, _context: Any, params: aiohttp.TraceRequestEndParams) -> None:
        if params.response.status == 429:
            on_rate_limited()

    trace.on_request_end.append(on_request_end)
    return trace


def make_client(settings: Settings, on_rate_limited: Callable[[], None] | None = None) -> discord.Client:
    """A client with no intents, no mentions allowed and bounded rate-limit waits (429s counted)."""
    quiet_expected_notices()
    sharded, count = shard_options(settings.discord_shards)
    options: dict[str, Any] = dict(
        intents=discord.Intents.none(),
        allowed_mentions=discord.AllowedMentions.none(),
        max_ratelimit_timeout=MAX_RATELIMIT_WAIT,
        chunk_guilds_at_startup=False,
        member_cache_flags=discord.MemberCacheFlags.none(),
    )
    if on_rate_limited is not None:
        options["http_trace"] = count_rate_limits(on_rate_limited)
    if sharded:
        return discord.AutoShardedClient(shard_count=count, **options)
    return discord.Client(**options)


class DiscordAdapter:
    """Paperboy on Discord: slash commands in, embeds out, sends addressed by stored ids."""

    platform = PLATFORM

    def __init__(self, settings: Settings, core: Paperboy, storage: Storage) -> None:
        if settings.discord_token is None:
            raise ValueError("DISCORD_TOKEN is not set")
        self.settings = settings
        self.core = core
        self.storage = storage
        self.commands = DiscordCommands(settings, core, storage)
        self.api_base = settings.discord_api_url.rstrip("/") if settings.discord_api_url else None
        self.gateway = GatewayAddress()
        self._context = contextvars.copy_context()
        if self.api_base:
            self._context.run(async_context.set, RebasedWebhookAdapter(self.api_base))
        self.client, self.tree = self._build_client()
        self._commands_synced = False
        self._logged_in: discord.Client | None = None     # the client login() last logged in
        self._gateway: asyncio.Task[None] | None = None
        self.invite_url: str | None = None

    def _build_client(self) -> tuple[discord.Client, discord.app_commands.CommandTree]:
        client = make_client(self.settings, on_rate_limited=self._count_rate_limit)
        tree = self.commands.build_tree(client)
        if self.api_base:
            rebase_rest(client.http, self.api_base)
        self.gateway.aim(client.http)
        return client, tree

    def _count_rate_limit(self) -> None:
        metrics = getattr(self.core, "metrics", None)
        if metrics is not None:
            metrics.rate_limited(PLATFORM)

    def fresh_client(self) -> discord.Client:
        """The client to connect with: the current one, or a new one when it has been closed."""
        if self.client.is_closed():
            self.client, self.tree = self._build_client()
        return self.client

    @property
    def context(self) -> contextvars.Context:
        """The context the gateway runs in (interaction answers use this adapter's API base there)."""
        return self._context

    def connections(self) -> list[DiscordGateway]:
        """The long-lived connections to supervise: the gateway."""
        return [DiscordGateway(self)]

    # --- lifecycle -----------------------------------------------------------------------------------------

    async def login(self) -> None:
        """Log in over REST (once per client); the first time also sync the slash commands and log the invite URL.

        A token Discord rejects (HTTP 401) raises :class:`bot.supervision.CredentialsRejected`.
        """
        assert self.settings.discord_token is not None
        if self._logged_in is not self.client:
            await login_or_rejected(self.client.login(self.settings.discord_token.get_secret_value()))
            self._logged_in = self.client
        if self._commands_synced:
            return
        application_id = self.client.application_id
        assert application_id is not None
        guild_id = self.settings.discord_guild_id
        if guild_id:
            guild = discord.Object(guild_id)
            self.tree.copy_global_to(guild=guild)
            synced = await self.tree.sync(guild=guild)
            log.info("synced %d Discord commands to server %s (instant)", len(synced), guild_id)
        else:
            synced = await self.tree.sync()
            log.info("synced %d global Discord commands (may take a while to appear)", len(synced))
        self._commands_synced = True
        self.invite_url = invite_url(application_id)
        log.info("add Paperboy to a Discord server: %s", self.invite_url)

    async def start_sending(self) -> None:
        """Log in over REST only: enough to send, without syncing commands or joining the gateway.

        A rejected token raises :class:`bot.supervision.CredentialsRejected` naming ``DISCORD_TOKEN``.
        """
        assert self.settings.discord_token is not None
        await login_or_rejected(self.client.login(self.settings.discord_token.get_secret_value()))
        self._logged_in = self.client

    async def start(self) -> None:
        """Log in, sync commands, then run the gateway in a background task, unsupervised (embedding and
        tests); ``paperboy run`` instead hands :meth:`connections` to its supervisor."""
        await self.login()
        self._gateway = asyncio.create_task(DiscordGateway(self).run(lambda: None), name="discord-gateway")
        self._gateway.add_done_callback(self._gateway_done)

    def _gateway_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            log.error("Discord gateway stopped: %s", type(exc).__name__, exc_info=exc)

    async def wait_until_ready(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(self.client.wait_until_ready(), timeout)

    async def stop(self) -> None:
        await self.commands.pool.close(timeout=3.0)   # accepted commands send their answers first
        await self.client.close()
        if self._gateway is not None:
            self._gateway.cancel()
            try:
                await self._gateway
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - already logged by the callback
                pass
            self._gateway = None

    def dispatch_interaction(self, payload: Mapping[str, Any]) -> None:
        """Handle one gateway ``INTERACTION_CREATE`` payload, as discord.py does when it arrives.

        Runs in the adapter's context, so its replies use this adapter's API base URL. The
        handlers run as tasks; await their effects (the tests wait on the fake server).
        """
        self._context.run(self.client._connection.parse_interaction_create, dict(payload))  # noqa: SLF001

    # --- sends ---------------------------------------------------------------------------------------------

    async def send_to_channel(self, channel: ChannelRef, reply: Reply, *, key: DeliveryKey | None = None) -> SentMessage:
        """Post ``reply`` in a channel; raises :class:`SendError`."""
        target = self.client.get_partial_messageable(int(channel.channel),
                                                     guild_id=_int_or_none(channel.workspace))
        return await self._send(target, reply, key)

    async def send_to_user(self, user: UserRef, reply: Reply, *, key: DeliveryKey | None = None) -> SentMessage:
        """Open (or reuse) the DM channel with a person, then post ``reply`` there."""
        try:
            dm = await self.client.create_dm(discord.Object(int(user.user)))
        except Exception as exc:  # noqa: BLE001 - mapped to a neutral failure
            raise _logged(send_error(exc), "open a DM with", user.user) from exc
        return await self._send(dm, reply, key, workspace=user.workspace)

    async def find_delivery(self, target: ChannelRef | UserRef, key: DeliveryKey) -> SentMessage | None:
        """Always None: Discord itself drops a repeat of a delivery's nonce (see :meth:`_send`), so
        sending again *is* the check, within Discord's nonce window of a few minutes."""
        return None

    async def _send(self, target: discord.abc.Messageable, reply: Reply, key: DeliveryKey | None, *,
                    workspace: str | None = None) -> SentMessage:
        """Create the message; a scheduled delivery carries its own nonce.

        discord.py sends every ``nonce`` with ``enforce_nonce: true`` (``discord/http.py``,
        ``handle_message_parameters``), and Discord then answers a repeat of the same nonce by the
        same author within a few minutes with the message already created instead of a new one
        (create-message, ``enforce_nonce``). Without a key discord.py draws a random nonce.
        """
        payload = message_payload(reply, workspace=workspace)
        kwargs = self.commands.send_kwargs(payload)
        if key is not None:
            kwargs["nonce"] = key.nonce
        try:
            message = await target.send(**kwargs)
        except Exception as exc:  # noqa: BLE001 - mapped to a neutral failure
            channel_id = getattr(target, "id", "?")
            raise _logged(send_error(exc), "post in", channel_id) from exc
        return SentMessage(channel=str(message.channel.id), message_id=str(message.id))


def _int_or_none(value: str) -> int | None:
    return int(value) if value.isascii() and value.isdigit() else None


def _logged(error: SendError, action: str, target: object) -> SendError:
    log.info("Discord: could not %s %s: %s", action, target, error)
    return error
