"""The paperboy command end to end, as separate processes, against a fake Hugging Face API."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.hf_api import FakeHuggingFace, seed_papers
from tests.run_process import make_console_alerts_due

ROOT = Path(__file__).resolve().parents[1]


def paperboy(*args: str, cwd: Path, env: dict[str, str], stdin: str | None = None,
             timeout: float = 90) -> subprocess.CompletedProcess[str]:
    """Run the installed console script's entry point in a fresh interpreter."""
    return subprocess.run([sys.executable, "-m", "bot.cli", *args], cwd=cwd, env=env, input=stdin,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def fake_hf() -> Iterator[FakeHuggingFace]:
    with FakeHuggingFace(seed_papers()) as fake:
        yield fake


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A clean environment: no platform tokens, a database in the test's directory."""
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "DISCORD_", "PAPERBOY_", "DATABASE_"))}
    keep["PYTHONPATH"] = str(ROOT)
    keep["DATABASE_URL"] = f"sqlite:///{tmp_path / 'cli.db'}"
    keep["PAPERBOY_HF_RETRIES"] = "0"
    return keep


def test_ask_answers_from_the_configured_api_in_any_directory(fake_hf: FakeHuggingFace, env: dict[str, str],
                                                             tmp_path: Path) -> None:
    elsewhere = tmp_path / "somewhere" / "else"
    elsewhere.mkdir(parents=True)
    result = paperboy("ask", "/papers generalization", cwd=elsewhere, env={**env, "PAPERBOY_HF_URL": fake_hf.url})
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("# Papers on “generalization”")
    assert "Why: generalization (title" in result.stdout
    assert "https://arxiv.org/abs/" in result.stdout
    assert "Offline sample" not in result.stdout
    assert any(path.endswith("/api/papers/search") for path, _ in fake_hf.requests)
    assert "Traceback" not in result.stderr


def test_ask_offline_answers_from_the_labelled_sample(env: dict[str, str], tmp_path: Path) -> None:
    result = paperboy("ask", "generalization", cwd=tmp_path, env={**env, "PAPERBOY_HF_URL": _closed_port_url()})
    assert result.returncode == 0, result.stderr
    assert "Offline sample" in result.stdout
    assert "https://huggingface.co/papers?q=" in result.stdout
    assert "arxiv.org" not in result.stdout


def test_ask_bad_input_exits_cleanly_with_help(fake_hf: FakeHuggingFace, env: dict[str, str], tmp_path: Path) -> None:
    result = paperboy("ask", "channel on 27:00", cwd=tmp_path, env={**env, "PAPERBOY_HF_URL": fake_hf.url})
    assert result.returncode == 0
    assert "hours run 00-23" in result.stdout and "/papers subscribe" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_console_session_keeps_subscriptions_between_runs(fake_hf: FakeHuggingFace, env: dict[str, str],
                                                         tmp_path: Path) -> None:
    env = {**env, "PAPERBOY_HF_URL": fake_hf.url}
    first = paperboy("console", cwd=tmp_path, env=env,
                     stdin="/papers subscribe Diffusion  Models\nsubscribe generalization\nquit\n")
    assert first.returncode == 0, first.stderr
    assert "Subscribed to “diffusion models”" in first.stdout
    second = paperboy("ask", "subscriptions", cwd=tmp_path, env=env)
    assert "• diffusion models" in second.stdout and "• generalization" in second.stdout


def test_db_upgrade_and_bad_configuration(env: dict[str, str], tmp_path: Path) -> None:
    assert "up to date" in paperboy("db", "upgrade", cwd=tmp_path, env=env).stdout
    bad = paperboy("ask", "today", cwd=tmp_path, env={**env, "PAPERBOY_DEFAULT_TIMEZONE": "Mars/Olympus"})
    assert bad.returncode == 2 and "unknown time zone" in bad.stderr and "Traceback" not in bad.stderr
    too_long = paperboy("ask", "today", cwd=tmp_path, env={**env, "PAPERBOY_MAX_TOPIC_LENGTH": "500"})
    assert too_long.returncode == 2 and "PAPERBOY_MAX_TOPIC_LENGTH" in too_long.stderr and "200" in too_long.stderr


def test_secrets_never_reach_the_output(fake_hf: FakeHuggingFace, env: dict[str, str], tmp_path: Path) -> None:
    secret = "hf_" + "S3cr3tT0kenValue" * 2
    env = {**env, "PAPERBOY_HF_URL": fake_hf.url, "PAPERBOY_HF_TOKEN": secret, "PAPERBOY_LOG_LEVEL": "DEBUG"}
    result = paperboy("ask", "generalization", cwd=tmp_path, env=env)
    assert result.returncode == 0
    assert secret not in result.stdout + result.stderr


