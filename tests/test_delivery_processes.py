"""Several real OS processes delivering from one real PostgreSQL server.

Each worker is ``python -m tests.delivery_worker``: a full Paperboy app running
one delivery pass, sending over HTTP to a recording fake platform API in this
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
from sqlalchemy import insert, select

from storage.deliveries import CLAIMED, Deliveries
from storage.models import ChannelSubscription, Delivery, TopicSubscription, UserProfile
from storage.repositories import Storage
from tests.delivery_support import paper, set_feed
from tests.fakes.hf_api import FakeHuggingFace
from tests.fakes.platform_api import FakePlatformApi

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
    server = FakeHuggingFace(papers=[], daily={}).start()
    set_feed(server, FRIDAY, FEED)
    try:
        yield server
    finally:
        server.stop()


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


async def test_a_process_killed_mid_run_is_finished_by_the_next_with_duplicates_only_in_flight(
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

        # restarted after the claim lease (10 min): everything left is delivered
        after_lease = now + timedelta(minutes=12)
        report = await finish(await start_worker(postgres_url, hf, sink, after_lease, "restarted", concurrency=8))
        counts = delivered(sink)
        assert len(counts) == CHANNELS + PEOPLE  # every delivery made
        duplicated = {target for target, count in counts.items() if count > 1}
        assert duplicated <= in_flight_targets  # duplicates only for messages in flight at the kill
        assert len(duplicated) <= len(in_flight)
        # what had been delivered and marked sent before the kill is never sent again
        assert all(counts[target] == 1 for target in before if target not in in_flight_targets)
        assert set(before) - in_flight_targets, "the kill came before anything was marked sent"
        assert report["recovered"] == len(in_flight)
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

