"""Deterministic CBOR (RFC 8949 section 4.2.1) on top of cbor2, strict on the way in."""

from __future__ import annotations

import io
from typing import Any

import cbor2

from gridtokenx.wire.errors import WireError


def dumps(value: Any) -> bytes:
    """Core deterministic encoding: shortest integers, definite lengths, sorted keys."""
    return bytes(cbor2.dumps(value, canonical=True))


def loads(data: bytes) -> Any:
    """Decode one item and insist it was deterministically encoded.

    Re-encoding must give back exactly `data`: this refuses non-shortest integers,
    indefinite lengths, unsorted or duplicate map keys, trailing bytes, and tags.
    """
    stream = io.BytesIO(data)
    try:
        value = cbor2.CBORDecoder(stream).decode()
    except Exception as exc:  # cbor2 raises several types for truncated/invalid input
        raise WireError("malformed_cbor", f"not CBOR: {exc}") from None
    if stream.tell() != len(data):
        raise WireError("malformed_cbor", "bytes after the end of the CBOR item")
    try:
        again = dumps(value)
    except Exception:
        raise WireError("malformed_cbor", "CBOR holds a value outside the format") from None
    if again != bytes(data):
        raise WireError("non_canonical_cbor", "CBOR is not in deterministic encoding")
    return value
