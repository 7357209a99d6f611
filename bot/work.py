"""A bounded pool of workers for commands: the acknowledgement never waits for the work.

Adapters acknowledge a command at once and hand its work to :class:`WorkPool`.
At most ``workers`` jobs run at a time and at most ``queue_size`` wait; when
the queue is full :meth:`WorkPool.submit` says so at once (the adapter then
answers "busy, try again") instead of letting every acknowledgement slow down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

Job = Callable[[], Awaitable[object]]

BUSY_MESSAGE = "Paperboy is busy right now; please try again in a minute."


class WorkPool:
    """``workers`` tasks taking jobs from a queue of at most ``queue_size``; started on first use."""

    def __init__(self, *, workers: int, queue_size: int, name: str = "commands") -> None:
        if workers < 1 or queue_size < 1:
            raise ValueError("a work pool needs at least one worker and one queue place")
        self.workers = workers
        self.queue_size = queue_size
        self.name = name
        self._queue: asyncio.Queue[Job] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        self.running = 0
        self.refused = 0

    @property
    def queued(self) -> int:
        return self._queue.qsize() if self._queue is not None else 0

    def submit(self, job: Job) -> bool:
        """Queue ``job``; False (and nothing queued) when the pool is closed or its queue is full."""
        if self._closed:
            self.refused += 1
            return False
        if self._queue is None:
            self._queue = asyncio.Queue(self.queue_size)
            loop = asyncio.get_running_loop()
            self._tasks = [loop.create_task(self._work(), name=f"{self.name}-worker-{n}") for n in range(self.workers)]
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            self.refused += 1
            return False
        return True

    async def _work(self) -> None:
        assert self._queue is not None
        while True:
            job = await self._queue.get()
            self.running += 1
            try:
                await job()
            except Exception:  # noqa: BLE001 - one failed job never stops a worker
                log.exception("a %s job failed", self.name)
            finally:
                self.running -= 1
                self._queue.task_done()

    async def close(self, timeout: float = 10.0) -> None:
        """Take no more jobs; let queued and running ones finish for up to ``timeout`` seconds."""
        self._closed = True
        if self._queue is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._queue.join()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
