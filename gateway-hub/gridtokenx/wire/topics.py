"""MQTT topic layout. Meter ids cannot hold '/', '+' or '#' (see reading.METER_ID)."""

from __future__ import annotations

from gridtokenx.wire.reading import METER_ID

PREFIX = "gtx/v1/meters"
READINGS = f"{PREFIX}/+/reading"  # what a hub subscribes to (QoS 1)
STATUSES = f"{PREFIX}/+/status"


def reading_topic(meter_id: str) -> str:
    return f"{PREFIX}/{meter_id}/reading"


def status_topic(meter_id: str) -> str:
    return f"{PREFIX}/{meter_id}/status"


def meter_of(topic: str) -> str | None:
    """The meter id a reading/status topic names, or None if it is not one of ours (or
    names no valid meter id, which no meter can have)."""
    parts = topic.split("/")
    if (
        len(parts) == 5
        and "/".join(parts[:3]) == PREFIX
        and parts[4] in ("reading", "status")
        and METER_ID.fullmatch(parts[3])
    ):
        return parts[3]
    return None
