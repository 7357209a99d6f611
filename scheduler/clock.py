"""The clock: an APScheduler ``AsyncIOScheduler`` that triggers delivery passes.

APScheduler only says *when to look*; storage says *what is due*. The job
store is in memory and private to the process (APScheduler 3.x must not share
a job store between processes), so several processes can each run a
scheduler against one PostgreSQL database and coordinate through the ledger.
One pass runs at start (catching up on posts missed while the bot was down,
within the grace window), then one every ``delivery_poll_seconds``;
``coalesce`` and ``max_instances=1`` keep passes from piling up.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from apscheduler.executors.asyncio import AsyncIOExecutor
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from bot.schedule import utcnow
from scheduler.delivery import DeliveryReport, default_worker_id, prune_history, run_delivery_pass

if TYPE_CHECKING:
    from bot.app import App

log = logging.getLogger(__name__)

JOB_ID = "delivery-pass"
UPKEEP_JOB_ID = "prune-history"
UPKEEP_HOURS = 24
STOP_TIMEOUT_SECONDS = 6.0      # a pass still running after this is cancelled: ``paperboy run`` stops within 10 s
ALIVE_CHECK_SECONDS = 1.0

Clock = Callable[[], datetime]
PassRunner = Callable[..., Awaitable[DeliveryReport]]


class DeliveryScheduler:
    """Runs :func:`run_delivery_pass` at start and then every poll interval."""

    def __init__(self, app: App, *, clock: Clock = utcnow, run_pass: PassRunner = run_delivery_pass,
                 poll_seconds: float | None = None) -> None:
        self.app = app
        self.clock = clock
        self._run_pass = run_pass
        self.poll_seconds = poll_seconds or app.settings.delivery_poll_seconds
        self.worker_id = default_worker_id()
        self.passes = 0
        self.last_report: DeliveryReport | None = None
        self._scheduler: AsyncIOScheduler | None = None
        self._current: asyncio.Task | None = None
        self._changed = asyncio.Condition()

    @property
    def running(self) -> bool:
        return self._scheduler is not None and self._scheduler.running

    async def start(self) -> None:
        """Start the clock in the running event loop; the first pass runs right away."""
        if self.running:
            return
        scheduler = AsyncIOScheduler(
            jobstores={"default": MemoryJobStore()},
            executors={"default": AsyncIOExecutor()},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": int(self.poll_seconds) + 1},
            timezone=timezone.utc,
        )
        scheduler.add_job(self._tick, IntervalTrigger(seconds=self.poll_seconds, timezone=timezone.utc),
                          id=JOB_ID, name="deliver due posts and alerts", next_run_time=utcnow(),
                          replace_existing=True)
        scheduler.add_job(self._upkeep, IntervalTrigger(hours=UPKEEP_HOURS, timezone=timezone.utc),
                          id=UPKEEP_JOB_ID, name="prune old ledger rows and sent papers",
                          next_run_time=utcnow() + timedelta(minutes=5), replace_existing=True)
        scheduler.start()
        self._scheduler = scheduler
        log.info("delivery scheduler started: a pass every %ss (worker %s)", self.poll_seconds, self.worker_id)

    async def _tick(self) -> None:
        self._current = asyncio.current_task()
        try:
            report = await self._run_pass(self.app, now=self.clock(), worker_id=self.worker_id)
            self.last_report = report
            metrics = getattr(self.app, "metrics", None)
            if metrics is not None:
                metrics.delivered(sent=report.sent, failed=report.failed, paused=report.paused,
                                  skipped=report.skipped)
            if report.sent or report.failed or report.paused:
                log.info("%s", " ".join(report.lines()))
        except asyncio.CancelledError:
            # Only stop() cancels a pass; end quietly (APScheduler would log a traceback).
            log.warning("delivery pass cancelled at shutdown")
        except Exception:  # noqa: BLE001 - the next tick tries again
            log.exception("delivery pass failed")
        finally:
            self._current = None
            async with self._changed:
                self.passes += 1
                self._changed.notify_all()

    async def _upkeep(self) -> None:
        """Daily: prune history (several processes doing it at once is harmless)."""
        try:
            await prune_history(self.app, now=self.clock())
        except Exception:  # noqa: BLE001 - tried again tomorrow
            log.exception("pruning old deliveries failed")

    async def wait_for_passes(self, count: int, timeout: float = 10.0) -> None:
        """Wait until ``count`` passes have finished (for tests and health checks)."""
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: self.passes >= count), timeout)

    async def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
        """Stop the clock and let a pass in progress finish (cancelled after ``timeout`` seconds)."""
        scheduler, self._scheduler = self._scheduler, None
        if scheduler is not None and scheduler.running:
            scheduler.pause()          # no new passes; shutdown() would cancel the running one at once
            await asyncio.sleep(0)     # a pass submitted just now gets to start and be waited for
        current = self._current
        if current is not None and not current.done():
            try:
                await asyncio.wait_for(asyncio.shield(current), timeout)
            except asyncio.TimeoutError:
                log.warning("delivery pass still running after %ss; cancelling it (its claims are retried "
                            "after the lease)", timeout)
                current.cancel()
                await asyncio.gather(current, return_exceptions=True)
        if scheduler is not None and scheduler.running:
            scheduler.shutdown(wait=False)
        log.info("delivery scheduler stopped")


class SchedulerConnection:
    """The scheduler as a supervised connection: up while its clock runs; stopping it lets the pass in
    progress finish (cancelled after :data:`STOP_TIMEOUT_SECONDS`)."""

    name = "scheduler"

    def __init__(self, scheduler: DeliveryScheduler) -> None:
        self.scheduler = scheduler

    async def run(self, connected: Callable[[], None]) -> None:
        await self.scheduler.start()
        try:
            connected()
            while self.scheduler.running:
                await asyncio.sleep(ALIVE_CHECK_SECONDS)
            raise RuntimeError("the delivery clock stopped")
        finally:
            await asyncio.shield(self.scheduler.stop())
