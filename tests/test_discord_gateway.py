"""The real discord.py client over a real gateway session, against the fake Discord on 127.0.0.1.

REST (login, command sync, Get Gateway Bot, interaction callbacks) goes to
:class:`tests.fakes.discord_api.FakeDiscordApi`, the websocket to its
:class:`tests.fakes.discord_gateway.FakeDiscordGateway` — the URL the client
got from ``GET /gateway/bot``, never ``wss://gateway.discord.gg``. The fake
follows Discord's gateway documentation (discord/discord-api-docs,
``developers/events/gateway.mdx``: connection lifecycle, resuming; close codes
from ``developers/topics/opcodes-and-status-codes.mdx``) and accepts what
discord.py 2.x sends (``?v=10&encoding=json&compress=zlib-stream``). Tests wait
on the fakes' state, not on sleeps; heartbeats are every 250 ms.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import discord
import pytest

from adapters.discord import DiscordAdapter
from adapters.discord.gateway import DiscordGateway
from bot.app import App, build_app
from bot.models import UserRef
from bot.supervision import Backoff, ConnectionState, CredentialsRejected, Supervisor
from tests.conftest import make_settings
from tests.fakes.discord_api import GUILD_ID, USER_ID, FakeDiscordApi, slash_payload
from tests.fakes.discord_gateway import FakeDiscordGateway, GatewayConnection
from tests.fakes.hf_api import FakeHuggingFace, seed_papers

TOKEN = "MTIz.discord-bot-token.NEVER-LOG-ME"
ANSWER_DEADLINE = 3.0      # Discord drops an interaction not answered (or deferred) within 3 s


@pytest.fixture
def hf() -> Any:
    with FakeHuggingFace(seed_papers()) as fake:
        yield fake


@pytest.fixture
async def api() -> AsyncIterator[FakeDiscordApi]:
    async with FakeDiscordApi(token=TOKEN) as fake:
        yield fake


@dataclass
class Bot:
    """A Discord adapter whose gateway connection runs as the supervisor runs it: one ``run()`` at a time."""

    app: App
    adapter: DiscordAdapter
    api: FakeDiscordApi
    connection: DiscordGateway
    connects: int = 0
    runs: list[asyncio.Task[None]] = field(default_factory=list)
    _connected: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def gateway(self) -> FakeDiscordGateway:
        return self.api.gateway

    def _on_connected(self) -> None:
        self.connects += 1
        self._connected.set()

    def run(self) -> asyncio.Task[None]:
        """Start one life of the connection (what the supervisor does on each (re)start)."""
        self._connected.clear()
        task = asyncio.create_task(self.connection.run(self._on_connected))
        self.runs.append(task)
        return task

    async def connected(self, timeout: float = 10) -> None:
        await asyncio.wait_for(self._connected.wait(), timeout)

    async def ask(self, payload: dict[str, Any]) -> tuple[dict[str, Any], float]:
        """Dispatch an interaction over the gateway; the deferral's body and seconds until it reached Discord."""
        before = len(self.api.calls_to("interaction_callback"))
        edits = len(self.api.calls_to("edit_original"))
        started = time.monotonic()
        await self.gateway.interaction(payload)
        calls = await self.api.wait_for("interaction_callback", before + 1)
        answered_in = time.monotonic() - started
        assert calls[before].params["interaction"] == payload["id"]
        [*_, edit] = await self.api.wait_for("edit_original", edits + 1)
        return edit.body, answered_in

    async def stop(self) -> None:
        for task in self.runs:
            task.cancel()
        await asyncio.gather(*self.runs, return_exceptions=True)
        await self.adapter.stop()
        await self.app.close()


Start = Callable[..., Awaitable[Bot]]


