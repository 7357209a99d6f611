"""A fake Discord REST API: a real HTTP server on 127.0.0.1 that records every call.

Point discord.py at it with ``DISCORD_API_URL=<fake.url>`` (the adapter rebases
its routes; ``fake.url`` ends with ``/api/v10``). Endpoints, by the name calls
are recorded under:

========================  ==========================================================
``get_me``                GET  /users/@me (login)
``get_application``       GET  /oauth2/applications/@me (login)
``gateway``               GET  /gateway
``gateway_bot``           GET  /gateway/bot
``sync_global``           PUT  /applications/{app}/commands
``sync_guild``            PUT  /applications/{app}/guilds/{guild}/commands
``create_message``        POST /channels/{channel}/messages
``create_dm``             POST /users/@me/channels
``interaction_callback``  POST /interactions/{id}/{token}/callback
``followup``              POST /webhooks/{app}/{token}
``edit_original``         PATCH /webhooks/{app}/{token}/messages/@original
========================  ==========================================================

Switches: :meth:`FakeDiscordApi.fail` answers an endpoint with a Discord
error code (50007, 10003, 50013, ...), :meth:`FakeDiscordApi.rate_limit`
with HTTP 429 as Discord sends it (JSON ``retry_after`` and ``global``, the
``Retry-After`` and ``X-RateLimit-*`` headers, and ``Via`` — discord.py only
retries a 429 that came through Discord's proxy). :meth:`wait_for` awaits
calls without sleeping. With ``token`` set, any other ``Authorization`` is
answered 401 ``{"message": "401: Unauthorized", "code": 0}``, as Discord
answers a bad bot token (discord.py's login then raises ``LoginFailure``);
interaction callbacks and follow-ups carry their token in the path instead.

The same server is the gateway: :attr:`FakeDiscordApi.gateway`, a
:class:`tests.fakes.discord_gateway.FakeDiscordGateway` whose websocket URL
Get Gateway and Get Gateway Bot hand out.

Create-message honours ``enforce_nonce`` as Discord documents it (discord-api-docs,
Resources > Message > Create Message, JSON param ``enforce_nonce``; the same text is in
discord-api-types' ``RESTPostAPIChannelMessageJSONBody``): "If true and nonce is present, it
will be checked for uniqueness in the past few minutes. If another message was created by the
same author with the same nonce, that message will be returned and no new message will be
created." The created message echoes its ``nonce``. ``nonce_window`` (seconds, default 120:
"a few minutes" is not documented more precisely, so the fake takes the short end) and
``clock`` let a test step past the window. ``created`` lists the messages really created.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.discord_gateway import FakeDiscordGateway
from tests.fakes.loopback import serve_on_loopback

APPLICATION_ID = "900000000000000001"
BOT_USER = {"id": APPLICATION_ID, "username": "Paperboy", "discriminator": "0", "global_name": None,
            "avatar": None, "bot": True}
OWNER = {"id": "900000000000000002", "username": "owner", "discriminator": "0", "global_name": "Owner",
         "avatar": None}
# Interaction callbacks and webhook follow-ups authenticate with the interaction token in the path,
# not a bot token (discord.py sends them without Authorization).
TOKEN_IN_PATH = frozenset({"interaction_callback", "followup", "edit_original"})
ERROR_MESSAGES = {
    50007: (403, "Cannot send messages to this user"),
    10003: (404, "Unknown Channel"),
    10013: (404, "Unknown User"),
    50001: (403, "Missing Access"),
    50013: (403, "Missing Permissions"),
    10062: (404, "Unknown interaction"),
    0: (500, "Internal Server Error"),
}


def _json(body: Any, *, status: int, headers: dict[str, str]) -> web.Response:
    """JSON with the bare ``application/json`` content type Discord sends (discord.py compares it exactly)."""
    return web.Response(body=json.dumps(body).encode(), status=status, headers=headers, content_type="application/json")


@dataclass
class DiscordCall:
    """One request the fake received: endpoint name, path parameters, query, JSON body, auth header."""

    name: str
    params: dict[str, str]
    query: dict[str, str]
    body: Any
    authorization: str | None = None


@dataclass
class _Failure:
    code: int = 0
    status: int = 400
    retry_after: float | None = None
    is_global: bool = False
    via: bool = True
    times: int | None = 1            # None = until cleared
    match: dict[str, str] = field(default_factory=dict)


@dataclass
class FakeDiscordApi:
    """The fake server; ``async with FakeDiscordApi() as discord_api:`` starts and stops it."""

    token: str | None = None                    # None: any bot token is accepted (REST and gateway)
    calls: list[DiscordCall] = field(default_factory=list)
    commands: dict[str, list[dict[str, Any]]] = field(default_factory=dict)   # scope -> synced commands
    created: list[dict[str, Any]] = field(default_factory=list)
    nonce_window: float = 120.0
    clock: Callable[[], float] = time.monotonic
    _nonces: dict[str, tuple[float, dict[str, Any]]] = field(default_factory=dict)
    _failures: dict[str, list[_Failure]] = field(default_factory=dict)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1_200_000_000_000_000_000))
    _runner: web.AppRunner | None = None
    _port: int = 0
    _changed: asyncio.Condition | None = None
    gateway: FakeDiscordGateway = field(init=False)

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> FakeDiscordApi:
        app = web.Application()
        self.gateway = FakeDiscordGateway(user=BOT_USER, application_id=APPLICATION_ID, guild_ids=[GUILD_ID])
        self.gateway.token = self.token
        self.gateway.mount(app)
        routes = (
            ("GET", "/users/@me", "get_me"),
            ("GET", "/oauth2/applications/@me", "get_application"),
            ("GET", "/gateway", "gateway"),
            ("GET", "/gateway/bot", "gateway_bot"),
            ("PUT", "/applications/{app}/commands", "sync_global"),
            ("PUT", "/applications/{app}/guilds/{guild}/commands", "sync_guild"),
            ("POST", "/channels/{channel}/messages", "create_message"),
            ("POST", "/users/@me/channels", "create_dm"),
            ("POST", "/interactions/{interaction}/{token}/callback", "interaction_callback"),
            ("POST", "/webhooks/{app}/{token}", "followup"),
            ("PATCH", "/webhooks/{app}/{token}/messages/@original", "edit_original"),
        )
        for method, path, name in routes:
            app.router.add_route(method, "/api/v10" + path, self._handler(name))
        self._runner, self._port = await serve_on_loopback(app)
        self.gateway.started(self._port)
        self._changed = asyncio.Condition()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeDiscordApi:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        """The REST base, as ``DISCORD_API_URL`` takes it."""
        return f"http://127.0.0.1:{self._port}/api/v10"

    # --- switches ------------------------------------------------------------------------------

    def fail(self, name: str, code: int, *, status: int | None = None, times: int | None = 1,
             **match: str) -> None:
        """Answer endpoint ``name`` with Discord error ``code`` (only where path params equal ``match``)."""
        default_status, _ = ERROR_MESSAGES.get(code, (400, "Bad Request"))
        self._failures.setdefault(name, []).append(
            _Failure(code=code, status=status or default_status, times=times, match=match))

    def rate_limit(self, name: str, *, retry_after: float, is_global: bool = False, via: bool = True,
                   times: int | None = 1, **match: str) -> None:
        """Answer endpoint ``name`` with HTTP 429 (``times`` times, None = until cleared)."""
        self._failures.setdefault(name, []).append(
            _Failure(status=429, retry_after=retry_after, is_global=is_global, via=via, times=times, match=match))

    def clear_failures(self) -> None:
        self._failures.clear()

    # --- inspection --------------------------------------------------------------------------------

    def calls_to(self, name: str) -> list[DiscordCall]:
        return [c for c in self.calls if c.name == name]

    def names(self) -> list[str]:
        return [c.name for c in self.calls]

    async def wait_for(self, name: str, count: int = 1, timeout: float = 10) -> list[DiscordCall]:
        """Wait until endpoint ``name`` has been called ``count`` times."""
        assert self._changed is not None
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: len(self.calls_to(name)) >= count), timeout)
        return self.calls_to(name)

    # --- handlers -----------------------------------------------------------------------------------

    def _handler(self, name: str):  # noqa: ANN202 - aiohttp handler factory
        async def handle(request: web.Request) -> web.StreamResponse:
            raw = await request.text() if request.can_read_body else ""
            body = json.loads(raw) if raw else None
            call = DiscordCall(name, dict(request.match_info), dict(request.query), body,
                               request.headers.get("Authorization"))
            self.calls.append(call)
            assert self._changed is not None
            async with self._changed:
                self._changed.notify_all()
            if (self.token is not None and name not in TOKEN_IN_PATH
                    and call.authorization != f"Bot {self.token}"):
                return _json({"message": "401: Unauthorized", "code": 0}, status=401, headers={"Via": "1.1 google"})
            failure = self._failure_for(name, call.params)
            if failure is not None:
                return self._failure_response(failure)
            status, answer = self._answer(name, call)
            if status == 204:
                return web.Response(status=204, headers=self._bucket_headers(name))
            return _json(answer, status=status, headers=self._bucket_headers(name))

        return handle

    def _failure_for(self, name: str, params: dict[str, str]) -> _Failure | None:
        for failure in self._failures.get(name, []):
            if any(params.get(k) != v for k, v in failure.match.items()):
                continue
            if failure.times is not None:
                failure.times -= 1
                if failure.times <= 0:
                    self._failures[name].remove(failure)
            return failure
        return None

    @staticmethod
    def _bucket_headers(name: str) -> dict[str, str]:
        return {"X-RateLimit-Limit": "5", "X-RateLimit-Remaining": "4", "X-RateLimit-Reset-After": "1.000",
                "X-RateLimit-Bucket": f"bucket-{name}", "Via": "1.1 google"}

    @staticmethod
    def _failure_response(failure: _Failure) -> web.Response:
        if failure.status == 429:
            assert failure.retry_after is not None
            headers = {
                "Retry-After": str(max(1, math.ceil(failure.retry_after))),
                "X-RateLimit-Limit": "5", "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset-After": f"{failure.retry_after:.3f}",
                "X-RateLimit-Bucket": "bucket-limited",
                "X-RateLimit-Scope": "global" if failure.is_global else "user",
            }
            if failure.is_global:
                headers["X-RateLimit-Global"] = "true"
            if failure.via:
                headers["Via"] = "1.1 google"
            body = {"message": "You are being rate limited.", "retry_after": failure.retry_after,
                    "global": failure.is_global}
            return _json(body, status=429, headers=headers)
        _, message = ERROR_MESSAGES.get(failure.code, (failure.status, "Error"))
        return _json({"message": message, "code": failure.code}, status=failure.status,
                     headers={"Via": "1.1 google"})

    def _message(self, channel_id: str, body: dict[str, Any], *, webhook: bool = False) -> dict[str, Any]:
        message = {
            "id": str(next(self._ids)), "channel_id": channel_id, "type": 0,
            "content": body.get("content") or "", "author": BOT_USER,
            "timestamp": "2025-01-06T09:00:00.000000+00:00", "edited_timestamp": None, "tts": False,
            "mention_everyone": False, "mentions": [], "mention_roles": [], "attachments": [],
            "embeds": body.get("embeds") or [], "pinned": False, "components": body.get("components") or [],
            "flags": body.get("flags") or 0,
        }
        if webhook:
            message["webhook_id"] = APPLICATION_ID
            message["application_id"] = APPLICATION_ID
        return message

    def _create_message(self, channel_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """A new message, or with ``enforce_nonce`` the one this author created with the same nonce lately."""
        nonce = body.get("nonce")
        now = self.clock()
        if nonce is not None and body.get("enforce_nonce"):
            earlier = self._nonces.get(str(nonce))
            if earlier is not None and now - earlier[0] <= self.nonce_window:
                return earlier[1]
        message = self._message(channel_id, body)
        if nonce is not None:
            message["nonce"] = nonce
            self._nonces[str(nonce)] = (now, message)
        self.created.append(message)
        return message

    def _answer(self, name: str, call: DiscordCall) -> tuple[int, Any]:
        body = call.body if isinstance(call.body, dict) else {}
        if name == "get_me":
            return 200, {**BOT_USER, "flags": 0, "mfa_enabled": False, "verified": True}
        if name == "get_application":
            return 200, {"id": APPLICATION_ID, "name": "Paperboy", "description": "", "icon": None,
                         "bot_public": True, "bot_require_code_grant": False, "owner": OWNER, "team": None,
                         "verify_key": "0" * 64, "flags": 0, "summary": "", "rpc_origins": [],
                         "interactions_endpoint_url": None}
        if name == "gateway":
            return 200, {"url": self.gateway.url}
        if name == "gateway_bot":
            return 200, {"url": self.gateway.url, "shards": 1,
                         "session_start_limit": {"total": 1000, "remaining": 999, "reset_after": 0,
                                                 "max_concurrency": 1}}
        if name in ("sync_global", "sync_guild"):
            scope = call.params.get("guild", "global")
            commands = [{**c, "id": str(next(self._ids)), "application_id": APPLICATION_ID, "version": "1",
                         **({"guild_id": scope} if scope != "global" else {})} for c in (call.body or [])]
            self.commands[scope] = commands
            return 200, commands
        if name == "create_message":
            return 200, self._create_message(call.params["channel"], body)
        if name == "create_dm":
            recipient = {"id": str(body.get("recipient_id")), "username": "someone", "discriminator": "0",
                         "global_name": None, "avatar": None}
            return 200, {"id": str(next(self._ids)), "type": 1, "last_message_id": None, "recipients": [recipient]}
        if name == "interaction_callback":
            interaction_type = body.get("type")
            flags = (body.get("data") or {}).get("flags") or 0
            return 200, {"interaction": {"id": call.params["interaction"], "type": 2,
                                         "response_message_loading": interaction_type == 5,
                                         "response_message_ephemeral": bool(flags & 64)},
                         "resource": {"type": interaction_type}}
        if name in ("followup", "edit_original"):
            return 200, self._message("0", body, webhook=True)
        return 404, {"message": "404: Not Found", "code": 0}


# --- recorded interaction payloads --------------------------------------------------------------------
# Shapes as Discord delivers them in INTERACTION_CREATE (fields recorded from a real guild; ids synthetic).

GUILD_ID = "810000000000000001"
CHANNEL_ID = "820000000000000001"
USER_ID = "830000000000000001"
COMMAND_ID = "840000000000000001"
MANAGE_CHANNELS = 1 << 4
MEMBER_PERMISSIONS = "2248473465835073"          # a plain member: no Manage Channels
MODERATOR_PERMISSIONS = str(int(MEMBER_PERMISSIONS) | MANAGE_CHANNELS)
APP_PERMISSIONS = "274877926400"
_interaction_ids = itertools.count(850_000_000_000_000_001)


def _user(user_id: str) -> dict[str, Any]:
    return {"avatar": None, "avatar_decoration_data": None, "clan": None, "collectibles": None,
            "discriminator": "0", "global_name": "Ada Lovelace", "id": user_id, "primary_guild": None,
            "public_flags": 0, "username": "ada"}


def interaction_payload(interaction_type: int, data: dict[str, Any], *, guild_id: str | None = GUILD_ID,
                        channel_id: str = CHANNEL_ID, user_id: str = USER_ID,
                        permissions: str = MEMBER_PERMISSIONS, message: dict[str, Any] | None = None,
                        nick: str | None = None) -> dict[str, Any]:
    """An interaction as the gateway delivers it: in a server (with ``member``) or in a DM (with ``user``)."""
    interaction_id = str(next(_interaction_ids))
    payload: dict[str, Any] = {
        "app_permissions": APP_PERMISSIONS,
        "application_id": APPLICATION_ID,
        "attachment_size_limit": 10485760,
        "channel_id": channel_id,
        "data": data,
        "entitlement_sku_ids": [],
        "entitlements": [],
        "id": interaction_id,
        "locale": "en-GB",
        "token": f"aW50ZXJhY3Rpb246{interaction_id}OnRva2Vu",
        "type": interaction_type,
        "version": 1,
    }
    if guild_id:
        payload.update({
            "authorizing_integration_owners": {"0": guild_id},
            "channel": {"flags": 0, "guild_id": guild_id, "id": channel_id, "last_message_id": None,
                        "name": "research", "nsfw": False, "parent_id": None, "permissions": permissions,
                        "position": 3, "rate_limit_per_user": 0, "topic": None, "type": 0},
            "context": 0,
            "guild": {"features": [], "id": guild_id, "locale": "en-US"},
            "guild_id": guild_id,
            "guild_locale": "en-US",
            "member": {"avatar": None, "banner": None, "communication_disabled_until": None, "deaf": False,
                       "flags": 0, "joined_at": "2024-03-01T10:00:00.000000+00:00", "mute": False, "nick": nick,
                       "pending": False, "permissions": permissions, "premium_since": None, "roles": [],
                       "unusual_dm_activity_until": None, "user": _user(user_id)},
        })
    else:
        payload.update({
            "authorizing_integration_owners": {"0": "0"},
            "channel": {"flags": 0, "id": channel_id, "last_message_id": None, "recipients": [_user(user_id)],
                        "type": 1},
            "context": 1,
            "user": _user(user_id),
        })
    if message is not None:
        payload["message"] = message
    return payload


def _option_type(value: object) -> int:
    """Discord's option type for a value: boolean 5, integer 4, string 3."""
    return 5 if isinstance(value, bool) else 4 if isinstance(value, int) else 3


