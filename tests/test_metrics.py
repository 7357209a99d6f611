"""``/metrics``: parsed with prometheus_client's own text parser, counters moving with real traffic
(commands through the core and through a running process's Slack endpoint, Hugging Face calls
against the fake API, delivery passes with a 429 storm)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from datetime import date, datetime, time, timezone
from urllib.parse import urlencode

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from adapters.console import console_context
from adapters.fake import FakeAdapter
from bot.app import App, build_app
from bot.metrics import Metrics
from bot.models import ChannelRef
from scheduler.clock import DeliveryScheduler
from tests.conftest import make_settings
from tests.delivery_support import add_channel, paper, set_feed
from tests.fakes.hf_api import FakeHuggingFace, seed_papers
from tests.fakes.slack_api import FakeSlackApi, signed_headers
from tests.run_process import Process, paperboy_run  # noqa: F401 - paperboy_run is a fixture

FRIDAY = date(2026, 11, 20)


def value(text: str, name: str, **labels: str) -> float | None:
    """The sample ``name`` with exactly these labels in an exposition, parsed by prometheus_client."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return None


@pytest.fixture
def fake_hf() -> Iterator[FakeHuggingFace]:
    with FakeHuggingFace(seed_papers()) as server:
        yield server


async def test_commands_and_hugging_face_counters_move_with_traffic(fake_hf: FakeHuggingFace,
                                                                    sqlite_url: str) -> None:
    app = await asyncio.to_thread(build_app, make_settings(DATABASE_URL=sqlite_url, PAPERBOY_HF_URL=fake_hf.url,
                                                           PAPERBOY_HF_RETRIES=0))
    try:
        before = app.metrics.exposition()[0].decode()
        assert value(before, "paperboy_commands_total", platform="console", command="search") is None
        assert value(before, "paperboy_deliveries_total", outcome="sent") == 0
        await app.core.handle(console_context(), "/papers generalization")
        await app.core.handle(console_context(), "/papers generalization")          # the cached answer
        fake_hf.fail_next(503)
        await app.core.handle(console_context(), "/papers diffusion models")        # upstream fails once
        await app.core.handle(console_context(), "/papers help")
        text = app.metrics.exposition()[0].decode()
    finally:
        await app.close()
    assert value(text, "paperboy_commands_total", platform="console", command="search") == 3
    assert value(text, "paperboy_commands_total", platform="console", command="help") == 1
    assert value(text, "paperboy_answer_seconds_count", platform="console") == 4
    assert value(text, "paperboy_answer_seconds_bucket", platform="console", le="+Inf") == 4
    assert value(text, "paperboy_hf_requests_total", endpoint="search") == fake_hf.count("/api/papers/search") == 2
    assert value(text, "paperboy_hf_cache_hits_total", endpoint="search") == 1
    assert value(text, "paperboy_hf_failures_total", endpoint="search", reason="http_5xx") == 1


async def test_delivery_outcomes_and_platform_rate_limit_waits_are_counted(db_url: str) -> None:
    with FakeHuggingFace(papers=[], daily={}) as hf:
        set_feed(hf, FRIDAY, [paper("2511.10001", "On the Generalization of Deep Networks", upvotes=40)])
        app: App = await asyncio.to_thread(build_app, make_settings(
            DATABASE_URL=db_url, PAPERBOY_HF_URL=hf.url, PAPERBOY_OFFLINE_SAMPLE=False,
            PAPERBOY_DAILY_CACHE_SECONDS=0))
        adapter = FakeAdapter(app.core, platform="slack")
        app.adapters.add(adapter)
        now = datetime(2026, 11, 20, 9, 1, tzinfo=timezone.utc)
        try:
            for i in range(4):
                await add_channel(app.storage, ChannelRef("slack", "T1", f"C{i}"), at=time(9, 0), tz="UTC",
                                  after=datetime(2026, 11, 20, tzinfo=timezone.utc))
            adapter.rate_limit_storm(3, retry_after=0.01)
            scheduler = DeliveryScheduler(app, clock=lambda: now)
            await scheduler.start()
            try:
                await scheduler.wait_for_passes(1, timeout=60)
            finally:
                await scheduler.stop()
            text = app.metrics.exposition()[0].decode()
        finally:
            await app.close()
    assert scheduler.last_report is not None and scheduler.last_report.sent == 4
    assert value(text, "paperboy_deliveries_total", outcome="sent") == 4
    assert value(text, "paperboy_deliveries_total", outcome="failed") == 0
    assert value(text, "paperboy_rate_limit_waits_total", platform="slack") == 3


def test_each_metrics_object_has_its_own_registry() -> None:
    first, second = Metrics(), Metrics()
    first.command_answered("slack", "search", 0.2)
    assert value(first.exposition()[0].decode(), "paperboy_commands_total", platform="slack", command="search") == 1
    assert value(second.exposition()[0].decode(), "paperboy_commands_total", platform="slack", command="search") \
        is None


def slash_body(text: str, response_url: str) -> str:
    """A slash command as Slack posts it (the field set of a recorded request)."""
    return urlencode({"token": "unused", "team_id": "T1", "team_domain": "lab", "channel_id": "C1",
                      "channel_name": "research", "user_id": "U1", "user_name": "ada", "command": "/papers",
                      "text": text, "api_app_id": "A0PAPERBOY", "is_enterprise_install": "false",
                      "response_url": response_url, "trigger_id": "1.2.3"})


async def test_a_running_process_serves_metrics_and_slack_on_one_port(
        paperboy_run: Callable[..., object], fake_hf: FakeHuggingFace) -> None:
    """Slack HTTP mode: Slack's events and /metrics share PORT; a slash command moves the counters."""
    secret = "metrics-test-signing-secret"
    async with FakeSlackApi() as slack, aiohttp.ClientSession() as http:
        process: Process = await paperboy_run(  # type: ignore[operator]
            SLACK_BOT_TOKEN="xoxb-1-metrics", SLACK_SIGNING_SECRET=secret, SLACK_API_URL=slack.url,
            PAPERBOY_HF_URL=fake_hf.url)
        port = await process.port()

        async def scrape() -> str:
            async with http.get(f"http://127.0.0.1:{port}/metrics") as response:
                assert response.status == 200
                assert response.headers["Content-Type"].startswith("text/plain; version=")
                return await response.text()

        async with asyncio.timeout(60):
            while value(text := await scrape(), "paperboy_connection_up", connection="slack") != 1:
                await asyncio.sleep(0.2)
        assert value(text, "paperboy_connection_up", connection="scheduler") == 1
        assert value(text, "paperboy_connection_state", connection="slack", state="connected") == 1
        assert value(text, "paperboy_connection_state", connection="slack", state="backing off") == 0
        assert value(text, "paperboy_commands_total", platform="slack", command="search") is None

        body = slash_body("generalization", slack.response_url("m1"))
        async with http.post(f"http://127.0.0.1:{port}/slack/events", data=body.encode(),
                             headers=signed_headers(secret, body)) as response:
            assert response.status == 200
        await slack.wait_for("response:m1", timeout=60)
        text = await scrape()
        assert value(text, "paperboy_commands_total", platform="slack", command="search") == 1
        assert value(text, "paperboy_answer_seconds_count", platform="slack") == 1
        assert value(text, "paperboy_hf_requests_total", endpoint="search") == 1
        code, _ = await process.terminate()
    assert code == 0
