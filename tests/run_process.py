"""``paperboy run`` as a child process for end-to-end tests: environment, stderr lines, SIGTERM."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_LISTENING = re.compile(r"health and metrics on http://[0-9.]+:(\d+)/healthz")


def closed_port() -> int:
    """A loopback port nothing listens on (it was free a moment ago)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "DISCORD_", "PAPERBOY_", "DATABASE_"))}
    env.update(PYTHONPATH=str(ROOT), DATABASE_URL=f"sqlite:///{tmp_path / 'run.db'}", PORT="0",
               PAPERBOY_HF_URL=f"http://127.0.0.1:{closed_port()}", PAPERBOY_HF_RETRIES="0")
    env.update(extra)
    return env


class Process:
    """``paperboy run`` in a child process, its stderr collected line by line."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self._reader = asyncio.create_task(self._read())
        self._grew = asyncio.Event()

    async def _read(self) -> None:
        assert self.process.stderr is not None
        async for raw in self.process.stderr:
            self.lines.append(raw.decode(errors="replace").rstrip("\n"))
            self._grew.set()

    async def wait_for_line(self, predicate: Callable[[list[str]], bool], timeout: float = 60) -> None:
        async with asyncio.timeout(timeout):
            while not predicate(self.lines):
                if self.process.returncode is not None and self._reader.done():
                    raise AssertionError("process ended:\n" + "\n".join(self.lines))
                self._grew.clear()
                try:
                    async with asyncio.timeout(0.5):
                        await self._grew.wait()
                except TimeoutError:
                    pass

    async def port(self, timeout: float = 60) -> int:
        """The port ``/healthz`` is served on (``PORT=0`` lets the OS pick one)."""
        await self.wait_for_line(lambda lines: any(_LISTENING.search(line) for line in lines), timeout)
        return next(int(m.group(1)) for m in map(_LISTENING.search, self.lines) if m)

    async def terminate(self) -> tuple[int, float]:
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(self.process.wait(), 30)
        elapsed = time.monotonic() - started
        await self._reader
        return code, elapsed


async def start_run(env: dict[str, str], cwd: Path) -> AsyncIterator[Process]:
    raw = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot.cli", "run", cwd=cwd, env=env,
                                               stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                                               stderr=asyncio.subprocess.PIPE)
    process = Process(raw)
    try:
        yield process
    finally:
        if raw.returncode is None:
            raw.kill()
            await raw.wait()


@pytest.fixture
async def paperboy_run(tmp_path: Path) -> AsyncIterator[Callable[..., object]]:
    started: list[AsyncIterator[Process]] = []

    async def start(**extra: str) -> Process:
        generator = start_run(run_env(tmp_path, **extra), tmp_path)
        started.append(generator)
        return await generator.__anext__()

    yield start
    for generator in started:
        await generator.aclose()


def make_console_alerts_due(database_url: str) -> None:
    """Make the console user's personal alerts due a minute ago, directly in storage."""
    from datetime import datetime, timedelta, timezone

    from adapters.console import CONSOLE_USER
    from storage.repositories import Storage

    async def make_due() -> None:
        store = Storage.connect(database_url, migrate=False)
        try:
            await store.topics.set_alerts(CONSOLE_USER, enabled=True,
                                          next_due_at=datetime.now(timezone.utc) - timedelta(minutes=1))
        finally:
            await store.close()

    asyncio.run(make_due())