def slash_data(*path: str, guild_id: str | None = GUILD_ID, **options: Any) -> dict[str, Any]:
    """``data`` of an application command: ``slash_data("papers", "alerts", "on", time="08:30")``."""
    leaf = [{"name": k, "type": _option_type(v), "value": v} for k, v in options.items()]
    nested: list[dict[str, Any]] = leaf
    for depth, name in reversed(list(enumerate(path[1:], start=1))):
        is_leaf = depth == len(path) - 1
        nested = [{"name": name, "type": 1 if is_leaf else 2, "options": nested}]
    data: dict[str, Any] = {"id": COMMAND_ID, "name": path[0], "type": 1, "options": nested}
    if guild_id:
        data["guild_id"] = guild_id
    return data


def slash_payload(*path: str, guild_id: str | None = GUILD_ID, permissions: str = MEMBER_PERMISSIONS,
                  user_id: str = USER_ID, channel_id: str = CHANNEL_ID, **options: Any) -> dict[str, Any]:
    return interaction_payload(2, slash_data(*path, guild_id=guild_id, **options), guild_id=guild_id,
                               permissions=permissions, user_id=user_id, channel_id=channel_id)


def autocomplete_payload(*path: str, focused: str, value: str, guild_id: str | None = GUILD_ID,
                         user_id: str = USER_ID, **options: str) -> dict[str, Any]:
    data = slash_data(*path, guild_id=guild_id, **options)
    leaf = data
    while leaf.get("options") and leaf["options"][0].get("type") in (1, 2):
        leaf = leaf["options"][0]
    leaf.setdefault("options", []).append({"name": focused, "type": 3, "value": value, "focused": True})
    return interaction_payload(4, data, guild_id=guild_id, user_id=user_id)


def button_payload(custom_id: str, message: dict[str, Any], *, guild_id: str | None = GUILD_ID,
                   user_id: str = USER_ID) -> dict[str, Any]:
    """A button press on ``message`` (an ephemeral message carries flags 64 and its components)."""
    return interaction_payload(3, {"component_type": 2, "custom_id": custom_id}, guild_id=guild_id,
                               user_id=user_id, message=message)


def message_with(components: list[dict[str, Any]], *, channel_id: str = CHANNEL_ID,
                 flags: int = 64) -> dict[str, Any]:
    """The message object a component interaction carries."""
    return {"id": "860000000000000001", "channel_id": channel_id, "type": 20, "content": "", "author": BOT_USER,
            "timestamp": "2025-01-06T09:00:00.000000+00:00", "edited_timestamp": None, "tts": False,
            "mention_everyone": False, "mentions": [], "mention_roles": [], "attachments": [], "embeds": [],
            "pinned": False, "components": components, "flags": flags, "application_id": APPLICATION_ID,
            "webhook_id": APPLICATION_ID,
            "interaction_metadata": {"id": "850000000000000000", "type": 2, "user": _user(USER_ID),
                                     "authorizing_integration_owners": {"0": GUILD_ID}}}
