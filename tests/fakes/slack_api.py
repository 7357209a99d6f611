"""A fake Slack Web API: a real HTTP server on 127.0.0.1 that records every call.

Point slack_sdk at it with ``SLACK_API_URL=<fake.url>`` (``AsyncWebClient(base_url=...)``).
It answers ``auth.test``, ``chat.postMessage``, ``chat.postEphemeral``,
``conversations.open``, ``users.info``, ``views.publish``, ``views.open`` and
``oauth.v2.access``, and serves response URLs (``fake.response_url(key)``) so
slash-command answers are recorded too. Switches: :meth:`FakeSlackApi.fail`
answers a method with a Slack error code, :meth:`FakeSlackApi.rate_limit`
with HTTP 429 and ``Retry-After`` (for one channel only, as Slack limits posting per
channel). :meth:`FakeSlackApi.wait_for` awaits calls without sleeping.

Posted messages are kept per channel (``messages``), with their ``metadata``
(``{"event_type", "event_payload"}``, chat.postMessage's ``metadata`` argument),
and ``conversations.history`` returns them as Slack documents it
(docs.slack.dev/reference/methods/conversations.history): newest first, only
those with ``ts`` after ``oldest`` (and before ``latest``), at most ``limit`` per
page with ``has_more`` and ``response_metadata.next_cursor``, and ``metadata``
only when ``include_all_metadata`` is true. Slack caps ``limit`` at 15 for apps
outside the Marketplace since 2025 (changelog 2025-05-terms-rate-limit-update);
``history_limit`` sets that cap. A workspace that did not grant the history scopes
is :meth:`fail` ("conversations.history", "missing_scope").

Slow or lost answers: ``post_delay`` makes every post take that long (the message is
posted once the delay is over, as a slow Slack would), :meth:`answer_late` makes the
next posts be *accepted at once* and answered only after ``seconds`` -- past a client's
timeout the outcome is unknown to the client although the message is in the channel.

Also here: :func:`signed_headers`, Slack's request signing for tests that
post events to the app in HTTP mode.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web
from slack_sdk.signature import SignatureVerifier

from tests.fakes.loopback import serve_on_loopback

BOT_USER = "UBOTPAPERBOY"


@dataclass
class SlackCall:
    """One request the fake received: method (or ``response:<key>``), its parameters, the bearer token."""

    method: str
    params: dict[str, Any]
    token: str | None = None
    at: float = field(default_factory=time.monotonic)   # when the request arrived


@dataclass
class _RawAnswer:
    """An answer that is not Slack's JSON: what a proxy or load balancer in front of Slack sends."""

    status: int
    body: str
    content_type: str
    times: int | None = None


PROXY_503 = "upstream connect error or disconnect/reset before headers. reset reason: overflow"
HTML_ERROR_PAGE = ("<html>\n<head><title>502 Bad Gateway</title></head>\n<body>\n"
                   "<center><h1>502 Bad Gateway</h1></center>\n</body>\n</html>\n")


@dataclass
class _Failure:
    error: str
    status: int = 200
    retry_after: float | None = None
    times: int | None = None          # None = until cleared
    channel: str | None = None        # only calls to this channel


