"""The MQTT message envelope: [message CBOR as bstr, Ed25519 signature], as CBOR.

The message travels as a byte string inside the envelope so that the signature is
checked over exactly the bytes the device produced, before anything is decoded.
"""

from __future__ import annotations

from functools import lru_cache

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

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


def unwrap(payload: bytes) -> tuple[bytes, bytes]:
    """Split an envelope into (message bytes, signature), strictly and bounded: at most
    MAX_MESSAGE_BYTES (else `too_large`), one level of nesting."""
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
    try:
        VerifyKey(public_key).verify(signed, signature)
    except (BadSignatureError, ValueError):
        return False
    return True


_remembered = lru_cache(maxsize=VERIFIED)(_verifies)
