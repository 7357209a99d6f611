"""A delivery process for the multi-process tests: one pass, sending to a fake platform API.

``python -m tests.delivery_worker --db URL --hf URL --sink URL --now ISO`` runs
:func:`scheduler.delivery.run_delivery_pass` as a separate OS process would in
production and prints its report as JSON on the last line. With ``--slack URL``
it sends through the real Slack adapter (slack_sdk) to a fake Slack Web API
instead of the fake platform sink.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from datetime import datetime, timedelta

from adapters.fake import HttpPlatformAdapter
from bot.app import build_app
from bot.settings import Settings
from scheduler.delivery import CLAIM_LEASE, run_delivery_pass


async def _run(args: argparse.Namespace) -> dict:
    slack = dict(SLACK_API_URL=args.slack, SLACK_BOT_TOKEN="xoxb-worker", SLACK_SIGNING_SECRET="worker") \
        if args.slack else {}
    settings = Settings(_env_file=None, DATABASE_URL=args.db, PAPERBOY_HF_URL=args.hf, PAPERBOY_OFFLINE_SAMPLE=False,
                        PAPERBOY_DELIVERY_CONCURRENCY=args.concurrency, **slack)
    app = build_app(settings, migrate=False)
    if args.slack:
        from adapters.slack import SlackAdapter

        adapter = SlackAdapter(settings, app.core, app.storage)
        await adapter.start_sending()
        app.adapters.add(adapter)
    else:
        for platform in args.platforms.split(","):
            app.adapters.add(HttpPlatformAdapter(args.sink, platform=platform, concurrency=args.concurrency))
    lease = timedelta(minutes=args.lease_minutes) if args.lease_minutes is not None else CLAIM_LEASE
    try:
        report = await run_delivery_pass(app, now=datetime.fromisoformat(args.now), worker_id=args.worker_id,
                                         lease=lease, batch_size=args.batch_size)
        return report.as_dict()
    finally:
        for adapter in app.adapters:
            await adapter.stop()
        await app.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--hf", required=True)
    parser.add_argument("--sink", default="")
    parser.add_argument("--slack", default="", help="a (fake) Slack Web API URL: send with the Slack adapter")
    parser.add_argument("--now", required=True)
    parser.add_argument("--worker-id", default=None)
    parser.add_argument("--platforms", default="slack")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--lease-minutes", type=float, default=None, help="default: the production claim lease")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(_run(args))), flush=True)


if __name__ == "__main__":
    main()
