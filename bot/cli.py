"""The ``paperboy`` command: run, console, ask, preview, deliver, db upgrade."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from bot.app import App, build_app
from bot.logs import configure_logging
from bot.models import Reply
from bot.settings import Settings
from bot.supervision import CredentialsRejected

log = logging.getLogger("paperboy")

# Exit codes (README "Running in production"): 0 ok; 1 the database (or the port to listen on) is
# unusable; 2 bad settings; 3 every platform rejected its token; 4 `status`: not healthy or not
# running; 5 `deliver --now`: some deliveries failed.
EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE, EXIT_REJECTED, EXIT_UNHEALTHY, EXIT_DELIVERIES_FAILED = 0, 1, 2, 3, 4, 5
STOP_BUDGET_SECONDS = 8.0   # SIGTERM to exit within 10 s, whatever is connecting or delivering


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="paperboy", description="ML papers for Slack, Discord and the terminal.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="run the bot: Slack/Discord when configured, else the console; plus the scheduler")
    sub.add_parser("console", help="the interactive terminal console")
    ask = sub.add_parser("ask", help='answer one command, e.g. paperboy ask "/papers generalization"')
    ask.add_argument("text", nargs="+", help="the command, with or without the leading /papers")
    preview = sub.add_parser("preview", help="print the message body the bot would send for a command")
    preview.add_argument("--platform", choices=("slack", "discord", "text"), default="text")
    preview.add_argument("text", nargs="+")
    deliver = sub.add_parser("deliver", help="run one delivery pass of everything due, then exit")
    deliver.add_argument("--now", action="store_true", required=True, help="deliver what is due now")
    deliver.add_argument("--dry-run", action="store_true", help="print what would be sent, send nothing")
    sub.add_parser("status", help="what an operator checks first: connections of the running process (asked "
                                  "on PORT), database, last delivery, due/failed/paused counts")
    db = sub.add_parser("db", help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("upgrade", help="apply migrations")
    return parser


def _command_text(words: Sequence[str]) -> str:
    text = " ".join(words).strip()
    return text if text.casefold().startswith("/papers") else f"/papers {text}"


def render_for(platform: str, reply: Reply) -> str:
    """The body a platform would receive for ``reply`` (JSON), or the console's text."""
    if platform == "slack":
        from adapters.slack.render import render_message

        return json.dumps(render_message(reply), indent=2, ensure_ascii=False)
    if platform == "discord":
        from adapters.discord.render import message_payload

        return json.dumps(message_payload(reply), indent=2, ensure_ascii=False)
    from adapters.console import render_text

    return render_text(reply)


async def _ask(app: App, text: str, platform: str) -> int:
    from adapters.console import console_context

    try:
        reply = await app.core.handle(console_context(), text)
        print(render_for(platform, reply))   # an error answer is still an answer: exit 0
        return EXIT_OK
    finally:
        await app.close()


def _stop_on_signals() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM (instead of a KeyboardInterrupt traceback)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    return stop


async def _until_done_or_stopped(console: Any, stop: asyncio.Event) -> None:
    waiter = asyncio.create_task(console.wait())
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()


async def _console(app: App) -> int:
    from adapters.console import ConsoleAdapter

    stop = _stop_on_signals()
    console = ConsoleAdapter(app.core)
    app.adapters.add(console)
    try:
        await console.start()
        await _until_done_or_stopped(console, stop)
    finally:
        await console.stop()
        await app.close()
    return EXIT_OK


class AdapterConfigError(Exception):
    """An adapter refused its settings (e.g. Slack HTTP mode without a signing secret)."""


def _platform_adapters(app: App) -> list[Any]:
    """The Slack and Discord adapters whose tokens are configured (built without touching the network)."""
    adapters: list[Any] = []
    try:
        if app.settings.slack_enabled:
            from adapters.slack import SlackAdapter

            adapters.append(SlackAdapter(app.settings, app.core, app.storage))
        if app.settings.discord_enabled:
            from adapters.discord import DiscordAdapter

            adapters.append(DiscordAdapter(app.settings, app.core, app.storage))
    except ValueError as exc:
        raise AdapterConfigError(str(exc)) from None
    return adapters


