"""Command latency: `/papers <topic>` handled in-process against a fake Hugging Face API.

Prints
  - warm-cache latency p50/p99 of `/papers <topic>` (target: p99 <= 20 ms);
  - 200 concurrent commands (100 distinct topics, each asked twice) against the fake API answering
    after 100 ms: latency p50/p99 and the number of upstream calls (target: = distinct topics).

Run: .venv/bin/python benchmarks/commands.py  (or `make bench`)
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from adapters.console import console_context  # noqa: E402
from bot.app import App, build_app  # noqa: E402
from bot.settings import Settings  # noqa: E402
from tests.fakes.hf_api import FakeHuggingFace, seed_papers  # noqa: E402

WARM_RUNS = 500
TOPICS = [
    "generalization", "compositional generalization", "language models", "reinforcement learning",
    "transformers", "benchmark", "robustness", "data augmentation", "graph neural networks",
    "self-supervised learning", "vision language", "reasoning", "retrieval", "diffusion", "speech",
    "robot", "memorization", "scaling", "prompt", "in-context learning", "out-of-distribution",
    "domain adaptation", "meta-learning", "contrastive learning", "evaluation", "multilingual",
    "medical", "image classification", "segmentation", "point cloud", "federated learning",
    "knowledge distillation", "adversarial", "uncertainty", "calibration", "causal", "invariance",
    "representation learning", "pretraining", "fine-tuning", "instruction tuning", "alignment",
    "agents", "tool use", "code generation", "mathematical reasoning", "chain of thought",
    "question answering", "translation", "summarization", "dialogue", "embeddings", "attention",
    "mamba", "state space models", "mixture of experts", "quantization", "pruning", "efficiency",
    "long context", "tokenization", "data contamination", "synthetic data", "curriculum",
    "continual learning", "few-shot", "zero-shot", "transfer learning", "sim-to-real", "grasping",
    "navigation", "world models", "video", "3d", "neural networks", "deep learning", "optimization",
    "sgd", "batch size", "loss landscape", "grokking", "overparameterization", "kernel", "bayesian",
    "privacy", "fairness", "hate speech", "interpretability", "probing", "backdoor", "security",
    "chemistry", "physics", "healthcare", "education", "recommendation", "time series", "audio",
    "singing voice", "hyperspectral",
]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def settings_for(fake: FakeHuggingFace, directory: Path, name: str) -> Settings:
    return Settings(_env_file=None, DATABASE_URL=f"sqlite:///{directory / name}", PAPERBOY_HF_URL=fake.url)


async def warm_latency(fake: FakeHuggingFace, directory: Path) -> list[float]:
    app = build_app(settings_for(fake, directory, "warm.db"))
    ctx = console_context()
    try:
        await app.core.handle(ctx, "/papers generalization")  # fills the cache
        timings = []
        for _ in range(WARM_RUNS):
            start = time.perf_counter()
            reply = await app.core.handle(ctx, "/papers generalization")
            timings.append((time.perf_counter() - start) * 1000)
            assert reply.papers, "the benchmark topic must have results"
        return timings
    finally:
        await app.close()


class SlowFakeProcess:
    """The fake API answering after 100 ms, in its own process so it does not share this one's CPU."""

    def __enter__(self) -> SlowFakeProcess:
        self.process = subprocess.Popen([sys.executable, "-m", "tests.fakes.hf_api", "--delay", "0.1"],
                                        cwd=ROOT, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        self.url = self.process.stdout.readline().strip()
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.wait(10)


async def concurrent_latency(directory: Path) -> tuple[list[float], int, int]:
    assert len(set(TOPICS)) == 100
    with SlowFakeProcess() as fake:
        settings = Settings(_env_file=None, DATABASE_URL=f"sqlite:///{directory / 'concurrent.db'}",
                            PAPERBOY_HF_URL=fake.url)
        return await _concurrent(build_app(settings))


async def _concurrent(app: App) -> tuple[list[float], int, int]:
    commands = [f"/papers {topic}" for topic in TOPICS * 2]
    ctx = console_context()

    async def one(text: str) -> float:
        start = time.perf_counter()
        await app.core.handle(ctx, text)
        return (time.perf_counter() - start) * 1000

    try:
        timings = await asyncio.gather(*(one(text) for text in commands))
        upstream = app.hf.upstream_calls
    finally:
        await app.close()
    return list(timings), upstream, len(set(TOPICS))


async def main() -> None:
    with FakeHuggingFace(seed_papers()) as fake, tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        warm = await warm_latency(fake, directory)
        timings, upstream, distinct = await concurrent_latency(directory)
    print("benchmark: /papers <topic> handled in-process (SQLite, fake Hugging Face API on 127.0.0.1)")
    print(f"warm cache, {WARM_RUNS} sequential commands: p50 {percentile(warm, 0.5):.2f} ms, "
          f"p99 {percentile(warm, 0.99):.2f} ms, mean {statistics.mean(warm):.2f} ms   (target p99 <= 20 ms)")
    print(f"200 concurrent commands ({distinct} distinct topics x 2), upstream answering after 100 ms: "
          f"p50 {percentile(timings, 0.5):.1f} ms, p99 {percentile(timings, 0.99):.1f} ms")
    print(f"upstream calls (HTTP requests sent, retries included): {upstream} for {distinct} distinct topics   (target: = {distinct})")


if __name__ == "__main__":
    asyncio.run(main())