@pytest.fixture
async def start_bot(sqlite_url: str, api: FakeDiscordApi, hf: Any) -> AsyncIterator[Start]:
    bots: list[Bot] = []

    async def start(**extra: Any) -> Bot:
        values = dict(DATABASE_URL=sqlite_url, PAPERBOY_HF_URL=hf.url, PAPERBOY_OFFLINE_SAMPLE=False,
                      DISCORD_TOKEN=TOKEN, DISCORD_API_URL=api.url)
        values.update(extra)
        settings = make_settings(**values)
        app = await asyncio.to_thread(build_app, settings)
        adapter = DiscordAdapter(settings, app.core, app.storage)
        [connection] = adapter.connections()
        bot = Bot(app, adapter, api, connection)
        bots.append(bot)
        return bot

    yield start
    for bot in bots:
        await bot.stop()


async def subscribe(bot: Bot, topic: str) -> float:
    """Subscribe over the gateway; returns how long the answer took to reach Discord."""
    body, answered_in = await bot.ask(slash_payload("papers", "subscribe", topic=topic))
    assert body["embeds"][0]["title"] == f"Subscribed to “{topic}”"
    return answered_in


def identify_of(connection: GatewayConnection) -> dict[str, Any]:
    return next(m["d"] for m in connection.received if m["op"] == 2)


async def topics(bot: Bot) -> list[str]:
    return await bot.app.storage.topics.topics(UserRef("discord", GUILD_ID, USER_ID))


# --- a whole session ---------------------------------------------------------------------------------------


async def test_session_syncs_commands_identifies_and_answers_an_interaction(start_bot: Start) -> None:
    bot = await start_bot()
    bot.run()
    await bot.connected()
    api, gateway = bot.api, bot.gateway

    assert api.names()[:4] == ["get_me", "get_application", "sync_global", "gateway_bot"]
    assert {c["name"] for c in api.commands["global"]} == {"papers", "papers-channel"}
    [connection] = gateway.connections
    # The URL Get Gateway Bot gave, with discord.py's own query: JSON, zlib-stream transport compression.
    assert connection.path == "/gateway"
    assert connection.query == {"v": "10", "encoding": "json", "compress": "zlib-stream"}
    identify = identify_of(connection)
    assert identify["token"] == TOKEN and identify["intents"] == 0     # no privileged (or any) intent
    assert "shard" not in identify or identify["shard"] == [0, 1]
    assert bot.connects == 1 and bot.adapter.client.user is not None

    answered_in = await subscribe(bot, "diffusion models")
    assert answered_in < ANSWER_DEADLINE
    assert await topics(bot) == ["diffusion models"]

    # Heartbeats carry the last sequence number the client saw (the interaction's).
    last = connection.session.sequence if connection.session else None
    await gateway.wait_until(lambda: last in connection.heartbeats())
    await gateway.request_heartbeat()
    beats = len(connection.heartbeats())
    await gateway.wait_until(lambda: len(connection.heartbeats()) > beats)


async def test_stopping_closes_the_session_and_the_client(start_bot: Start) -> None:
    """Cancelling the run (what the supervisor does on shutdown) closes with 1000: the session ends."""
    bot = await start_bot()
    task = bot.run()
    await bot.connected()
    client = bot.adapter.client
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    [connection] = bot.gateway.connections
    await bot.gateway.wait_until(lambda: connection.closed)
    assert connection.close_code == 1000
    assert client.is_closed()


@pytest.mark.parametrize("shards", ["2", "auto"])
async def test_sharded_clients_use_the_gateway_url_too(start_bot: Start, shards: str) -> None:
    bot = await start_bot(DISCORD_SHARDS=shards)
    bot.run()
    await bot.connected()
    expected = 2 if shards == "2" else 1          # the fake recommends one shard
    await bot.gateway.wait_until(lambda: len(bot.gateway.sessions) == expected)
    identified = bot.gateway.identified()
    assert {c.path for c in identified} == {"/gateway"}
    assert sorted(tuple(identify_of(c)["shard"]) for c in identified) == [(i, expected) for i in range(expected)]
    assert await subscribe(bot, "robotics") < ANSWER_DEADLINE


# --- drops inside a session: discord.py resumes ---------------------------------------------------------------


