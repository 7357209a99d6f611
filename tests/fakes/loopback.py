"""Serving a fake API: an aiohttp application on 127.0.0.1 at a port the OS picks."""

from __future__ import annotations

from aiohttp import web


async def serve_on_loopback(app: web.Application, *, port: int = 0, backlog: int = 128) -> tuple[web.AppRunner, int]:
    """Start ``app`` on 127.0.0.1 (``port`` 0: any free one); returns its runner and the port it got."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=backlog)
    await site.start()
    sockets = getattr(site._server, "sockets", None) or ()  # noqa: SLF001 - the only way to learn the port
    return runner, sockets[0].getsockname()[1] if sockets else port