def test_preview_text_matches_ask(fake_hf: FakeHuggingFace, env: dict[str, str], tmp_path: Path) -> None:
    env = {**env, "PAPERBOY_HF_URL": fake_hf.url}
    preview = paperboy("preview", "--platform", "text", "/papers generalization", cwd=tmp_path, env=env)
    ask = paperboy("ask", "/papers generalization", cwd=tmp_path, env=env)
    assert preview.stdout == ask.stdout


@pytest.mark.parametrize("platform", ["slack", "discord"])
def test_preview_prints_json_bodies(fake_hf: FakeHuggingFace, env: dict[str, str], tmp_path: Path,
                                    platform: str) -> None:
    result = paperboy("preview", "--platform", platform, "/papers generalization", cwd=tmp_path,
                      env={**env, "PAPERBOY_HF_URL": fake_hf.url})
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    if platform == "slack":
        assert body["text"] and body["blocks"]
    else:
        assert body["embeds"] and body["allowed_mentions"] == {"parse": []}


def test_deliver_now_prints_console_alerts_and_dry_run_sends_nothing(fake_hf: FakeHuggingFace, env: dict[str, str],
                                                                    tmp_path: Path) -> None:
    env = {**env, "PAPERBOY_HF_URL": fake_hf.url}
    assert paperboy("ask", "subscribe generalization", cwd=tmp_path, env=env).returncode == 0

    make_console_alerts_due(env["DATABASE_URL"])
    dry = paperboy("deliver", "--now", "--dry-run", cwd=tmp_path, env=env)
    assert dry.returncode == 0, dry.stderr
    assert "nothing was sent" in dry.stdout and "new papers on generalization" in dry.stdout
    real = paperboy("deliver", "--now", cwd=tmp_path, env=env)
    assert real.returncode == 0, real.stderr
    assert "[direct message for console-user]" in real.stdout and "## generalization" in real.stdout
    again = paperboy("deliver", "--now", cwd=tmp_path, env=env)
    assert "[direct message" not in again.stdout  # delivered once, not twice


def test_deliver_now_with_slack_configured_opens_no_listener(fake_hf: FakeHuggingFace, env: dict[str, str],
                                                             tmp_path: Path) -> None:
    """A one-shot pass only sends: it must not bind Slack's HTTP port (here already taken) nor hang on it."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        slack_env = {**env, "PAPERBOY_HF_URL": fake_hf.url, "SLACK_BOT_TOKEN": "xoxb-test-token",
                     "SLACK_SIGNING_SECRET": "test-secret", "PORT": str(port), "SLACK_API_URL": _closed_port_url()}
        result = paperboy("deliver", "--now", cwd=tmp_path, env=slack_env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "address already in use" not in result.stderr.casefold()
    assert "xoxb-test-token" not in result.stdout + result.stderr


def test_ask_exits_0_with_an_error_answer_and_1_with_no_database(fake_hf: FakeHuggingFace, env: dict[str, str],
                                                                tmp_path: Path) -> None:
    env = {**env, "PAPERBOY_HF_URL": fake_hf.url}
    offline = paperboy("ask", "/papers generalization", cwd=tmp_path,
                       env={**env, "PAPERBOY_HF_URL": _closed_port_url(), "PAPERBOY_OFFLINE_SAMPLE": "false"})
    assert offline.returncode == 0, offline.stderr          # an error answer is still an answer
    assert "cannot be reached" in offline.stdout and "Traceback" not in offline.stderr
    no_db = paperboy("ask", "today", cwd=tmp_path,
                     env={**env, "DATABASE_URL": "postgresql://paperboy:hunter2@127.0.0.1:" +
                          _closed_port_url().rsplit(":", 1)[1] + "/papers"})
    assert no_db.returncode == 1
    assert no_db.stderr.startswith("paperboy: cannot use the database postgresql://paperboy:***@127.0.0.1:")
    assert "Traceback" not in no_db.stderr and "hunter2" not in no_db.stderr
    assert len(no_db.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("command", ["console", "run"])
def test_sigterm_stops_a_waiting_console_at_once(command: str, fake_hf: FakeHuggingFace, env: dict[str, str],
                                                 tmp_path: Path) -> None:
    """The console waits for a line that never comes; SIGTERM must end it cleanly anyway."""
    import select
    import signal
    import time

    process = subprocess.Popen([sys.executable, "-m", "bot.cli", command], cwd=tmp_path,
                               env={**env, "PAPERBOY_HF_URL": fake_hf.url}, stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        seen = ""
        deadline = time.monotonic() + 60
        while "paperboy> " not in seen and time.monotonic() < deadline:
            ready, _, _ = select.select([process.stdout], [], [], 1)
            if ready:
                seen += os.read(process.stdout.fileno(), 4096).decode()
        assert "paperboy> " in seen, process.stderr.read() if process.poll() is not None else seen
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        assert "Traceback" not in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
