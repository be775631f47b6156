"""The reading rules: pure decisions about one reading, each refusal with its reason.

A reading arrives as (topic meter id, envelope bytes). The hub accepts it only if the
meter is registered and approved, the signature verifies with the meter's key, the CBOR
is canonical and well-formed, and the reading continues the meter's history plausibly.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from gridtokenx.wire import envelope
from gridtokenx.wire.errors import WireError
from gridtokenx.wire.reading import READING_DOMAIN, Reading, decode


class MeterStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    SUSPENDED = "suspended"


@dataclass(frozen=True)
class Meter:
    meter_id: str
    public_key: bytes
    status: MeterStatus = MeterStatus.PENDING
    rated_power_w: int = 23_000  # PZEM-004T 100 A at 230 V
    household: str | None = None


@dataclass(frozen=True)
class Previous:
    """The meter's last accepted reading, what the next one must continue."""

    seq: int
    ts: int
    import_wh: int
    export_wh: int
    raw: bytes


@dataclass(frozen=True)
class RuleConfig:
    """Defaults: 60 s of clock skew, registers within 0-1,000,000 kWh (design documents),
    readings at least 10 s apart, energy within rated power x interval + 10%."""

    future_skew_s: int = 60
    max_register_wh: int = 1_000_000_000
    min_interval_s: int = 10
    rating_tolerance_pct: int = 10


class Verdict(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"  # the very reading already stored: a redelivery, not an attack
    REJECTED = "rejected"


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    reason: str = ""
    detail: str = ""
    reading: Reading | None = None
    raw: bytes = b""
    signature: bytes = b""
    gap: tuple[int, int] | None = None  # sequence numbers missing before this reading

    @property
    def accepted(self) -> bool:
        return self.verdict is Verdict.ACCEPTED


def reject(reason: str, detail: str, reading: Reading | None = None) -> Decision:
    return Decision(Verdict.REJECTED, reason, detail, reading)


def parse(topic_meter: str, payload: bytes, meter: Meter | None) -> Decision:
    """The checks that need only the message and the meter's registration: status,
    envelope, signature, canonical CBOR, topic. Pure and independent per message, so a
    hub may run it for many messages in parallel. The size limit comes first, before any
    decoding."""
    if len(payload) > envelope.MAX_MESSAGE_BYTES:
        return reject(
            "too_large", f"{len(payload)} bytes, the limit is {envelope.MAX_MESSAGE_BYTES}"
        )
    if meter is None:
        return reject("unknown_meter", f"meter {topic_meter!r} is not registered")
    if meter.status is MeterStatus.SUSPENDED:
        return reject("suspended_meter", f"meter {topic_meter!r} is suspended")
    if meter.status is not MeterStatus.APPROVED:
        return reject("meter_not_approved", f"meter {topic_meter!r} awaits approval")
    try:
        raw, signature = envelope.unwrap(payload)
        envelope.verify(raw, signature, READING_DOMAIN, meter.public_key)
        reading = decode(raw)
    except WireError as exc:
        return reject(exc.reason, exc.message)
    if reading.meter_id != topic_meter:
        return reject("topic_mismatch", f"reading of {reading.meter_id!r} on its topic", reading)
    return Decision(Verdict.ACCEPTED, "", "", reading, raw, signature)


def follow(
    parsed: Decision, meter: Meter, previous: Previous | None, now: int, config: RuleConfig
) -> Decision:
    """The checks against the clock and the meter's history, for a parsed reading."""
    reading, raw = parsed.reading, parsed.raw
    if not parsed.accepted or reading is None:
        return parsed
    if not reading.time_set:
        return reject("time_not_set", "the meter's clock was not set", reading)
    if reading.ts > now + config.future_skew_s:
        return reject("future_timestamp", f"ts {reading.ts} is {reading.ts - now} s ahead", reading)
    for name in ("import_wh", "export_wh"):
        if getattr(reading, name) > config.max_register_wh:
            return reject("out_of_bounds", f"{name} above {config.max_register_wh} Wh", reading)
    if previous is None:
        return parsed
    if reading.seq == previous.seq and raw == previous.raw:
        return Decision(Verdict.DUPLICATE, "duplicate", "", reading, raw, parsed.signature)
    if reading.seq <= previous.seq:
        return reject("replayed", f"seq {reading.seq} <= last {previous.seq}", reading)
    if reading.ts <= previous.ts:
        return reject("backdated", f"ts {reading.ts} <= last {previous.ts}", reading)
    if reading.import_wh < previous.import_wh or reading.export_wh < previous.export_wh:
        return reject("register_decreased", "a cumulative register went backwards", reading)
    elapsed = reading.ts - previous.ts
    if elapsed < config.min_interval_s:
        return reject("interval_too_short", f"{elapsed} s since the last reading", reading)
    energy = (reading.import_wh - previous.import_wh) + (reading.export_wh - previous.export_wh)
    # energy <= rated W x elapsed s / 3600 x (1 + tolerance), in integers
    if energy * 3600 * 100 > meter.rated_power_w * elapsed * (100 + config.rating_tolerance_pct):
        return reject(
            "energy_exceeds_rating",
            f"{energy} Wh in {elapsed} s exceeds {meter.rated_power_w} W",
            reading,
        )
    gap = (previous.seq + 1, reading.seq - 1) if reading.seq > previous.seq + 1 else None
    return Decision(Verdict.ACCEPTED, "", "", reading, raw, parsed.signature, gap)


def check(
    topic_meter: str,
    payload: bytes,
    meter: Meter | None,
    previous: Previous | None,
    now: int,
    config: RuleConfig,
) -> Decision:
    """Decide about one reading. Pure: no clock, no database."""
    parsed = parse(topic_meter, payload, meter)
    if meter is None or not parsed.accepted:
        return parsed
    return follow(parsed, meter, previous, now, config)


REASONS = (
    "too_large",
    "unknown_meter",
    "suspended_meter",
    "meter_not_approved",
    "malformed_envelope",
    "malformed_cbor",
    "non_canonical_cbor",
    "unsupported_version",
    "invalid_field",
    "bad_signature",
    "topic_mismatch",
    "time_not_set",
    "future_timestamp",
    "out_of_bounds",
    "replayed",
    "backdated",
    "register_decreased",
    "interval_too_short",
    "energy_exceeds_rating",
    "internal_error",  # a bug met while deciding: logged and counted, never retried
)
