"""Prometheus metrics, on a registry owned by one :class:`Metrics` object and passed explicitly.

Nothing here touches prometheus_client's global default registry: every
process (and every test) builds its own :class:`Metrics`, and ``GET /metrics``
serves exactly that registry.

| metric | type | labels |
| --- | --- | --- |
| ``paperboy_commands_total`` | counter | platform, command |
| ``paperboy_answer_seconds`` | histogram | platform |
| ``paperboy_hf_requests_total`` | counter | endpoint (each try, retries included) |
| ``paperboy_hf_failures_total`` | counter | endpoint, reason (timeout, network, http_5xx, http_429, refused, malformed) |
| ``paperboy_hf_cache_hits_total`` | counter | endpoint |
| ``paperboy_deliveries_total`` | counter | outcome (sent, failed, paused, skipped) |
| ``paperboy_rate_limit_waits_total`` | counter | platform (HTTP 429 answers that made a send wait) |
| ``paperboy_connection_up`` | gauge | connection (1 connected, else 0) |
| ``paperboy_connection_state`` | gauge | connection, state (1 for the current state) |
| ``paperboy_connection_failures`` | gauge | connection (consecutive failed attempts) |
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from bot.supervision import Supervisor

ANSWER_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0)
DELIVERY_OUTCOMES = ("sent", "failed", "paused", "skipped")


def hf_endpoint(path: str) -> str:
    """A bounded label for a Hugging Face API path: ``daily_papers``, ``search`` or ``paper``."""
    if path.endswith("/daily_papers"):
        return "daily_papers"
    if path.endswith("/papers/search"):
        return "search"
    return "paper"


class Metrics:
    """Every metric Paperboy records, registered on :attr:`registry`."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.commands = Counter("paperboy_commands", "Commands answered, by platform and command.",
                                ["platform", "command"], registry=r)
        self.answer_seconds = Histogram("paperboy_answer_seconds", "Time from a command to its answer, in seconds.",
                                        ["platform"], buckets=ANSWER_BUCKETS, registry=r)
        self.hf_requests = Counter("paperboy_hf_requests", "Requests sent to the Hugging Face API (each try).",
                                   ["endpoint"], registry=r)
        self.hf_failures = Counter("paperboy_hf_failures", "Hugging Face requests that failed, by reason.",
                                   ["endpoint", "reason"], registry=r)
        self.hf_cache_hits = Counter("paperboy_hf_cache_hits", "Hugging Face answers served from the cache.",
                                     ["endpoint"], registry=r)
        self.deliveries = Counter("paperboy_deliveries", "Scheduled posts and alerts, by outcome.",
                                  ["outcome"], registry=r)
        self.rate_limit_waits = Counter("paperboy_rate_limit_waits",
                                        "HTTP 429 answers from a platform that made a send wait.",
                                        ["platform"], registry=r)
        for outcome in DELIVERY_OUTCOMES:
            self.deliveries.labels(outcome)          # present at 0 before the first pass

    # --- recording -------------------------------------------------------------------------------

    def command_answered(self, platform: str, command: str, seconds: float) -> None:
        self.commands.labels(platform, command).inc()
        self.answer_seconds.labels(platform).observe(seconds)

    def hf_request(self, path: str) -> None:
        self.hf_requests.labels(hf_endpoint(path)).inc()

    def hf_failure(self, path: str, reason: str) -> None:
        self.hf_failures.labels(hf_endpoint(path), reason).inc()

    def hf_cache_hit(self, path: str) -> None:
        self.hf_cache_hits.labels(hf_endpoint(path)).inc()

    def delivered(self, *, sent: int = 0, failed: int = 0, paused: int = 0, skipped: int = 0) -> None:
        for outcome, count in (("sent", sent), ("failed", failed), ("paused", paused), ("skipped", skipped)):
            if count:
                self.deliveries.labels(outcome).inc(count)

    def rate_limited(self, platform: str, count: int = 1) -> None:
        if count:
            self.rate_limit_waits.labels(platform).inc(count)

    # --- connections -----------------------------------------------------------------------------

    def watch(self, supervisor: Supervisor) -> None:
        """Report ``supervisor``'s connection states at every scrape."""
        self.registry.register(_ConnectionCollector(supervisor))

    # --- exposition ------------------------------------------------------------------------------

    def exposition(self) -> tuple[bytes, str]:
        """The Prometheus text format of the registry, and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _ConnectionCollector(Collector):
    """Connection state gauges, read from the supervisor when scraped (no copy to keep in sync)."""

    def __init__(self, supervisor: Supervisor) -> None:
        self._supervisor = supervisor

    def collect(self) -> Iterable[Metric]:
        from bot.supervision import ConnectionState

        up = GaugeMetricFamily("paperboy_connection_up", "1 when the connection is connected, else 0.",
                               labels=["connection"])
        state = GaugeMetricFamily("paperboy_connection_state", "1 for the state each connection is in.",
                                  labels=["connection", "state"])
        failures = GaugeMetricFamily("paperboy_connection_failures", "Consecutive failed connection attempts.",
                                     labels=["connection"])
        for status in self._supervisor.statuses():
            up.add_metric([status.name], 1.0 if status.up else 0.0)
            for candidate in ConnectionState:
                state.add_metric([status.name, candidate.value], 1.0 if status.state is candidate else 0.0)
            failures.add_metric([status.name], float(status.failures))
        return _each(up, state, failures)


def _each(*metrics: Metric) -> Iterator[Metric]:
    yield from metrics
