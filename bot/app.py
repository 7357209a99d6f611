"""Assembling Paperboy from its settings: storage, paper source, core, adapters.

This is the one place that knows every part; the parts know only what they
are handed. Platform adapters are imported lazily, so the core and the console
run without touching slack_bolt or discord.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from adapters.base import AdapterRegistry
from bot.core import Paperboy
from bot.hf_client import HuggingFaceClient
from bot.metrics import Metrics
from bot.papers import PaperService
from bot.sample import load_sample
from bot.settings import Settings
from storage.repositories import Storage

log = logging.getLogger(__name__)


@dataclass
class App:
    """Everything a running Paperboy process holds."""

    settings: Settings
    storage: Storage
    hf: HuggingFaceClient
    papers: PaperService
    core: Paperboy
    adapters: AdapterRegistry = field(default_factory=AdapterRegistry)
    metrics: Metrics = field(default_factory=Metrics)

    async def close(self) -> None:
        """Stop asking Hugging Face, store every paper still queued, then close the database."""
        await self.hf.aclose()
        await self.papers.close()
        await self.storage.close()


def build_app(settings: Settings, *, migrate: bool = True) -> App:
    """Open storage (migrating it), the Hugging Face client and the core (blocking: run before the loop)."""
    storage = Storage.connect(settings.database_url, migrate=migrate)
    metrics = Metrics()
    hf = HuggingFaceClient(
        settings.hf_url,
        timeout=settings.hf_timeout_seconds,
        retries=settings.hf_retries,
        daily_ttl=settings.daily_cache_seconds,
        search_ttl=settings.search_cache_seconds,
        token=settings.hf_token.get_secret_value() if settings.hf_token else None,
        metrics=metrics,
    )
    papers = PaperService(hf, storage.papers, sample=load_sample if settings.offline_sample else None)
    core = Paperboy(settings, storage, papers, metrics=metrics)
    return App(settings=settings, storage=storage, hf=hf, papers=papers, core=core, metrics=metrics)
