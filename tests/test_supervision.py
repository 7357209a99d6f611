"""The supervisor: connections start on their own, restart with backoff, stop at once; and
``paperboy run`` on top of it, as a separate process, with Slack unreachable, hanging or
refusing its token (a fake Slack Web API and Socket Mode server on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from bot.supervision import Backoff, ConnectionState, CredentialsRejected, Supervisor
from tests.fakes.slack_api import FakeSlackApi
from tests.run_process import closed_port, paperboy_run  # noqa: F401 - paperboy_run is a fixture


class Scripted:
    """A connection that fails ``failures`` times, then connects and stays up until told to drop."""

    def __init__(self, name: str, failures: int = 0, error: Exception | None = None) -> None:
        self.name = name
        self.failures = failures
        self.error = error or ConnectionRefusedError("no route to the service")
        self.attempts = 0
        self.drop = asyncio.Event()
        self.cancelled = False

    async def run(self, connected: Callable[[], None]) -> None:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise self.error
        connected()
        try:
            await self.drop.wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        self.drop = asyncio.Event()


def fast_supervisor(**kwargs: object) -> Supervisor:
    return Supervisor(backoff=Backoff(initial=0.01, cap=0.05), **kwargs)  # type: ignore[arg-type]


async def test_a_failing_connection_is_retried_with_one_line_per_attempt_and_one_traceback(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="bot.supervision")
    flaky, steady = Scripted("flaky", failures=3), Scripted("steady")
    supervisor = fast_supervisor()
    supervisor.add(flaky)
    supervisor.add(steady)
    running = asyncio.create_task(supervisor.run())
    try:
        await supervisor.wait_for(lambda s: s.healthy(), timeout=5)
        assert flaky.attempts == 4 and steady.attempts == 1     # the steady one never waited for the flaky one
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 3
        assert all("flaky: ConnectionRefusedError: no route to the service; next try in" in r.getMessage()
                   for r in warnings)
        assert all(r.exc_info is None for r in warnings)
        tracebacks = [r for r in caplog.records if r.exc_info]
        assert len(tracebacks) == 1 and tracebacks[0].levelno == logging.DEBUG
        status = supervisor.status("flaky")
        assert status.state is ConnectionState.CONNECTED and status.failures == 0 and status.last_error is None
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


async def test_a_dropped_connection_is_restarted_and_its_state_tells_since_when_it_is_down() -> None:
    conn = Scripted("gateway")
    supervisor = Supervisor(backoff=Backoff(initial=0.3, cap=0.3, rng=lambda: 1.0))
    seen: list[ConnectionState] = []
    supervisor.add(conn)
    supervisor.on_change(lambda status: seen.append(status.state))
    running = asyncio.create_task(supervisor.run())
    try:
        await supervisor.wait_for(lambda s: s.healthy(), timeout=5)
        up_since = supervisor.status("gateway").since
        conn.drop.set()
        await supervisor.wait_for(lambda s: s.status("gateway").state is ConnectionState.BACKING_OFF, timeout=5)
        down = supervisor.status("gateway")
        assert not supervisor.healthy()
        assert down.last_error == "connection ended" and down.since >= up_since and down.retry_at is not None
        await supervisor.wait_for(lambda s: s.healthy(), timeout=5)
        assert conn.attempts == 2
        assert seen == [ConnectionState.CONNECTED, ConnectionState.BACKING_OFF, ConnectionState.CONNECTING,
                        ConnectionState.CONNECTED]
        assert supervisor.status("gateway").since > down.since
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


async def test_a_rejected_credential_stops_that_connection_with_one_line_and_no_retry(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="bot.supervision")
    rejected = Scripted("slack", failures=10, error=CredentialsRejected("SLACK_BOT_TOKEN", "invalid_auth"))
    other = Scripted("scheduler")
    supervisor = fast_supervisor()
    supervisor.add(rejected)
    supervisor.add(other)
    running = asyncio.create_task(supervisor.run())
    try:
        await supervisor.wait_for(lambda s: s.status("slack").state is ConnectionState.STOPPED
                                  and s.status("scheduler").up, timeout=5)
        await asyncio.sleep(0.2)                     # long enough for several retries, were there any
        assert rejected.attempts == 1
        status = supervisor.status("slack")
        assert status.rejected_setting == "SLACK_BOT_TOKEN" and not supervisor.healthy()
        lines = [r.getMessage() for r in caplog.records if r.name == "bot.supervision"]
        assert len(lines) == 1 and "SLACK_BOT_TOKEN" in lines[0] and "invalid_auth" in lines[0]
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    assert supervisor.status("slack").rejected_setting == "SLACK_BOT_TOKEN"   # still says why after stopping


async def test_stopping_is_prompt_while_connecting_backing_off_or_connected() -> None:
    class Hanging:
        name = "hanging"

        async def run(self, connected: Callable[[], None]) -> None:
            await asyncio.Event().wait()             # accepted, never answers

    up, backing_off = Scripted("up"), Scripted("down", failures=1000)
    supervisor = Supervisor(backoff=Backoff(initial=3600, cap=3600))
    for conn in (Hanging(), up, backing_off):
        supervisor.add(conn)
    running = asyncio.create_task(supervisor.run())
    await supervisor.wait_for(lambda s: s.status("up").up
                              and s.status("down").state is ConnectionState.BACKING_OFF, timeout=5)
    assert supervisor.status("hanging").state is ConnectionState.CONNECTING
    started = time.monotonic()
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)
    assert time.monotonic() - started < 1
    assert up.cancelled
    assert all(s.state is ConnectionState.STOPPED for s in supervisor.statuses())


def test_backoff_doubles_up_to_its_cap_with_jitter() -> None:
    low, high = Backoff(initial=1, cap=60, rng=lambda: 0.0), Backoff(initial=1, cap=60, rng=lambda: 1.0)
    assert [high.delay(n) for n in (1, 2, 3, 4, 7, 20)] == [1, 2, 4, 8, 60, 60]
    assert [low.delay(n) for n in (1, 2, 7)] == [0.5, 1, 30]


# --- paperboy run as a process ----------------------------------------------------------------------------


def retry_lines(lines: list[str]) -> list[str]:
    return [line for line in lines if "bot.supervision" in line and "slack:" in line and "next try in" in line]


async def test_slack_unreachable_the_scheduler_runs_one_line_per_retry_and_sigterm_exits_0(
        paperboy_run: Callable[..., object]) -> None:
    """Slack's API on a closed port (connection refused, like a firewall rejecting): the process
    keeps trying with backoff, one log line per attempt, while the scheduler runs its passes."""
    process = await paperboy_run(SLACK_BOT_TOKEN="xoxb-1-unreachable", SLACK_APP_TOKEN="xapp-1-unreachable",
                                 SLACK_API_URL=f"http://127.0.0.1:{closed_port()}/api/")  # type: ignore[operator]
    await process.wait_for_line(lambda lines: len(retry_lines(lines)) >= 3
                                and any("delivery pass:" in line for line in lines))
    code, elapsed = await process.terminate()
    assert code == 0 and elapsed < 10
    retries = retry_lines(process.lines)
    assert all("ConnectorError" in line or "Connect" in line for line in retries)
    # Nothing but the one line per attempt: no traceback, no slack_sdk retry chatter.
    noise = [line for line in process.lines if "Traceback" in line or " slack_sdk." in line]
    assert not noise, noise
    assert any("delivery scheduler stopped" in line for line in process.lines)


async def test_slack_accepting_and_never_answering_still_stops_within_10_s(
        paperboy_run: Callable[..., object]) -> None:
    """A Slack API that accepts the connection and never answers: SIGTERM mid-connect exits 0 at once."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)                            # accepted by the kernel, never read or answered
        port = silent.getsockname()[1]
        process = await paperboy_run(SLACK_BOT_TOKEN="xoxb-1-hanging", SLACK_APP_TOKEN="xapp-1-hanging",
                                     SLACK_API_URL=f"http://127.0.0.1:{port}/api/")  # type: ignore[operator]
        await process.wait_for_line(lambda lines: any("delivery pass:" in line for line in lines))
        code, elapsed = await process.terminate()
    assert code == 0 and elapsed < 10
    assert not retry_lines(process.lines)            # still connecting: nothing failed yet
    assert not any("Traceback" in line for line in process.lines)


