"""What ``paperboy status`` reads from the database: what is due, failed and paused, and the last delivery."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select

from storage.db import Database
from storage.models import ChannelSubscription, Delivery, UserProfile

FAILED_WINDOW = timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class DeliveryOverview:
    """Counts over the subscriptions and the ledger at one instant."""

    due_channels: int          # enabled channel posts whose time has come
    due_alerts: int            # personal alerts switched on whose time has come
    failed_recently: int       # ledger rows failed in the last :data:`FAILED_WINDOW`
    claimed: int               # claims in progress (or left by a process that died)
    paused_channels: int       # channel posts stopped by an error (channel gone, bot removed, ...)
    paused_alerts: int         # people whose alerts stopped by an error (DMs closed, ...)
    last_sent_at: datetime | None
    last_claimed_at: datetime | None


async def delivery_overview(db: Database, *, now: datetime) -> DeliveryOverview:
    """Read the counts (read-only; on SQLite no write lock is taken)."""
    c, p, d = ChannelSubscription, UserProfile, Delivery
    async with db.read_connection() as conn:
        due_channels = await conn.scalar(select(func.count()).select_from(c).where(
            c.enabled.is_(True), c.next_due_at <= now))
        due_alerts = await conn.scalar(select(func.count()).select_from(p).where(
            p.alerts_enabled.is_(True), p.next_due_at <= now))
        paused_channels = await conn.scalar(select(func.count()).select_from(c).where(
            c.enabled.is_(False), c.paused_reason.is_not(None)))
        paused_alerts = await conn.scalar(select(func.count()).select_from(p).where(
            p.alerts_enabled.is_(False), p.paused_reason.is_not(None)))
        failed = await conn.scalar(select(func.count()).select_from(d).where(
            d.status == "failed", d.claimed_at >= now - FAILED_WINDOW))
        claimed = await conn.scalar(select(func.count()).select_from(d).where(d.status == "claimed"))
        last_sent = await conn.scalar(select(func.max(d.sent_at)))
        last_claimed = await conn.scalar(select(func.max(d.claimed_at)))
    return DeliveryOverview(
        due_channels=due_channels or 0, due_alerts=due_alerts or 0, failed_recently=failed or 0,
        claimed=claimed or 0, paused_channels=paused_channels or 0, paused_alerts=paused_alerts or 0,
        last_sent_at=last_sent, last_claimed_at=last_claimed)
