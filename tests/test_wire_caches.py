"""The wire's remembered results (decoded readings, checked signatures) answer exactly as
a fresh check would: a cached good signature never vouches for other bytes, keys or
signatures, and refused input is refused again, every time, with the same code."""

from __future__ import annotations

import pytest
from nacl.signing import SigningKey

from gridtokenx.wire import envelope
from gridtokenx.wire.errors import WireError
from gridtokenx.wire.reading import READING_DOMAIN, Reading, decode, encode


def _reading(seq: int) -> Reading:
    return Reading("mtr-cache", seq, 1_790_000_000 + seq, 10 * seq, seq, 900, 2300, 0, 1000, 5000)


def test_a_remembered_signature_vouches_only_for_its_own_bytes_key_and_signature() -> None:
    key, other = SigningKey(bytes(range(32))), SigningKey(bytes(32))
    raw = encode(_reading(1))
    signature = key.sign(READING_DOMAIN + raw).signature
    public = bytes(key.verify_key)
    for _ in range(2):  # the second answer comes from the cache
        envelope.verify(raw, signature, READING_DOMAIN, public)
    tampered = bytes([signature[0] ^ 1]) + signature[1:]
    cases = [
        (raw + b"\x00", signature, READING_DOMAIN, public),
        (raw, tampered, READING_DOMAIN, public),
        (raw, signature, READING_DOMAIN, bytes(other.verify_key)),
        (raw, signature, b"gridtokenx/status/v1\x00", public),
        (raw, signature[:63], READING_DOMAIN, public),
        (raw, signature, READING_DOMAIN, public[:31]),
    ]
    for _ in range(2):
        for message, sig, domain, pk in cases:
            with pytest.raises(WireError) as err:
                envelope.verify(message, sig, domain, pk)
            assert err.value.reason == "bad_signature"


def test_large_messages_are_verified_without_being_remembered() -> None:
    key = SigningKey(bytes(range(32)))
    big = b"x" * (envelope.MAX_MESSAGE_BYTES + 1)
    signature = key.sign(READING_DOMAIN + big).signature
    before = envelope._remembered.cache_info().currsize
    envelope.verify(big, signature, READING_DOMAIN, bytes(key.verify_key))
    assert envelope._remembered.cache_info().currsize == before
    with pytest.raises(WireError):
        envelope.verify(big[:-1] + b"y", signature, READING_DOMAIN, bytes(key.verify_key))


def test_decoding_the_same_bytes_again_gives_the_same_reading_and_refusals_repeat() -> None:
    raw = encode(_reading(7))
    first = decode(raw)
    assert decode(bytearray(raw)) == first == _reading(7)
    assert decode(memoryview(raw)) is first  # remembered: the same immutable object
    assert raw[-2:] == b"\x0b\x00"  # the last entry: flags (key 11) = 0
    non_canonical = raw[:-1] + b"\x18\x00"  # 0 again, as a 1-byte argument
    for _ in range(2):
        with pytest.raises(WireError) as err:
            decode(non_canonical)
        assert err.value.reason == "non_canonical_cbor"
