"""Local times of day, IANA time zones, and the next UTC instant they fall on."""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones
from functools import lru_cache

from bot.text import InputError

# ASCII digits only: "\d" would also take "٣" or "৩", which nobody means as a time.
_TIME = re.compile(r"^([0-9]{1,2})(?::?([0-9]{2}))?\s*(am|pm)?$", re.IGNORECASE)


def parse_time_of_day(text: str) -> time:
    """``9:30``, ``09:30``, ``0930``, ``9am`` or ``9:30pm`` as a time; InputError otherwise."""
    match = _TIME.match(text.strip())
    if not match:
        raise InputError(f"`{text[:20]}` is not a time of day; use HH:MM, for example 09:30.")
    hour, minute = int(match.group(1)), int(match.group(2) or 0)
    meridiem = (match.group(3) or "").lower()
    if meridiem:
        if not 1 <= hour <= 12:
            raise InputError(f"`{text[:20]}` is not a time of day; use HH:MM, for example 09:30.")
        hour = hour % 12 + (12 if meridiem == "pm" else 0)
    if hour > 23 or minute > 59:
        raise InputError(f"`{text[:20]}` is not a time of day; hours run 00-23 and minutes 00-59.")
    return time(hour, minute)


def looks_like_time(text: str) -> bool:
    return bool(_TIME.match(text.strip()))


@lru_cache(maxsize=1)
def _zone_names() -> dict[str, str]:
    return {name.casefold(): name for name in available_timezones()}


def parse_timezone(text: str) -> str:
    """The canonical IANA name for ``text`` (case-insensitive); InputError when unknown."""
    name = _zone_names().get(text.strip().casefold())
    if name is None:
        raise InputError(f"`{text[:64]}` is not a time zone I know; use an IANA name such as Europe/Berlin.")
    return name


def search_timezones(prefix: str, *, limit: int = 25) -> list[str]:
    """Zone names containing ``prefix`` (for autocomplete), shortest first."""
    needle = prefix.strip().casefold().replace(" ", "_")
    names = [n for key, n in _zone_names().items() if needle in key and "/" in n and not key.startswith("etc/")]
    names.sort(key=lambda n: (not n.casefold().startswith(needle), len(n), n))
    return names[:limit]


def utcnow() -> datetime:
    """The current instant, timezone-aware (UTC): the default clock everywhere."""
    return datetime.now(timezone.utc)


def format_time(value: time) -> str:
    return value.strftime("%H:%M")


def local_datetime(day: date, at: time, zone: ZoneInfo) -> datetime:
    """``at`` on ``day`` in ``zone``; a time skipped by a DST change moves forward past the gap."""
    naive = datetime.combine(day, at)
    candidate = naive.replace(tzinfo=zone)
    round_trip = candidate.astimezone(timezone.utc).astimezone(zone)
    if round_trip.replace(tzinfo=None) != naive:  # in the spring-forward gap
        return round_trip
    return candidate


def next_occurrence(after: datetime, at: time, tz_name: str) -> datetime:
    """The first UTC instant strictly after ``after`` that reads ``at`` in ``tz_name``."""
    try:
        zone = ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InputError(f"unknown time zone {tz_name!r}") from exc
    local_now = after.astimezone(zone)
    for offset in range(0, 3):
        candidate = local_datetime(local_now.date() + timedelta(days=offset), at, zone)
        if candidate.astimezone(timezone.utc) > after:
            return candidate.astimezone(timezone.utc)
    raise AssertionError("unreachable: a time of day recurs within three days")


def local_day(instant: datetime, tz_name: str) -> date:
    """The calendar day ``instant`` falls on in ``tz_name``."""
    return instant.astimezone(ZoneInfo(tz_name)).date()
