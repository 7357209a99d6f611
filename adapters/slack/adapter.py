"""The Slack adapter: slack-bolt's AsyncApp wired to the core, plus addressed sends.

Modes, chosen from the settings:

* Socket Mode when ``SLACK_APP_TOKEN`` is set (no public URL needed);
* HTTP mode otherwise: an aiohttp server on ``PORT`` serving ``/slack/events``
  with Slack's signature and timestamp verification (``SLACK_SIGNING_SECRET``);
* multi-workspace when ``SLACK_CLIENT_ID`` and ``SLACK_CLIENT_SECRET`` are set:
  ``/slack/install`` and ``/slack/oauth_redirect`` are served too, and
  installations live in the project's database through slack_sdk's SQLAlchemy
  installation and OAuth state stores (tables created by migration 0002).
  Otherwise one workspace with ``SLACK_BOT_TOKEN``.

Every Web API call goes to ``SLACK_API_URL`` through slack_sdk's async client
with its rate-limit retry handler (429 + ``Retry-After``). Sends raise
:class:`adapters.base.SendError`; the scheduler decides what to do about them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp import web
from cachetools import LRUCache, TTLCache
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.oauth.async_callback_options import AsyncCallbackOptions, AsyncFailureArgs, AsyncSuccessArgs
from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.oauth.installation_store.sqlalchemy import AsyncSQLAlchemyInstallationStore
from slack_sdk.oauth.state_store.sqlalchemy import AsyncSQLAlchemyOAuthStateStore
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from adapters.base import DeliveryKey, FailureKind, HistoryUnavailable, SendError, SentMessage
from bot.supervision import CredentialsRejected
from adapters.controls import read_topic, topic_of
from adapters.slack.answers import (
    CALL_FAILURES,
    ResilientAuthorize,
    answer_data,
    error_code,
    headers_of,
    status_of,
    text_field,
)
from adapters.slack.errors import INSTALL_GONE_CODES, retry_after_seconds, send_error
from adapters.slack.requests import check_body, check_signature
from adapters.slack.home import (
    ADD_TOPIC_ACTION,
    ADD_TOPIC_CALLBACK,
    REMOVE_TOPIC_ACTION,
    add_topic_modal,
    home_view,
)
from adapters.slack.payloads import (
    PLATFORM,
    TOPIC_BLOCK,
    action_value,
    interaction_context,
    slash_payload_to_context,
    submitted_topic,
    team_of,
    user_profile_facts,
)
from adapters.slack.render import (
    FEEDBACK_ACTIONS,
    SHARE_ACTION,
    SUBSCRIBE_ACTION,
    parse_feedback_value,
    render_message,
)
from bot import commands as cmd
from bot.commands import CommandArgs, vote_args
from bot.core import Paperboy
from bot.models import ChannelRef, CommandContext, Reply, ReplyKind, UserRef
from bot.schedule import format_time
from bot.settings import Settings
from bot.text import InputError
from bot.work import BUSY_MESSAGE, Job, WorkPool
from storage.repositories import Storage

log = logging.getLogger(__name__)

BOT_SCOPES = ("commands", "chat:write", "im:write", "users:read", "channels:history", "groups:history", "im:history")
DELIVERY_EVENT = "paperboy_delivery"   # message metadata event_type of scheduled posts and alerts
HISTORY_PAGE = 15          # conversations.history page size: Slack's maximum for non-Marketplace apps since 2025
HISTORY_PAGES = 4          # pages looked at for one delivery (messages since its due time, newest first)
HISTORY_SLACK_SECONDS = 60   # look this much before the due time too (hosts' clocks differ a little)
SEND_TIMEOUT_SECONDS = 30.0  # slack_sdk's default request timeout
EVENTS_PATH = "/slack/events"
INSTALL_PATH = "/slack/install"
REDIRECT_PATH = "/slack/oauth_redirect"
HEALTH_PATH = "/healthz"
OAUTH_STATE_SECONDS = 600
USER_CACHE_SECONDS = 3600
DM_CHANNEL_CACHE_SIZE = 100_000   # (workspace, user) -> DM channel id; a DM channel id never changes
MODAL_ACK_BUDGET_SECONDS = 2.0    # Slack wants a view_submission answered within 3 s
STOP_WORK_SECONDS = 3.0           # at stop, accepted commands get this long to send their answers
SOCKET_CONNECT_TIMEOUT_SECONDS = 15.0   # apps.connections.open answered, but the WebSocket does not open
SOCKET_CHECK_SECONDS = 1.0              # how often a live Socket Mode connection is checked
HTTP_RECHECK_SECONDS = 300.0            # HTTP mode: how often auth.test confirms Slack still takes the token
# Errors meaning the token itself is refused, or is the wrong kind of token: retrying cannot help.
REJECTED_TOKEN_ERRORS = INSTALL_GONE_CODES | {"not_allowed_token_type"}


class BoundedRateLimitRetryHandler(AsyncRateLimitErrorRetryHandler):
    """slack_sdk's 429 handler (sleeps ``Retry-After``, retries), but only for short waits.

    A long ``Retry-After`` is not slept through inside one send: the send fails
    with ``RATE_LIMITED`` and its ``retry_after`` so the scheduler reschedules it.
    """

    def __init__(self, max_retry_count: int = 1, max_wait_seconds: float = 10.0,
                 on_wait: Callable[[], None] | None = None) -> None:
        super().__init__(max_retry_count=max_retry_count)
        self.max_wait_seconds = max_wait_seconds
        self._on_wait = on_wait

    async def _can_retry_async(self, *, state: RetryState, request: HttpRequest,
                               response: HttpResponse | None = None, error: Exception | None = None) -> bool:
        if not await super()._can_retry_async(state=state, request=request, response=response, error=error):
            return False
        assert response is not None
        wait = retry_after_seconds(response.headers)
        waits = wait is None or wait <= self.max_wait_seconds
        if waits and self._on_wait is not None:
            self._on_wait()
        return waits


class PostSafeConnectionErrorRetryHandler(AsyncConnectionErrorRetryHandler):
    """slack_sdk's connection-error retry, except for chat.postMessage.

    A connection dropped after a post was written leaves its outcome unknown: retrying it here
    could post twice. The scheduler retries it instead, after looking in the channel's history.
    """

    async def _can_retry_async(self, *, state: RetryState, request: HttpRequest,
                               response: HttpResponse | None = None, error: Exception | None = None) -> bool:
        if request.url.rstrip("/").endswith("chat.postMessage"):
            return False
        return await super()._can_retry_async(state=state, request=request, response=response, error=error)


class SlackAdapter:
    """Paperboy on Slack: slash command, buttons, App Home, install/uninstall and sends."""

    platform = PLATFORM

    def __init__(self, settings: Settings, core: Paperboy, storage: Storage, *, host: str = "0.0.0.0",
                 port: int | None = None, command: str = "/papers", rate_limit_retries: int = 1,
                 max_retry_wait_seconds: float = 10.0, request_timeout: float = SEND_TIMEOUT_SECONDS,
                 pool: WorkPool | None = None) -> None:
        if not settings.slack_enabled:
            raise ValueError("Slack is not configured: set SLACK_BOT_TOKEN, or SLACK_CLIENT_ID and SLACK_CLIENT_SECRET")
        self._settings = settings
        self._core = core
        self._storage = storage
        self._host = host
        self._port = settings.port if port is None else port
        self._command = command
        self._rate_limit_retries = rate_limit_retries
        self._max_retry_wait = max_retry_wait_seconds
        self._request_timeout = request_timeout
        self.oauth_enabled = bool(settings.slack_client_id and settings.slack_client_secret)
        self.socket_mode = settings.slack_app_token is not None
        self.serves_http = not self.socket_mode or self.oauth_enabled
        self._signing_secret = settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else ""
        if self.serves_http and not self._signing_secret:
            raise ValueError("HTTP mode needs SLACK_SIGNING_SECRET (or set SLACK_APP_TOKEN for Socket Mode)")
        self.installation_store: AsyncSQLAlchemyInstallationStore | None = None
        self.state_store: AsyncSQLAlchemyOAuthStateStore | None = None
        if self.oauth_enabled:
            assert settings.slack_client_id is not None
            self.installation_store = AsyncSQLAlchemyInstallationStore(
                client_id=settings.slack_client_id, engine=storage.db.engine)
            self.state_store = AsyncSQLAlchemyOAuthStateStore(
                expiration_seconds=OAUTH_STATE_SECONDS, engine=storage.db.engine)
        self._clients: dict[str, AsyncWebClient] = {}
        # One HTTP session (keep-alive connection pool) for every Web API and response URL call.
        self._http: aiohttp.ClientSession | None = None
        # Commands, buttons and events are acknowledged at once, then worked on here.
        self.pool = pool or WorkPool(workers=settings.command_workers, queue_size=settings.command_queue,
                                     name="slack")
        self._overflow: set[asyncio.Task[Any]] = set()
        self._user_facts: TTLCache[tuple[str, str], tuple[str | None, bool]] = TTLCache(
            maxsize=10_000, ttl=USER_CACHE_SECONDS)
        self._dm_channels: LRUCache[tuple[str, str], str] = LRUCache(maxsize=DM_CHANNEL_CACHE_SIZE)
        self.modal_ack_budget = MODAL_ACK_BUDGET_SECONDS
        self.app = self._build_app()
        self._runner: web.AppRunner | None = None
        self._socket_task: asyncio.Task[None] | None = None
        self.http_port: int | None = None

    # --- assembly ---------------------------------------------------------------------------

    def _retry_handlers(self) -> list[AsyncRetryHandler]:
        return [PostSafeConnectionErrorRetryHandler(max_retry_count=1),
                BoundedRateLimitRetryHandler(self._rate_limit_retries, self._max_retry_wait,
                                             on_wait=self._count_rate_limit_wait)]

    def _count_rate_limit_wait(self) -> None:
        metrics = getattr(self._core, "metrics", None)
        if metrics is not None:
            metrics.rate_limited(PLATFORM)

    def _session(self) -> aiohttp.ClientSession | None:
        """The shared HTTP session, made on first use inside the running loop (None outside one)."""
        if self._http is None or self._http.closed:
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                return None
            # slack_sdk applies a client's timeout only to sessions it makes itself: this one carries it.
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._request_timeout))
        return self._http

    def _new_client(self, token: str | None) -> AsyncWebClient:
        # bolt's per-request clients copy this client's session, so they share its connections too.
        return AsyncWebClient(token=token, base_url=self._settings.slack_api_url, timeout=self._request_timeout,  # type: ignore[arg-type]
                              retry_handlers=self._retry_handlers(), session=self._session())

    def _build_app(self) -> AsyncApp:
        settings = self._settings
        if self.oauth_enabled:
            assert settings.slack_client_secret is not None
            oauth_settings = AsyncOAuthSettings(
                client_id=settings.slack_client_id,
                client_secret=settings.slack_client_secret.get_secret_value(),
                scopes=list(BOT_SCOPES),
                install_path=INSTALL_PATH,
                redirect_uri_path=REDIRECT_PATH,
                installation_store=self.installation_store,
                installation_store_bot_only=True,
                state_store=self.state_store,
                callback_options=AsyncCallbackOptions(success=self._on_installed, failure=self._on_install_failed),
            )
            app = AsyncApp(client=self._new_client(None), signing_secret=self._signing_secret,
                           oauth_settings=oauth_settings, installation_store_bot_only=True,
                           authorize=ResilientAuthorize(installation_store=self.installation_store),
                           request_verification_enabled=bool(self._signing_secret), process_before_response=True)
        else:
            assert settings.slack_bot_token is not None
            # The app's own client holds no token: requests get theirs from the authorize step, which
            # does not give up when auth.test is answered by a proxy instead of Slack.
            app = AsyncApp(client=self._new_client(None), signing_secret=self._signing_secret,
                           authorize=ResilientAuthorize(token=settings.slack_bot_token.get_secret_value()),
                           request_verification_enabled=bool(self._signing_secret), process_before_response=True)
        app.command(self._command)(self._on_slash_command)
        app.action(SHARE_ACTION)(self._on_share)
        app.action(SUBSCRIBE_ACTION)(self._on_subscribe)
        for action_id in FEEDBACK_ACTIONS.values():
            app.action(action_id)(self._on_feedback)
        app.action(REMOVE_TOPIC_ACTION)(self._on_remove_topic)
        app.action(ADD_TOPIC_ACTION)(self._on_add_topic)
        app.view(ADD_TOPIC_CALLBACK)(self._on_add_topic_submitted)
        app.event("app_home_opened")(self._on_home_opened)
        app.event("app_uninstalled")(self._on_uninstalled)
        app.event("tokens_revoked")(self._on_tokens_revoked)
        return app

    def web_app(self) -> web.Application:
        """The HTTP endpoints: events (signed), install and OAuth redirect (multi-workspace), health."""
        application = web.Application()
        application.router.add_post(EVENTS_PATH, self._handle_events)
        application.router.add_get(HEALTH_PATH, self._handle_health)
        if self.oauth_enabled:
            application.router.add_get(INSTALL_PATH, self._handle_install)
            application.router.add_get(REDIRECT_PATH, self._handle_oauth_redirect)
        return application

    async def _handle_events(self, request: web.Request) -> web.Response:
        """Slack's signed requests: the signature is checked on the raw bytes before anything is read.

        An unsigned, forged or stale request gets 401, a signed one bolt could not read 400; neither
        is parsed, and neither's body is logged (one line with the reason and the size).
        """
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            log.info("Slack events: refused a request over the size limit")
            return web.Response(status=413, text="too large")
        problem = check_signature(self._signing_secret, body, request.headers)
        if problem is not None:
            log.info("Slack events: refused an unverified request (%s, %d bytes)", problem, len(body))
            return web.Response(status=401, text="invalid request")
        problem = check_body(body, request.content_type)
        if problem is not None:
            log.warning("Slack events: refused a signed request bolt cannot read (%s, %d bytes)", problem, len(body))
            return web.Response(status=400, text="unreadable request")
        bolt_request = AsyncBoltRequest(body=body.decode("utf-8"), query=request.query_string,
                                        headers=request.headers)  # type: ignore[arg-type]
        return await to_aiohttp_response(await self.app.async_dispatch(bolt_request))

    async def _handle_install(self, request: web.Request) -> web.Response:
        assert self.app.oauth_flow is not None
        return await to_aiohttp_response(await self.app.oauth_flow.handle_installation(await to_bolt_request(request)))

    async def _handle_oauth_redirect(self, request: web.Request) -> web.Response:
        assert self.app.oauth_flow is not None
        return await to_aiohttp_response(await self.app.oauth_flow.handle_callback(await to_bolt_request(request)))

    async def _handle_health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    # --- lifecycle ------------------------------------------------------------------------------

    def add_routes(self, application: web.Application) -> None:
        """Add Slack's endpoints (events; install and OAuth redirect when multi-workspace) to the
        process's own web server, which serves ``/healthz`` and ``/metrics`` beside them."""
        if not self.serves_http:
            return
        application.router.add_post(EVENTS_PATH, self._handle_events)
        if self.oauth_enabled:
            application.router.add_get(INSTALL_PATH, self._handle_install)
            application.router.add_get(REDIRECT_PATH, self._handle_oauth_redirect)

    def connections(self) -> list[SlackSocketConnection | SlackHttpConnection]:
        """What the supervisor keeps up: the Socket Mode connection, or (HTTP mode) the token check
        behind the listener. Building them touches no network."""
        if self.socket_mode:
            return [SlackSocketConnection(self)]
        return [SlackHttpConnection(self)]

    async def check_credentials(self) -> None:
        """``auth.test`` with the bot token (single workspace; an OAuth app has no token of its own).

        Raises :class:`CredentialsRejected` naming ``SLACK_BOT_TOKEN`` when Slack refuses the token;
        network failures and Slack outages raise as they are, to be retried.
        """
        if self.oauth_enabled:
            return
        assert self._settings.slack_bot_token is not None
        client = self._new_client(self._settings.slack_bot_token.get_secret_value())
        await self._checked_call("SLACK_BOT_TOKEN", client.auth_test())

    @staticmethod
    async def _checked_call(setting: str, call: Any) -> Any:
        try:
            return await call
        except SlackApiError as exc:
            code = str(answer_data(exc.response).get("error") or "")
            if code in REJECTED_TOKEN_ERRORS:
                raise CredentialsRejected(setting, code) from None
            raise ConnectionError(f"Slack answered HTTP {exc.response.status_code}"
                                  + (f" ({code})" if code else "")) from None

    async def open_socket_url(self) -> str:
        """A fresh Socket Mode WebSocket URL from ``apps.connections.open`` (app-level token)."""
        assert self._settings.slack_app_token is not None
        response = await self._checked_call("SLACK_APP_TOKEN", self.app.client.apps_connections_open(
            app_token=self._settings.slack_app_token.get_secret_value()))
        url = response.get("url")
        if not isinstance(url, str) or not url:
            raise ConnectionError("apps.connections.open gave no URL")
        return url

    async def start(self) -> None:
        """Connect and listen without supervision (embedding and tests); ``paperboy run`` instead adds
        :meth:`add_routes` to its web server and hands :meth:`connections` to its supervisor."""
        if self.serves_http:
            self._runner = web.AppRunner(self.web_app(), access_log=None)
            await self._runner.setup()
            site = web.TCPSite(self._runner, self._host, self._port)
            await site.start()
            server = site._server  # noqa: SLF001 - the only way to learn the port chosen for port 0
            sockets = getattr(server, "sockets", None) or ()
            self.http_port = sockets[0].getsockname()[1] if sockets else self._port
            log.info("Slack HTTP endpoints listening on %s:%s%s", self._host, self.http_port, EVENTS_PATH)
        if self.socket_mode:
            ready = asyncio.Event()
            task = asyncio.create_task(SlackSocketConnection(self).run(ready.set), name="slack-socket-mode")
            waiter = asyncio.create_task(ready.wait())
            await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            if task.done():
                task.result()                      # raises why it could not connect
                raise ConnectionError("Slack Socket Mode connection ended at once")
            self._socket_task = task

    async def start_sending(self) -> None:
        """Sends need nothing started: each call builds its workspace's Web API client on demand."""

    async def stop(self) -> None:
        """Stop listening, let accepted work finish (bounded), then close the shared HTTP session."""
        task, self._socket_task = self._socket_task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.pool.close(timeout=STOP_WORK_SECONDS)
        if self._overflow:
            await asyncio.wait(set(self._overflow), timeout=STOP_WORK_SECONDS)
        if self._http is not None:
            await self._http.close()
            self._http = None

    # --- sending ------------------------------------------------------------------------------

    async def _token_for(self, workspace: str) -> str:
        if self.installation_store is not None:
            bot = await self.installation_store.async_find_bot(enterprise_id=None, team_id=workspace)
            if bot is None or not bot.bot_token:
                await self._storage.workspaces.deactivate(PLATFORM, workspace, "not_installed")
                raise SendError(FailureKind.INSTALL_GONE, "not_installed")
            return bot.bot_token
        assert self._settings.slack_bot_token is not None
        return self._settings.slack_bot_token.get_secret_value()

    async def client_for(self, workspace: str) -> AsyncWebClient:
        """A Web API client holding ``workspace``'s bot token."""
        token = await self._token_for(workspace)
        client = self._clients.get(token)
        if client is None:
            client = self._clients[token] = self._new_client(token)
        return client

    async def _call(self, workspace: str, method: str, *, to_user: bool = False, **params: Any) -> dict[str, Any]:
        """One Web API call; its answer's JSON object (``{}`` if the answer was no object).

        Slack errors, and answers that are no Slack answer at all (a proxy's ``503 text/plain``, an
        HTML page, JSON of the wrong shape, see :mod:`adapters.slack.answers`), become
        :class:`SendError` logged in one line by code, never by token. For chat.postMessage a
        timeout, a connection dropped once connected, or a 200 whose body is not Slack's is
        ``UNKNOWN_OUTCOME`` (Slack may have posted it); a 429 concerns that channel only, since
        Slack limits posting per channel.
        """
        client = await self.client_for(workspace)
        try:
            return answer_data(await client.api_call(method, json=params))
        except SlackApiError as exc:
            error = send_error(error_code(exc), status=status_of(exc), headers=headers_of(exc),
                               to_user=to_user)
            error.target_only = method == "chat.postMessage" and error.kind is FailureKind.RATE_LIMITED
            log.warning("Slack %s failed in workspace %r: %s (%s)", method, workspace, error.detail, error.kind.value)
            if error.kind is FailureKind.INSTALL_GONE:
                await self._storage.workspaces.deactivate(PLATFORM, workspace, error.detail)
            raise error from None
        except (SlackClientError, aiohttp.ClientError, asyncio.TimeoutError) as exc:
            log.warning("Slack %s failed in workspace %r: %s", method, workspace, type(exc).__name__)
            written = not isinstance(exc, (SlackClientError, aiohttp.ClientConnectorError))
            kind = FailureKind.UNKNOWN_OUTCOME if method == "chat.postMessage" and written else FailureKind.TRANSIENT
            raise SendError(kind, type(exc).__name__) from None
        except CALL_FAILURES as exc:     # a 200 slack_sdk could not read as an object (text, a list)
            log.warning("Slack %s failed in workspace %r: %s", method, workspace, error_code(exc))
            kind = FailureKind.UNKNOWN_OUTCOME if method == "chat.postMessage" else FailureKind.TRANSIENT
            raise SendError(kind, error_code(exc)) from None

    async def _post(self, workspace: str, channel: str, reply: Reply, *, to_user: bool,
                    key: DeliveryKey | None = None) -> SentMessage:
        body = render_message(reply, interactive=False)
        extra: dict[str, Any] = {}
        if key is not None:   # what conversations.history shows to recognise the message later
            extra["metadata"] = {"event_type": DELIVERY_EVENT, "event_payload": {"delivery_id": key.delivery_id}}
        response = await self._call(workspace, "chat.postMessage", to_user=to_user, channel=channel,
                                    text=body["text"], blocks=body["blocks"], unfurl_links=False, unfurl_media=False,
                                    **extra)
        return SentMessage(channel=text_field(response, "channel") or channel, message_id=text_field(response, "ts") or "")

    async def send_to_channel(self, channel: ChannelRef, reply: Reply, *, key: DeliveryKey | None = None) -> SentMessage:
        """Post in a channel with chat.postMessage (the bot must be a member)."""
        return await self._post(channel.workspace, channel.channel, reply, to_user=False, key=key)

    async def _dm_channel(self, user: UserRef) -> str:
        """The DM channel with ``user``: cached, else opened with conversations.open."""
        key = (user.workspace, user.user)
        cached = self._dm_channels.get(key)
        if cached is not None:
            return cached
        opened = await self._call(user.workspace, "conversations.open", to_user=True, users=user.user)
        opened_channel = opened.get("channel")
        dm = text_field(opened_channel, "id") if isinstance(opened_channel, dict) else None
        if not dm:
            raise SendError(FailureKind.TRANSIENT, "no_dm_channel")
        self._dm_channels[key] = dm
        return dm

    async def send_to_user(self, user: UserRef, reply: Reply, *, key: DeliveryKey | None = None) -> SentMessage:
        """Post in the direct message with ``user``, opened with conversations.open once per process.

        A cached DM channel that Slack no longer knows is forgotten and opened again, once.
        """
        cache_key = (user.workspace, user.user)
        cached = self._dm_channels.get(cache_key)
        if cached is not None:
            try:
                return await self._post(user.workspace, cached, reply, to_user=True, key=key)
            except SendError as exc:
                if exc.detail != "channel_not_found":
                    raise
                self._dm_channels.pop(cache_key, None)
        return await self._post(user.workspace, await self._dm_channel(user), reply, to_user=True, key=key)

    async def find_delivery(self, target: ChannelRef | UserRef, key: DeliveryKey) -> SentMessage | None:
        """Look for the message of ``key`` in the conversation's history since its due time.

        ``conversations.history`` with ``include_all_metadata`` returns each message's metadata
        (the ``paperboy_delivery`` event carrying the delivery id), newest first, ``oldest``
        bounding the search to the delivery's window. It needs ``channels:history``,
        ``groups:history`` and ``im:history``; a workspace that did not grant them (or a channel
        the bot cannot read) raises :class:`HistoryUnavailable`, and the caller sends anyway.
        """
        if isinstance(target, ChannelRef):
            channel, to_user = target.channel, False
        else:
            try:
                channel, to_user = await self._dm_channel(target), True
            except SendError as exc:
                if exc.kind in (FailureKind.RATE_LIMITED, FailureKind.TRANSIENT):
                    raise
                raise HistoryUnavailable(exc.detail or exc.kind.value) from None
        oldest = f"{key.not_before.timestamp() - HISTORY_SLACK_SECONDS:.6f}"
        cursor: str | None = None
        for _ in range(HISTORY_PAGES):
            params: dict[str, Any] = {"channel": channel, "oldest": oldest, "limit": HISTORY_PAGE,
                                      "include_all_metadata": True}
            if cursor:
                params["cursor"] = cursor
            try:
                page = await self._call(target.workspace, "conversations.history", to_user=to_user, **params)
            except SendError as exc:
                if exc.kind in (FailureKind.RATE_LIMITED, FailureKind.TRANSIENT, FailureKind.UNKNOWN_OUTCOME):
                    exc.target_only = True   # a history limit must not hold the workspace's posts
                    raise
                raise HistoryUnavailable(exc.detail or exc.kind.value) from None
            messages = page.get("messages")
            for message in messages if isinstance(messages, list) else ():
                metadata = answer_data(message.get("metadata")) if isinstance(message, dict) else {}
                payload = answer_data(metadata.get("event_payload"))
                if metadata.get("event_type") == DELIVERY_EVENT and str(payload.get("delivery_id")) == str(key.delivery_id):
                    return SentMessage(channel=channel, message_id=text_field(message, "ts") or "")
            cursor = text_field(answer_data(page.get("response_metadata")), "next_cursor")
            if not page.get("has_more") or not cursor:
                return None
        log.warning("delivery %s not found in the last %d messages of %s; sending it again",
                    key.delivery_id, HISTORY_PAGE * HISTORY_PAGES, channel)
        return None

    # --- who is asking --------------------------------------------------------------------------

    async def _facts(self, client: AsyncWebClient, team: str, user_id: str) -> tuple[str | None, bool]:
        """The person's time zone and admin status from users.info, cached for an hour."""
        key = (team, user_id)
        if key in self._user_facts:
            return self._user_facts[key]
        try:
            response = await client.users_info(user=user_id)
        except CALL_FAILURES as exc:          # the command goes on with the defaults
            log.warning("users.info failed in workspace %r: %s", team, error_code(exc))
            return None, False
        facts = user_profile_facts(answer_data(response).get("user"))
        self._user_facts[key] = facts
        return facts

    async def _context_facts(self, client: AsyncWebClient, body: dict[str, Any], user_id: str) -> tuple[str | None, bool]:
        tz, is_admin = await self._facts(client, team_of(body), user_id)
        can_manage = is_admin if self._settings.slack_admins_only_channel_settings else True
        return tz, can_manage

    async def _interaction(self, client: AsyncWebClient, body: dict[str, Any]) -> CommandContext:
        tz, can_manage = await self._context_facts(client, body, str(body["user"]["id"]))
        return interaction_context(body, user_timezone=tz, can_manage_channel=can_manage)

    # --- listeners ------------------------------------------------------------------------------

    def _spawn(self, job: Job) -> None:
        """Run ``job`` outside the pool (work that must not be refused or must not queue)."""
        task = asyncio.ensure_future(job())
        self._overflow.add(task)
        task.add_done_callback(self._job_done)

    def _job_done(self, task: asyncio.Task[Any]) -> None:
        self._overflow.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("Slack background work failed", exc_info=task.exception())

    def _in_background(self, job: Job, *, essential: bool = False) -> bool:
        """Hand ``job`` to the command pool. When the pool is full an essential job (Home tab,
        install bookkeeping) runs anyway; anything else is refused (False) to be answered "busy"."""
        if self.pool.submit(job):
            return True
        if essential:
            self._spawn(job)
            return True
        log.warning("Slack command refused: %d commands running and %d waiting", self.pool.running, self.pool.queued)
        return False

    def _answer_in_background(self, body: dict[str, Any], job: Job) -> None:
        """A button's work in the pool; when the pool is full the person is told "busy" instead."""
        if not self._in_background(job):
            self._spawn(lambda: self._respond_text(body, BUSY_MESSAGE))

    async def _respond_text(self, body: dict[str, Any], text: str) -> None:
        url = body.get("response_url")
        if url:
            await self._post_response(url, text=text, response_type="ephemeral", replace_original=False)

    async def _respond(self, body: dict[str, Any], reply: Reply, *, in_channel: bool | None = None,
                       **extra: Any) -> None:
        """The answer to a command or button, posted to its response URL."""
        rendered = render_message(reply, **extra)
        public = (not reply.ephemeral) if in_channel is None else in_channel
        await self._post_response(str(body["response_url"]), text=rendered["text"], blocks=rendered["blocks"],
                                  response_type="in_channel" if public else "ephemeral", replace_original=False,
                                  unfurl_links=False, unfurl_media=False)

    async def _post_response(self, url: str, **message: Any) -> None:
        """POST to a response URL over the shared session (keep-alive), never a new connection per answer."""
        try:
            response = await AsyncWebhookClient(url, session=self._session()).send(**message)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            log.warning("posting to a Slack response URL failed: %s", type(exc).__name__)
            return
        if response.status_code != 200:
            log.warning("a Slack response URL answered HTTP %s", response.status_code)

    async def _on_slash_command(self, ack: Any, body: dict[str, Any], client: AsyncWebClient) -> None:
        """``/papers ...``: acknowledged at once; the command runs in the pool, or the ack says "busy"."""
        if self._in_background(lambda: self._answer_slash(body, client)):
            await ack()
        else:
            await ack(text=BUSY_MESSAGE, response_type="ephemeral")   # the ack itself: shown to the caller only

    async def _answer_slash(self, body: dict[str, Any], client: AsyncWebClient) -> None:
        tz, can_manage = await self._context_facts(client, body, str(body["user_id"]))
        ctx, text = slash_payload_to_context(body, user_timezone=tz, can_manage_channel=can_manage)
        reply = await self._core.handle(ctx, text)
        await self._respond(body, reply)

    def _topic_args(self, name: str, raw: str) -> CommandArgs:
        """A topic read back from a button value or the modal, checked exactly as a typed one."""
        try:
            return CommandArgs(name, topic=read_topic(raw, max_length=self._settings.max_topic_length,
                                                      matchable=name != cmd.UNSUBSCRIBE))
        except InputError as exc:
            return CommandArgs(cmd.HELP, problem=str(exc))

    async def _on_share(self, ack: Any, body: dict[str, Any], client: AsyncWebClient) -> None:
        """"Share in channel": the same search, posted for everyone, crediting who shared it."""
        await ack()

        async def share() -> None:
            ctx = await self._interaction(client, body)
            reply = await self._core.dispatch(ctx, self._topic_args(cmd.SEARCH_SHARED, action_value(body)))
            public = reply.kind is ReplyKind.SEARCH   # a refusal (help, error) goes to the presser alone
            await self._respond(body, reply, in_channel=public, interactive=False, feedback=not public,
                                shared_by=ctx.user.user if public else None)

        self._answer_in_background(body, share)

    async def _on_subscribe(self, ack: Any, body: dict[str, Any], client: AsyncWebClient) -> None:
        """"Subscribe to <topic>" under a search answer."""
        await ack()

        async def subscribe() -> None:
            ctx = await self._interaction(client, body)
            reply = await self._core.dispatch(ctx, self._topic_args(cmd.SUBSCRIBE, action_value(body)))
            await self._respond(body, reply, in_channel=False)

        self._answer_in_background(body, subscribe)

    async def _on_feedback(self, ack: Any, body: dict[str, Any]) -> None:
        """👍 / 👎 / "Fewer like this" under a paper: record the vote, confirm to the voter alone.

        The action id and value are checked like a typed vote (:func:`bot.commands.vote_args`);
        the voter is whoever Slack says clicked, never anything in the value.
        """
        await ack()
        actions = body.get("actions") or [{}]
        action_id = str(actions[0].get("action_id") or "")
        vote = next((v for v, a in FEEDBACK_ACTIONS.items() if a == action_id), "")
        ctx = interaction_context(body)
        control = parse_feedback_value(action_value(body))

        async def record() -> None:
            if control is None:
                args = CommandArgs(cmd.HELP, problem="That button is not one of mine; the vote was not recorded.")
            else:
                try:
                    topic = await topic_of(self._storage, control, user=ctx.user,
                                           max_length=self._settings.max_topic_length)
                except InputError as exc:
                    args = CommandArgs(cmd.HELP, problem=str(exc))
                else:
                    args = vote_args(vote, control.arg or "", topic, max_topic_length=self._settings.max_topic_length)
            reply = await self._core.dispatch(ctx, args)
            await self._respond(body, reply, in_channel=False)

        self._answer_in_background(body, record)

    async def publish_home(self, client: AsyncWebClient, team: str, user_id: str) -> None:
        """Render and publish one person's Home tab (failures are logged, not raised)."""
        user = UserRef(PLATFORM, team, user_id)
        setting = await self._storage.topics.setting(user)
        channels = await self._storage.channels.for_creator(PLATFORM, team, user_id)
        tz, _ = await self._facts(client, team, user_id)
        view = home_view(setting, channels, default_time=format_time(self._settings.default_post_time),
                         default_zone=tz or self._settings.default_timezone)
        try:
            await client.views_publish(user_id=user_id, view=view)
        except CALL_FAILURES as exc:
            log.warning("views.publish failed in workspace %r: %s", team, error_code(exc))

    async def _on_home_opened(self, event: dict[str, Any], body: dict[str, Any], client: AsyncWebClient) -> None:
        if event.get("tab", "home") != "home":
            return
        self._in_background(lambda: self.publish_home(client, team_of(body), str(event["user"])), essential=True)

    async def _on_remove_topic(self, ack: Any, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()

        async def remove() -> None:
            ctx = await self._interaction(client, body)
            await self._core.dispatch(ctx, self._topic_args(cmd.UNSUBSCRIBE, action_value(body)))
            await self.publish_home(client, ctx.user.workspace, ctx.user.user)

        self._in_background(remove, essential=True)

    async def _on_add_topic(self, ack: Any, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()

        async def open_modal() -> None:
            try:
                await client.views_open(trigger_id=str(body.get("trigger_id") or ""), view=add_topic_modal())
            except CALL_FAILURES as exc:
                log.warning("views.open failed: %s", error_code(exc))

        self._spawn(open_modal)   # the trigger expires in 3 s: never queued behind commands

    async def _on_add_topic_submitted(self, ack: Any, body: dict[str, Any], view: dict[str, Any],
                                      client: AsyncWebClient) -> None:
        """The Add topic modal: subscribe, or show what is wrong inside the modal.

        Slack closes the modal with an error unless it is answered within 3 s. The topic is
        checked at once; the subscription gets :attr:`modal_ack_budget` seconds to report a
        refusal (e.g. too many topics) inside the modal, after which the modal is closed and
        the work finishes on its own (the Home tab then shows the result).
        """
        args = self._topic_args(cmd.SUBSCRIBE, submitted_topic(view))
        if args.name != cmd.SUBSCRIBE:
            await ack(response_action="errors", errors={TOPIC_BLOCK: args.problem or "That topic does not work."})
            return
        team, user_id = team_of(body), str(body["user"]["id"])

        async def subscribe() -> Reply:
            ctx = await self._interaction(client, body)   # users.info (cached): the person's time zone
            return await self._core.dispatch(ctx, args)

        work = asyncio.ensure_future(subscribe())
        try:
            reply = await asyncio.wait_for(asyncio.shield(work), self.modal_ack_budget)
        except asyncio.TimeoutError:
            await ack()

            async def finish() -> None:
                late = await work
                if late.is_error:
                    log.info("Add topic for %s in %s answered after the modal closed: %s", user_id, team, late.title)
                await self.publish_home(client, team, user_id)

            self._spawn(finish)
            return
        if reply.is_error:
            await ack(response_action="errors", errors={TOPIC_BLOCK: " ".join(reply.lines)[:300] or reply.title})
            return
        await ack()
        self._in_background(lambda: self.publish_home(client, team, user_id), essential=True)

    # --- install and uninstall -------------------------------------------------------------------

    async def _on_installed(self, args: AsyncSuccessArgs) -> BoltResponse:
        installation = args.installation
        workspace = installation.team_id or installation.enterprise_id
        if workspace:
            await self._storage.workspaces.activate(PLATFORM, workspace, installation.team_name,
                                                    default_timezone=await self._installer_timezone(installation))
            log.info("Slack workspace %s installed Paperboy", workspace)
        return await args.default.success(args)

    async def _installer_timezone(self, installation: Any) -> str | None:
        """The installing person's time zone: the workspace's default for people Slack gives none."""
        if not installation.bot_token or not installation.user_id:
            return None
        tz, _ = await self._facts(self._new_client(installation.bot_token), installation.team_id or "",
                                  installation.user_id)
        return tz

    async def _on_install_failed(self, args: AsyncFailureArgs) -> BoltResponse:
        log.warning("Slack install failed: %r", args.reason)   # the reason is the redirect's error= (outside text)
        return await args.default.failure(args)

    async def _forget(self, body: dict[str, Any], reason: str) -> None:
        """Deactivate the workspace (pausing its posts and alerts) and delete its installation."""
        team = team_of(body)
        await self._storage.workspaces.deactivate(PLATFORM, team, reason)
        if self.installation_store is not None:
            await self.installation_store.async_delete_all(enterprise_id=body.get("enterprise_id"), team_id=team)
        log.info("Slack workspace %s deactivated: %s", team, reason)

    async def _on_uninstalled(self, body: dict[str, Any]) -> None:
        self._in_background(lambda: self._forget(body, "uninstalled"), essential=True)

    async def _on_tokens_revoked(self, event: dict[str, Any], body: dict[str, Any]) -> None:
        self._in_background(lambda: self._revoke(event, body), essential=True)

    async def _revoke(self, event: dict[str, Any], body: dict[str, Any]) -> None:
        tokens = event.get("tokens") or {}
        if tokens.get("bot"):
            await self._forget(body, "token_revoked")
        if self.installation_store is not None:
            for user_id in tokens.get("oauth") or ():
                await self.installation_store.async_delete_installation(
                    enterprise_id=body.get("enterprise_id"), team_id=team_of(body), user_id=user_id)


class _QuietConnectFailures(logging.Filter):
    """slack_sdk's Socket Mode client logs a traceback for each failed WebSocket connect and retries on
    its own; the supervisor reports each failure in one line, so those records go to DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and str(record.msg).startswith("Failed to connect"):
            record.levelno, record.levelname, record.exc_info, record.exc_text = logging.DEBUG, "DEBUG", None, None
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


_SOCKET_LOG = logging.getLogger("adapters.slack.socket_mode")
_SOCKET_LOG.addFilter(_QuietConnectFailures())


class SlackSocketConnection:
    """One Socket Mode session: check the bot token, open a WebSocket URL, connect, stay until it drops.

    Each run builds a fresh slack_sdk client with its own reconnecting switched off: when the
    session drops, :meth:`run` raises and the supervisor starts a new one with backoff (slack_sdk's
    own reconnect loop retries forever, logging a traceback each time, and cannot be stopped
    while it connects).
    """

    name = "slack"

    def __init__(self, adapter: SlackAdapter) -> None:
        self.adapter = adapter

    async def run(self, connected: Any) -> None:
        from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

        adapter = self.adapter
        await adapter.check_credentials()
        url = await adapter.open_socket_url()
        assert adapter._settings.slack_app_token is not None  # noqa: SLF001
        handler = AsyncSocketModeHandler(adapter.app, adapter._settings.slack_app_token.get_secret_value(),  # noqa: SLF001
                                         logger=_SOCKET_LOG)
        client = handler.client
        client.default_auto_reconnect_enabled = client.auto_reconnect_enabled = False
        client.wss_uri = url
        try:
            try:
                async with asyncio.timeout(SOCKET_CONNECT_TIMEOUT_SECONDS):
                    await client.connect()
            except TimeoutError:
                raise ConnectionError(f"Socket Mode WebSocket did not open within "
                                      f"{SOCKET_CONNECT_TIMEOUT_SECONDS:.0f} s") from None
            if not await client.is_connected():
                raise ConnectionError("Socket Mode WebSocket closed at once")
            log.info("Slack Socket Mode connected")
            connected()
            while await client.is_connected():
                await asyncio.sleep(SOCKET_CHECK_SECONDS)
            raise ConnectionError("Socket Mode connection lost")
        finally:
            await asyncio.shield(_close_quietly(handler))


async def _close_quietly(handler: Any) -> None:
    try:
        await handler.close_async()
    except Exception:  # noqa: BLE001 - closing a broken session
        log.debug("closing the Socket Mode client failed", exc_info=True)


class SlackHttpConnection:
    """HTTP mode: Slack posts to the process's web server; what can go down is the bot token and the
    way to Slack (answers go out through it), so this checks ``auth.test`` at start and every
    :attr:`recheck_seconds`, and ends (to be retried) when a check fails."""

    name = "slack"

    def __init__(self, adapter: SlackAdapter, *, recheck_seconds: float = HTTP_RECHECK_SECONDS) -> None:
        self.adapter = adapter
        self.recheck_seconds = recheck_seconds

    async def run(self, connected: Any) -> None:
        await self.adapter.check_credentials()
        connected()
        while True:
            await asyncio.sleep(self.recheck_seconds)
            await self.adapter.check_credentials()
