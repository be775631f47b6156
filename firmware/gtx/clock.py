# Wall-clock time for readings, with an explicit "time not set" state.
import time

from gtx.reading import FLAG_TIME_NOT_SET

# Ports whose epoch is 2000-01-01 (older ESP32 builds) need this offset to Unix time.
EPOCH_OFFSET = 946684800 if time.gmtime(0)[0] == 2000 else 0
VALID_AFTER = 1704067200  # 2024-01-01T00:00:00Z: before that, the clock was never set
_BOOT = time.ticks_ms()


def uptime_s() -> int:
    return time.ticks_diff(time.ticks_ms(), _BOOT) // 1000


def stamp(unix_now: int, uptime: int) -> tuple[int, int]:
    """(ts, flags): Unix time when the clock is plausible, else seconds since boot."""
    if unix_now < VALID_AFTER:
        return uptime, FLAG_TIME_NOT_SET
    return unix_now, 0


def now() -> tuple[int, int]:
    return stamp(int(time.time()) + EPOCH_OFFSET, uptime_s())


def sync(host: str | None = None) -> bool:
    """Set the RTC from NTP where the port has ntptime; a failure leaves it unset."""
    try:
        import ntptime

        if host:
            ntptime.host = host
        ntptime.settime()
        return True
    except Exception:  # no network, no ntptime module, timeout: time stays "not set"
        return False
