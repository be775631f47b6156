"""Times as the site's people read them: an epoch is shown as its local time of day with
its date, in the site's time zone (GTX_SITE_TZ, default Asia/Bangkok); its number stays in
the API."""

from __future__ import annotations

import functools
import os
from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo

DEFAULT_ZONE = "Asia/Bangkok"


def site_zone() -> tzinfo:
    return ZoneInfo(os.environ.get("GTX_SITE_TZ") or DEFAULT_ZONE)


def epoch_start(epoch: int, epoch_s: float, zone: tzinfo) -> datetime:
    return datetime.fromtimestamp(epoch * epoch_s, UTC).astimezone(zone)


@functools.lru_cache(maxsize=4096)
def epoch_label(epoch: int, epoch_s: float, zone: tzinfo) -> str:
    """'2026-12-02 09:20:00–09:20:20' (seconds shown unless the epoch is whole minutes);
    the end's date is shown too when it is another day. Kept for the last 4,096 epochs
    asked: a page shows a hundred rows' epochs, the same again at every refresh, and each
    label is two time-zone conversions and three strftimes."""
    start, end = epoch_start(epoch, epoch_s, zone), epoch_start(epoch + 1, epoch_s, zone)
    clock = "%H:%M" if epoch_s % 60 == 0 else "%H:%M:%S"
    last = end.strftime(clock) if end.date() == start.date() else end.strftime(f"%Y-%m-%d {clock}")
    return f"{start.strftime(f'%Y-%m-%d {clock}')}–{last}"


def local_time(ts: int, zone: tzinfo) -> str:
    """A Unix time as the site's date and time of day."""
    return datetime.fromtimestamp(ts, UTC).astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")


def zone_name(zone: tzinfo) -> str:
    """The zone as people know it: its key (Asia/Bangkok) with its UTC offset now."""
    now = datetime.now(zone)
    return (
        f"{getattr(zone, 'key', str(zone))}, UTC{now.strftime('%z')[:3]}:{now.strftime('%z')[3:]}"
    )
