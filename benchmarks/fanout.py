"""Fan-out benchmark: 10,000 channel posts and 50,000 personal alerts due at once.

A fake platform API (its own process, 127.0.0.1) accepts at most ``--rate``
messages per second and answers 429 + ``Retry-After`` beyond it. One delivery
pass sends everything through :class:`adapters.fake.HttpPlatformAdapter`
(aiohttp, the HTTP client slack_sdk's ``AsyncWebClient`` uses). Printed: wall time, the bound N/R and their ratio, delivered, lost,
duplicated, upstream paper-source calls, peak RSS of the delivering process,
and the topic-matching time for 100,000 topics against 500 papers.

Then a crash run (skip with ``--no-crash``): on a fresh database (a tenth of the
subscriptions) and a fresh fake platform, a delivering OS process
(``tests.delivery_worker``) is killed with SIGKILL once ``--crash-at`` of its messages
were accepted, and a new process is started once the claim lease has passed. Printed:
messages accepted before the kill, claims left behind, delivered, lost (target 0),
duplicated (target 0), and how many of the victim's messages the restart found in the
platform's history instead of sending them again.

    python benchmarks/fanout.py [--channels 10000] [--people 50000] [--rate 500] [--postgres] [--no-crash]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import os
import resource
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from adapters.fake import HttpPlatformAdapter  # noqa: E402
from bot.app import build_app  # noqa: E402
from bot.matching import TopicIndex  # noqa: E402
from bot.models import Paper  # noqa: E402
from bot.settings import Settings  # noqa: E402
from scheduler.delivery import CLAIM_LEASE, run_delivery_pass  # noqa: E402
from tests.delivery_support import set_feed  # noqa: E402
from tests.fakes.hf_api import FakeHuggingFace, seed_papers  # noqa: E402

DUE = datetime(2026, 11, 20, 9, 0, tzinfo=timezone.utc)

# What people follow: research areas as they type them, most popular first.
TOPICS = """large language models; reinforcement learning; diffusion models; generalization; retrieval augmented generation;
vision transformers; multimodal learning; in-context learning; instruction tuning; reasoning; agents; code generation;
mixture of experts; quantization; knowledge distillation; federated learning; graph neural networks;
contrastive learning; self-supervised learning; speech recognition; text to speech; video generation;
image generation; 3d reconstruction; neural radiance fields; gaussian splatting; robotics; embodied agents;
world models; scaling laws; alignment; rlhf; preference optimization; hallucination; interpretability;
mechanistic interpretability; adversarial robustness; out-of-distribution generalization; domain adaptation;
continual learning; meta-learning; few-shot learning; zero-shot learning; transfer learning; benchmarks;
evaluation; data contamination; synthetic data; data augmentation; tokenization; long context; state space models;
mamba; sparse attention; efficient transformers; model compression; pruning; low-rank adaptation;
parameter-efficient fine-tuning; prompt engineering; chain of thought; mathematical reasoning; theorem proving;
program synthesis; question answering; machine translation; summarization; information retrieval; recommendation;
time series forecasting; anomaly detection; medical imaging; protein structure prediction; drug discovery;
molecular generation; weather forecasting; autonomous driving; object detection; semantic segmentation;
pose estimation; optical flow; image restoration; super resolution; point clouds; audio generation;
music generation; multilingual models; low-resource languages; fairness; privacy; differential privacy;
uncertainty estimation; calibration; bayesian deep learning; causal inference; optimization; optimizers;
learning rate schedules; neural architecture search; compositional generalization; systematic generalization;
graph transformers; knowledge graphs; tool use; web agents; multi-agent systems; game playing; planning;
vision language models; visual question answering; image captioning; document understanding; ocr;
table understanding; speech translation; emotion recognition; sign language; hyperspectral imaging; remote sensing"""
TOPIC_LIST = [t.strip() for t in TOPICS.replace("\n", " ").split(";") if t.strip()]


CUMULATIVE_WEIGHTS = list(itertools.accumulate(1 / (rank + 1) ** 0.8 for rank in range(len(TOPIC_LIST))))


def pick_topics(rng: random.Random, count: int) -> list[str]:
    """Topics drawn with a Zipf-like popularity (a few areas are followed by many people)."""
    return list(dict.fromkeys(rng.choices(TOPIC_LIST, cum_weights=CUMULATIVE_WEIGHTS, k=count)))


def seed_database(path: str, channels: int, people: int, rng: random.Random) -> None:
    """Insert the subscriptions with the sqlite3 module in chunks (constant memory)."""
    now = (DUE - timedelta(days=1)).isoformat(sep=" ")
    due = DUE.isoformat(sep=" ")
    conn = sqlite3.connect(path)
    conn.executemany(
        "INSERT INTO channel_subscriptions (platform, workspace_id, channel_id, created_by, post_time, timezone, "
        "top_n, post_when_empty, enabled, next_due_at, created_at, updated_at) "
        "VALUES ('slack', ?, ?, 'U0', '09:00', 'UTC', 10, 0, 1, ?, ?, ?)",
        ((f"T{i % 200}", f"C{i}", due, now, now) for i in range(channels)))
    conn.executemany(
        "INSERT INTO user_profiles (id, platform, workspace_id, user_id, alert_time, timezone, alerts_enabled, "
        "next_due_at, created_at, updated_at) VALUES (?, 'slack', ?, ?, NULL, NULL, 1, ?, ?, ?)",
        ((i + 1, f"T{i % 200}", f"U{i}", due, now, now) for i in range(people)))
    conn.executemany(
        "INSERT INTO topic_subscriptions (profile_id, topic, created_at) VALUES (?, ?, ?)",
        ((pid, topic, now) for pid in range(1, people + 1) for topic in pick_topics(rng, rng.randint(1, 4))))
    conn.commit()
    conn.close()


def seed_postgres(url: str, channels: int, people: int, rng: random.Random) -> None:
    import psycopg

    now, due = DUE - timedelta(days=1), DUE
    with psycopg.connect(url.replace("postgresql://", "postgresql://", 1)) as conn, conn.cursor() as cur:
        with cur.copy("COPY channel_subscriptions (platform, workspace_id, channel_id, created_by, post_time, timezone, "
                      "top_n, post_when_empty, enabled, next_due_at, created_at, updated_at) FROM STDIN") as copy:
            for i in range(channels):
                copy.write_row(("slack", f"T{i % 200}", f"C{i}", "U0", "09:00", "UTC", 10, False, True, due, now, now))
        with cur.copy("COPY user_profiles (id, platform, workspace_id, user_id, alerts_enabled, next_due_at, "
                      "created_at, updated_at) FROM STDIN") as copy:
            for i in range(people):
                copy.write_row((i + 1, "slack", f"T{i % 200}", f"U{i}", True, due, now, now))
        cur.execute("SELECT setval('user_profiles_id_seq', %s)", (people,))
        with cur.copy("COPY topic_subscriptions (profile_id, topic, created_at) FROM STDIN") as copy:
            for pid in range(1, people + 1):
                for topic in pick_topics(rng, rng.randint(1, 4)):
                    copy.write_row((pid, topic, now))


def expected_alerts(db_url: str, papers: list[Paper]) -> int:
    """People the pass's own alert matcher finds new papers for (they must get exactly one DM)."""
    from sqlalchemy import create_engine, text

    from bot.papers import Origin, PaperBatch
    from scheduler.delivery import AlertMatcher
    from storage.db import sync_url

    matcher = AlertMatcher(PaperBatch(papers, Origin.LIVE, day=DUE.date()), now=DUE + timedelta(minutes=1))
    engine = create_engine(sync_url(db_url))
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT profile_id, topic FROM topic_subscriptions ORDER BY id")).all()
    engine.dispose()
    topics: dict[int, list[str]] = {}
    for profile_id, topic in rows:
        topics.setdefault(profile_id, []).append(topic)
    return sum(1 for followed in topics.values() if matcher.compose(followed, set())[0] is not None)


