"""``/healthz`` and ``paperboy status`` against a running ``paperboy run`` process.

Slack is :class:`tests.fakes.slack_api.FakeSlackApi` (Web API plus Socket Mode WebSocket on
127.0.0.1). A Slack outage is played the way Slack has them: the socket is closed and
``apps.connections.open`` answers HTTP 503 until Slack is back (https://api.slack.com/apis/
socket-mode#disconnect: connections are refreshed and may drop at any time; clients reconnect).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path

import aiohttp

from tests.fakes.slack_api import FakeSlackApi
from tests.run_process import Process, closed_port, paperboy_run, run_env  # noqa: F401 - paperboy_run is a fixture


async def healthz(port: int) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/healthz") as response:
        return response.status, await response.json()


async def wait_health(port: int, status: int, timeout: float = 60, *, connect_errors: bool = False) -> dict:
    """Poll /healthz until it answers ``status`` (``connect_errors``: the server may not be up yet)."""
    async with asyncio.timeout(timeout):
        while True:
            try:
                code, body = await healthz(port)
            except aiohttp.ClientConnectionError:
                if not connect_errors:
                    raise
            else:
                if code == status:
                    return body
            await asyncio.sleep(0.2)


async def paperboy_status(env: dict[str, str], cwd: Path) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot.cli", "status", cwd=cwd, env=env,
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert not err.strip(), err.decode()
    return process.returncode or 0, out.decode()


async def test_healthz_turns_503_while_slack_is_down_and_200_when_it_is_back_and_status_says_so(
        paperboy_run: Callable[..., object], tmp_path: Path) -> None:
    async with FakeSlackApi() as slack:
        settings = dict(SLACK_BOT_TOKEN="xoxb-1-good", SLACK_APP_TOKEN="xapp-1-good", SLACK_API_URL=slack.url)
        process: Process = await paperboy_run(**settings)  # type: ignore[operator]
        port = await process.port()
        up = await wait_health(port, 200)
        assert up["ok"] is True and up["down"] == []
        assert set(up["connections"]) == {"slack", "scheduler"}
        assert all(c["state"] == "connected" for c in up["connections"].values())
        env = run_env(tmp_path, PORT=str(port), **settings)
        code, text = await paperboy_status(env, tmp_path)
        assert code == 0 and f"running process (port {port}): healthy" in text, text
        assert "slack (Socket Mode)" in text and "database: sqlite:///" in text and "due now: 0 channel posts" in text

        slack.fail("apps.connections.open", "service_unavailable", status=503)   # Slack is down ...
        for sock in list(slack._sockets):  # noqa: SLF001 - ... and drops the socket
            await sock.close()
        down = await wait_health(port, 503)
        assert down["ok"] is False and down["down"] == ["slack"]
        slack_state = down["connections"]["slack"]
        assert slack_state["state"] in ("connecting", "backing off") and slack_state["since"]
        assert down["connections"]["scheduler"]["state"] == "connected"
        await process.wait_for_line(lambda lines: any("slack: ConnectionError: Slack answered HTTP 503" in line
                                                      for line in lines))
        code, text = await paperboy_status(env, tmp_path)
        assert code == 4 and "DOWN: slack" in text and "503" in text, text

        slack.clear_failures()                                                 # ... and back
        back = await wait_health(port, 200)
        assert back["connections"]["slack"]["since"] > slack_state["since"]
        code, elapsed = await process.terminate()
    assert code == 0 and elapsed < 10


async def test_healthz_is_served_in_console_mode_too(tmp_path: Path) -> None:
    """No platform tokens: ``paperboy run`` is the console, and /healthz reports the scheduler."""
    port = closed_port()
    env = run_env(tmp_path, PORT=str(port))     # the console logs errors only: no "listening" line to read
    raw = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot.cli", "run", cwd=tmp_path, env=env,
                                               stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                                               stderr=asyncio.subprocess.PIPE)
    process = Process(raw)
    try:
        body = await wait_health(port, 200, connect_errors=True)
        assert list(body["connections"]) == ["scheduler"] and body["delivery"]["passes"] >= 0
        code, elapsed = await process.terminate()
        assert code == 0 and elapsed < 10
    finally:
        if raw.returncode is None:
            raw.kill()
            await raw.wait()


async def test_status_with_nothing_running_exits_4_and_still_reads_the_database(tmp_path: Path) -> None:
    env = run_env(tmp_path, PORT=str(closed_port()))
    upgrade = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot.cli", "db", "upgrade", cwd=tmp_path,
                                                   env=env, stdout=asyncio.subprocess.DEVNULL)
    assert await upgrade.wait() == 0
    code, text = await paperboy_status(env, tmp_path)
    assert code == 4
    assert "running process: none answering on port" in text and "database: sqlite:///" in text
    assert "failed in the last 24 h: 0" in text and "paused: 0 channel posts" in text
