"""The hub's epoch batch: which readings it vouches for, as a Merkle root and ranges.

Readings are ordered by (meter_id, seq); leaf i is the signed bytes of reading i, so a
meter's signature and the batch root cover the very same bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gridtokenx.wire import cbor, merkle
from gridtokenx.wire.errors import WireError
from gridtokenx.wire.reading import METER_ID, Reading, decode, signed_bytes

BATCH_DOMAIN = b"gridtokenx/batch/v1\x00"
VERSION = 1


@dataclass(frozen=True, slots=True)
class MeterRange:
    """One meter's part of a batch: sequence and register ranges, first to last reading."""

    meter_id: str
    first_seq: int
    last_seq: int
    import_first_wh: int
    import_last_wh: int
    export_first_wh: int
    export_last_wh: int
    count: int


@dataclass(frozen=True, slots=True)
class BatchHeader:
    hub_id: str
    epoch: int
    root: bytes
    count: int
    ranges: tuple[MeterRange, ...]


def order_leaves(readings_cbor: Sequence[bytes]) -> list[tuple[Reading, bytes]]:
    pairs = [(decode(raw), raw) for raw in readings_cbor]
    pairs.sort(key=lambda pair: (pair[0].meter_id, pair[0].seq))
    return pairs


def build(hub_id: str, epoch: int, readings_cbor: Sequence[bytes]) -> BatchHeader:
    """The header of a batch of readings (given as their CBOR, in any order)."""
    if not METER_ID.fullmatch(hub_id):
        raise WireError("invalid_field", "hub_id must be 1-64 of [A-Za-z0-9._-]")
    pairs = order_leaves(readings_cbor)
    ranges: list[MeterRange] = []
    for reading, _ in pairs:
        last = ranges[-1] if ranges else None
        if last is not None and last.meter_id == reading.meter_id:
            ranges[-1] = MeterRange(
                last.meter_id,
                last.first_seq,
                reading.seq,
                last.import_first_wh,
                reading.import_wh,
                last.export_first_wh,
                reading.export_wh,
                last.count + 1,
            )
        else:
            ranges.append(
                MeterRange(
                    reading.meter_id,
                    reading.seq,
                    reading.seq,
                    reading.import_wh,
                    reading.import_wh,
                    reading.export_wh,
                    reading.export_wh,
                    1,
                )
            )
    root = merkle.root([signed_bytes(raw) for _, raw in pairs])
    return BatchHeader(hub_id, epoch, root, len(pairs), tuple(ranges))


def encode_header(header: BatchHeader) -> bytes:
    """{0: version, 1: hub_id, 2: epoch, 3: root, 4: count, 5: [[meter_id, ...7 ints]]}."""
    ranges = [
        [
            r.meter_id,
            r.first_seq,
            r.last_seq,
            r.import_first_wh,
            r.import_last_wh,
            r.export_first_wh,
            r.export_last_wh,
            r.count,
        ]
        for r in header.ranges
    ]
    return cbor.dumps(
        {0: VERSION, 1: header.hub_id, 2: header.epoch, 3: header.root, 4: header.count, 5: ranges}
    )


def decode_header(data: bytes) -> BatchHeader:
    item = cbor.loads(data)
    if not isinstance(item, dict) or item.get(0) != VERSION or set(item) != set(range(6)):
        raise WireError("invalid_field", "a batch header is a CBOR map with keys 0..5")
    try:
        ranges = tuple(MeterRange(*row) for row in item[5])
        return BatchHeader(item[1], item[2], bytes(item[3]), item[4], ranges)
    except TypeError:
        raise WireError("invalid_field", "malformed batch ranges") from None
