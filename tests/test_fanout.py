"""The fan-out: bounded concurrency, and one rate-limited workspace never stalling the others."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from scheduler.fanout import RateGates, fan_out


async def stream(items: list[tuple[str, int]]) -> AsyncIterator[tuple[str, int]]:
    for item in items:
        yield item


async def test_a_stalled_workspace_holds_at_most_its_share_of_workers() -> None:
    """Workspace A is stalled (its gate closed); B's messages all go out meanwhile."""
    items = [("A", i) for i in range(40)] + [("B", i) for i in range(40)]
    a_released = asyncio.Event()
    done: list[tuple[str, int]] = []
    a_running = 0
    a_running_peak = 0

    async def handle(item: tuple[str, int]) -> None:
        nonlocal a_running, a_running_peak
        if item[0] == "A":
            a_running += 1
            a_running_peak = max(a_running_peak, a_running)
            await a_released.wait()
            a_running -= 1
        done.append(item)

    run = asyncio.create_task(fan_out(stream(items), handle, concurrency=8, scope_of=lambda item: item[0],
                                      per_scope=2))
    async with asyncio.timeout(5):
        while sum(1 for scope, _ in done if scope == "B") < 40:
            await asyncio.sleep(0.01)
    assert [item for item in done if item[0] == "A"] == []
    a_released.set()
    await asyncio.wait_for(run, 5)
    assert sorted(done) == sorted(items)
    assert a_running_peak == 2


async def test_without_scopes_every_worker_may_take_any_item() -> None:
    started = 0
    all_started = asyncio.Event()

    async def handle(item: tuple[str, int]) -> None:
        nonlocal started
        started += 1
        if started == 6:
            all_started.set()
        await all_started.wait()

    await asyncio.wait_for(fan_out(stream([("A", i) for i in range(6)]), handle, concurrency=6), 5)
    assert started == 6


async def test_parking_is_bounded_then_workers_wait_in_place() -> None:
    """With the parking lot full, a worker handles a busy scope's item itself (memory stays bounded)."""
    items = [("A", i) for i in range(20)]
    release = asyncio.Event()
    running = 0
    peak = 0

    async def handle(item: tuple[str, int]) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await release.wait()
        running -= 1

    run = asyncio.create_task(fan_out(stream(items), handle, concurrency=4, scope_of=lambda item: item[0],
                                      per_scope=1, max_parked=3))
    async with asyncio.timeout(5):
        while running < 4:
            await asyncio.sleep(0.01)
    release.set()
    await asyncio.wait_for(run, 5)
    assert peak == 4   # one by right, three because the lot (3) was full


async def test_a_handler_that_raises_does_not_stop_the_rest() -> None:
    handled: list[int] = []

    async def handle(item: tuple[str, int]) -> None:
        if item[1] == 3:
            raise RuntimeError("adapter bug")
        handled.append(item[1])

    await fan_out(stream([("A", i) for i in range(10)]), handle, concurrency=3, scope_of=lambda item: item[0],
                  per_scope=1)
    assert sorted(handled) == [0, 1, 2, 4, 5, 6, 7, 8, 9]


def test_a_429_for_one_target_closes_its_gate_and_several_at_once_close_the_workspace() -> None:
    now = [100.0]
    gates = RateGates(monotonic=lambda: now[0])
    gates.close_target("T1", "C1", 5)
    assert gates.closed_for(("T1", "C1")) == 5 and gates.closed_for("T1") == 0
    gates.close_target("T1", "C2", 3)
    assert gates.closed_for("T1") == 0            # two channels: still per channel
    gates.close_target("T1", "C3", 4)
    assert gates.closed_for("T1") == 3            # three at once: Slack is limiting the workspace
    assert gates.closed_for("T2") == 0            # other workspaces are not concerned
    now[0] += 10
    gates.close_target("T1", "C4", 2)             # the earlier limits are over: one channel again
    assert gates.closed_for("T1") == 0 and gates.closed_for(("T1", "C4")) == 2