async def _run(app: App) -> int:
    """Run the configured adapters and the scheduler, each supervised, until interrupted.

    Signal handlers come first, so SIGTERM/Ctrl-C work in every state. Each connection (Slack,
    Discord, the scheduler) starts on its own: one platform down never holds up the others.
    ``/healthz`` and ``/metrics`` are served on ``PORT`` (with Slack's endpoints in HTTP mode).
    Returns 0 when stopped, 3 when every platform stopped because its token was rejected, 1
    when the port cannot be bound.
    """
    from adapters.base import connections_of
    from bot.supervision import Supervisor
    from bot.web import OpsServer
    from scheduler.clock import DeliveryScheduler, SchedulerConnection

    stop = _stop_on_signals()
    try:
        adapters = _platform_adapters(app)
    except AdapterConfigError:
        await app.close()
        raise
    supervisor = Supervisor()
    platform_connections: list[str] = []
    for adapter in adapters:
        app.adapters.add(adapter)
        for connection in connections_of(adapter):
            supervisor.add(connection)
            platform_connections.append(connection.name)
    console = None
    if not adapters:
        from adapters.console import ConsoleAdapter

        log.info("no Slack or Discord tokens configured: starting the terminal console")
        console = ConsoleAdapter(app.core)
        app.adapters.add(console)
    scheduler = DeliveryScheduler(app)
    supervisor.add(SchedulerConnection(scheduler))   # added last: stopped first, while platforms can still send

    app.metrics.watch(supervisor)
    # The console is a local session: its health endpoint listens on loopback only.
    server = OpsServer(supervisor, host="127.0.0.1" if console is not None else "0.0.0.0", port=app.settings.port,
                       metrics=app.metrics.exposition, details=lambda: {"delivery": scheduler_details(scheduler)})
    for adapter in adapters:
        if hasattr(adapter, "add_routes"):
            adapter.add_routes(server.application)
    try:
        await server.start()
    except OSError as exc:
        if console is None:
            await app.close()
            print(f"paperboy: cannot listen on port {app.settings.port}: {exc.strerror or exc}", file=sys.stderr)
            return EXIT_UNAVAILABLE
        log.error("health endpoint not served: cannot listen on port %s (%s)", app.settings.port,
                  exc.strerror or exc)

    def all_platforms_rejected(sup: Supervisor) -> bool:
        return bool(platform_connections) and all(sup.status(name).rejected_setting for name in platform_connections)

    supervising = asyncio.create_task(supervisor.run(), name="supervisor")
    waits = [asyncio.create_task(stop.wait()), asyncio.create_task(supervisor.wait_for(all_platforms_rejected))]
    try:
        if console is not None:
            await console.start()
            waits.append(asyncio.create_task(console.wait()))
        await asyncio.wait([*waits, supervising], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waits:
            waiter.cancel()
        try:
            await asyncio.wait_for(supervisor.stop(), STOP_BUDGET_SECONDS)
        except asyncio.TimeoutError:
            log.warning("connections still stopping after %ss; exiting anyway", STOP_BUDGET_SECONDS)
        supervising.cancel()
        await asyncio.gather(supervising, return_exceptions=True)
        await server.stop()
        for adapter in app.adapters:
            with contextlib.suppress(Exception):
                await adapter.stop()
        await app.close()
    if all_platforms_rejected(supervisor) and not stop.is_set():
        return EXIT_REJECTED
    return EXIT_OK


def scheduler_details(scheduler: Any) -> dict[str, Any]:
    """The delivery clock as ``/healthz`` reports it: passes run and the last one's counts."""
    report = scheduler.last_report
    details: dict[str, Any] = {"passes": scheduler.passes, "poll_seconds": scheduler.poll_seconds}
    if report is not None:
        details["last_pass"] = {"at": report.started_at.isoformat(timespec="seconds"), "sent": report.sent,
                                "failed": report.failed, "paused": report.paused, "skipped": report.skipped}
    return details


async def _deliver(app: App, dry_run: bool) -> int:
    from scheduler.delivery import run_delivery_pass

    from adapters.console import ConsoleAdapter

    try:
        if not dry_run:
            # Console subscriptions (made with `paperboy console`) are printed here.
            # Only senders: no Slack listener or socket, no Discord gateway or command sync.
            for adapter in [ConsoleAdapter(app.core), *_platform_adapters(app)]:
                app.adapters.add(adapter)
                await adapter.start_sending()
        report = await run_delivery_pass(app, dry_run=dry_run)
        for line in report.lines():
            print(line)
        if report.failed:
            print(f"paperboy: {report.failed} deliveries failed; later passes retry them", file=sys.stderr)
            return EXIT_DELIVERIES_FAILED
        return EXIT_OK
    finally:
        for adapter in app.adapters:
            with contextlib.suppress(Exception):
                await adapter.stop()
        await app.close()


def _when(value: Any) -> str:
    """An ISO instant (or datetime) as ``YYYY-MM-DD HH:MM:SS UTC``."""
    from datetime import datetime, timezone

    if value is None:
        return "never"
    when = datetime.fromisoformat(value) if isinstance(value, str) else value
    when = when if when.tzinfo else when.replace(tzinfo=timezone.utc)
    return when.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


async def _running_health(port: int) -> tuple[int, dict[str, Any]] | None:
    """The running process's ``/healthz`` on this host's ``port``, or None when nothing answers it."""
    import httpx

    try:
        async with httpx.AsyncClient(timeout=3.0) as client:
            response = await client.get(f"http://127.0.0.1:{port}/healthz")
        return response.status_code, response.json()
    except (httpx.HTTPError, ValueError):
        return None


def _configured_adapters(settings: Settings) -> list[str]:
    names = []
    if settings.slack_enabled:
        mode = "Socket Mode" if settings.slack_app_token else "HTTP mode"
        if settings.slack_client_id and settings.slack_client_secret:
            mode += ", multi-workspace"
        names.append(f"slack ({mode})")
    if settings.discord_enabled:
        names.append("discord")
    return names or ["console (no platform tokens set)"]


async def _status(settings: Settings) -> int:
    """``paperboy status``: the running process's connections (its ``/healthz`` on ``PORT``), then the
    database's own view. Exit 0 all well, 1 database unusable, 4 no process answering or something down."""
    from bot.schedule import utcnow
    from storage.overview import delivery_overview
    from storage.repositories import Storage

    out: list[str] = [f"adapters configured: {', '.join(_configured_adapters(settings))}"]
    healthy = True
    health = await _running_health(settings.port)
    if health is None:
        healthy = False
        out.append(f"running process: none answering on port {settings.port} (GET /healthz)")
    else:
        code, body = health
        healthy = code == 200 and bool(body.get("ok"))
        down = body.get("down") or []
        out.append(f"running process (port {settings.port}): " + ("healthy" if healthy else f"DOWN: {', '.join(down)}"))
        for name, state in (body.get("connections") or {}).items():
            line = f"  {name:<10} {state.get('state')} since {_when(state.get('since'))}"
            if state.get("rejected_setting"):
                line += f": {state['rejected_setting']} was rejected, fix it and restart"
            elif state.get("last_error"):
                line += f" (last error: {state['last_error']})"
            if state.get("retry_at"):
                line += f", next try {_when(state['retry_at'])}"
            out.append(line)
        last_pass = (body.get("delivery") or {}).get("last_pass")
        if last_pass:
            out.append(f"last delivery pass: {_when(last_pass['at'])}: sent {last_pass['sent']}, "
                       f"failed {last_pass['failed']}, paused {last_pass['paused']}")
    storage = Storage.connect(settings.database_url, migrate=False)
    try:
        now = utcnow()
        overview = await delivery_overview(storage.db, now=now)
    finally:
        await storage.close()
    out.append(f"database: {_safe_url(settings.database_url)}: ok")
    out.append(f"last delivery sent: {_when(overview.last_sent_at)}; last claim: {_when(overview.last_claimed_at)}")
    out.append(f"due now: {overview.due_channels} channel posts, {overview.due_alerts} alerts; "
               f"claims in progress: {overview.claimed}")
    out.append(f"failed in the last 24 h: {overview.failed_recently}")
    out.append(f"paused: {overview.paused_channels} channel posts, {overview.paused_alerts} people's alerts")
    print("\n".join(out))
    return EXIT_OK if healthy else EXIT_UNHEALTHY


def _safe_url(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparseable URL is reported as such
        return "DATABASE_URL"


def _database_problem(settings: Settings, exc: Exception) -> str:
    """One line on why the database cannot be used, with any password in the URL hidden."""
    where = _safe_url(settings.database_url)
    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"paperboy: cannot use the database {where}: {reason}"


def main(argv: Sequence[str] | None = None) -> int:
    """The ``paperboy`` command; returns the exit code (0 ok, 1 database unusable, 2 bad usage or settings)."""
    args = _parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        print(f"paperboy: bad configuration: {problems}", file=sys.stderr)
        return EXIT_USAGE
    console_run = args.command == "run" and not (settings.slack_enabled or settings.discord_enabled)
    # Log lines would break into the console's prompt, and answers on stdout already say what went
    # wrong: at the default level the console logs errors only, one-shot commands warnings too.
    interactive = args.command == "console" or console_run
    quiet = args.command in ("ask", "preview", "deliver", "status")
    level = "ERROR" if interactive else "WARNING" if quiet else settings.log_level
    configure_logging(level if settings.log_level.upper() == "INFO" else settings.log_level,
                      settings.secrets())
    try:
        return _dispatch(args, settings)
    except AdapterConfigError as exc:
        print(f"paperboy: bad configuration: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except CredentialsRejected as exc:          # a one-shot command's login (deliver): fix the setting
        print(f"paperboy: {exc}; fix {exc.setting}", file=sys.stderr)
        return EXIT_REJECTED
    except SQLAlchemyError as exc:
        log.debug("database failure", exc_info=True)
        print(_database_problem(settings, exc), file=sys.stderr)
        return EXIT_UNAVAILABLE


def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "status":
        return asyncio.run(_status(settings))
    if args.command == "db":
        from storage.db import upgrade_database

        upgrade_database(settings.database_url)
        print("database is up to date")
        return EXIT_OK
    app = build_app(settings)
    if args.command in ("ask", "preview"):
        platform = getattr(args, "platform", "text")
        return asyncio.run(_ask(app, _command_text(args.text), platform))
    if args.command == "console":
        return asyncio.run(_console(app))
    if args.command == "deliver":
        return asyncio.run(_deliver(app, args.dry_run))
    return asyncio.run(_run(app))


if __name__ == "__main__":
    raise SystemExit(main())
