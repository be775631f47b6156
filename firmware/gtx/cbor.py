# Deterministic CBOR encoder (RFC 8949 section 4.2.1) for what the wire format uses:
# unsigned/negative integers, byte and text strings, arrays, maps with integer keys.
# Spec: docs/wire-format.md; checked against cbor2 and the vectors in the tests.


def _head(out: bytearray, major: int, n: int) -> None:
    if n < 24:
        out.append(major << 5 | n)
    elif n < 0x100:
        out.append(major << 5 | 24)
        out.append(n)
    elif n < 0x10000:
        out.append(major << 5 | 25)
        out.extend(n.to_bytes(2, "big"))
    elif n < 0x100000000:
        out.append(major << 5 | 26)
        out.extend(n.to_bytes(4, "big"))
    elif n < 0x10000000000000000:
        out.append(major << 5 | 27)
        out.extend(n.to_bytes(8, "big"))
    else:
        raise ValueError("integer too large for CBOR")


def _encode(out: bytearray, value: object) -> None:
    if isinstance(value, bool) or value is None:
        raise TypeError("the wire format has no booleans or null")
    if isinstance(value, int):
        if value >= 0:
            _head(out, 0, value)
        else:
            _head(out, 1, -1 - value)
    elif isinstance(value, (bytes, bytearray)):
        _head(out, 2, len(value))
        out.extend(value)
    elif isinstance(value, str):
        raw = value.encode()
        _head(out, 3, len(raw))
        out.extend(raw)
    elif isinstance(value, (list, tuple)):
        _head(out, 4, len(value))
        for item in value:
            _encode(out, item)
    elif isinstance(value, dict):
        items = []
        for key in value:
            k = bytearray()
            _encode(k, key)
            items.append((bytes(k), value[key]))
        items.sort(key=lambda kv: kv[0])
        _head(out, 5, len(items))
        for encoded_key, item in items:
            out.extend(encoded_key)
            _encode(out, item)
    else:
        raise TypeError("cannot encode " + str(type(value)))


def encode(value: object) -> bytes:
    """The deterministic CBOR encoding of `value`, as bytes."""
    out = bytearray()
    _encode(out, value)
    return bytes(out)
