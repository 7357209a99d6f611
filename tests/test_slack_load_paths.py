"""The Slack acknowledgement path under load: ack first, bounded work, one auth.test, shared connections.

The real slack-bolt app in HTTP mode, against the fake Slack Web API and a Hugging Face stand-in
(both real HTTP servers on 127.0.0.1), as in tests/test_slack_app.py.
"""

from __future__ import annotations

import asyncio
import json
import time

from bot.work import BUSY_MESSAGE, WorkPool
from tests.test_slack_app import StartSlack, hf, running, slack, slash_body, start_slack  # noqa: F401 - fixtures


async def test_a_full_pool_still_acks_at_once_and_says_busy(start_slack: StartSlack) -> None:  # noqa: F811
    running = await start_slack(PAPERBOY_COMMAND_WORKERS="1", PAPERBOY_COMMAND_QUEUE="1")
    running.hf.hold = asyncio.Event()                  # the paper source hangs: the one worker is stuck
    first = await running.post(slash_body("generalization", running.slack, key="k1"))
    while not running.hf.searches:                     # the worker has taken the first command
        await asyncio.sleep(0.01)
    second = await running.post(slash_body("transformers", running.slack, key="k2"))
    started = time.monotonic()
    third = await running.post(slash_body("diffusion", running.slack, key="k3"))
    assert time.monotonic() - started < 2
    assert first == (200, "") and second == (200, "")  # acknowledged while no work could start
    status, body = third
    assert status == 200 and json.loads(body)["text"] == BUSY_MESSAGE   # the ack itself says "busy"
    assert running.adapter.pool.refused == 1
    running.hf.hold.set()
    await running.slack.wait_for("response:k1")
    await running.slack.wait_for("response:k2")        # the queued one ran once a worker was free
    assert running.slack.responses("k3") == [] and running.hf.searches == ["generalization", "transformers"]


async def test_fifty_cold_concurrent_commands_call_auth_test_once(start_slack: StartSlack) -> None:  # noqa: F811
    running = await start_slack()
    answers = await asyncio.gather(*(running.post(slash_body("generalization", running.slack, user=f"U{n}",
                                                             key=f"c{n}")) for n in range(50)))
    assert set(answers) == {(200, "")}
    await running.slack.wait_for("response:*", 50)
    assert len(running.slack.calls_to("auth.test")) == 1


async def test_web_api_and_response_url_calls_share_kept_alive_connections(start_slack: StartSlack) -> None:  # noqa: F811
    """Each answer used to open a new aiohttp session and TCP connection; now a few are reused."""
    running = await start_slack()
    for n in range(10):                                # ten people: ten users.info, ten answers
        await running.slash("generalization", user=f"U{n}", key=f"s{n}")
    requests = len(running.slack.calls_to("users.info")) + len(running.slack.responses())
    assert requests == 20
    assert len(running.slack.connections) <= 3


async def test_the_pool_runs_at_most_its_workers_at_once_and_finishes_queued_work_on_close() -> None:
    pool = WorkPool(workers=2, queue_size=10)
    running_now, most, done = 0, 0, []

    async def job(n: int) -> None:
        nonlocal running_now, most
        running_now += 1
        most = max(most, running_now)
        await asyncio.sleep(0.02)
        running_now -= 1
        done.append(n)

    assert all(pool.submit(lambda n=n: job(n)) for n in range(10))
    assert not pool.submit(lambda: job(99))             # queue full: refused at once, nothing queued
    await pool.close()
    assert sorted(done) == list(range(10)) and most == 2
    assert not pool.submit(lambda: job(100))            # closed