@pytest.mark.parametrize("close_code", [None, 4000, 1001])
async def test_dropped_socket_is_resumed_and_the_missed_interaction_replayed(
        start_bot: Start, close_code: int | None) -> None:
    """A socket cut (no close frame), 4000 or 1001 from Discord: RESUME on resume_gateway_url, replay, answer."""
    bot = await start_bot()
    bot.gateway.split_frames = True       # compressed messages may span websocket frames
    task = bot.run()
    await bot.connected()
    first = await bot.gateway.wait_ready()
    seen = first.session.sequence if first.session else 0

    await bot.gateway.drop(close_code)
    payload = slash_payload("papers", "subscribe", topic="graph neural networks")
    await bot.gateway.interaction(payload)            # sent while no socket is attached: replayed on resume

    await bot.api.wait_for("interaction_callback")
    [resumed] = bot.gateway.resumes()
    assert resumed.path == "/gateway-resume"
    resume = next(m["d"] for m in resumed.received if m["op"] == 6)
    assert resume == {"token": TOKEN, "session_id": first.session.session_id, "seq": seen}
    assert [m.get("t") for m in resumed.sent if m["op"] == 0] == ["INTERACTION_CREATE", "RESUMED"]
    assert len(bot.gateway.identified()) == 1 and len(bot.gateway.sessions) == 1   # no new session
    await bot.api.wait_for("edit_original")
    assert await topics(bot) == ["graph neural networks"]
    assert await subscribe(bot, "robotics") < ANSWER_DEADLINE
    assert not task.done() and bot.connects == 1


async def test_reconnect_request_is_resumed(start_bot: Start) -> None:
    bot = await start_bot()
    task = bot.run()
    await bot.connected()
    await bot.gateway.reconnect()
    await bot.gateway.wait_until(lambda: len(bot.gateway.resumes()) == 1)
    assert await subscribe(bot, "robotics") < ANSWER_DEADLINE
    assert not task.done()


async def test_invalidated_session_identifies_again_at_the_get_gateway_bot_url(start_bot: Start) -> None:
    """Op 9 (d false) makes discord.py fall back to its built-in URL; it must still reach our gateway."""
    bot = await start_bot()
    task = bot.run()
    await bot.connected()
    await bot.gateway.invalidate(resumable=False)
    await bot.gateway.wait_until(lambda: len(bot.gateway.sessions) == 2 and bot.gateway.live is not None)
    second = bot.gateway.identified()[-1]
    assert second.path == "/gateway" and second.query["v"] == "10"
    assert await subscribe(bot, "robotics") < ANSWER_DEADLINE
    assert not task.done()


# --- ends of a run: the supervisor restarts it -------------------------------------------------------------


async def test_a_failed_first_connect_ends_the_run_and_the_next_run_answers(start_bot: Start) -> None:
    """The gateway answers the first websocket upgrade with 503 while REST works (issue #10520's trigger).

    The run ends with the cause (no AttributeError, no gateway task left running deaf); the next run,
    as the supervisor starts it, connects and answers.
    """
    bot = await start_bot()
    bot.gateway.refuse_connections(1)
    first_client = bot.adapter.client
    with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
        await bot.run()
    assert caught.value.status == 503
    assert bot.connects == 0 and first_client.is_closed()

    bot.run()
    await bot.connected()
    assert bot.adapter.client is not first_client          # a fresh client, the closed one is not reused
    assert [c.refused for c in bot.gateway.connections] == [True, False]
    assert bot.api.names().count("sync_global") == 1         # commands are synced once per process
    assert await subscribe(bot, "robotics") < ANSWER_DEADLINE


async def test_plain_discord_py_reconnect_loop_dies_on_a_failed_first_connect(api: FakeDiscordApi) -> None:
    """Why the client runs with ``reconnect=False``: discord.py issue #10520, reproduced on this fake.

    discord.py 2.7.1 ``Client.connect(reconnect=True)``: the first websocket fails, ``self.ws`` is still
    None, and its retry reads ``self.ws.sequence`` -> AttributeError, ending the gateway task while REST
    keeps working. If this test fails, discord.py fixed the bug; the supervised run works either way.
    """
    from adapters.discord.adapter import rebase_rest
    from adapters.discord.gateway import GatewayAddress

    client = discord.Client(intents=discord.Intents.none())
    rebase_rest(client.http, api.url)
    address = GatewayAddress()
    address.aim(client.http)
    try:
        await client.login(TOKEN)
        await address.look_up(client.http)
        api.gateway.refuse_connections(1)
        with pytest.raises(AttributeError, match="'NoneType' object has no attribute 'sequence'"):
            await asyncio.wait_for(client.connect(reconnect=True), 30)
    finally:
        await client.close()


