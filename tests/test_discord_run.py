"""``paperboy run`` / ``paperboy deliver`` with Discord, as separate processes, against the fake Discord.

The fake REST API and gateway (``tests/fakes/discord_api.py``, ``discord_gateway.py``) run in the
test's event loop on 127.0.0.1; the bot is the real command in a child process, under its real
supervisor. What is checked is what an operator sees: the exit code, the lines on stderr, and
that commands are answered over the gateway through drops and failed connects.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bot.models import UserRef
from storage.repositories import Storage
from tests.fakes.discord_api import GUILD_ID, USER_ID, FakeDiscordApi, slash_payload
from tests.fakes.hf_api import FakeHuggingFace, seed_papers
from tests.run_process import Process, closed_port, paperboy_run, run_env  # noqa: F401 - paperboy_run is a fixture
from tests.test_health import wait_health

TOKEN = "MTIz.discord-bot-token.NEVER-LOG-ME"
ANSWER_DEADLINE = 3.0


def retry_lines(lines: list[str]) -> list[str]:
    return [line for line in lines if "bot.supervision" in line and "discord:" in line and "next try in" in line]


def noise(lines: list[str]) -> list[str]:
    """Tracebacks, errors and discord.py warnings: none belong on stderr when Discord misbehaves."""
    return [line for line in lines
            if "Traceback" in line or " ERROR " in line or " WARNING discord." in line or TOKEN in line]


async def answer(api: FakeDiscordApi, topic: str) -> float:
    """Subscribe over the gateway; seconds until the deferral reached Discord (the 3 s rule)."""
    callbacks, edits = len(api.calls_to("interaction_callback")), len(api.calls_to("edit_original"))
    payload = slash_payload("papers", "subscribe", topic=topic)
    started = time.monotonic()
    await api.gateway.interaction(payload)
    calls = await api.wait_for("interaction_callback", callbacks + 1, timeout=30)
    answered_in = time.monotonic() - started
    assert calls[callbacks].params["interaction"] == payload["id"]
    [*_, edit] = await api.wait_for("edit_original", edits + 1, timeout=30)
    assert edit.body["embeds"][0]["title"] == f"Subscribed to “{topic}”"
    return answered_in


@pytest.fixture
def hf() -> Any:
    with FakeHuggingFace(seed_papers()) as fake:
        yield fake


async def test_run_answers_over_the_gateway_through_a_failed_connect_a_drop_and_a_failed_resume(
        paperboy_run: Callable[..., Any], hf: FakeHuggingFace, tmp_path: Path) -> None:
    """The issue's "Discord's gateway fails once while REST works", then a drop it resumes, then a drop
    whose resume and next two connects fail (/healthz 503 naming discord, then 200 again): each time
    the bot comes back and answers; SIGTERM then exits 0 within 10 s."""
    async with FakeDiscordApi(token=TOKEN) as api:
        gateway = api.gateway
        gateway.refuse_connections(1)                       # the first websocket upgrade: 503
        process: Process = await paperboy_run(DISCORD_TOKEN=TOKEN, DISCORD_API_URL=api.url,
                                              PAPERBOY_HF_URL=hf.url)
        await gateway.wait_ready(timeout=60)
        health_port = await process.port()
        assert (await wait_health(health_port, 200))["down"] == []
        assert [c.refused for c in gateway.connections] == [True, False]
        assert await answer(api, "diffusion models") < ANSWER_DEADLINE

        await gateway.drop()                                 # cut: discord.py resumes by itself
        await gateway.wait_until(lambda: len(gateway.resumes()) == 1, timeout=30)
        assert await answer(api, "graph neural networks") < ANSWER_DEADLINE

        gateway.refuse_connections(3)                       # cut; the resume and two new connects fail
        await gateway.drop()
        down = await wait_health(health_port, 503)
        assert down["down"] == ["discord"] and down["connections"]["scheduler"]["state"] == "connected"
        await gateway.wait_until(lambda: len(gateway.sessions) == 2 and gateway.live is not None, timeout=60)
        assert (await wait_health(health_port, 200))["down"] == []
        assert await answer(api, "robotics") < ANSWER_DEADLINE

        live = gateway.live
        code, elapsed = await process.terminate()
        assert live is not None and live.closed and live.close_code == 1000
    assert code == 0 and elapsed < 10, process.lines
    assert len(retry_lines(process.lines)) == 4, process.lines
    assert not noise(process.lines), noise(process.lines)
    assert api.names().count("sync_global") == 1
    storage = Storage.connect(f"sqlite:///{tmp_path / 'run.db'}")
    try:
        topics = await storage.topics.topics(UserRef("discord", GUILD_ID, USER_ID))
    finally:
        await storage.close()
    assert sorted(topics) == ["diffusion models", "graph neural networks", "robotics"]


async def test_discord_unreachable_the_scheduler_runs_one_line_per_retry_and_sigterm_exits_0(
        paperboy_run: Callable[..., Any]) -> None:
    """Discord's API on a closed port (connection refused): no 90-line traceback, one line per attempt,
    the delivery scheduler runs meanwhile, and SIGTERM stops it all."""
    process: Process = await paperboy_run(DISCORD_TOKEN=TOKEN,
                                          DISCORD_API_URL=f"http://127.0.0.1:{closed_port()}/api/v10")
    await process.wait_for_line(lambda lines: len(retry_lines(lines)) >= 3
                                and any("delivery pass:" in line for line in lines))
    code, elapsed = await process.terminate()
    assert code == 0 and elapsed < 10
    assert all("ClientConnectorError" in line for line in retry_lines(process.lines)), process.lines
    assert not noise(process.lines), noise(process.lines)
    assert not any(" discord." in line for line in process.lines), process.lines   # discord.py says nothing
    assert any("delivery scheduler stopped" in line for line in process.lines)


async def test_a_rejected_discord_token_exits_3_with_one_line(paperboy_run: Callable[..., Any]) -> None:
    """Discord answers a bad bot token with 401 ``{"message": "401: Unauthorized", "code": 0}``."""
    wrong = "MTIz.revoked-bot-token.NEVER-LOG-ME"
    async with FakeDiscordApi(token=TOKEN) as api:
        process: Process = await paperboy_run(DISCORD_TOKEN=wrong, DISCORD_API_URL=api.url)
        code = await asyncio.wait_for(process.process.wait(), 60)
        await process._reader  # noqa: SLF001 - every line read
        assert api.names() == ["get_me"]                      # not retried, no gateway
    assert code == 3, process.lines
    named = [line for line in process.lines if "DISCORD_TOKEN" in line]
    assert len(named) == 1 and "401" in named[0], process.lines
    assert not any("Traceback" in line or wrong in line for line in process.lines)


async def test_deliver_with_a_rejected_discord_token_exits_3_with_one_line(tmp_path: Path) -> None:
    wrong = "MTIz.revoked-bot-token.NEVER-LOG-ME"
    async with FakeDiscordApi(token=TOKEN) as api:
        env = run_env(tmp_path, DISCORD_TOKEN=wrong, DISCORD_API_URL=api.url)
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot.cli", "deliver", "--now",
            cwd=tmp_path, env=env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        _, stderr = await asyncio.wait_for(child.communicate(), 90)
    lines = stderr.decode().splitlines()
    assert child.returncode == 3, lines
    assert lines == ["paperboy: DISCORD_TOKEN was rejected (HTTP 401 Unauthorized); fix DISCORD_TOKEN"]
