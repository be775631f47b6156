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


# The one deterministic form of a valid reading: a map head, then keys 0, 1, 2, ... in
# order, each one byte (all below 24), before its value.
_MAP_HEAD = 0xA0 + len(_ALL_KEYS)
_NUMBER_KEYS = tuple(range(2, len(_ALL_KEYS)))
_PF_KEY = KEYS["pf_milli"]
_ID_BYTES = re.compile(rb"[A-Za-z0-9._-]{1,64}")
_WIDTHS = {25: 2, 26: 4, 27: 8}
_SHORTEST = {25: 1 << 8, 26: 1 << 16, 27: 1 << 32}
assert len(_ALL_KEYS) < 24 and tuple(n for n in KEYS if KEYS[n] in _NUMBER_KEYS) == NUMBERS


def _canonical(data: bytes) -> Reading | None:
    """The reading, if `data` is one in its one deterministic form with valid values;
    else None (then the strict way decides, and gives the reason).

    The hot path of ingest (every reading): one pass over the bytes, without the general
    scan, cbor2 and the field checks, accepting exactly the readings the strict way
    accepts (tests/test_wire_fast.py compares both on mutations of valid readings): map
    of len(_ALL_KEYS) entries, key 0 = version 1, key 1 = a text string of 1-64 of
    [A-Za-z0-9._-], then each number key in order with an unsigned integer (a negative
    one only for pf_milli) whose head is in its shortest form, nothing after."""
    size = len(data)
    if size > MAX_MESSAGE_BYTES or size < 6 or data[0] != _MAP_HEAD:
        return None
    if data[1] != 0 or data[2] != VERSION or data[3] != 1:
        return None
    head = data[4]
    if 0x61 <= head <= 0x77:
        pos = 5 + head - 0x60
        ident = data[5:pos]
    elif head == 0x78 and 24 <= data[5] <= 64:
        pos = 6 + data[5]
        ident = data[6:pos]
    else:
        return None
    if pos > size or _ID_BYTES.fullmatch(ident) is None:
        return None
    values: list[int] = []
    for key in _NUMBER_KEYS:
        if pos + 2 > size or data[pos] != key:
            return None
        initial = data[pos + 1]
        pos += 2
        info = initial & 0x1F
        if info < 24:
            value = info
        elif info == 24:
            if pos >= size or data[pos] < 24:
                return None
            value = data[pos]
            pos += 1
        elif info in _WIDTHS:
            end = pos + _WIDTHS[info]
            if end > size:
                return None
            value = int.from_bytes(data[pos:end], "big")
            if value < _SHORTEST[info]:
                return None
            pos = end
        else:
            return None
        major = initial >> 5
        if key == _PF_KEY:
            if major == 1:
                value = -1 - value
            elif major != 0:
                return None
            if not -1000 <= value <= 1000:
                return None
        elif major != 0 or value > UINT_MAX:
            return None
        values.append(value)
    if pos != size:
        return None
    return Reading(ident.decode("ascii"), *values)


@lru_cache(maxsize=DECODED)
def _decode(data: bytes) -> Reading:
    fast = _canonical(data)
    return fast if fast is not None else _strict(data)


def _strict(data: bytes) -> Reading:
    """Decode a reading the general way: `cbor.loads`, then the keys and the field checks."""
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
