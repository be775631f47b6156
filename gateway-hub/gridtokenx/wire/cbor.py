"""Deterministic CBOR (RFC 8949 section 4.2.1) on top of cbor2, strict and bounded on the way in.

cbor2 decodes tags such as shared references (28/29) and bignums (2/3) by itself; a
156-byte message of nested shared references re-encodes to 2^depth bytes. So `loads`
first walks the bytes once (`scan`, linear in their length, no recursion) and refuses
anything outside the subset the wire format uses before cbor2 sees them.
"""

from __future__ import annotations

from typing import Any

import cbor2

from gridtokenx.wire.errors import WireError

MAX_ITEM_BYTES = 8 << 20  # the default size limit of one CBOR item (batch headers are large)
MAX_DEPTH = 8  # nesting of arrays and maps; the formats use at most 3

# The smallest argument each additional-information value may carry (shortest form).
_SHORTEST = {24: 24, 25: 1 << 8, 26: 1 << 16, 27: 1 << 32}
_WIDTH = {24: 1, 25: 2, 26: 4, 27: 8}


def dumps(value: Any) -> bytes:
    """Core deterministic encoding: shortest integers, definite lengths, sorted keys."""
    return bytes(cbor2.dumps(value, canonical=True))


def scan(data: bytes, max_bytes: int = MAX_ITEM_BYTES, max_depth: int = MAX_DEPTH) -> None:
    """Check that `data` is one item of the wire's CBOR subset, in one pass over its bytes.

    The subset: unsigned and negative integers (at most 64 bits, so no bignums), byte and
    text strings, arrays and maps, all of definite length; no tags (so no shared
    references), no floats or simple values. Lengths are checked against the bytes left
    before anything is allocated. Raises WireError: `too_large`, `malformed_cbor` (not in
    the subset, truncated, trailing bytes, too deep) or `non_canonical_cbor` (an argument
    not in its shortest form, an indefinite length).
    """
    size = len(data)
    if size > max_bytes:
        raise WireError("too_large", f"{size} bytes, the limit is {max_bytes}")
    pos = 0
    # items still to read at each open array/map level; the top level holds one item
    pending = [1]
    while pending:
        if pending[-1] == 0:
            pending.pop()
            continue
        pending[-1] -= 1
        if pos >= size:
            raise WireError("malformed_cbor", "not CBOR: truncated")
        initial = data[pos]
        pos += 1
        major, info = initial >> 5, initial & 0x1F
        if info < 24:
            argument = info
        elif info in _WIDTH:
            width = _WIDTH[info]
            if pos + width > size:
                raise WireError("malformed_cbor", "not CBOR: truncated argument")
            argument = int.from_bytes(data[pos : pos + width], "big")
            pos += width
            if argument < _SHORTEST[info]:
                raise WireError("non_canonical_cbor", "an argument is not in its shortest form")
        elif info == 31 and major in (2, 3, 4, 5):
            raise WireError("non_canonical_cbor", "indefinite lengths are not deterministic")
        else:
            raise WireError("malformed_cbor", f"not CBOR: reserved initial byte 0x{initial:02x}")
        if major in (0, 1):
            continue
        if major in (2, 3):
            if argument > size - pos:
                raise WireError("malformed_cbor", "not CBOR: a string runs past the end")
            pos += argument
            continue
        if major in (4, 5):
            count = argument * 2 if major == 5 else argument
            if count > size - pos:  # every item takes at least one byte
                raise WireError("malformed_cbor", "not CBOR: more items than bytes left")
            if count:
                if len(pending) > max_depth:
                    raise WireError("malformed_cbor", f"nested deeper than {max_depth}")
                pending.append(count)
            continue
        if major == 6:
            raise WireError("malformed_cbor", f"CBOR tag {argument} is not part of the format")
        raise WireError("malformed_cbor", "floats and simple values are not part of the format")
    if pos != size:
        raise WireError("malformed_cbor", "bytes after the end of the CBOR item")


_PLAIN = (int, str, bytes)


def _count(data: bytes) -> int:
    """The argument of the first item's head (its length or count), as `scan` read it."""
    info = data[0] & 0x1F
    if info < 24:
        return info
    return int.from_bytes(data[1 : 1 + _WIDTH[info]], "big")


def _plainly_canonical(data: bytes, value: Any) -> bool:
    """Whether re-encoding `value`, decoded from `data` after `scan` passed, must give back
    `data` itself, so the re-encoding can be skipped (the hot path: every reading).

    True for a flat array, or a flat map with strictly ascending unsigned integer keys and
    as many entries as `data` announced (no duplicate keys), of integers, text and byte
    strings: `scan` checked that every head is in its shortest form, and such items have
    no other freedom of encoding. Anything else is re-encoded and compared."""
    kind = type(value)
    if kind is list:
        return all(type(v) in _PLAIN for v in value)
    if kind is not dict or len(value) != _count(data):
        return False
    last = -1
    for key in value:
        if type(key) is not int or key <= last:
            return False
        last = key
    return all(type(v) in _PLAIN for v in value.values())


def loads(data: bytes, max_bytes: int = MAX_ITEM_BYTES, max_depth: int = MAX_DEPTH) -> Any:
    """Decode one item and insist it was deterministically encoded.

    After `scan`, cbor2 decodes and re-encoding must give back exactly `data`: this
    refuses unsorted or duplicate map keys and anything else not in deterministic form.
    Both steps are linear in the size of `data`.
    """
    data = bytes(data)
    scan(data, max_bytes, max_depth)
    try:
        value = cbor2.loads(data)  # one item, no trailing bytes: `scan` saw to both
    except Exception as exc:  # cbor2 raises several types, e.g. for invalid UTF-8
        raise WireError("malformed_cbor", f"not CBOR: {exc.__class__.__name__}") from None
    if _plainly_canonical(data, value):
        return value
    try:
        again = dumps(value)
    except Exception:
        raise WireError("malformed_cbor", "CBOR holds a value outside the format") from None
    if again != data:
        raise WireError("non_canonical_cbor", "CBOR is not in deterministic encoding")
    return value
