"""A fake chat platform API on 127.0.0.1 that records messages and enforces a rate limit.

``POST /send`` takes the JSON of :func:`adapters.fake.message_document` and
answers ``{"ok": true, "id": n}``; beyond ``rate`` messages in the current
one-second window it answers HTTP 429 with ``Retry-After`` (seconds, with
decimals) until the next window, as Slack's workspace limit does (the body says
``"scope": "workspace"``). Targets in ``errors`` answer with that platform error.
``GET /history?workspace=&target=&key=`` answers ``{"id": ...}`` when a message
carrying that delivery key reached that target (``{"id": null}`` otherwise), as a
platform's message history would. ``GET /stats`` returns counts.

Run in-process (``await FakePlatformApi().start()``) or as its own process for
benchmarks: ``python -m tests.fakes.platform_api --port 0 --rate 500`` prints
its URL on the first line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter

from aiohttp import web

from tests.fakes.loopback import serve_on_loopback


class FakePlatformApi:
    """Records every accepted message; optionally slow, rate-limited or refusing some targets."""

    def __init__(self, *, rate: int | None = None, delay: float = 0.0) -> None:
        self.rate = rate
        self.delay = delay
        self.errors: dict[str, str] = {}
        self.received: list[dict] = []
        self.counts: Counter[tuple[str, str, str]] = Counter()
        self.keys: dict[tuple[str, str, str], str] = {}   # (workspace, target, delivery key) -> message id
        self.lookups = 0
        self.rejected = 0
        self.requests = 0
        self.first_at: float | None = None
        self.last_at: float | None = None
        self._window = -1
        self._in_window = 0
        self._runner: web.AppRunner | None = None
        self.url = ""

    def _rate_limited(self, now: float) -> float | None:
        """Seconds to wait when this request is over the limit, else None."""
        if self.rate is None:
            return None
        window = int(now)
        if window != self._window:
            self._window, self._in_window = window, 0
        if self._in_window >= self.rate:
            return max(0.001, window + 1 - now)
        self._in_window += 1
        return None

    async def _send(self, request: web.Request) -> web.Response:
        self.requests += 1
        document = await request.json()
        if self.delay:
            await asyncio.sleep(self.delay)
        wait = self._rate_limited(time.monotonic())
        if wait is not None:
            self.rejected += 1
            return web.json_response({"ok": False, "error": "ratelimited", "scope": "workspace"}, status=429,
                                     headers={"Retry-After": f"{wait:.3f}"})
        error = self.errors.get(document.get("target", ""))
        if error:
            return web.json_response({"ok": False, "error": error}, status=400)
        now = time.monotonic()
        self.first_at = self.first_at or now
        self.last_at = now
        key = (document.get("via", ""), document.get("workspace", ""), document.get("target", ""))
        self.counts[key] += 1
        self.received.append(document)
        message_id = str(len(self.received))
        if document.get("key") is not None:
            self.keys[(document.get("workspace", ""), document.get("target", ""), str(document["key"]))] = message_id
        return web.json_response({"ok": True, "id": message_id})

    async def _history(self, request: web.Request) -> web.Response:
        self.lookups += 1
        query = request.query
        found = self.keys.get((query.get("workspace", ""), query.get("target", ""), query.get("key", "")))
        return web.json_response({"ok": True, "id": found})

    def stats(self) -> dict:
        duplicates = sum(n - 1 for n in self.counts.values() if n > 1)
        return {"accepted": len(self.received), "distinct": len(self.counts), "duplicates": duplicates,
                "rejected_429": self.rejected, "requests": self.requests, "lookups": self.lookups,
                "span_seconds": (self.last_at - self.first_at) if self.first_at and self.last_at else 0.0}

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    async def start(self, port: int = 0) -> FakePlatformApi:
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_post("/send", self._send)
        app.router.add_get("/stats", self._stats)
        app.router.add_get("/history", self._history)
        self._runner, bound = await serve_on_loopback(app, port=port)
        self.url = f"http://127.0.0.1:{bound}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


async def _serve(port: int, rate: int | None) -> None:
    api = await FakePlatformApi(rate=rate).start(port)
    print(api.url, flush=True)
    await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--rate", type=int, default=None)
    args = parser.parse_args(argv)
    try:
        asyncio.run(_serve(args.port, args.rate))
    except KeyboardInterrupt:
        pass
    json.dump({}, sys.stdout)


if __name__ == "__main__":
    main()