async def test_a_rejected_slack_token_exits_3_with_one_line(paperboy_run: Callable[..., object]) -> None:
    """Slack answers ``auth.test`` with ``invalid_auth`` for an unknown token (HTTP 200, ok false), as
    documented at https://api.slack.com/methods/auth.test#errors."""
    async with FakeSlackApi(tokens={"xoxb-1-the-real-one": "T1"}) as slack:
        process = await paperboy_run(SLACK_BOT_TOKEN="xoxb-1-revoked-token", SLACK_APP_TOKEN="xapp-1-app",
                                     SLACK_API_URL=slack.url)  # type: ignore[operator]
        code = await asyncio.wait_for(process.process.wait(), 60)
        await process._reader  # noqa: SLF001
        assert len(slack.calls_to("auth.test")) == 1          # not retried
    assert code == 3, process.lines
    named = [line for line in process.lines if "SLACK_BOT_TOKEN" in line]
    assert len(named) == 1 and "invalid_auth" in named[0]
    assert not any("Traceback" in line or "xoxb-1-revoked-token" in line for line in process.lines)


async def test_socket_mode_reconnects_after_slack_drops_the_socket(paperboy_run: Callable[..., object]) -> None:
    """Slack closes Socket Mode connections now and then (and on deploys); a new one is opened."""
    async with FakeSlackApi() as slack:
        process = await paperboy_run(SLACK_BOT_TOKEN="xoxb-1-good", SLACK_APP_TOKEN="xapp-1-good",
                                     SLACK_API_URL=slack.url)  # type: ignore[operator]
        await slack.wait_for("socket:connect", timeout=60)
        for sock in list(slack._sockets):  # noqa: SLF001 - the fake drops the connection
            await sock.close()
        await slack.wait_for("socket:connect", 2, timeout=30)
        assert len(slack.calls_to("apps.connections.open")) == 2
        code, elapsed = await process.terminate()
    assert code == 0 and elapsed < 10
    assert any("slack: connection ended" in line or "Socket Mode connection lost" in line
               for line in process.lines), process.lines