async def test_resume_that_cannot_reach_the_gateway_ends_the_run_and_the_next_run_identifies(
        start_bot: Start) -> None:
    bot = await start_bot()
    task = bot.run()
    await bot.connected()
    bot.gateway.refuse_connections(1)
    await bot.gateway.drop()
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await task
    assert bot.gateway.connections[-1].path == "/gateway-resume"     # it tried to resume first

    bot.run()
    await bot.connected()
    assert len(bot.gateway.identified()) == 2
    assert await subscribe(bot, "robotics") < ANSWER_DEADLINE


async def test_close_code_discord_py_does_not_resume_ends_the_run(start_bot: Start) -> None:
    """4010 (invalid shard) is one discord.py will not reconnect after: the run ends with it."""
    bot = await start_bot()
    task = bot.run()
    await bot.connected()
    await bot.gateway.drop(4010)
    with pytest.raises(discord.ConnectionClosed) as caught:
        await task
    assert caught.value.code == 4010
    bot.run()
    await bot.connected()
    assert await subscribe(bot, "robotics") < ANSWER_DEADLINE


# --- tokens and reachability ----------------------------------------------------------------------------------


async def test_token_rejected_at_login_is_not_a_connection_problem(start_bot: Start, api: FakeDiscordApi) -> None:
    bot = await start_bot(DISCORD_TOKEN="MTIz.wrong-token")
    with pytest.raises(CredentialsRejected) as caught:
        await bot.run()
    assert caught.value.setting == "DISCORD_TOKEN" and "401" in caught.value.detail
    assert api.names() == ["get_me"] and api.gateway.connections == []
    assert bot.adapter.client.is_closed()


async def test_gateway_closing_with_4004_is_a_rejected_token(start_bot: Start, api: FakeDiscordApi) -> None:
    bot = await start_bot()
    api.gateway.token = "MTIz.a-token-the-gateway-wants"
    with pytest.raises(CredentialsRejected) as caught:
        await bot.run()
    assert caught.value.setting == "DISCORD_TOKEN" and "4004" in caught.value.detail
    [connection] = api.gateway.connections
    assert connection.close_code == 4004 and bot.connects == 0


