"""The process's own HTTP endpoints on ``PORT``: ``/healthz`` and ``/metrics``.

``paperboy run`` serves them in every mode. In Slack HTTP mode Slack's
endpoints (``/slack/events``, install, OAuth redirect) are added to the same
server by the Slack adapter, so one port serves everything.

``GET /healthz`` answers 200 only when every supervised connection (each
platform, the scheduler) is connected, else 503; the JSON body says, for each,
its state, since when and the last error, and lists the ones that are down.
``GET /metrics`` is the Prometheus text exposition of the registry handed in.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web

from bot.supervision import Supervisor

log = logging.getLogger(__name__)

HEALTH_PATH = "/healthz"
METRICS_PATH = "/metrics"

Details = Callable[[], dict[str, Any]]


def health_body(supervisor: Supervisor, details: Details | None = None) -> dict[str, Any]:
    """What ``/healthz`` says: ``ok``, each connection's state, and which are down since when."""
    statuses = supervisor.statuses()
    body: dict[str, Any] = {
        "ok": supervisor.healthy(),
        "connections": {s.name: s.as_dict() for s in statuses},
        "down": [s.name for s in statuses if not s.up],
    }
    if details is not None:
        body.update(details())
    return body


class OpsServer:
    """An aiohttp server on ``host:port`` serving health, metrics and any routes added before start."""

    def __init__(self, supervisor: Supervisor, *, host: str = "0.0.0.0", port: int = 3000,
                 metrics: Callable[[], tuple[bytes, str]] | None = None, details: Details | None = None) -> None:
        self.supervisor = supervisor
        self.host = host
        self.port = port
        self._metrics = metrics
        self._details = details
        self.application = web.Application()
        self.application.router.add_get(HEALTH_PATH, self._health)
        if metrics is not None:
            self.application.router.add_get(METRICS_PATH, self._serve_metrics)
        self._runner: web.AppRunner | None = None
        self.bound_port: int | None = None

    async def start(self) -> int:
        """Bind and serve; returns the port (useful with ``port=0``). Raises ``OSError`` if it cannot bind."""
        runner = web.AppRunner(self.application, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        sockets = getattr(site._server, "sockets", None) or ()  # noqa: SLF001 - the port chosen for port 0
        self.bound_port = sockets[0].getsockname()[1] if sockets else self.port
        log.info("health and metrics on http://%s:%s%s and %s", self.host, self.bound_port, HEALTH_PATH,
                 METRICS_PATH)
        return self.bound_port

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _health(self, request: web.Request) -> web.Response:
        body = health_body(self.supervisor, self._details)
        return web.json_response(body, status=200 if body["ok"] else 503)

    async def _serve_metrics(self, request: web.Request) -> web.Response:
        assert self._metrics is not None
        payload, content_type = self._metrics()
        response = web.Response(body=payload)
        response.headers["Content-Type"] = content_type
        return response
