"""The hub's acknowledgement to a meter: the highest sequence number it has settled.

Published by the hub, retained, on `gtx/v1/meters/{meter_id}/ack` after the batch holding
the meter's readings was committed. The firmware deletes a reading from its flash ring only
when an ack covers it, so nothing depends on a broker keeping messages (docs/wire-format.md
section 4.1). Not signed: the broker's ACL lets only the hub publish there, and a meter
would pay an Ed25519 verification per ack for it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from gridtokenx.wire import cbor
from gridtokenx.wire.errors import WireError
from gridtokenx.wire.reading import METER_ID, UINT_MAX
from gridtokenx.wire.topics import PREFIX

VERSION = 1
MAX_ACK_BYTES = 128  # version, a 64-byte meter id and a 9-byte integer fit in 80
ACKS = f"{PREFIX}/+/ack"  # what a meter's ACL lets it read, one meter at a time


@dataclass(frozen=True, slots=True)
class Ack:
    meter_id: str
    seq: int  # every reading of this meter with a sequence number <= seq is settled


def ack_topic(meter_id: str) -> str:
    return f"{PREFIX}/{meter_id}/ack"


def encode_ack(ack: Ack) -> bytes:
    return cbor.dumps({0: VERSION, 1: ack.meter_id, 2: ack.seq})


def decode_ack(data: bytes) -> Ack:
    """Strict, like every message: canonical CBOR, exactly keys 0..2, version 1."""
    if len(data) > MAX_ACK_BYTES:
        raise WireError("malformed_cbor", f"an ack is at most {MAX_ACK_BYTES} bytes")
    item = cbor.loads(data)
    if not isinstance(item, dict) or set(item) != {0, 1, 2}:
        raise WireError("invalid_field", "an ack is a CBOR map with keys 0..2")
    if item[0] != VERSION:
        raise WireError("unsupported_version", f"ack version {item[0]!r}")
    meter_id, seq = item[1], item[2]
    if not isinstance(meter_id, str) or not METER_ID.fullmatch(meter_id):
        raise WireError("invalid_field", "bad meter_id")
    if type(seq) is not int or not 0 <= seq <= UINT_MAX:
        raise WireError("invalid_field", "seq must be an unsigned integer")
    return Ack(meter_id, seq)


def vectors() -> dict[str, Any]:
    """The checked-in docs/vectors/ack-v1.json: acks both implementations must read, and
    payloads both must refuse, with the reason."""
    valid = [Ack("mtr-0001", 1), Ack("mtr-0002", 4_294_967_296), Ack("meter.B_3", 0)]
    first = encode_ack(valid[0])
    return {
        "format": "gridtokenx ack v1 test vectors (see docs/wire-format.md section 4.1)",
        "topic_of_mtr-0001": ack_topic("mtr-0001"),
        "acks": [{"fields": asdict(a), "cbor_hex": encode_ack(a).hex()} for a in valid],
        "invalid": [
            {
                "hex": first.replace(b"\x02\x01", b"\x02\x18\x01").hex(),
                "reason": "non_canonical_cbor",
            },
            {"hex": first[:-1].hex(), "reason": "malformed_cbor"},
            {"hex": (first + b"\x00").hex(), "reason": "malformed_cbor"},
            {"hex": cbor.dumps({0: 2, 1: "mtr-0001", 2: 1}).hex(), "reason": "unsupported_version"},
            {"hex": cbor.dumps({0: 1, 1: "mtr-0001"}).hex(), "reason": "invalid_field"},
            {"hex": cbor.dumps({0: 1, 1: "mtr-0001", 2: -1}).hex(), "reason": "invalid_field"},
            {"hex": cbor.dumps({0: 1, 1: "a/b", 2: 1}).hex(), "reason": "invalid_field"},
            {"hex": cbor.dumps({0: 1, 1: "mtr-0001", 2: b"\x01"}).hex(), "reason": "invalid_field"},
            {"hex": cbor.dumps([1, "mtr-0001", 1]).hex(), "reason": "invalid_field"},
        ],
    }
