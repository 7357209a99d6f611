"""A fake Discord gateway: a real websocket server on 127.0.0.1 that speaks the gateway protocol.

Mounted by :class:`tests.fakes.discord_api.FakeDiscordApi` on its own server,
so ``GET /gateway`` and ``GET /gateway/bot`` of the fake REST API hand out its
URL, exactly as Discord's do. Behaviour follows Discord's documentation
(discord/discord-api-docs ``developers/events/gateway.mdx``, "Connection
Lifecycle", "Resuming"; ``developers/topics/opcodes-and-status-codes.mdx``)
and what discord.py 2.x sends (``discord/gateway.py``: ``from_client``,
``identify``, ``resume``, ``received_message``):

* The client connects with ``?v=10&encoding=json&compress=zlib-stream``
  (discord.py asks for ``zstd-stream`` instead when a zstd module is
  importable; this fake does not speak it and closes with 4000, so a test
  would say so). Each message is then one zlib stream per connection, every
  message flushed with ``Z_SYNC_FLUSH`` (ends in ``00 00 ff ff``) and sent as a
  binary frame — split over two frames when :attr:`split_frames` is set, which
  the client must buffer. Without ``compress`` messages are JSON text frames.
  Another ``encoding`` closes with 4002, another ``v`` with 4012.
* HELLO (op 10, ``heartbeat_interval`` in ms) first; every heartbeat (op 1,
  ``d`` = last sequence seen) is acknowledged with op 11; a heartbeat request
  (op 1 from the server) can be sent with :meth:`request_heartbeat`.
* IDENTIFY (op 2) with the right token -> READY (op 0, ``t`` READY) carrying
  ``session_id``, ``resume_gateway_url``, ``user``, ``application`` and the
  guilds as unavailable; a wrong token closes with 4004 "Authentication
  failed", a second IDENTIFY with 4005, a payload before IDENTIFY with 4003,
  undecodable JSON with 4002.
* Every dispatch carries the session's next sequence number ``s``; a session's
  dispatches are kept, so RESUME (op 6: ``token``, ``session_id``, ``seq``)
  replays those after ``seq`` in order and ends with RESUMED. An unknown or
  invalidated session answers RESUME with INVALID_SESSION (op 9, ``d`` false).
  Events dispatched while no socket is attached wait for the resume.
* Switches: :meth:`refuse_connections` answers the next websocket upgrades with
  an HTTP error (a failing gateway, as behind a proxy), :meth:`drop` cuts the
  live socket with no close frame (a network drop) or closes it with a code,
  :meth:`reconnect` sends op 7, :meth:`invalidate` op 9.

Tests wait on the fake's own state (:meth:`wait_until`), never on sleeps.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

DISPATCH, HEARTBEAT, IDENTIFY, RESUME, RECONNECT, INVALID_SESSION, HELLO, HEARTBEAT_ACK = 0, 1, 2, 6, 7, 9, 10, 11
API_VERSION = "10"

# Close codes (opcodes-and-status-codes: "Gateway Close Event Codes").
UNKNOWN_ERROR = 4000
DECODE_ERROR = 4002
NOT_AUTHENTICATED = 4003
AUTHENTICATION_FAILED = 4004
ALREADY_AUTHENTICATED = 4005
INVALID_API_VERSION = 4012
CLOSE_REASONS = {
    UNKNOWN_ERROR: "Unknown error.",
    DECODE_ERROR: "Error while decoding payload.",
    NOT_AUTHENTICATED: "Not authenticated.",
    AUTHENTICATION_FAILED: "Authentication failed.",
    ALREADY_AUTHENTICATED: "Already authenticated.",
    INVALID_API_VERSION: "Invalid API version.",
}


@dataclass
class GatewaySession:
    """One gateway session: what IDENTIFY started and RESUME continues."""

    session_id: str
    shard: list[int] | None
    sequence: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)
    valid: bool = True
    connection: GatewayConnection | None = None


@dataclass
class GatewayConnection:
    """One websocket the client opened (or tried to): what it asked for and what it sent."""

    path: str
    query: dict[str, str]
    refused: bool = False
    received: list[dict[str, Any]] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)
    session: GatewaySession | None = None
    resumed: bool = False
    close_code: int | None = None
    closed: bool = False
    socket: web.WebSocketResponse | None = None
    transport: asyncio.BaseTransport | None = None
    compressor: Any = None           # zlib compress object of a zlib-stream connection

    def ops(self) -> list[int]:
        """The opcodes the client sent on this socket, in order."""
        return [m.get("op") for m in self.received]

    def heartbeats(self) -> list[Any]:
        """The ``d`` (last sequence seen) of every heartbeat the client sent."""
        return [m.get("d") for m in self.received if m.get("op") == HEARTBEAT]


class FakeDiscordGateway:
    """The gateway side of the fake Discord; see the module docstring."""

    def __init__(self, *, user: dict[str, Any], application_id: str, guild_ids: list[str],
                 heartbeat_interval_ms: int = 250) -> None:
        self.user = user
        self.application_id = application_id
        self.guild_ids = guild_ids
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.token: str | None = None            # None: any token is accepted
        self.split_frames = False
        self.connections: list[GatewayConnection] = []
        self.sessions: dict[str, GatewaySession] = {}
        self._refusals: list[int] = []
        self._session_ids = itertools.count(1)
        self._changed = asyncio.Condition()
        self._base = ""

    # --- wiring ---------------------------------------------------------------------------------

    def mount(self, app: web.Application) -> None:
        """Serve the gateway (``/gateway``) and the resume gateway (``/gateway-resume``) on ``app``."""
        app.router.add_get("/gateway", self._serve)
        app.router.add_get("/gateway-resume", self._serve)

    def started(self, port: int) -> None:
        self._base = f"ws://127.0.0.1:{port}"

    @property
    def url(self) -> str:
        """What Get Gateway (Bot) answers: the URL to IDENTIFY on."""
        return f"{self._base}/gateway"

    @property
    def resume_url(self) -> str:
        """READY's ``resume_gateway_url``: where the client must RESUME."""
        return f"{self._base}/gateway-resume"

    # --- switches -------------------------------------------------------------------------------

    def refuse_connections(self, times: int = 1, *, status: int = 503) -> None:
        """Answer the next ``times`` websocket upgrades with HTTP ``status`` instead of a socket."""
        self._refusals.extend([status] * times)

    @property
    def live(self) -> GatewayConnection | None:
        """The connection a session is attached to right now, if any."""
        for connection in reversed(self.connections):
            if connection.session is not None and not connection.closed:
                return connection
        return None

    def _live(self) -> GatewayConnection:
        connection = self.live
        if connection is None:
            raise AssertionError("no live gateway session")
        return connection

    async def drop(self, code: int | None = None) -> None:
        """End the live socket: with no close frame (``code`` None, a network drop) or with ``code``."""
        connection = self._live()
        if code is None:
            assert connection.transport is not None
            connection.transport.abort()
        else:
            assert connection.socket is not None
            await connection.socket.close(code=code, message=CLOSE_REASONS.get(code, "").encode())
        await self._mark_closed(connection, code)

    async def reconnect(self) -> None:
        """Send RECONNECT (op 7): the client should reconnect and resume."""
        await self._send(self._live(), {"op": RECONNECT, "d": None})

    async def invalidate(self, *, resumable: bool = False) -> None:
        """Send INVALID_SESSION (op 9); a session that is not resumable is gone for good."""
        connection = self._live()
        if not resumable and connection.session is not None:
            connection.session.valid = False
        await self._send(connection, {"op": INVALID_SESSION, "d": resumable})

    async def request_heartbeat(self) -> None:
        """Send a heartbeat request (op 1); the client must answer with a heartbeat at once."""
        await self._send(self._live(), {"op": HEARTBEAT, "d": None})

    async def dispatch(self, event: str, data: dict[str, Any]) -> int:
        """Dispatch ``event`` on the newest session (replayed on resume if no socket is attached)."""
        sessions = [s for s in self.sessions.values() if s.valid]
        if not sessions:
            raise AssertionError("no gateway session to dispatch on")
        return await self._dispatch(sessions[-1], event, data)

    async def interaction(self, payload: dict[str, Any]) -> int:
        """Dispatch INTERACTION_CREATE with ``payload``; returns its sequence number."""
        return await self.dispatch("INTERACTION_CREATE", payload)

    # --- inspection -----------------------------------------------------------------------------

    def identified(self) -> list[GatewayConnection]:
        return [c for c in self.connections if IDENTIFY in c.ops()]

    def resumes(self) -> list[GatewayConnection]:
        return [c for c in self.connections if c.resumed]

    async def wait_until(self, condition: Callable[[], bool], timeout: float = 10) -> None:
        """Wait until ``condition()`` holds, re-checked whenever the gateway's state changes."""
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(condition), timeout)

    async def wait_ready(self, count: int = 1, timeout: float = 10) -> GatewayConnection:
        """Wait until ``count`` sessions have been identified; returns the newest live connection."""
        await self.wait_until(lambda: len(self.sessions) >= count and self.live is not None, timeout)
        return self._live()

    # --- protocol -------------------------------------------------------------------------------

    async def _changed_state(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        connection = GatewayConnection(path=request.path, query=dict(request.query))
        self.connections.append(connection)
        if self._refusals:
            connection.refused = True
            status = self._refusals.pop(0)
            await self._changed_state()
            return web.Response(status=status, text=f"{status}: gateway unavailable", content_type="text/plain")
        socket = web.WebSocketResponse(autoping=True, max_msg_size=0)
        await socket.prepare(request)
        connection.socket = socket
        connection.transport = request.transport
        try:
            await self._converse(connection, socket)
        finally:
            if connection.session is not None and connection.session.connection is connection:
                connection.session.connection = None
            await self._mark_closed(connection, socket.close_code if connection.close_code is None else None)
        return socket

    async def _mark_closed(self, connection: GatewayConnection, code: int | None) -> None:
        if not connection.closed:
            connection.closed = True
            connection.close_code = code
            await self._changed_state()

    async def _close(self, connection: GatewayConnection, code: int) -> None:
        assert connection.socket is not None
        connection.close_code = code
        await connection.socket.close(code=code, message=CLOSE_REASONS.get(code, "").encode())
        await self._mark_closed(connection, code)

    async def _converse(self, connection: GatewayConnection, socket: web.WebSocketResponse) -> None:
        query = connection.query
        compress = query.get("compress")
        if compress == "zlib-stream":
            connection.compressor = zlib.compressobj()
        elif compress is not None:
            await self._close(connection, UNKNOWN_ERROR)    # zstd-stream: not spoken by this fake
            return
        await self._send(connection, {"op": HELLO, "d": {"heartbeat_interval": self.heartbeat_interval_ms}})
        if query.get("encoding", "json") != "json":
            await self._close(connection, DECODE_ERROR)
            return
        if query.get("v") != API_VERSION:
            await self._close(connection, INVALID_API_VERSION)
            return
        async for message in socket:
            if message.type is not WSMsgType.TEXT:
                await self._close(connection, DECODE_ERROR)
                return
            try:
                payload = json.loads(message.data)
                op = payload["op"]
            except (ValueError, KeyError, TypeError):
                await self._close(connection, DECODE_ERROR)
                return
            connection.received.append(payload)
            await self._changed_state()
            if op == HEARTBEAT:
                await self._send(connection, {"op": HEARTBEAT_ACK})
            elif op == IDENTIFY:
                await self._identify(connection, payload.get("d") or {})
            elif op == RESUME:
                await self._resume(connection, payload.get("d") or {})
            elif connection.session is None:
                await self._close(connection, NOT_AUTHENTICATED)
            if connection.closed:
                return

    async def _identify(self, connection: GatewayConnection, data: dict[str, Any]) -> None:
        if connection.session is not None:
            await self._close(connection, ALREADY_AUTHENTICATED)
            return
        if self.token is not None and data.get("token") != self.token:
            await self._close(connection, AUTHENTICATION_FAILED)
            return
        session = GatewaySession(session_id=f"fake-session-{next(self._session_ids)}", shard=data.get("shard"))
        self.sessions[session.session_id] = session
        session.connection = connection
        connection.session = session
        ready: dict[str, Any] = {
            "v": int(API_VERSION), "user": {**self.user, "flags": 0, "verified": True, "mfa_enabled": False},
            "guilds": [{"id": g, "unavailable": True} for g in self.guild_ids],
            "session_id": session.session_id, "resume_gateway_url": self.resume_url,
            "session_type": "normal", "private_channels": [], "relationships": [], "presences": [],
            "geo_ordered_rtc_regions": [], "guild_join_requests": [], "user_settings": {},
            "auth": {}, "_trace": ["[\"fake-gateway\"]"],
            "application": {"id": self.application_id, "flags": 0},
        }
        if session.shard is not None:
            ready["shard"] = session.shard
        await self._dispatch(session, "READY", ready)

    async def _resume(self, connection: GatewayConnection, data: dict[str, Any]) -> None:
        session = self.sessions.get(str(data.get("session_id")))
        token_ok = self.token is None or data.get("token") == self.token
        if session is None or not session.valid or not token_ok or connection.session is not None:
            await self._send(connection, {"op": INVALID_SESSION, "d": False})
            return
        if session.connection is not None and session.connection is not connection:
            old = session.connection
            if old.socket is not None and not old.closed:
                await old.socket.close(code=UNKNOWN_ERROR)
                await self._mark_closed(old, UNKNOWN_ERROR)
        session.connection = connection
        connection.session = session
        connection.resumed = True
        seen = data.get("seq") or 0
        for event in [e for e in session.events if e["s"] > seen]:
            await self._send(connection, event)
        await self._dispatch(session, "RESUMED", {"_trace": ["[\"fake-gateway\"]"]})

    async def _dispatch(self, session: GatewaySession, event: str, data: dict[str, Any]) -> int:
        session.sequence += 1
        message = {"op": DISPATCH, "t": event, "s": session.sequence, "d": data}
        session.events.append(message)
        connection = session.connection
        if connection is not None and not connection.closed:
            await self._send(connection, message)
        await self._changed_state()
        return session.sequence

    async def _send(self, connection: GatewayConnection, message: dict[str, Any]) -> None:
        socket = connection.socket
        if socket is None or socket.closed:
            return
        connection.sent.append(message)
        text = json.dumps(message)
        try:
            if connection.compressor is None:
                await socket.send_str(text)
                return
            data = connection.compressor.compress(text.encode()) + connection.compressor.flush(zlib.Z_SYNC_FLUSH)
            if self.split_frames and len(data) > 8:
                half = len(data) // 2
                await socket.send_bytes(data[:half])
                await socket.send_bytes(data[half:])
            else:
                await socket.send_bytes(data)
        except ConnectionError:
            await self._mark_closed(connection, None)
