"""A Hugging Face that accepts connections and never answers: a person gets an answer within the
interactive deadline (the stored copy, else the labelled sample), the console says it is asking,
and deliveries are not held to that deadline.

"Never answers" is a loopback socket that listens and never reads: the kernel completes the TCP
handshake, the request goes out, no byte comes back (what a stuck proxy or a hung upstream does).
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.console import ASKING, console_context
from bot.app import build_app
from tests.conftest import make_settings
from tests.fakes.hf_api import FakeHuggingFace, seed_papers
from tests.run_process import run_env

DEADLINE = 1.5


@pytest.fixture
def silent_url() -> Iterator[str]:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        yield f"http://127.0.0.1:{silent.getsockname()[1]}"


async def test_a_command_answers_from_the_stored_copy_within_the_deadline(sqlite_url: str, silent_url: str) -> None:
    with FakeHuggingFace(seed_papers()) as live:
        first = await asyncio.to_thread(build_app, make_settings(DATABASE_URL=sqlite_url, PAPERBOY_HF_URL=live.url))
        try:
            fresh = await first.core.handle(console_context(), "/papers generalization")
        finally:
            await first.close()
    assert fresh.sections and not fresh.notices              # live, and now stored

    app = await asyncio.to_thread(build_app, make_settings(
        DATABASE_URL=sqlite_url, PAPERBOY_HF_URL=silent_url, PAPERBOY_ANSWER_DEADLINE=DEADLINE))
    try:
        started = time.monotonic()
        reply = await app.core.handle(console_context(), "/papers generalization")
        elapsed = time.monotonic() - started
        assert DEADLINE - 0.1 <= elapsed < DEADLINE + 1.0
        assert reply.sections and reply.sections[0].papers
        assert any("stored copy" in notice for notice in reply.notices)

        started = time.monotonic()
        today = await app.core.handle(console_context(), "/papers today")
        assert time.monotonic() - started < DEADLINE + 1.0 and today.notices   # labelled, not passed off as live

        # Deliveries are not held to a person's deadline: they wait on the client's own timeouts.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(app.papers.daily(), timeout=DEADLINE + 1.5)
        assert app.hf.upstream_calls >= 2
    finally:
        await app.close()


def test_the_console_says_it_is_asking_then_answers(silent_url: str, tmp_path: Path) -> None:
    env = run_env(tmp_path, PAPERBOY_HF_URL=silent_url, PAPERBOY_ANSWER_DEADLINE="2")
    result = subprocess.run([sys.executable, "-m", "bot.cli", "console"], cwd=tmp_path, env=env,
                            input="generalization\nquit\n", capture_output=True, text=True, timeout=90)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.count(ASKING) == 1
    assert out.index(ASKING) < out.index("# Papers on “generalization”")
    assert "Offline sample" in out                            # nothing stored yet: the labelled sample
    assert "Traceback" not in result.stderr
