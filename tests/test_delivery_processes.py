"""Several real OS processes delivering from one database, and processes killed mid-pass.

Each worker is ``python -m tests.delivery_worker``: a full Paperboy app running
one delivery pass, sending over HTTP to a recording fake platform API (or, with
``--slack``, through the real Slack adapter to the fake Slack Web API) in this
test process, with the feed from the fake Hugging Face server.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select

from storage.deliveries import CLAIMED, Deliveries
from storage.models import ChannelSubscription, Delivery, TopicSubscription, UserProfile
from storage.repositories import Storage
from tests.delivery_support import paper, serving_feed
from tests.fakes.hf_api import FakeHuggingFace
from tests.fakes.platform_api import FakePlatformApi
from tests.fakes.slack_api import FakeSlackApi

ROOT = Path(__file__).resolve().parents[1]
FRIDAY = date(2026, 11, 20)
DUE = datetime(2026, 11, 20, 9, 0, tzinfo=timezone.utc)
CHANNELS, PEOPLE = 600, 400
FEED = [paper(f"2511.3{i:04d}", title, upvotes=100 - i) for i, title in enumerate([
    "Generalization in Deep Networks", "Reinforcement Learning for Robots", "Diffusion Models for Audio",
    "Scaling Laws for Language Models", "Contrastive Learning of Visual Features", "Graph Neural Networks at Scale",
])]
TOPICS = ["generalization", "reinforcement learning", "diffusion models", "scaling laws", "graph neural networks"]


async def seed(url: str) -> Storage:
    """1,000 subscriptions due at 09:00 UTC: 600 channels and 400 people."""
    storage = Storage.connect(url)
    now = DUE - timedelta(days=1)
    async with storage.db.transaction() as session:
        await session.execute(insert(ChannelSubscription), [
            dict(platform="slack", workspace_id=f"T{i % 10}", channel_id=f"C{i}", created_by="U_OWNER",
                 post_time="09:00", timezone="UTC", top_n=5, post_when_empty=False, enabled=True,
                 next_due_at=DUE, created_at=now, updated_at=now) for i in range(CHANNELS)])
        await session.execute(insert(UserProfile), [
            dict(platform="slack", workspace_id=f"T{i % 10}", user_id=f"U{i}", alert_time="09:00", timezone="UTC",
                 alerts_enabled=True, next_due_at=DUE, created_at=now, updated_at=now) for i in range(PEOPLE)])
        ids = (await session.execute(select(UserProfile.id))).scalars().all()
        await session.execute(insert(TopicSubscription), [
            dict(profile_id=pid, topic=TOPICS[n % len(TOPICS)], created_at=now)
            for n, pid in enumerate(ids)])
    return storage


@pytest.fixture
def hf() -> Iterator[FakeHuggingFace]:
    with serving_feed(FRIDAY, FEED) as server:
        yield server


@pytest.fixture
async def sink() -> AsyncIterator[FakePlatformApi]:
    api = await FakePlatformApi().start()
    try:
        yield api
    finally:
        await api.stop()


async def start_worker(url: str, hf: FakeHuggingFace, sink: FakePlatformApi, now: datetime, name: str,
                       *, concurrency: int = 16) -> asyncio.subprocess.Process:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.delivery_worker", "--db", url, "--hf", hf.url, "--sink", sink.url,
        "--now", now.isoformat(), "--worker-id", name, "--concurrency", str(concurrency), "--batch-size", "100",
        cwd=str(ROOT), env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


async def finish(process: asyncio.subprocess.Process) -> dict:
    stdout, stderr = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, stderr.decode()[-3000:]
    return json.loads(stdout.decode().strip().splitlines()[-1])


def delivered(sink: FakePlatformApi) -> dict[str, int]:
    return {target: count for (_, _, target), count in sink.counts.items()}


async def test_two_processes_deliver_1000_due_subscriptions_each_exactly_once(postgres_url: str, hf: FakeHuggingFace,
                                                                              sink: FakePlatformApi) -> None:
    storage = await seed(postgres_url)
    sink.delay = 0.03  # slow enough that both processes are sending at the same time
    try:
        now = DUE + timedelta(minutes=1)
        workers = [await start_worker(postgres_url, hf, sink, now, name) for name in ("worker-a", "worker-b")]
        reports = [await finish(w) for w in workers]
        counts = delivered(sink)
        assert len(counts) == CHANNELS + PEOPLE
        assert set(counts.values()) == {1}
        assert sum(r["sent"] for r in reports) == CHANNELS + PEOPLE
        assert all(r["sent"] > 0 for r in reports), reports  # both took a share
        assert await Deliveries(storage.db).status_counts() == {"sent": CHANNELS + PEOPLE}
        async with storage.db.transaction() as session:
            workers_used = set((await session.execute(select(Delivery.claimed_by).distinct())).scalars())
        assert workers_used == {"worker-a", "worker-b"}
        # a third pass finds nothing left to do
        again = await finish(await start_worker(postgres_url, hf, sink, now + timedelta(minutes=1), "worker-c"))
        assert again["sent"] == 0 and sum(delivered(sink).values()) == CHANNELS + PEOPLE
    finally:
        await storage.close()


async def test_a_process_killed_mid_run_is_finished_by_the_next_without_duplicates(
        postgres_url: str, hf: FakeHuggingFace, sink: FakePlatformApi) -> None:
    storage = await seed(postgres_url)
    sink.delay = 0.01
    try:
        now = DUE + timedelta(minutes=1)
        victim = await start_worker(postgres_url, hf, sink, now, "victim", concurrency=8)
        for _ in range(3000):
            if len(sink.received) >= 300:
                break
            await asyncio.sleep(0.01)
        assert 0 < len(sink.received) < CHANNELS + PEOPLE, "the worker finished before it could be killed"
        victim.send_signal(signal.SIGKILL)
        await victim.wait()
        before = delivered(sink)   # what the platform had taken when the kill was seen (more may land)

        async with storage.db.transaction() as session:
            in_flight = (await session.execute(select(Delivery.kind, Delivery.subscription_id)
                                               .where(Delivery.status == CLAIMED))).all()
        in_flight_targets = await _targets(storage, in_flight)
        assert in_flight, "the kill left no claimed rows"

        # restarted after the claim lease (90 s): everything left is delivered, and what the platform
        # took from the victim is found in its history instead of being sent again
        landed = in_flight_targets & set(delivered(sink))   # taken by the platform, never marked sent
        after_lease = now + timedelta(minutes=2)
        report = await finish(await start_worker(postgres_url, hf, sink, after_lease, "restarted", concurrency=8))
        counts = delivered(sink)
        assert len(counts) == CHANNELS + PEOPLE  # every delivery made
        assert {target for target, count in counts.items() if count > 1} == set()
        assert set(before) - in_flight_targets, "the kill came before anything was marked sent"
        assert report["recovered"] == len(in_flight)
        # found in the history: at least what had landed when the restart began (more may land meanwhile)
        assert len(landed) <= report["found_delivered"] <= len(in_flight_targets)
        assert await Deliveries(storage.db).status_counts() == {"sent": CHANNELS + PEOPLE}
    finally:
        await storage.close()


async def _targets(storage: Storage, rows: list) -> set[str]:
    channel_ids = [sub for kind, sub in rows if kind == "channel"]
    profile_ids = [sub for kind, sub in rows if kind == "alert"]
    async with storage.db.transaction() as session:
        channels = (await session.execute(select(ChannelSubscription.channel_id)
                                          .where(ChannelSubscription.id.in_(channel_ids)))).scalars().all()
        people = (await session.execute(select(UserProfile.user_id)
                                        .where(UserProfile.id.in_(profile_ids)))).scalars().all()
    return set(channels) | set(people)



# --- SIGKILL mid-pass through the real Slack adapter, on SQLite and on PostgreSQL ---------------------------

SLACK_CHANNELS, SLACK_PEOPLE = 100, 100


async def seed_small(url: str) -> Storage:
    """100 channel posts and 100 people (every one following a topic of the feed), due at 09:00 UTC."""
    storage = Storage.connect(url)
    now = DUE - timedelta(days=1)
    async with storage.db.transaction() as session:
        await session.execute(insert(ChannelSubscription), [
            dict(platform="slack", workspace_id="T1", channel_id=f"C{i}", created_by="U_OWNER", post_time="09:00",
                 timezone="UTC", top_n=5, post_when_empty=False, enabled=True, next_due_at=DUE, created_at=now,
                 updated_at=now) for i in range(SLACK_CHANNELS)])
        await session.execute(insert(UserProfile), [
            dict(platform="slack", workspace_id="T1", user_id=f"U{i}", alert_time="09:00", timezone="UTC",
                 alerts_enabled=True, next_due_at=DUE, created_at=now, updated_at=now) for i in range(SLACK_PEOPLE)])
        ids = (await session.execute(select(UserProfile.id))).scalars().all()
        await session.execute(insert(TopicSubscription), [
            dict(profile_id=pid, topic=TOPICS[n % len(TOPICS)], created_at=now) for n, pid in enumerate(ids)])
    return storage


async def start_slack_worker(url: str, hf: FakeHuggingFace, slack: FakeSlackApi, now: datetime,
                             name: str) -> asyncio.subprocess.Process:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.delivery_worker", "--db", url, "--hf", hf.url, "--slack", slack.url,
        "--now", now.isoformat(), "--worker-id", name, "--concurrency", "16", "--batch-size", "50",
        cwd=str(ROOT), env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


def slack_counts(slack: FakeSlackApi) -> dict[str, int]:
    """Messages per conversation (channels C*, direct messages D<user>)."""
    return {channel: len(messages) for channel, messages in slack.messages.items()}


async def test_sigkill_mid_pass_then_restart_sends_everything_exactly_once_through_slack(
        db_url: str, hf: FakeHuggingFace) -> None:
    """The issue's scenario: Slack taking 200 ms per post, the delivering process killed with SIGKILL
    mid-pass, a new process started once the claim lease has passed. Messages Slack accepted whose
    ``sent`` mark had not been committed are found in the conversation's history (message metadata)
    and recorded, not posted again: 0 duplicates, 0 lost, on SQLite and on PostgreSQL."""
    storage = await seed_small(db_url)
    async with FakeSlackApi() as slack:
        slack.post_delay = 0.2
        try:
            now = DUE + timedelta(minutes=1)
            victim = await start_slack_worker(db_url, hf, slack, now, "victim")
            async with asyncio.timeout(120):
                while sum(slack_counts(slack).values()) < 60:
                    await asyncio.sleep(0.01)
            victim.send_signal(signal.SIGKILL)
            await victim.wait()
            total = SLACK_CHANNELS + SLACK_PEOPLE
            assert sum(slack_counts(slack).values()) < total, "the worker finished before it could be killed"
            async with storage.db.transaction() as session:
                claimed = (await session.execute(select(func.count()).select_from(Delivery)
                                                 .where(Delivery.status == CLAIMED))).scalar_one()
            assert claimed > 0
            report = await finish(await start_slack_worker(db_url, hf, slack, now + timedelta(minutes=2), "restarted"))
            counts = slack_counts(slack)
            assert len(counts) == total                        # 0 lost
            assert [c for c, n in counts.items() if n != 1] == []   # 0 duplicates
            assert report["recovered"] == claimed
            assert await Deliveries(storage.db).status_counts() == {"sent": total}
            # every message carries its delivery id, and no id appears twice
            ids = [i for channel in counts for i in slack.delivery_ids(channel)]
            assert len(ids) == len(set(ids)) == total
        finally:
            await storage.close()