@dataclass
class FakeSlackApi:
    """The fake server; ``async with FakeSlackApi() as slack:`` starts and stops it."""

    team_id: str = "T1"
    tokens: dict[str, str] = field(default_factory=dict)      # token -> team id (empty: accept any)
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    oauth_team: dict[str, str] = field(default_factory=lambda: {"id": "T2", "name": "Team Two"})
    oauth_token: str = "xoxb-installed-T2"
    calls: list[SlackCall] = field(default_factory=list)
    messages: dict[str, list[dict[str, Any]]] = field(default_factory=dict)   # channel -> posted, oldest first
    post_delay: float = 0.0
    history_limit: int = 999
    post_times: dict[str, list[float]] = field(default_factory=dict)   # channel -> monotonic time of each post
    _late: list[float] = field(default_factory=list)
    _last_ts: float = 0.0
    _failures: dict[str, list[_Failure]] = field(default_factory=dict)
    _raw: dict[str, _RawAnswer] = field(default_factory=dict)
    _runner: web.AppRunner | None = None
    _port: int = 0
    _changed: asyncio.Condition | None = None
    _ts: itertools.count = field(default_factory=lambda: itertools.count(1))
    _sockets: list[web.WebSocketResponse] = field(default_factory=list)
    #: the client ends (address, port) of every TCP connection a request came in on
    connections: set[tuple[str, int]] = field(default_factory=set)

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self) -> FakeSlackApi:
        app = web.Application()
        app.router.add_post("/api/{method}", self._api)
        app.router.add_get("/api/{method}", self._api)
        app.router.add_post("/response/{key}", self._response_url)
        app.router.add_get("/socket", self._socket)
        self._runner, self._port = await serve_on_loopback(app)
        self._changed = asyncio.Condition()
        return self

    async def stop(self) -> None:
        for socket in list(self._sockets):
            await socket.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeSlackApi:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        """The Web API base URL (ends with ``/api/``, as slack_sdk expects)."""
        return f"http://127.0.0.1:{self._port}/api/"

    def response_url(self, key: str = "r1") -> str:
        return f"http://127.0.0.1:{self._port}/response/{key}"

    # --- switches ------------------------------------------------------------------------

    def fail(self, method: str, error: str, *, times: int | None = None, status: int = 200,
             channel: str | None = None) -> None:
        """Answer ``method`` with ``{"ok": false, "error": error}`` (``times`` times, or until cleared)."""
        self._failures.setdefault(method, []).append(_Failure(error, status=status, times=times, channel=channel))

    def rate_limit(self, method: str, *, retry_after: float = 0, times: int | None = 1,
                   channel: str | None = None) -> None:
        """Answer ``method`` with HTTP 429 and ``Retry-After`` (only for ``channel``, if given)."""
        self._failures.setdefault(method, []).append(
            _Failure("ratelimited", status=429, retry_after=retry_after, times=times, channel=channel))

    def answer_late(self, seconds: float, *, times: int = 1) -> None:
        """The next ``times`` posts are accepted at once and answered after ``seconds``."""
        self._late.extend([seconds] * times)

    def posted(self, channel: str) -> list[dict[str, Any]]:
        """Messages in ``channel``, oldest first."""
        return list(self.messages.get(channel, []))

    def delivery_ids(self, channel: str) -> list[Any]:
        """The ``paperboy_delivery`` ids of the messages in ``channel``."""
        return [((m.get("metadata") or {}).get("event_payload") or {}).get("delivery_id")
                for m in self.messages.get(channel, [])]

    def answer_raw(self, method: str = "*", *, status: int = 503, body: str = PROXY_503,
                   content_type: str = "text/plain", times: int | None = None) -> None:
        """Answer ``method`` (``"*"``: every method) with a body that is not Slack's JSON.

        The default is what Envoy in front of a service sends when the upstream is overloaded:
        ``503`` with ``content-type: text/plain``; ``content_type="text/html"`` with
        :data:`HTML_ERROR_PAGE` is a load balancer's error page; ``content_type="application/json"``
        gives JSON of the wrong shape (``[1]``, ``"ok"``, ``{"ok": true, "user": "x"}``).
        slack_sdk hands a ``text/plain`` body over as a ``str`` and reads other non-JSON
        content types as ``{}`` (``slack_sdk/web/async_internal_utils.py``,
        ``_request_with_session``); ``AsyncSlackResponse.validate`` raises ``SlackApiError``
        for any status but 200 and ``AttributeError`` for a 200 whose body is not an object.
        """
        self._raw[method] = _RawAnswer(status, body, content_type, times)

    def clear_failures(self) -> None:
        self._failures.clear()
        self._raw.clear()

    # --- inspection ----------------------------------------------------------------------------

    def calls_to(self, method: str) -> list[SlackCall]:
        return [c for c in self.calls if c.method == method]

    def responses(self, key: str | None = None) -> list[dict[str, Any]]:
        """Bodies posted to response URLs (all, or those of ``key``)."""
        return [c.params for c in self.calls
                if c.method.startswith("response:") and (key is None or c.method == f"response:{key}")]

    async def wait_for(self, method: str, count: int = 1, timeout: float = 10) -> list[SlackCall]:
        """Wait until ``method`` has been called ``count`` times (``response:<key>`` for response URLs)."""
        assert self._changed is not None

        def enough() -> bool:
            return len(self._matching(method)) >= count

        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(enough), timeout)
        return self._matching(method)

    def _matching(self, method: str) -> list[SlackCall]:
        if method == "response:*":
            return [c for c in self.calls if c.method.startswith("response:")]
        return self.calls_to(method)

    async def _record(self, call: SlackCall) -> None:
        self.calls.append(call)
        assert self._changed is not None
        async with self._changed:
            self._changed.notify_all()

    # --- handlers ------------------------------------------------------------------------------

    @staticmethod
    async def _params(request: web.Request) -> dict[str, Any]:
        params: dict[str, Any] = dict(request.query)
        if request.can_read_body:
            raw = await request.text()
            if request.content_type == "application/json":
                params.update(json.loads(raw or "{}"))
            else:
                params.update(dict(parse_qsl(raw, keep_blank_values=True)))
        for key in ("blocks", "view", "attachments", "metadata"):
            if isinstance(params.get(key), str) and params[key][:1] in "[{":
                params[key] = json.loads(params[key])
        return params

    def _failure_for(self, method: str, params: dict[str, Any]) -> _Failure | None:
        for failure in self._failures.get(method, []):
            if failure.channel is not None and params.get("channel") != failure.channel:
                continue
            if failure.times is not None:
                failure.times -= 1
                if failure.times <= 0:
                    self._failures[method].remove(failure)
            return failure
        return None

    def _seen_connection(self, request: web.Request) -> None:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        if peer:
            self.connections.add((peer[0], peer[1]))

    async def _api(self, request: web.Request) -> web.Response:
        self._seen_connection(request)
        method = request.match_info["method"]
        params = await self._params(request)
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ").strip() or params.pop("token", None)
        params.pop("token", None)
        params.pop("client_secret", None)
        await self._record(SlackCall(method, params, token))

        raw = self._raw.get(method) or self._raw.get("*")
        if raw is not None:
            if raw.times is not None:
                raw.times -= 1
                if raw.times <= 0:
                    self._raw = {k: v for k, v in self._raw.items() if v is not raw}
            return web.Response(status=raw.status, text=raw.body, content_type=raw.content_type)
        failure = self._failure_for(method, params)
        if failure is not None:
            headers = {"Retry-After": str(int(failure.retry_after))} if failure.retry_after is not None else {}
            return web.json_response({"ok": False, "error": failure.error}, status=failure.status, headers=headers)
        if method != "oauth.v2.access" and self.tokens and token not in self.tokens:
            return web.json_response({"ok": False, "error": "invalid_auth"})
        team = self.tokens.get(token or "", self.team_id)
        if method == "chat.postMessage":
            late = self._late.pop(0) if self._late else 0.0
            if self.post_delay and not late:
                await asyncio.sleep(self.post_delay)
            answer = self._answer(method, params, team)   # posted now, whatever becomes of the answer
            if late:
                await asyncio.sleep(late)
            return web.json_response(answer)
        return web.json_response(self._answer(method, params, team))

    def _post_message(self, params: dict[str, Any], ts: str) -> dict[str, Any]:
        channel = str(params.get("channel"))
        message: dict[str, Any] = {"type": "message", "subtype": "bot_message", "ts": ts, "text": params.get("text"),
                                   "bot_id": "BPAPERBOY", "app_id": "A0PAPERBOY", "user": BOT_USER}
        if isinstance(params.get("metadata"), dict):
            message["metadata"] = params["metadata"]
        self.messages.setdefault(channel, []).append(message)
        self.post_times.setdefault(channel, []).append(time.monotonic())
        return message

    def _history(self, params: dict[str, Any]) -> dict[str, Any]:
        """conversations.history: newest first within (oldest, latest), paged by a cursor."""
        channel = str(params.get("channel"))
        if channel not in self.messages and not channel.startswith(("C", "D", "G")):
            return {"ok": False, "error": "channel_not_found"}
        oldest = float(params.get("oldest") or 0)
        latest = float(params.get("latest") or time.time() + 1)
        limit = min(int(params.get("limit") or 100), self.history_limit)
        offset = int(params.get("cursor") or 0)
        with_metadata = str(params.get("include_all_metadata")).lower() in ("true", "1")
        matching = [m for m in reversed(self.messages.get(channel, [])) if oldest < float(m["ts"]) < latest]
        page = matching[offset:offset + limit]
        more = offset + limit < len(matching)
        out = [m if with_metadata else {k: v for k, v in m.items() if k != "metadata"} for m in page]
        return {"ok": True, "messages": out, "has_more": more, "pin_count": 0,
                "response_metadata": {"next_cursor": str(offset + limit) if more else ""}}

    def _answer(self, method: str, params: dict[str, Any], team: str) -> dict[str, Any]:
        self._last_ts = max(time.time(), self._last_ts + 0.000001)   # unique and increasing, as Slack's ts are
        ts = f"{self._last_ts:.6f}"
        if method == "auth.test":
            return {"ok": True, "url": "https://fake.slack.test/", "team": "Fake", "user": "paperboy",
                    "team_id": team, "user_id": BOT_USER, "bot_id": "BPAPERBOY", "is_enterprise_install": False}
        if method == "chat.postMessage":
            message = self._post_message(params, ts)
            return {"ok": True, "channel": params.get("channel"), "ts": ts, "message": message}
        if method == "conversations.history":
            return self._history(params)
        if method == "chat.postEphemeral":
            return {"ok": True, "message_ts": ts}
        if method == "conversations.open":
            user = str(params.get("users") or params.get("user") or "U0").split(",")[0]
            return {"ok": True, "channel": {"id": f"D{user}"}}
        if method == "apps.connections.open":
            return {"ok": True, "url": f"ws://127.0.0.1:{self._port}/socket"}
        if method == "users.info":
            user_id = str(params.get("user"))
            user = {"id": user_id, "team_id": team, "name": user_id.lower(), "tz": "Europe/Berlin",
                    "is_admin": False, "is_owner": False}
            user.update(self.users.get(user_id, {}))
            return {"ok": True, "user": user}
        if method in ("views.publish", "views.open", "views.update"):
            return {"ok": True, "view": {"id": f"V{next(self._ts)}", **(params.get("view") or {})}}
        if method == "oauth.v2.access":
            return {"ok": True, "app_id": "A0PAPERBOY", "authed_user": {"id": "U_INSTALLER"},
                    "scope": "commands,chat:write,im:write,users:read", "token_type": "bot",
                    "access_token": self.oauth_token, "bot_user_id": BOT_USER,
                    "team": dict(self.oauth_team), "enterprise": None, "is_enterprise_install": False}
        return {"ok": True}

    async def socket_send(self, envelope: dict[str, Any]) -> None:
        """Push a Socket Mode envelope to the connected app (its ack is recorded as ``socket:ack``)."""
        assert self._sockets, "no Socket Mode connection"
        await self._sockets[-1].send_str(json.dumps(envelope))

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        """Socket Mode: say hello, then record every acknowledgement the app sends back."""
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        self._sockets.append(socket)
        await socket.send_str(json.dumps({"type": "hello", "num_connections": 1,
                                          "connection_info": {"app_id": "A0PAPERBOY"}}))
        await self._record(SlackCall("socket:connect", {}))
        try:
            async for message in socket:
                if message.type == web.WSMsgType.TEXT:
                    await self._record(SlackCall("socket:ack", json.loads(message.data)))
        finally:
            self._sockets.remove(socket)
        return socket

    async def _response_url(self, request: web.Request) -> web.Response:
        self._seen_connection(request)
        body = await request.json()
        await self._record(SlackCall(f"response:{request.match_info['key']}", body))
        return web.Response(text="ok")