async def test_discord_accepting_and_never_answering_ends_the_run_at_the_login_deadline(start_bot: Start) -> None:
    """A firewall or a wedged proxy that accepts the connection and never answers: the attempt ends at
    the deadline with a reason, instead of hanging for aiohttp's five-minute default."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)                          # the kernel accepts; nothing ever reads or answers
        bot = await start_bot(DISCORD_API_URL=f"http://127.0.0.1:{silent.getsockname()[1]}/api/v10")
        gateway = DiscordGateway(bot.adapter, login_deadline=0.5)
        started = time.monotonic()
        with pytest.raises(ConnectionError, match="did not answer the login within 0.5 s"):
            await gateway.run(lambda: None)
        assert time.monotonic() - started < 5
    assert bot.adapter.client.is_closed()


async def test_discord_unreachable_ends_the_run_quietly(start_bot: Start, caplog: pytest.LogCaptureFixture) -> None:
    """No route to Discord: the run raises the cause, and nothing logs a traceback on the way."""
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    caplog.set_level(logging.DEBUG)
    bot = await start_bot(DISCORD_API_URL=f"http://127.0.0.1:{port}/api/v10")
    started = time.monotonic()
    with pytest.raises(aiohttp.ClientConnectorError):
        await bot.run()
    assert time.monotonic() - started < 10
    assert not [r for r in caplog.records if r.exc_info and r.levelno >= logging.WARNING]
    # Nothing from discord.py at INFO or above: the failure line is the supervisor's, one per attempt.
    assert [r.getMessage() for r in caplog.records if r.name.startswith("discord") and r.levelno >= logging.INFO] == []
    assert TOKEN not in caplog.text


# --- under the supervisor ---------------------------------------------------------------------------------------


@dataclass
class Supervised:
    supervisor: Supervisor
    task: asyncio.Task[None]
    states: list[ConnectionState]

    async def healthy(self, timeout: float = 30) -> None:
        await self.supervisor.wait_for(lambda s: s.healthy(), timeout=timeout)


@pytest.fixture
async def supervise() -> AsyncIterator[Callable[[Bot], Supervised]]:
    running: list[Supervised] = []

    def start(bot: Bot) -> Supervised:
        supervisor = Supervisor(backoff=Backoff(initial=0.05, cap=0.2))
        supervisor.add(bot.connection)
        states: list[ConnectionState] = []
        supervisor.on_change(lambda status: states.append(status.state))
        supervised = Supervised(supervisor, asyncio.create_task(supervisor.run()), states)
        running.append(supervised)
        return supervised

    yield start
    for supervised in running:
        supervised.task.cancel()
        await asyncio.gather(supervised.task, return_exceptions=True)


def retry_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "bot.supervision" and r.levelno == logging.WARNING and r.getMessage().startswith("discord:")]


async def test_supervised_gateway_failing_once_is_one_line_then_connected_and_answering(
        start_bot: Start, supervise: Callable[[Bot], Supervised], caplog: pytest.LogCaptureFixture) -> None:
    """The issue's third failure: the gateway fails once while REST works. One line, then a new attempt."""
    caplog.set_level(logging.INFO)
    bot = await start_bot()
    bot.gateway.refuse_connections(1)
    supervised = supervise(bot)
    await supervised.healthy()
    [line] = retry_lines(caplog)
    assert line.startswith("discord: WSServerHandshakeError: 503") and "next try in" in line
    assert not [r for r in caplog.records if r.exc_info and r.levelno > logging.DEBUG]
    assert not [r for r in caplog.records if r.name.startswith("discord") and r.levelno >= logging.WARNING]
    assert await subscribe(bot, "robotics") < ANSWER_DEADLINE
    assert await topics(bot) == ["robotics"]


async def test_supervised_failed_resume_shows_down_then_reconnects_and_answers(
        start_bot: Start, supervise: Callable[[Bot], Supervised], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    bot = await start_bot()
    supervised = supervise(bot)
    await supervised.healthy()
    bot.gateway.refuse_connections(1)
    await bot.gateway.drop()
    await supervised.supervisor.wait_for(lambda s: not s.healthy(), timeout=30)
    status = supervised.supervisor.status("discord")
    assert status.last_error is not None and "WSServerHandshakeError" in status.last_error
    await supervised.healthy()
    assert ConnectionState.BACKING_OFF in supervised.states
    assert len(retry_lines(caplog)) == 1
    assert len(bot.gateway.identified()) == 2
    assert await subscribe(bot, "robotics") < ANSWER_DEADLINE


async def test_supervised_rejected_token_stops_discord_with_one_line(
        start_bot: Start, supervise: Callable[[Bot], Supervised], caplog: pytest.LogCaptureFixture,
        api: FakeDiscordApi) -> None:
    caplog.set_level(logging.INFO)
    wrong = "MTIz.wrong-token.NEVER-LOG-ME-EITHER"
    bot = await start_bot(DISCORD_TOKEN=wrong)
    supervised = supervise(bot)
    await supervised.task                       # the only connection stopped for good: run() returns
    status = supervised.supervisor.status("discord")
    assert status.state is ConnectionState.STOPPED and status.rejected_setting == "DISCORD_TOKEN"
    [line] = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert "DISCORD_TOKEN" in line and "401" in line
    assert api.names() == ["get_me"]             # not retried
    assert wrong not in caplog.text and TOKEN not in caplog.text
