"""The meter status (heartbeat) message: health, buffer depth, uptime. Signed like readings."""

from __future__ import annotations

from dataclasses import dataclass

from gridtokenx.wire import cbor
from gridtokenx.wire.envelope import MAX_MESSAGE_BYTES
from gridtokenx.wire.errors import WireError
from gridtokenx.wire.reading import METER_ID, UINT_MAX

STATUS_DOMAIN = b"gridtokenx/status/v1\x00"
VERSION = 1


@dataclass(frozen=True, slots=True)
class Status:
    meter_id: str
    ts: int
    uptime_s: int
    last_seq: int
    buffered: int  # readings waiting in the store-and-forward ring
    dropped: int  # readings the full ring had to drop (see docs/wire-format.md)
    fault: str  # "" when healthy, else a fault code such as "chip_timeout"
    # the running firmware image (docs/wire-format.md section 7): version 0 and an empty
    # hash for the image flashed by cable; None from firmware that predates updates
    image_version: int | None = None
    image_sha256: bytes | None = None


_NAMES = ("meter_id", "ts", "uptime_s", "last_seq", "buffered", "dropped", "fault")


def encode_status(status: Status) -> bytes:
    item: dict[int, object] = {0: VERSION}
    item.update({k + 1: getattr(status, name) for k, name in enumerate(_NAMES)})
    if status.image_version is not None:
        item[8], item[9] = status.image_version, status.image_sha256 or b""
    return cbor.dumps(item)


def decode_status(data: bytes) -> Status:
    """Keys 0..7, and 8 (image version) with 9 (image SHA-256) from firmware that has
    over-the-air updates."""
    item = cbor.loads(data, max_bytes=MAX_MESSAGE_BYTES, max_depth=1)
    if (
        not isinstance(item, dict)
        or item.get(0) != VERSION
        or set(item) not in (set(range(8)), set(range(10)))
    ):
        raise WireError("invalid_field", "a status is a CBOR map with keys 0..7 or 0..9, version 1")
    values = {name: item[k + 1] for k, name in enumerate(_NAMES)}
    if 8 in item:
        version, digest = item[8], item[9]
        if type(version) is not int or not 0 <= version < 2**32:
            raise WireError("invalid_field", "image version must be a 32-bit unsigned integer")
        if not isinstance(digest, bytes) or len(digest) not in (0, 32):
            raise WireError("invalid_field", "image hash must be 32 bytes (or empty)")
        values["image_version"], values["image_sha256"] = version, digest
    if not isinstance(values["meter_id"], str) or not METER_ID.fullmatch(values["meter_id"]):
        raise WireError("invalid_field", "bad meter_id")
    if not isinstance(values["fault"], str) or len(values["fault"]) > 64:
        raise WireError("invalid_field", "fault must be a short text")
    for name in _NAMES[1:6]:
        if type(values[name]) is not int or not 0 <= values[name] <= UINT_MAX:
            raise WireError("invalid_field", f"{name} must be an unsigned integer")
    return Status(**values)