def signed_headers(signing_secret: str, body: str, *, timestamp: int | None = None,
                   content_type: str = "application/x-www-form-urlencoded") -> dict[str, str]:
    """The headers Slack sends with a request: timestamp and ``v0=`` HMAC signature."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    signature = SignatureVerifier(signing_secret).generate_signature(timestamp=stamp, body=body)
    return {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": signature, "Content-Type": content_type}


# --- a paper source for the Slack tests ------------------------------------------------------


HOSTILE_TITLE = "<!channel> Generalization & <@U123> beyond <b>benchmarks</b>"


def tiny_papers() -> list[dict[str, Any]]:
    """A few papers in the Hugging Face API's shape (``paper`` nested), one with a hostile title."""
    base = [
        ("2511.00001", "On the Generalization Mystery in Deep Learning", 120),
        ("2511.00002", HOSTILE_TITLE, 80),
        ("2511.00003", "Compositional Generalization in Transformers", 40),
        ("2511.00004", "Scaling Laws for Chat Models", 300),
    ]
    return [{"paper": {"id": pid, "title": title, "upvotes": votes, "publishedAt": "2026-11-20T08:00:00.000Z",
                       "summary": f"We study {title.lower()}. " + "More words. " * 20,
                       "authors": [{"name": "Ada Lovelace"}, {"name": "<!here> Bob"}]},
             "publishedAt": "2026-11-20T08:00:00.000Z"} for pid, title, votes in base]


@dataclass
class TinyHuggingFace:
    """Just enough of the Hugging Face papers API (search, daily feed) on 127.0.0.1.

    ``hold`` (an :class:`asyncio.Event`), when set, makes search wait for it, so
    a test can prove a slash command is acknowledged before the papers arrive.
    """

    items: list[dict[str, Any]] = field(default_factory=tiny_papers)
    hold: asyncio.Event | None = None
    searches: list[str] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    _port: int = 0

    async def start(self) -> TinyHuggingFace:
        app = web.Application()
        app.router.add_get("/api/papers/search", self._search)
        app.router.add_get("/api/daily_papers", self._daily)
        self._runner, self._port = await serve_on_loopback(app)
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    async def _search(self, request: web.Request) -> web.Response:
        self.searches.append(request.query.get("q", ""))
        if self.hold is not None:
            await self.hold.wait()
        words = request.query.get("q", "").casefold().split()
        found = [i for i in self.items if any(w in i["paper"]["title"].casefold() for w in words)]
        return web.json_response(found)

    async def _daily(self, request: web.Request) -> web.Response:
        return web.json_response(self.items)
