"""The MQTT message envelope: [message CBOR as bstr, Ed25519 signature], as CBOR.

The message travels as a byte string inside the envelope so that the signature is
checked over exactly the bytes the device produced, before anything is decoded.
"""

from __future__ import annotations

from functools import lru_cache

from nacl.bindings import crypto_sign_open
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey

from gridtokenx.wire import cbor
from gridtokenx.wire.errors import WireError

SIGNATURE_BYTES = 64
# The largest envelope (reading or status) a receiver decodes; checked before any decoding.
# The largest valid reading envelope has 233 bytes, the largest status 450 (docs/wire-format.md).
MAX_MESSAGE_BYTES = 512


def seal(message: bytes, domain: bytes, key: SigningKey) -> bytes:
    """Sign domain + message and wrap both into an envelope (what a device publishes)."""
    signature = key.sign(domain + message).signature
    return cbor.dumps([message, bytes(signature)])


# The deterministic encoding of [message, signature] is unique: array(2), the message's
# shortest bstr head, the message, then bstr(64) for the signature.
_SIGNATURE_HEAD = b"\x58\x40"


def _canonical_parts(payload: bytes) -> tuple[bytes, bytes] | None:
    """The parts of an envelope already in its one deterministic form, else None.

    The hot path of ingest: slicing the bytes where the form is fixed costs less than
    scanning, decoding and re-encoding them, and accepts exactly the same envelopes
    (anything else goes the strict way, which gives the reason)."""
    size = len(payload)
    if size > MAX_MESSAGE_BYTES or size < 3 + SIGNATURE_BYTES or payload[0] != 0x82:
        return None
    length = size - 3 - SIGNATURE_BYTES  # bytes left for the message's head and itself
    head = payload[1]
    if head == 0x40 + length - 1 and length - 1 < 24:
        start = 2
    elif head == 0x58 and payload[2] == length - 2 and length - 2 >= 24:
        start = 3
    elif head == 0x59 and int.from_bytes(payload[2:4], "big") == length - 3 >= 256:
        start = 4
    else:
        return None
    end = size - 2 - SIGNATURE_BYTES
    if payload[end : end + 2] != _SIGNATURE_HEAD:
        return None
    return payload[start:end], payload[end + 2 :]


def unwrap(payload: bytes) -> tuple[bytes, bytes]:
    """Split an envelope into (message bytes, signature), strictly and bounded: at most
    MAX_MESSAGE_BYTES (else `too_large`), one level of nesting."""
    parts = _canonical_parts(payload)
    if parts is not None:
        return parts
    item = cbor.loads(payload, max_bytes=MAX_MESSAGE_BYTES, max_depth=1)
    if (
        not isinstance(item, list)
        or len(item) != 2
        or not all(isinstance(part, bytes) for part in item)
    ):
        raise WireError("malformed_envelope", "an envelope is a CBOR array [bstr, bstr]")
    message, signature = item
    if len(signature) != SIGNATURE_BYTES:
        raise WireError("malformed_envelope", "an Ed25519 signature has 64 bytes")
    return message, signature


VERIFIED = 8192  # signatures `verify` remembers (a batch of 1,000 meters fits)


def verify(message: bytes, signature: bytes, domain: bytes, public_key: bytes) -> None:
    """Raise WireError('bad_signature') unless `signature` is the key's over domain+message.

    The hub's rules and then the co-signer's review verify the same reading; in one
    process the second finds the exact (bytes, signature, key) among the last ones
    checked and is spared the Ed25519 arithmetic: the answer is a pure function of them.
    Only messages up to MAX_MESSAGE_BYTES are remembered (a batch header may be large)."""
    signed, signature, public_key = (
        bytes(domain) + bytes(message),
        bytes(signature),
        bytes(public_key),
    )
    check = _remembered if len(message) <= MAX_MESSAGE_BYTES else _verifies
    if not check(signed, signature, public_key):
        raise WireError("bad_signature", "signature does not verify with the meter key")


def _verifies(signed: bytes, signature: bytes, public_key: bytes) -> bool:
    if len(public_key) != 32 or len(signature) != SIGNATURE_BYTES:
        return False
    try:  # PyNaCl's binding, as VerifyKey.verify calls it, without a key object per message
        crypto_sign_open(signature + signed, public_key)
    except (BadSignatureError, ValueError):
        return False
    return True


_remembered = lru_cache(maxsize=VERIFIED)(_verifies)