def feed_papers(count: int) -> list[Paper]:
    """``count`` papers from the recorded seeds (repeated with new ids when there are fewer)."""
    base = [_as_paper(item) for item in seed_papers()]
    return [base[i] if i < len(base) else _renumber(base[i % len(base)], i) for i in range(count)]


def _as_paper(item: object) -> Paper:
    """A seed as a Paper, whether the fake gives Papers or API items (``{"paper": {...}}``)."""
    if isinstance(item, Paper):
        return item
    assert isinstance(item, dict)
    data = item.get("paper", item)
    published = data.get("publishedAt")
    return Paper(paper_id=str(data["id"]), title=data.get("title", ""), summary=data.get("summary", ""),
                 authors=tuple(a.get("name", "") for a in data.get("authors", []) if isinstance(a, dict)),
                 upvotes=int(data.get("upvotes", 0) or 0),
                 published_at=datetime.fromisoformat(published.replace("Z", "+00:00")) if published else None,
                 ai_keywords=tuple(data.get("ai_keywords") or ()), ai_summary=data.get("ai_summary"))


def _renumber(paper: Paper, i: int) -> Paper:
    from dataclasses import replace

    return replace(paper, paper_id=f"9999.{i:05d}")


def matching_benchmark(papers: list[Paper], rng: random.Random) -> dict[str, float]:
    """100,000 followed topics against 500 papers, as one alert run does it (once per distinct topic)."""
    followed = [t for _ in range(100_000 // 2) for t in pick_topics(rng, 2)][:100_000]
    while len(followed) < 100_000:
        followed.append(rng.choice(TOPIC_LIST))
    started = time.perf_counter()
    index = TopicIndex(papers)
    built = time.perf_counter()
    results = index.match_many(followed)
    done = time.perf_counter()
    # the cost per distinct topic, to extrapolate to a long tail of never-seen topics
    words = sorted({w for t in TOPIC_LIST for w in t.split()})
    distinct = {" ".join(rng.sample(words, rng.choice((1, 2, 2, 3)))) for _ in range(3000)}
    tail_index = TopicIndex(papers)
    tail_start = time.perf_counter()
    tail_index.match_many(distinct)
    per_topic = (time.perf_counter() - tail_start) / len(distinct)
    return {"topics": len(followed), "distinct": len(results), "index_seconds": built - started,
            "match_seconds": done - built, "total_seconds": done - started, "per_distinct_topic_ms": per_topic * 1000}


async def deliver(db_url: str, api_url: str, hf: FakeHuggingFace, concurrency: int) -> dict:
    settings = Settings(_env_file=None, DATABASE_URL=db_url, PAPERBOY_HF_URL=hf.url, PAPERBOY_OFFLINE_SAMPLE=False,
                        PAPERBOY_DELIVERY_CONCURRENCY=concurrency)
    app = build_app(settings, migrate=False)
    adapter = HttpPlatformAdapter(api_url, platform="slack", concurrency=concurrency)
    app.adapters.add(adapter)
    upstream_before = len(hf.requests)
    try:
        started = time.perf_counter()
        report = await run_delivery_pass(app, now=DUE + timedelta(minutes=1))
        wall = time.perf_counter() - started
    finally:
        await adapter.stop()
        await app.close()
    async with httpx.AsyncClient() as client:
        stats = (await client.get(f"{api_url}/stats")).json()
    return {"wall": wall, "report": report.as_dict(), "platform": stats, "upstream": len(hf.requests) - upstream_before}


async def crash_run(args: argparse.Namespace, db_url: str, hf: FakeHuggingFace, expected: int) -> dict:
    """Kill -9 a delivering process mid-fan-out, restart it after the lease; count duplicates and losses."""
    api = subprocess.Popen([sys.executable, "-m", "tests.fakes.platform_api", "--rate", str(args.rate)],
                           cwd=str(ROOT), stdout=subprocess.PIPE, text=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    logs = tempfile.mkdtemp(prefix="paperboy-crash-")

    def worker(api_url: str, now: datetime, name: str) -> subprocess.Popen:
        with open(f"{logs}/{name}.log", "w") as log_file:   # the child keeps its own descriptor
            return subprocess.Popen(
                [sys.executable, "-m", "tests.delivery_worker", "--db", db_url, "--hf", hf.url, "--sink", api_url,
                 "--now", now.isoformat(), "--worker-id", name, "--concurrency", str(args.concurrency),
                 "--batch-size", "500"], cwd=str(ROOT), env=env, stdout=subprocess.PIPE, stderr=log_file,
                text=True)

    try:
        assert api.stdout is not None
        api_url = api.stdout.readline().strip()
        async with httpx.AsyncClient() as client:
            async def stats() -> dict:
                return (await client.get(f"{api_url}/stats")).json()

            now = DUE + timedelta(minutes=1)
            started = time.perf_counter()
            victim = worker(api_url, now, "victim")
            while (await stats())["accepted"] < expected * args.crash_at:
                if victim.poll() is not None:
                    raise SystemExit("the delivering process finished before it could be killed")
                await asyncio.sleep(0.05)
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            ran = time.perf_counter() - started
            await asyncio.sleep(1.0)   # requests the victim had written land (or not)
            at_kill = await stats()
            claimed = _ledger(db_url).get("claimed", 0)
            # the restart comes once the victim's claims are older than the lease (its clock: now + time run)
            restart_now = now + timedelta(seconds=ran) + CLAIM_LEASE + timedelta(seconds=30)
            restarted = worker(api_url, restart_now, "restarted")
            out, _ = restarted.communicate(timeout=3600)
            report = json.loads(out.strip().splitlines()[-1])
            final = await stats()
            ledger = _ledger(db_url)
    finally:
        api.terminate()
        api.wait()
    # lost: a delivery never finished (still claimed, or failed), or marked sent but not on the platform
    lost = ledger.get("claimed", 0) + ledger.get("failed", 0) + max(0, ledger.get("sent", 0) - final["distinct"])
    return {"due": expected, "accepted_at_kill": at_kill["accepted"], "claimed_left": claimed, "ledger": ledger,
            "delivered": final["distinct"], "duplicates": final["duplicates"], "lost": lost,
            "lookups": final["lookups"], "found_delivered": report.get("found_delivered", 0),
            "recovered": report.get("recovered", 0), "report": report, "logs": logs}


def _ledger(db_url: str) -> dict[str, int]:
    """Ledger rows by status."""
    from sqlalchemy import create_engine, text

    from storage.db import sync_url

    engine = create_engine(sync_url(db_url))
    with engine.connect() as conn:
        counts = dict(conn.execute(text("SELECT status, count(*) FROM deliveries GROUP BY status")).all())
    engine.dispose()
    return {str(k): int(v) for k, v in counts.items()}


def print_crash(crash: dict) -> None:
    print(f"crash run                {crash['due']:,} messages due (estimate); kill -9 after {crash['accepted_at_kill']:,} "
          f"accepted, {crash['claimed_left']:,} claims left behind; restart after the "
          f"{int(CLAIM_LEASE.total_seconds())} s lease")
    print(f"  delivered              {crash['delivered']:,}   (ledger: {json.dumps(crash['ledger'])})")
    print(f"  lost                   {crash['lost']}   (target 0: claims never finished, or marked sent but absent)")
    print(f"  duplicated             {crash['duplicates']}   (target 0)")
    print(f"  found in history       {crash['found_delivered']} of the {crash['recovered']} claims taken over "
          f"({crash['lookups']} history look-ups): recorded, not sent again")
    print(f"  restarted pass report  {json.dumps(crash['report'])}   (worker logs in {crash['logs']})")


async def run(args: argparse.Namespace) -> None:
    rng = random.Random(20261120)
    api = subprocess.Popen([sys.executable, "-m", "tests.fakes.platform_api", "--rate", str(args.rate)],
                           cwd=str(ROOT), stdout=subprocess.PIPE, text=True)
    pg = None
    try:
        assert api.stdout is not None
        api_url = api.stdout.readline().strip()
        hf = FakeHuggingFace(daily={}).start()
        papers = feed_papers(100)
        set_feed(hf, DUE.date(), papers)

        workdir = tempfile.mkdtemp(prefix="paperboy-bench-")
        if args.postgres:
            from tests.pg import PostgresServer, find_pg_bin

            bin_dir = find_pg_bin()
            if bin_dir is None:
                raise SystemExit("PostgreSQL binaries not found")
            pg = PostgresServer(bin_dir)
            pg.start()
            db_url = pg.create_database("bench")
        else:
            db_url = f"sqlite:///{workdir}/bench.db"
        from storage.db import upgrade_database

        upgrade_database(db_url)
        seed_started = time.perf_counter()
        if args.postgres:
            seed_postgres(db_url, args.channels, args.people, rng)
        else:
            seed_database(f"{workdir}/bench.db", args.channels, args.people, rng)
        seeded = time.perf_counter() - seed_started
        alerts = expected_alerts(db_url, papers)
        expected = args.channels + alerts

        result = await deliver(db_url, api_url, hf, args.concurrency)
        crash = None
        if not args.no_crash:
            crash_channels, crash_people = args.channels // 10, args.people // 10
            crash_db = pg.create_database("crash") if pg is not None else f"sqlite:///{workdir}/crash.db"
            upgrade_database(crash_db)
            crash_rng = random.Random(20261121)
            if pg is not None:
                seed_postgres(crash_db, crash_channels, crash_people, crash_rng)
            else:
                seed_database(f"{workdir}/crash.db", crash_channels, crash_people, crash_rng)
            crash = await crash_run(args, crash_db, hf, crash_channels + expected_alerts(crash_db, papers))
        hf.stop()
        platform = result["platform"]
        ledger = _ledger(db_url)
        # N: what the pass decided to send (its matcher is the judge of "new papers on a topic")
        due = ledger.get("sent", 0) + ledger.get("failed", 0) + ledger.get("claimed", 0)
        bound = due / args.rate
        lost = ledger.get("claimed", 0) + ledger.get("failed", 0) + max(0, ledger.get("sent", 0) - platform["distinct"])
        peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

        matching = matching_benchmark(feed_papers(500), rng)

        print(f"database                 {'PostgreSQL' if args.postgres else 'SQLite'} (seeded in {seeded:.1f}s)")
        print(f"subscriptions            {args.channels:,} channels + {args.people:,} people "
              f"({alerts:,} with new papers on their topics)")
        print(f"messages due (N)         {due:,}   (ledger {json.dumps(ledger)}; estimated beforehand {expected:,})")
        print(f"platform limit (R)       {args.rate}/s, 429 + Retry-After beyond it")
        print(f"wall time                {result['wall']:.1f} s")
        print(f"bound N/R                {bound:.1f} s")
        print(f"ratio                    {result['wall'] / bound:.3f}   (target <= 1.10)")
        print(f"delivered                {platform['distinct']:,}")
        print(f"lost                     {lost}   (target 0: never finished, or marked sent but absent)")
        print(f"duplicated               {platform['duplicates']}   (target 0)")
        print(f"429 answers              {platform['rejected_429']:,}")
        print(f"upstream paper calls     {result['upstream']}   (target <= 3)")
        print(f"peak RSS                 {peak_rss_mb:.0f} MB   (target <= 150)")
        print(f"pass report              {json.dumps(result['report'])}")
        print_matching(matching)
        if crash is not None:
            print_crash(crash)
    finally:
        api.terminate()
        api.wait()
        if pg is not None:
            pg.stop()


def print_matching(matching: dict[str, float]) -> None:
    print(f"topic matching           {matching['topics']:,} topics ({matching['distinct']} distinct) x 500 papers: "
          f"{matching['total_seconds']:.3f} s (index {matching['index_seconds']:.3f} s)   (target <= 1 s)")
    print(f"  per distinct topic     {matching['per_distinct_topic_ms']:.3f} ms "
          f"(100,000 all-distinct topics would take {matching['per_distinct_topic_ms'] * 100:.0f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--channels", type=int, default=10_000)
    parser.add_argument("--people", type=int, default=50_000)
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--postgres", action="store_true", help="use a throwaway PostgreSQL server instead of SQLite")
    parser.add_argument("--no-crash", action="store_true", help="skip the crash run")
    parser.add_argument("--crash-at", type=float, default=0.4,
                        help="share of the crash run's messages accepted before the kill (default 0.4)")
    parser.add_argument("--matching-only", action="store_true",
                        help="only the topic-matching figure (100,000 topics x 500 papers), no delivery run")
    args = parser.parse_args()
    if args.matching_only:
        print_matching(matching_benchmark(feed_papers(500), random.Random(11)))
        return
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