async def test_sigterm_mid_delivery_exits_0_within_10_s_and_hands_the_claim_back(
        paperboy_run: Callable[..., object], tmp_path: Path) -> None:
    """A channel post is due and Slack accepts the connection but never answers chat.postMessage:
    SIGTERM during that send stops the process within 10 s, and the claim is handed back (stale at
    once) for the next pass, which looks on the platform before sending again."""
    from datetime import datetime, timedelta, timezone

    from sqlalchemy import select

    from bot.models import ChannelRef
    from bot.papers import current_feed_day
    from storage.models import Delivery
    from storage.repositories import Storage
    from tests.delivery_support import add_channel, paper
    from tests.run_process import run_env

    env = run_env(tmp_path)
    now = datetime.now(timezone.utc)
    storage = await asyncio.to_thread(Storage.connect, env["DATABASE_URL"])
    try:
        await storage.papers.save_feed(current_feed_day(now), [paper("2511.30001", "Generalization at Scale")],
                                       fetched_at=now)
        await add_channel(storage, ChannelRef("slack", "T1", "C1"), at=(now - timedelta(minutes=30)).time(),
                          tz="UTC", after=now - timedelta(hours=1))
    finally:
        await storage.close()

    async def claims() -> list[tuple[str, datetime | None]]:
        store = Storage.connect(env["DATABASE_URL"], migrate=False)
        try:
            async with store.db.read() as session:
                rows = (await session.execute(select(Delivery.status, Delivery.claimed_at))).all()
            return [(row.status, row.claimed_at) for row in rows]
        finally:
            await store.close()

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        process = await paperboy_run(SLACK_BOT_TOKEN="xoxb-1-mid", SLACK_SIGNING_SECRET="mid-delivery-secret",  # type: ignore[operator]
                                     SLACK_API_URL=f"http://127.0.0.1:{silent.getsockname()[1]}/api/")
        async with asyncio.timeout(60):
            while not [row for row in await claims() if row[0] == "claimed"]:
                await asyncio.sleep(0.2)
        code, elapsed = await process.terminate()
    assert code == 0 and elapsed < 10, process.lines
    [(status, claimed_at)] = await claims()
    assert status == "claimed" and claimed_at is not None
    assert claimed_at < datetime.now(timezone.utc) - timedelta(seconds=90)     # older than the lease: free now
    assert any("1 unfinished claims handed back" in line for line in process.lines), process.lines


async def test_slack_http_mode_goes_down_when_slack_stops_answering_and_comes_back(sqlite_url: str) -> None:
    """HTTP mode has no socket to watch: a periodic auth.test tells whether Slack still answers (here
    HTTP 503, as Slack's edge answers during an outage) and still takes the token."""
    from adapters.slack.adapter import SlackAdapter, SlackHttpConnection
    from bot.app import build_app
    from tests.conftest import make_settings

    async with FakeSlackApi() as slack:
        settings = make_settings(DATABASE_URL=sqlite_url, SLACK_BOT_TOKEN="xoxb-1-http", SLACK_API_URL=slack.url,
                                 SLACK_SIGNING_SECRET="http-mode-secret")
        app = await asyncio.to_thread(build_app, settings)
        adapter = SlackAdapter(settings, app.core, app.storage)
        [connection] = adapter.connections()
        assert isinstance(connection, SlackHttpConnection)
        connection.recheck_seconds = 0.1
        supervisor = fast_supervisor()
        supervisor.add(connection)
        running = asyncio.create_task(supervisor.run())
        try:
            await supervisor.wait_for(lambda s: s.healthy(), timeout=10)
            slack.fail("auth.test", "service_unavailable", status=503)
            await supervisor.wait_for(lambda s: not s.healthy(), timeout=10)
            assert "503" in (supervisor.status("slack").last_error or "")
            slack.clear_failures()
            await supervisor.wait_for(lambda s: s.healthy(), timeout=10)
            slack.fail("auth.test", "token_revoked")
            await supervisor.wait_for(lambda s: s.status("slack").rejected_setting == "SLACK_BOT_TOKEN", timeout=10)
        finally:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
            await adapter.stop()
            await app.close()
