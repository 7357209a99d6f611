"""Exit codes and one-line errors a script can rely on (README "Running in production")."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.run_process import closed_port, make_console_alerts_due, run_env


def paperboy(*args: str, env: dict[str, str], cwd: Path, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bot.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.parametrize(("url", "says", "command"), [
    ("mysql://paperboy:hunter2@db.example:3306/papers", "the 'mysql' database is not supported", "run"),
    ("postgresql://paperboy:hunter2@db.example:54x2/papers", "the port in the database URL is not a number",
     "deliver --now"),
    ("postgresql://paperboy:hunter2@db.example:70000/papers", "must be 1-65535", "status"),
    ("just some words", "not a database URL", "ask help"),
])
def test_an_unusable_database_url_is_one_line_and_exit_2(url: str, says: str, command: str, tmp_path: Path) -> None:
    result = paperboy(*command.split(), env=run_env(tmp_path, DATABASE_URL=url), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("paperboy: bad configuration: DATABASE_URL:") and says in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "hunter2" not in result.stderr and "Traceback" not in result.stderr


def test_deliver_now_exits_5_when_deliveries_failed(tmp_path: Path) -> None:
    """Hugging Face down with nothing stored: the due alert fails (never the sample), and cron sees it."""
    env = run_env(tmp_path, PAPERBOY_OFFLINE_SAMPLE="false")
    assert paperboy("ask", "subscribe generalization", env=env, cwd=tmp_path).returncode == 0

    make_console_alerts_due(env["DATABASE_URL"])
    result = paperboy("deliver", "--now", env=env, cwd=tmp_path)
    assert result.returncode == 5, result.stdout + result.stderr
    assert "failed 1" in result.stdout
    assert result.stderr.strip().splitlines()[-1] == "paperboy: 1 deliveries failed; later passes retry them"
    nothing_due = paperboy("deliver", "--now", env=env, cwd=tmp_path)   # retried only after a delay: nothing now
    assert nothing_due.returncode == 0, nothing_due.stdout + nothing_due.stderr


def test_run_exits_1_with_one_line_when_its_port_is_taken(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = run_env(tmp_path, PORT=str(port), SLACK_BOT_TOKEN="xoxb-1-port", SLACK_SIGNING_SECRET="s3cret-value",
                      SLACK_API_URL=f"http://127.0.0.1:{closed_port()}/api/")
        result = paperboy("run", env=env, cwd=tmp_path, timeout=60)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("paperboy:")]
    assert len(errors) == 1 and errors[0].startswith(f"paperboy: cannot listen on port {port}:"), result.stderr
    assert "Traceback" not in result.stderr


def test_slack_http_mode_without_a_signing_secret_is_bad_configuration(tmp_path: Path) -> None:
    env = run_env(tmp_path, SLACK_BOT_TOKEN="xoxb-1-nosecret")
    result = paperboy("run", env=env, cwd=tmp_path, timeout=60)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if "paperboy:" in line]
    assert len(lines) == 1 and "SLACK_SIGNING_SECRET" in lines[0]
    assert "Traceback" not in result.stderr
