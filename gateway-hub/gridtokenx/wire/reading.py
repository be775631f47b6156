"""The meter reading: its fields, its deterministic CBOR, and the bytes a meter signs.

Spec: docs/wire-format.md. The firmware implements the same encoding in MicroPython
(firmware/gtx/reading.py); both pass docs/vectors/wire-v1.json.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from functools import lru_cache

from gridtokenx.wire import cbor
from gridtokenx.wire.envelope import MAX_MESSAGE_BYTES
from gridtokenx.wire.errors import WireError

VERSION = 1
READING_DOMAIN = b"gridtokenx/reading/v1\x00"
METER_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
UINT_MAX = (1 << 63) - 1

DECODED = 8192  # readings remembered by `decode` (a batch of 1,000 meters fits; ~3 MB)
FLAG_TIME_NOT_SET = 1  # ts counts seconds since boot, not Unix time


@dataclass(frozen=True, slots=True)
class Reading:
    """One reading. Integer units: Wh, 0.1 V, mA, 1/1000 of power factor, 0.01 Hz."""

    meter_id: str
    seq: int
    ts: int
    import_wh: int  # OBIS 1.8.0, cumulative
    export_wh: int  # OBIS 2.8.0, cumulative
    interval_s: int
    voltage_dv: int
    current_ma: int
    pf_milli: int
    freq_chz: int
    flags: int = 0

    @property
    def time_set(self) -> bool:
        return not self.flags & FLAG_TIME_NOT_SET


# CBOR map keys: field order above, after key 0 (the format version).
KEYS = {f.name: k + 1 for k, f in enumerate(fields(Reading))}
NUMBERS = tuple(name for name in KEYS if name != "meter_id")
_ALL_KEYS = frozenset({0, *KEYS.values()})


def _check(reading: Reading) -> None:
    if not isinstance(reading.meter_id, str) or not METER_ID.fullmatch(reading.meter_id):
        raise WireError("invalid_field", "meter_id must be 1-64 of [A-Za-z0-9._-]")
    for name in NUMBERS:
        value = getattr(reading, name)
        if type(value) is not int:
            raise WireError("invalid_field", f"{name} must be an integer")
        low = -1000 if name == "pf_milli" else 0
        high = 1000 if name == "pf_milli" else UINT_MAX
        if not low <= value <= high:
            raise WireError("invalid_field", f"{name}={value} outside {low}..{high}")


def encode(reading: Reading) -> bytes:
    """The reading's deterministic CBOR map {0: version, 1: meter_id, 2: seq, ...}."""
    _check(reading)
    item: dict[int, object] = {0: VERSION}
    item.update({key: getattr(reading, name) for name, key in KEYS.items()})
    return cbor.dumps(item)


def decode(data: bytes) -> Reading:
    """Strictly decode a reading: canonical CBOR, exactly the known keys, valid values.

    The same bytes are decoded again downstream (the hub's rules, its batch, the
    co-signer's review, each from the bytes it was handed), so the last readings decoded
    are remembered: a Reading is immutable and decoding is a pure function of the bytes.
    Refused bytes are not remembered; they are refused again the same way."""
    return _decode(bytes(data))


@lru_cache(maxsize=DECODED)
def _decode(data: bytes) -> Reading:
    item = cbor.loads(data, max_bytes=MAX_MESSAGE_BYTES, max_depth=1)
    if not isinstance(item, dict):
        raise WireError("invalid_field", "a reading is a CBOR map")
    if item.get(0) != VERSION:
        raise WireError("unsupported_version", f"reading version {item.get(0)!r}")
    if item.keys() != _ALL_KEYS:
        raise WireError("invalid_field", f"reading keys {sorted(map(str, item))} != 0..{len(KEYS)}")
    reading = Reading(**{name: item[key] for name, key in KEYS.items()})
    _check(reading)
    return reading


def signed_bytes(reading_cbor: bytes) -> bytes:
    """The exact bytes a meter's Ed25519 key signs: domain tag, then the reading CBOR."""
    return READING_DOMAIN + reading_cbor
