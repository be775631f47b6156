"""The hot-path shortcuts of the wire decoders decide exactly as the strict way does.

`envelope.unwrap` slices an envelope already in its one deterministic form, and
`cbor.loads` skips re-encoding a flat canonical item; every envelope length and every
one-byte mutation of valid envelopes and readings is decided both ways and compared.
"""

from __future__ import annotations

import random
from typing import Any

import cbor2

from gridtokenx.wire import cbor, envelope, reading
from gridtokenx.wire.errors import WireError
from gridtokenx.wire.reading import Reading, decode, encode


def _strict_unwrap(payload: bytes) -> tuple[bytes, bytes] | str:
    try:
        item = cbor.loads(payload, max_bytes=envelope.MAX_MESSAGE_BYTES, max_depth=1)
    except WireError as exc:
        return exc.reason
    if (
        not isinstance(item, list)
        or len(item) != 2
        or not all(isinstance(part, bytes) for part in item)
        or len(item[1]) != envelope.SIGNATURE_BYTES
    ):
        return "malformed_envelope"
    return item[0], item[1]


def _mutations(data: bytes, rng: random.Random) -> list[bytes]:
    out = [data, data[:-1], data + b"\x00"]
    for i in range(len(data)):
        for value in (rng.randrange(256), data[i] ^ 0x01, data[i] ^ 0x20):
            out.append(data[:i] + bytes([value]) + data[i + 1 :])
    return out


def test_the_envelope_shortcut_agrees_with_the_strict_way() -> None:
    rng = random.Random(13)
    taken = 0
    limit = envelope.MAX_MESSAGE_BYTES - 3 - envelope.SIGNATURE_BYTES - 2
    for length in [*range(0, 30), 255, 256, 257, limit, limit + 1]:
        valid = cbor.dumps([rng.randbytes(length), rng.randbytes(envelope.SIGNATURE_BYTES)])
        for payload in _mutations(valid, rng):
            fast = envelope._canonical_parts(payload)
            strict = _strict_unwrap(payload)
            if fast is not None or isinstance(strict, tuple):
                assert fast == strict, payload.hex()
                taken += 1
        if len(valid) <= envelope.MAX_MESSAGE_BYTES:  # every valid envelope takes the shortcut
            assert envelope._canonical_parts(valid) is not None
    assert taken > 0


def _outcome(decoder: Any, data: bytes) -> object:
    try:
        return decoder(data)
    except WireError as exc:
        return exc.reason


def _reencoding_loads(data: bytes) -> Any:
    """cbor.loads as it was: always re-encode and compare."""
    cbor.scan(data)
    try:
        value = cbor2.loads(data)
    except Exception:
        raise WireError("malformed_cbor", "") from None
    if cbor.dumps(value) != data:
        raise WireError("non_canonical_cbor", "")
    return value


def test_skipping_the_reencoding_decides_every_mutation_as_reencoding_does() -> None:
    rng = random.Random(7)
    samples = [
        encode(Reading("m-1", 1, 1_700_000_000, 10, 0, 60, 2300, 500, -1000, 5000)),
        encode(Reading("meter.x_9", 2**63 - 1, 24, 255, 256, 65535, 65536, 0, 1000, 1)),
        cbor.dumps([1, "a", b"x", -5]),
        bytes([0xA3, 0x00, 0x01, 0x01, 0x02, 0x00, 0x03]),  # a duplicate key
        bytes([0xA2, 0x01, 0x01, 0x00, 0x02]),  # keys out of order
        bytes([0xA2, 0x61, 0x62, 0x01, 0x61, 0x61, 0x02]),  # text keys out of order
    ]
    for sample in samples:
        for data in _mutations(sample, rng):
            assert _outcome(cbor.loads, data) == _outcome(_reencoding_loads, data), data.hex()
    assert _outcome(cbor.loads, samples[3]) == "non_canonical_cbor"
    assert _outcome(cbor.loads, samples[4]) == "non_canonical_cbor"
    assert decode(samples[0]) == Reading("m-1", 1, 1_700_000_000, 10, 0, 60, 2300, 500, -1000, 5000)


def _reading_samples() -> list[bytes]:
    """Valid readings with every head width at its edges: ids of 1, 23, 24 and 64 bytes,
    numbers at 23/24, 255/256, 65535/65536, 2^32 - 1/2^32 and 2^63 - 1, pf_milli at
    -1000, -25, -24, -1, 0 and 1000."""
    edges = [0, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**63 - 1]
    out = []
    for k, ident in enumerate(["m", "a" * 23, "B-9._" + "x" * 19, "z" * 64]):
        for j, pf in enumerate([-1000, -25, -24, -1, 0, 1000]):
            n = [edges[(k + j + i) % len(edges)] for i in range(9)]
            out.append(
                encode(Reading(ident, n[0], n[1], n[2], n[3], n[4], n[5], n[6], pf, n[7], n[8]))
            )
    return out


def test_the_reading_shortcut_agrees_with_the_strict_way() -> None:
    """`reading._canonical` either gives exactly the Reading the strict decoder gives, or
    declines (None) and the strict way decides; every valid reading takes the shortcut."""
    rng = random.Random(21)
    taken = declined = 0
    for sample in _reading_samples():
        assert reading._canonical(sample) == reading._strict(sample)
        mutated = _mutations(sample, rng)
        mutated += [sample[:i] + sample[i + 1 :] for i in range(len(sample))]  # one byte fewer
        mutated += [sample[:i] + b"\x00" + sample[i:] for i in range(len(sample))]  # one more
        for data in mutated:
            fast = reading._canonical(data)
            strict = _outcome(reading._strict, data)
            if fast is None:
                declined += 1
                # the shortcut declines only what the strict way refuses
                assert not isinstance(strict, Reading), data.hex()
            else:
                taken += 1
                assert fast == strict, data.hex()
    assert taken > 100 and declined > 1000
    # out of range values and ids outside the alphabet are declined, and refused strictly
    for bad in [
        "a" * 65,
        "m\u00e9",
        "",
    ]:
        data = cbor.dumps({0: 1, **{k: 1 for k in range(2, 12)}, 1: bad})
        assert reading._canonical(data) is None
        assert _outcome(decode, data) == "invalid_field"
    big = cbor.dumps({0: 1, 1: "m", **{k: 2**63 for k in range(2, 12)}})
    assert reading._canonical(big) is None and _outcome(decode, big) == "invalid_field"
    pf = cbor.dumps({0: 1, 1: "m", **{k: 1 for k in range(2, 12)}, 9: -1001})
    assert reading._canonical(pf) is None and _outcome(decode, pf) == "invalid_field"
    old = cbor.dumps({0: 2, 1: "m", **{k: 1 for k in range(2, 12)}})
    assert reading._canonical(old) is None and _outcome(decode, old) == "unsupported_version"
